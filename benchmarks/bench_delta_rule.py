"""Study 3: the delta-rule recurrence in JAX, PyTorch and Cython, on the same inputs.

Configs are the published comparison's (batch, heads, chunks, chunk size): the sequence is
chunks x chunk size tokens, head dimension 64, float32. The chunked variants use their own
algorithmic chunk (ALGO_CHUNK tokens), chosen for speed; the config's chunk size only sets the
sequence length, as it did in the published table.

Thread policy: one thread for every framework. The machines this suite runs on have two cores
shared with other work, and an OpenMP pool of two threads on a loaded 2-core machine ran several
times slower than one thread (torch; figures in docs/delta_rule.md, "Thread policy"), so
multi-threaded figures would time the scheduler. numpy's
BLAS is pinned to one thread by `common`, torch gets `torch.set_num_threads(1)`, the Cython
kernels `num_threads=1`. XLA keeps its own intra-op pool (its flags are read once per process
when the backend starts and would leak into every other suite's benchmarks in a shared process);
`DeltaRuleCores` records how many cores each variant really kept busy, so the report shows it.

Classes that compare variants (`DeltaRule`, `MatmulPeak`) are `InterleavedBenchmark`s: each cell's
variants are measured interleaved in each of a few fresh processes, asv records one sample per
process, and every derived figure (GFLOP/s, fraction of peak) is computed process by process from
the same per-process medians, so time, rate and fraction are one statistic of the same
measurements. Memory and cores, one number per process, stay asv-native (`DeltaRuleMemory`,
`DeltaRuleCores`, `MatmulCores`).
"""

from __future__ import annotations

import functools
import math
import os
import statistics
import time

import numpy as np

from . import _interleave
from ._interleave import CONTROL, injected_variants
from .common import (
    Benchmark,
    InterleavedBenchmark,
    call_peak_bytes,
    compile_cache_dir,
    first_call_compile,
    jit_compile,
    require,
    skip,
)

CONFIGS = {"small": (1, 12, 4, 64), "medium": (2, 12, 8, 128), "large": (4, 12, 16, 256)}
VARIANTS = [
    "jax_scan",
    "jax_chunked",
    "torch_recurrent",
    "torch_chunked",
    "torch_compiled",
    "cython",
    "cython_chunked",
]
HEAD_DIM = 64
ALGO_CHUNK = 64
THREADS = 1
PEAK_SIZE = 1024


def _study():
    return require("perflab.delta_rule")


def _torch():
    try:
        import torch
    except ImportError:
        skip("torch is not installed (pip install 'perflab[torch]')")
    torch.set_num_threads(THREADS)
    return torch


@functools.lru_cache(maxsize=None)
def _inputs(config):
    """Seeded float32 (q, k, v, beta) as numpy arrays; k rows unit-norm, beta in (0, 1)."""
    batch, heads, chunks, chunk = CONFIGS[config]
    rng = np.random.default_rng(3)
    shape = (batch, heads, chunks * chunk, HEAD_DIM)
    q, k, v = (rng.standard_normal(shape, dtype=np.float32) for _ in range(3))
    k /= np.linalg.norm(k, axis=-1, keepdims=True)
    beta = rng.random(shape[:3], dtype=np.float32)
    return q, k, v, beta


def _flops(config):
    batch, heads, chunks, chunk = CONFIGS[config]
    return 6 * batch * heads * chunks * chunk * HEAD_DIM * HEAD_DIM


def _host_only(variant):
    # The torch and Cython variants run on the host CPU (numpy inputs, CPU tensors): beside JAX's
    # device rows their times would read as device figures.
    import jax

    backend = jax.default_backend()
    if not variant.startswith("jax") and backend != "cpu":
        skip(f"{variant} runs on the host CPU in this suite; JAX's backend here is {backend}")


