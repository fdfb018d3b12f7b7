"""Study 4: applying tensor-parallel sharding rules to a BERT-like equinox model.

`ApplyShardingRules.track_apply` times the tree surgery only, in wall-clock time: the study's
goals are judged on it. `ApplyShardingRulesThreadCPU.time_apply_thread_cpu` is the same call in
the CPU time of the calling thread only (`time.thread_time`), a secondary figure. The model, the
mesh and the matches (each carrying its replacement leaf, already `device_put` on its
`NamedSharding`) are built once per process outside the timer, as the study's claim specified.
`ShardModel.track_shard` times the whole `shard_model` call instead: matching, the `device_put`
transfers and the surgery. The comparing classes are `InterleavedBenchmark`s (variants of a cell
interleaved in several fresh processes, one asv sample per process).
"""

from __future__ import annotations

import functools
import math
import os
import time

# Host devices for the 2/4/8-way meshes. XLA reads the flag when JAX's backend starts, which
# happens lazily on first device use (importing jax, as `.common` does, is not enough), so this
# must run before anything in the process touches a device; `_mesh` skips when it came too late.
_FLAG = "--xla_force_host_platform_device_count"
if _FLAG not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + f" {_FLAG}=8").strip()

from ._companions import ErrorOf, relative_error  # noqa: E402
from ._interleave import CONTROL, injected_variants  # noqa: E402
from .common import InterleavedBenchmark, require, skip  # noqa: E402

LAYERS = [4, 12, 24]
DEVICES = [2, 4, 8]
VARIANTS = ["loop", "batched", "path_map"]
HIDDEN = 768


def _study():
    return require("perflab.tree_transforms")


@functools.lru_cache(maxsize=None)
def _model(layers):
    import jax

    return jax.block_until_ready(_study().make_bert(layers, HIDDEN))


@functools.lru_cache(maxsize=None)
def _mesh(devices):
    import jax

    tt = _study()
    available = len(jax.devices())
    if available < devices and jax.default_backend() != "cpu":
        skip(f"{devices} devices wanted but JAX's {jax.default_backend()} backend has {available}")
    if available < devices:
        skip(
            f"{devices} devices wanted but JAX has {available}: XLA_FLAGS={_FLAG}=N must be set "
            "before JAX's backend starts (another module in this process started it first)"
        )
    return tt.make_mesh(devices)


@functools.lru_cache(maxsize=None)
def _matches(layers, devices):
    import jax

    matches = _study().match_rules(_model(layers), _mesh(devices))
    jax.block_until_ready([m.replacement for m in matches])
    return matches


# The variant parameter of the comparing classes: the study's variants, the control twin of the
# baseline and (calibration only) the injected-slowdown twins. The baseline is the registry's
# (`perflab.tree_transforms.APPLY.baseline`), written out so that importing the suite does not
# start JAX.
BASELINE = "loop"
COMPARED = [*VARIANTS, CONTROL, *injected_variants()]


def _apply_call(layers, devices, variant):
    tt = _study()
    tt.APPLY.check(variant)
    _mesh(devices)  # skips before a model is built where the devices are missing
    model, matches = _model(layers), _matches(layers, devices)
    return lambda: tt.apply_matches(model, matches, variant=variant)


def _thread_cpu(call):
    def timed():
        return call()

    timed.timer = time.thread_time
    return timed


def _shard_call(layers, devices, variant):
    import jax

    tt = _study()
    tt.APPLY.check(variant)
    mesh = _mesh(devices)
    model = _model(layers)
    _matches(layers, devices)  # the first device_put of each shape is slower: warm it
    return lambda: jax.block_until_ready(tt.shard_model(model, mesh, variant=variant))


def _release(layers):
    """Drop the cached models and matches of other depths: a process measures every cell, and
    keeping the 4-, 12- and 24-layer models with a sharded copy per mesh would hold ~4 GB."""
    if getattr(_release, "layers", None) != layers:
        _model.cache_clear()
        _matches.cache_clear()
        _reference_model.cache_clear()
        _release.layers = layers


@functools.lru_cache(maxsize=None)
def _reference_model(layers, devices):
    """The naive result: one `eqx.tree_at` per matched leaf, written here, not the study's
    code (its `loop` variant does the same, sorted and with error handling)."""
    import equinox as eqx

    model = _model(layers)
    for match in _matches(layers, devices):
        model = eqx.tree_at(match.getter, model, match.replacement)
    return model


