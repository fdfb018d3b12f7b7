"""The variant registry: each study declares, per operation, the variants it offers by name.

Benchmarks keep their own literal `params` lists (asv runs today's benchmarks against older
commits, so they must not import their parameter values from the library); a test checks that
every registered variant appears in the benchmark that times it.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Mapping


@dataclasses.dataclass(frozen=True)
class Operation:
    """The variants of one operation of one study.

    Attributes:
        study: the study's name, e.g. ``"linear_solve"``.
        name: the operation's name, e.g. ``"solve_jvp"``.
        variants: variant name -> one-line description of what it does.
        default: the variant used when the caller names none.
        baseline: the variant reports treat as BEFORE (the suite records it in benchmarks.json).
        optimised: the variant reports treat as AFTER (likewise).
        same_program: {frozenset({a, b}): reason} for variant pairs that are expected to
            compile to the same program at some benchmarked size (a test fails on any other
            pair that does).
    """

    study: str
    name: str
    variants: Mapping[str, str]
    default: str
    baseline: str = "before"
    optimised: str = "after"
    same_program: Mapping[frozenset, str] = dataclasses.field(default_factory=dict)

    def expected_same_program(self, a: str, b: str) -> str | None:
        """Why variants `a` and `b` are expected to compile to one program, or ``None``."""
        return self.same_program.get(frozenset((a, b)))

    def check(self, variant: str, *, argument: str = "variant") -> str:
        """Return `variant` if it is registered, else raise a `ValueError` listing the choices.

        Arguments:
            variant: the name to check.
            argument: the argument name to quote in the error.

        Returns:
            The same name.
        """
        if not isinstance(variant, str) or variant not in self.variants:
            raise ValueError(
                f"{argument}={variant!r} is not a variant of {self.study}.{self.name}; "
                f"expected one of {sorted(self.variants)}"
            )
        return variant

    @property
    def names(self) -> tuple[str, ...]:
        """The variant names, in declaration order."""
        return tuple(self.variants)


_REGISTRY: dict[tuple[str, str], Operation] = {}


def register(
    study: str,
    name: str,
    variants: Mapping[str, str],
    *,
    default: str,
    baseline: str = "before",
    optimised: str = "after",
    same_program: Mapping[tuple[str, str], str] | None = None,
) -> Operation:
    """Declare the variants of an operation and return its `Operation` record.

    Arguments:
        study: the study's name.
        name: the operation's name.
        variants: variant name -> description; the order is the order reports use.
        default: the variant used when the caller names none.
        baseline: the variant shown as BEFORE in reports.
        optimised: the variant shown as AFTER in reports.
        same_program: (a, b) -> the reason the two variants are expected to compile to the
            same program at some benchmarked size.

    Returns:
        The registered `Operation`.
    """
    for role, value in (("default", default), ("baseline", baseline), ("optimised", optimised)):
        if value not in variants:
            raise ValueError(f"{role}={value!r} is not among the variants {list(variants)}")
    pairs = {}
    for (a, b), reason in (same_program or {}).items():
        if a not in variants or b not in variants:
            raise ValueError(f"same_program names {a!r} and {b!r}; expected variants among {list(variants)}")
        pairs[frozenset((a, b))] = reason
    op = Operation(study, name, dict(variants), default, baseline, optimised, pairs)
    _REGISTRY[(study, name)] = op
    return op


def operations() -> tuple[Operation, ...]:
    """Every registered operation (import the study packages first to register them).

    Returns:
        The operations in registration order.
    """
    return tuple(_REGISTRY.values())


def get(study: str, name: str) -> Operation:
    """Look up one operation.

    Arguments:
        study: the study's name.
        name: the operation's name.

    Returns:
        Its `Operation`.
    """
    try:
        return _REGISTRY[(study, name)]
    except KeyError:
        raise KeyError(f"no operation {study}.{name}; registered: {sorted('.'.join(k) for k in _REGISTRY)}") from None


def for_study(study: str) -> tuple[Operation, ...]:
    """The operations of one study, importing ``perflab.<study>`` so that it registers them.

    Arguments:
        study: the study's name, e.g. ``"sde"`` (a benchmark module ``bench_sde`` times it).

    Returns:
        Its operations in registration order; empty when there is no such study package.

    Raises:
        ImportError: when the study package exists but cannot be imported (a missing
            dependency).
    """
    try:
        importlib.import_module(f"{__package__}.{study}")
    except ModuleNotFoundError as err:
        if err.name not in (f"{__package__}.{study}", __package__):
            raise
    return tuple(op for op in _REGISTRY.values() if op.study == study)
