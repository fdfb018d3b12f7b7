"""Tensor-parallel sharding rules (path regex -> PartitionSpec) and the matcher."""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Iterator, Sequence
from typing import Any, Literal, NamedTuple

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from ._model import path_string

# Megatron-style tensor parallelism for a BERT layer, in equinox's (out, in) weight layout:
# query/key/value and the feed-forward expansion split their output features (column-parallel),
# the two projections back to `hidden` split their input features (row-parallel), so each
# attention block and each feed-forward block needs one reduction.
BERT_RULES: tuple[tuple[str, PartitionSpec], ...] = (
    (r"layers\.\d+\.attention\.query\.weight", PartitionSpec("tp", None)),
    (r"layers\.\d+\.attention\.key\.weight", PartitionSpec("tp", None)),
    (r"layers\.\d+\.attention\.value\.weight", PartitionSpec("tp", None)),
    (r"layers\.\d+\.attention\.output\.dense\.weight", PartitionSpec(None, "tp")),
    (r"layers\.\d+\.intermediate\.dense\.weight", PartitionSpec("tp", None)),
    (r"layers\.\d+\.output\.dense\.weight", PartitionSpec(None, "tp")),
)


class PathGetter:
    """``getter(tree)`` follows a fixed key path into `tree`; ``getter.keys`` is that path."""

    __slots__ = ("keys",)

    def __init__(self, keys: tuple):
        self.keys = tuple(keys)

    def __call__(self, tree):
        node = tree
        for k in self.keys:
            if isinstance(k, jax.tree_util.GetAttrKey):
                node = getattr(node, k.name)
            elif isinstance(k, jax.tree_util.SequenceKey):
                node = node[k.idx]
            elif isinstance(k, jax.tree_util.DictKey):
                node = node[k.key]
            else:
                raise TypeError(f"cannot follow key {k!r} of path {path_string(self.keys)}")
        return node

    def __repr__(self):
        return f"PathGetter({path_string(self.keys)!r})"


class Match(NamedTuple):
    """One leaf to replace: its dotted path, a getter for `eqx.tree_at`, the sharded leaf."""

    path: str
    getter: PathGetter
    replacement: Any


def _axis_size(mesh: Mesh, entry) -> int:
    names = entry if isinstance(entry, tuple) else (entry,)
    return math.prod(mesh.shape[n] for n in names)


def _check_spec(path: str, leaf, spec: PartitionSpec, mesh: Mesh, pattern: str) -> None:
    shape = np.shape(leaf)
    if len(spec) > len(shape):
        raise ValueError(
            f"rule {pattern!r}: PartitionSpec {spec} has {len(spec)} entries but leaf {path!r} has shape {shape}"
        )
    for dim, entry in enumerate(spec):
        if entry is None:
            continue
        names = entry if isinstance(entry, tuple) else (entry,)
        missing = [n for n in names if n not in mesh.shape]
        if missing:
            raise ValueError(
                f"rule {pattern!r}: mesh axis {missing[0]!r} is not in the mesh (axes "
                f"{tuple(mesh.axis_names)}) for leaf {path!r}"
            )
        size = _axis_size(mesh, entry)
        if shape[dim] % size:
            raise ValueError(
                f"rule {pattern!r}: leaf {path!r} has shape {shape}; its dimension {dim} "
                f"(size {shape[dim]}) is not divisible by mesh axis {entry!r} of size {size}"
            )


def _compile(rules) -> list[tuple[str, re.Pattern, PartitionSpec]]:
    compiled = []
    for i, rule in enumerate(rules):
        try:
            pattern, spec = rule
        except (TypeError, ValueError):
            raise ValueError(f"rules[{i}] must be a (regex, PartitionSpec) pair, got {rule!r}") from None
        if not isinstance(spec, PartitionSpec):
            raise ValueError(f"rules[{i}] ({pattern!r}): expected a PartitionSpec, got {spec!r}")
        try:
            regex = re.compile(pattern)
        except (re.error, TypeError) as err:
            raise ValueError(f"rules[{i}]: {pattern!r} is not a valid regex: {err}") from None
        compiled.append((pattern, regex, spec))
    return compiled