def leaf_error(result, expected) -> float:
    """The error of a transformed model against the reference model, leaf by leaf.

    Same tree structure required (else ValueError). A leaf that is the reference's own object
    counts 0 without a transfer (the surgery's success case); any other array leaf counts its
    relative value error max |r - e| / max |e| and, when its sharding is not equivalent to the
    reference's, 1 (a replica where a shard belongs is as wrong as a wrong value); non-array
    leaves must be equal (else 1). One leaf at a time, and equal leaves are never widened to
    float64, so a 24-layer model (0.7 GB) is compared in about a second, not held twice.

    Returns:
        The largest per-leaf error (0: every leaf right and placed right).
    """
    import jax
    import numpy as np

    got, got_def = jax.tree_util.tree_flatten(result)
    want, want_def = jax.tree_util.tree_flatten(expected)
    if got_def != want_def:
        raise ValueError(f"the result's tree differs from the reference's:\n{got_def}\n{want_def}")
    worst = 0.0
    for g, w in zip(got, want):
        if g is w:
            continue
        if not isinstance(w, jax.Array):
            worst = max(worst, 0.0 if g == w else 1.0)
            continue
        if not isinstance(g, jax.Array) or g.shape != w.shape:
            worst = max(worst, 1.0)
            continue
        if not g.sharding.is_equivalent_to(w.sharding, w.ndim):
            worst = max(worst, 1.0)
        a, b = np.asarray(g), np.asarray(w)  # gathered to the host in their own dtype
        if not b.size or np.array_equal(a, b):
            continue
        worst = max(worst, relative_error(a, b))  # widened to float64 only when they differ
    return worst


def _tree_reference(layers, devices):
    expected = _reference_model(layers, devices)
    return ErrorOf(lambda result: leaf_error(result, expected), "leaves and shardings against per-leaf tree_at")


class _ShardingBench(InterleavedBenchmark):
    # What both classes share; each keeps its own setup_cache (asv keys the cache by its line).
    param_names = ["layers", "devices", "variant"]
    baseline = BASELINE
    optimised = "path_map"
    processes = 4
    rounds_per_process = 5
    measurement_time = 0.02
    timeout = 900

    def reference(self, operation, layers, devices):
        _release(layers)
        return _tree_reference(layers, devices)


class ApplyShardingRules(_ShardingBench):
    """Swap every matched weight of a BERT-like model (hidden 768) for its sharded copy.

    `track_apply` is the tree surgery alone, in wall-clock time (the study's goals are judged on
    it); `track_time_per_layer` is the same per-process times divided by the depth;
    `track_apply_thread_cpu` is the same call in the CPU time of the calling thread alone
    (process time would also count JAX's and XLA's other threads), measured interleaved beside it. The error
    (`leaf_error`) compares the result leaf by leaf, values and shardings, with the naive
    per-leaf `eqx.tree_at` result: 0 when every leaf is right.
    """

    params = [LAYERS, DEVICES, COMPARED]
    operations = ("apply", "apply_thread_cpu")
    # Short measurements: one call of the slow `loop` cells, many of the fast ones.

    def setup_cache(self):
        return self.measure_round()

    def build(self, operation, layers, devices, variant):
        _release(layers)
        call = _apply_call(layers, devices, variant)
        if operation == "apply_thread_cpu":
            return _thread_cpu(call)
        return call

    def track_time_per_layer(self, cache, layers, devices, variant):
        from ._interleave import key

        seconds = cache["values"].get(key("apply", (layers, devices, variant)))
        if seconds is None:
            return math.nan
        return {"samples": [1e3 * t / layers for t in seconds], "number": 1}

    track_time_per_layer.unit = "ms/layer"


class ShardModel(_ShardingBench):
    """The whole `shard_model` call: match the rules, `device_put` each leaf, apply.

    The error is `ApplyShardingRules`'s: every leaf (here fresh transfers) against the naive
    per-leaf `eqx.tree_at` result, values and shardings.
    """

    params = [LAYERS, [2], COMPARED]
    operations = ("shard",)
    # A call transfers every matched weight, so a short measurement is one call.

    def setup_cache(self):
        return self.measure_round()

    def build(self, operation, layers, devices, variant):
        _release(layers)
        return _shard_call(layers, devices, variant)