@functools.lru_cache(maxsize=None)
def _call(config, variant):
    """A warm zero-argument call of one variant on one config's inputs (blocks until done)."""
    dr = _study()
    if variant not in dr.DELTA_RULE.variants:
        skip(f"variant {variant!r} does not exist in this commit")
    _host_only(variant)
    args = _inputs(config)
    if variant.startswith("jax"):
        import jax

        return jit_compile(
            lambda q, k, v, b: dr.delta_rule(q, k, v, b, variant=variant, chunk_size=ALGO_CHUNK),
            *jax.device_put(args),
        )
    if variant.startswith("torch"):
        if variant == "torch_compiled":
            # Every measuring process compiles afresh: inductor's on-disk cache (read when first
            # needed, after this) lets all but the first reuse the generated kernels.
            os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", compile_cache_dir("torch"))
        torch = _torch()
        tensors = [torch.from_numpy(x) for x in args]

        def call():
            return dr.delta_rule(*tensors, variant=variant, chunk_size=ALGO_CHUNK)

        if variant == "torch_compiled":
            call.torch_compiled = True  # read by the companions
            # The first call compiles (dynamo + inductor): its cost is the compile companion.
            return first_call_compile(call)

    else:

        def call():
            return dr.delta_rule(*args, variant=variant, chunk_size=ALGO_CHUNK, num_threads=THREADS)

    call()
    return call


@functools.lru_cache(maxsize=None)
def _reference(config):
    """o of the study's numpy float64 per-token loop (`perflab.delta_rule._reference`) on the
    config's inputs: the ground truth of every variant (0.1 s small, ~3 s large)."""
    return require("perflab.delta_rule._reference").reference_delta_rule(*_inputs(config))[0]


@functools.lru_cache(maxsize=None)
def _matmul_inputs(size):
    rng = np.random.default_rng(0)
    return tuple(rng.standard_normal((size, size), dtype=np.float32) for _ in range(2))


@functools.lru_cache(maxsize=None)
def _matmul(framework, size):
    """A warm float32 size x size matmul in one framework."""
    a, b = _matmul_inputs(size)
    if framework == "numpy":
        call = functools.partial(np.matmul, a, b)
    elif framework == "torch":
        torch = _torch()
        ta, tb = torch.from_numpy(a), torch.from_numpy(b)
        call = functools.partial(torch.matmul, ta, tb)
    else:
        import jax

        return jit_compile(lambda x, y: x @ y, *jax.device_put((a, b)))
    call()
    return call


@functools.lru_cache(maxsize=None)
def _matmul_reference(size):
    a, b = _matmul_inputs(size)
    return a.astype(np.float64) @ b.astype(np.float64)


BASELINE = "jax_scan"  # the registry's baseline (perflab.delta_rule.DELTA_RULE)


def _per_process(values, fn):
    """asv's result form of `InterleavedBenchmark.samples`/`ratio` with `fn` applied to every
    per-process value (NaN, not measured, passes through)."""
    if not isinstance(values, dict):
        return values
    return {"samples": [fn(v) for v in values["samples"]], "number": 1}


class DeltaRule(InterleavedBenchmark):
    """The delta-rule forward pass per config and variant: time, GFLOP/s, fraction of peak.

    Each cell also measures numpy's one-thread float32 PEAK_SIZE matmul, interleaved with the
    variants in the same process: the fraction of peak is a per-process ratio, so the process's
    speed (25-100% apart between processes here) cancels.
    """

    params = [["small", "medium", "large"], [*VARIANTS, CONTROL, *injected_variants()]]
    param_names = ["config", "variant"]
    operations = ("forward", "matmul")
    baseline = BASELINE
    optimised = "cython"
    # Building (imports, compiles) dominates a process, so few processes and rounds of one slow call.
    processes = 3
    rounds_per_process = 5
    measurement_time = 0.05
    timeout = 600

    def setup_cache(self):
        return self.measure_round()

    def build(self, operation, config, variant):
        call = _call(config, variant)  # a variant that cannot run skips both operations
        return call if operation == "forward" else _matmul("numpy", PEAK_SIZE)

    def reference(self, operation, config):
        """The forward against the study's numpy float64 loop; the matmul is the yardstick
        (its error is `MatmulPeak`'s): none."""
        return _reference(config) if operation == "forward" else None

    def track_seconds_per_gflop(self, cache, config, variant):
        """Time per GFLOP of the recurrent form's useful work (6 d^2 per token and head), per
        process: a rate written lower-is-better, as asv reads every figure."""
        times = self.samples(cache, "forward", (config, variant))
        return _per_process(times, lambda t: t / (_flops(config) / 1e9))

    track_seconds_per_gflop.unit = "s/GFLOP"

    def track_time_over_peak(self, cache, config, variant):
        """The variant's time over the time its useful FLOPs would take at the matmul's rate, per
        process: t(variant) / t(matmul) / FLOP ratio, the reciprocal of the fraction of peak
        (lower is better, as asv reads every figure; 4 is 25% of peak).

        The matmul is the same call under every variant's name; per process its time is the
        median over all of the cell's names (not only this variant's), so every variant of a
        process, the control included, is divided by one and the same peak, measured about
        eight times as often as one name's.
        """
        times = self.samples(cache, "forward", (config, variant))
        names = [_interleave.key("matmul", (config, v)) for v in self.params[-1] if v not in _interleave.INJECTED]
        peaks = [cache["values"][name] for name in names if name in cache["values"]]
        if not isinstance(times, dict) or not peaks:
            return math.nan
        peak = [statistics.median(per_process) for per_process in zip(*peaks)]
        scale = _flops(config) / (2 * PEAK_SIZE**3)
        return {"samples": [t / p / scale for p, t in zip(peak, times["samples"])], "number": 1}

    track_time_over_peak.unit = "x peak time"