def iter_matches(
    model,
    mesh: Mesh,
    rules: Sequence[tuple[str, PartitionSpec]] = BERT_RULES,
    *,
    unmatched: Literal["warn", "error", "ignore"] = "warn",
) -> Iterator[Match]:
    """Yield a `Match` for every array leaf whose dotted path fully matches a rule's regex.

    Each replacement is the leaf placed with `jax.device_put` on
    ``NamedSharding(mesh, spec)``. Every rule is checked against every matched leaf before
    anything is transferred: a leaf matched by two rules is an error (whether or not their
    specs agree: rule order would otherwise decide silently), as is a spec whose mesh axis
    does not divide the leaf's dimension or names an axis the mesh lacks.

    Arguments:
        model: the PyTree (e.g. a `BertLike`).
        mesh: the `jax.sharding.Mesh` to shard over.
        rules: ``(regex, PartitionSpec)`` pairs; a regex must match the whole dotted path
            (``re.fullmatch``), e.g. ``layers\\.\\d+\\.attention\\.query\\.weight``.
        unmatched: what a rule that matches no leaf does: ``"warn"`` (a `UserWarning`
            naming the rule), ``"error"`` (a `ValueError`) or ``"ignore"``.

    Returns:
        An iterator of `Match` (path, getter, replacement), in leaf order.
    """
    if unmatched not in ("warn", "error", "ignore"):
        raise ValueError(f"unmatched must be 'warn', 'error' or 'ignore', got {unmatched!r}")
    if not isinstance(mesh, Mesh):
        raise ValueError(f"mesh must be a jax.sharding.Mesh, got {type(mesh).__name__}")
    compiled = _compile(rules)
    hits = [0] * len(compiled)
    found = []
    for keys, leaf in jax.tree_util.tree_flatten_with_path(model)[0]:
        if not hasattr(leaf, "shape"):
            continue
        path = path_string(keys)
        chosen = None
        for i, (pattern, regex, spec) in enumerate(compiled):
            if regex.fullmatch(path):
                if chosen is not None:
                    first = compiled[chosen]
                    kind = "conflicting" if first[2] != spec else "overlapping"
                    raise ValueError(
                        f"{kind} rules: leaf {path!r} matches both {first[0]!r} -> {first[2]} and {pattern!r} -> {spec}"
                    )
                chosen = i
                hits[i] += 1
        if chosen is not None:
            pattern, _, spec = compiled[chosen]
            _check_spec(path, leaf, spec, mesh, pattern)
            found.append((path, keys, leaf, spec))
    for (pattern, _, _), n in zip(compiled, hits):
        if n == 0 and unmatched != "ignore":
            message = f"sharding rule {pattern!r} matches no leaf of the model"
            if unmatched == "error":
                raise ValueError(message)
            warnings.warn(message, UserWarning, stacklevel=2)
    for path, keys, leaf, spec in found:
        yield Match(path, PathGetter(keys), jax.device_put(leaf, NamedSharding(mesh, spec)))


def match_rules(
    model,
    mesh: Mesh,
    rules: Sequence[tuple[str, PartitionSpec]] = BERT_RULES,
    *,
    unmatched: Literal["warn", "error", "ignore"] = "warn",
) -> list[Match]:
    """`iter_matches` collected into a list.

    Arguments:
        model: the PyTree.
        mesh: the `jax.sharding.Mesh`.
        rules: ``(regex, PartitionSpec)`` pairs (full-path regex match).
        unmatched: ``"warn"``, ``"error"`` or ``"ignore"`` for a rule that matches nothing.

    Returns:
        The list of `Match`.
    """
    return list(iter_matches(model, mesh, rules, unmatched=unmatched))


def make_mesh(devices: int, axis: str = "tp") -> Mesh:
    """A one-axis mesh over the first `devices` devices of the default backend.

    Built with `jax.sharding.Mesh` directly, so the axis is `AxisType.Auto` (``jax.make_mesh``
    defaults to Explicit axes, under which a row-parallel matmul raises `ShardingTypeError`).

    Arguments:
        devices: how many devices the axis spans (>= 1).
        axis: the axis name.

    Returns:
        The mesh.
    """
    if not isinstance(devices, int) or isinstance(devices, bool) or devices < 1:
        raise ValueError(f"devices must be a positive int, got {devices!r}")
    available = jax.devices()
    if devices > len(available):
        raise ValueError(
            f"devices={devices} but only {len(available)} {available[0].platform} device(s) exist; "
            "on CPU set XLA_FLAGS=--xla_force_host_platform_device_count=N before JAX starts"
        )
    return Mesh(np.array(available[:devices]), (axis,))
