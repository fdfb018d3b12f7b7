"""Shared pieces of the asv suite: the base class, device sync, skip helpers, interleaved ratios.

asv (asv_runner >= 0.3) calls `setup` before every sample, so compiled functions and inputs are
cached at module level with `functools.lru_cache` and `setup` only looks them up and warms them:
no compilation, data generation or host transfer happens inside a timed call.
"""

from __future__ import annotations

import importlib
import os
import statistics
import timeit

# Pin thread pools before JAX, torch or BLAS start, so runs on a 2-core machine are comparable.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)


class Benchmark:
    """Base class: asv sampling settings shared by every study.

    Each sample runs for at least `sample_time`; `rounds` spreads samples over separate
    processes so that one unlucky process cannot decide a result.
    """

    rounds = 2
    repeat = (5, 15, 10.0)
    sample_time = 0.02
    warmup_time = 0.05
    timeout = 300


class CostlySetupBenchmark(Benchmark):
    """Base class for cases whose process start-up costs seconds (JAX import and compilation,
    building a large model): one round and 3 to 10 samples within 4 s keep a recorded run short
    on a shared 2-core machine, where asv starts a process per case and method."""

    rounds = 1
    repeat = (3, 10, 4.0)


def skip(reason: str):
    """Mark the current parameter combination as not applicable (asv shows n/a)."""
    raise NotImplementedError(reason)


def require(module: str):
    """Import `module` or skip: lets today's suite run against commits that lack a study.

    Arguments:
        module: dotted module name, e.g. ``"perflab.linear_solve"``.

    Returns:
        The imported module.
    """
    try:
        return importlib.import_module(module)
    except ImportError as err:
        skip(f"{module} is not importable in this commit/environment: {err}")


def block(result):
    """Wait for JAX (and CUDA torch) work inside `result` to finish; return it."""
    result = jax.block_until_ready(result)
    torch = _loaded_torch()
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()
    return result


def _loaded_torch():
    import sys

    return sys.modules.get("torch")


def jit_compile(fn, *args):
    """Ahead-of-time compile `fn` for `args` and return a zero-argument call that blocks.

    Arguments:
        fn: a function of JAX arrays.
        *args: the example arguments (already on the device).

    Returns:
        A callable running the compiled executable on `args` and waiting for the result.
    """
    compiled = jax.jit(fn).lower(*args).compile()

    def call():
        return jax.block_until_ready(compiled(*args))

    call()
    return call


def _time_per_call(fn, number):
    return timeit.timeit(fn, number=number) / number


def interleaved_ratio(numerator, denominator, *, rounds: int = 15, target: float = 0.01) -> float:
    """Median over interleaved rounds of time(numerator) / time(denominator), in one process.

    Arguments:
        numerator: zero-argument callable (already warm).
        denominator: zero-argument callable (already warm).
        rounds: how many alternating measurements of each.
        target: seconds each measurement should last; sets the number of calls per measurement.

    Returns:
        The median of the per-round ratios.
    """
    calls = []
    for fn in (numerator, denominator):
        fn()
        once = _time_per_call(fn, 1)
        calls.append(max(1, int(target / max(once, 1e-7))))
    ratios = []
    for _ in range(rounds):
        t_num = _time_per_call(numerator, calls[0])
        t_den = _time_per_call(denominator, calls[1])
        ratios.append(t_num / t_den)
    return statistics.median(ratios)