def _cores(call):
    """CPU seconds per wall second over one call: how many cores it kept busy, as this round's
    sample (asv's rounds give one each, so `asv compare` and `asv continuous` judge the figure
    by its spread over processes, not by one process's value)."""
    cpu, wall = time.process_time(), time.perf_counter()
    call()
    return {"samples": [(time.process_time() - cpu) / (time.perf_counter() - wall)], "number": 1}


# One process per round: a single process's figure spreads by ~5% (1.41 -> 1.49 and back
# across a docs-only commit pair), beyond `asv continuous`'s factor when it has nothing else.
CORES_ROUNDS = 5


class _LargeConfig(Benchmark):
    # One process per variant at the large config only: a single call is the measurement.
    params = [["large"], VARIANTS]
    param_names = ["config", "variant"]
    rounds = 1
    timeout = 600

    def setup(self, config, variant):
        if variant.startswith("torch"):
            _torch()
        self.call = _call(config, variant)


class DeltaRuleCores(_LargeConfig):
    """Cores each variant keeps busy at the large config (XLA runs on its own thread pool)."""

    def track_cores(self, config, variant):
        return _cores(self.call)

    track_cores.unit = "cores"
    track_cores.rounds = CORES_ROUNDS  # asv reads a track's rounds from the method only


class DeltaRuleMemory(_LargeConfig):
    """Peak resident memory one call of the large config adds, after its warm-up call
    (`common.call_peak_bytes`): what the variant needs, not what compiling it took."""

    repeat = 1

    def track_peak_memory(self, config, variant):
        return call_peak_bytes(self.call)

    track_peak_memory.unit = "bytes"


MATMUL_SIZES = [1024, 2048]
FRAMEWORKS = ["numpy", "torch", "jax"]


class MatmulPeak(InterleavedBenchmark):
    """This machine's float32 matmul throughput: the scale for the delta-rule GFLOP/s.

    numpy (OpenBLAS) and torch run on one thread, as every delta-rule variant does; JAX's matmul
    runs on XLA's own pool (see `MatmulCores`), shown for scale.
    """

    # The framework is the "variant" of the matmul, so reports pair frameworks like variants.
    params = [MATMUL_SIZES, [*FRAMEWORKS, CONTROL, *injected_variants()]]
    param_names = ["size", "variant"]
    operations = ("matmul",)
    baseline = "numpy"  # DeltaRule's peak fraction is against numpy's matmul
    # Nothing slow to build: longer measurements and more processes are cheap.
    processes = 4
    rounds_per_process = 5
    measurement_time = 0.1

    def setup_cache(self):
        return self.measure_round()

    def build(self, operation, size, variant):
        return _matmul(variant, size)

    def reference(self, operation, size):
        """The same product in numpy float64 (one-thread BLAS: 0.1 s at 1024, ~1 s at 2048)."""
        return _matmul_reference(size)

    def track_seconds_per_gflop(self, cache, size, variant):
        times = self.samples(cache, "matmul", (size, variant))
        return _per_process(times, lambda t: t / (2 * size**3 / 1e9))

    track_seconds_per_gflop.unit = "s/GFLOP"


class MatmulCores(Benchmark):
    """Cores each framework's matmul keeps busy (XLA runs on its own thread pool)."""

    params = [MATMUL_SIZES, FRAMEWORKS]
    param_names = ["size", "variant"]

    def setup(self, size, variant):
        self.call = _matmul(variant, size)

    def track_cores(self, size, variant):
        return _cores(self.call)

    track_cores.unit = "cores"
    track_cores.rounds = CORES_ROUNDS  # asv reads a track's rounds from the method only
