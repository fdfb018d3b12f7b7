"""The suite's shared helpers: JAX set-up, asv's own-timing base classes, skips, device sync.

Classes that compare variants derive from `InterleavedBenchmark` (re-exported from
`_interleave.py`, where the measurement lives). `Benchmark` is asv's own timing (one process per
cell and round), for figures a single call gives; asv (asv_runner >= 0.3) calls `setup` before
every sample, so compiled functions and inputs are cached at module level with
`functools.lru_cache`: no compilation, data generation or host transfer inside a timed call.

Nothing here imports JAX or torch at module level: the suite can be imported (by asv's discovery,
or a forkserver) without starting a numerical runtime; `jax_x64()` configures JAX on first use.
"""

from __future__ import annotations

import functools
import importlib
import os
import time

from ._interleave import InterleavedBenchmark as InterleavedBenchmark


@functools.lru_cache(maxsize=None)
def jax_x64():
    """Import JAX with float64 enabled; return the module.

    No persistent compilation cache: a compile time or a peak memory that included loading
    from one would follow the cache's state instead of the program.
    """
    import jax

    jax.config.update("jax_enable_x64", True)
    return jax


def compile_cache_dir(tool: str) -> str:
    """Folder for `tool`'s on-disk compilation cache on this machine (`PERFLAB_CACHE_DIR` or
    ~/.cache/perflab), one subfolder per host name and tool."""
    import platform

    root = os.environ.get("PERFLAB_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "perflab")
    path = os.path.join(root, platform.node() or "host", tool)
    os.makedirs(path, exist_ok=True)
    return path


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
    jax_x64()
    try:
        return importlib.import_module(module)
    except ImportError as err:
        # CI runs HEAD, where every study exists: there a failed import is a broken study,
        # not history, and must fail the benchmark instead of showing n/a.
        if os.environ.get("PERFLAB_STRICT_IMPORTS") == "1":
            raise
        skip(f"{module} is not importable in this commit/environment: {err}")


def block(result):
    """Wait for JAX (and CUDA torch) work inside `result` to finish; return it."""
    result = jax_x64().block_until_ready(result)
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
    jax = jax_x64()
    start = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    compile_seconds = time.perf_counter() - start

    def call():
        return jax.block_until_ready(compiled(*args))

    call()
    # Read by InterleavedBenchmark's companions (cost, fingerprint, compile time), never timed.
    call.compiled = compiled
    call.compile_seconds = compile_seconds
    return call


def first_call_compile(call):
    """Warm `call` whose first call compiles (torch.compile: dynamo and inductor; a CUDA graph:
    its capture) and attach that compile time as ``call.compile_seconds``; return `call`.

    The compile time is the first call's wall time less a steady call's (the second), so it
    counts what compiling cost, not one run, as JAX's lower-and-compile time does. Measured
    while the variant is built, outside every timed region; read by the companions. Where an
    earlier call of another callable already compiled the shared program (or inductor's on-disk
    cache served it), the figure is what this process paid, which may be small.

    Arguments:
        call: a zero-argument callable, not yet called in this process.

    Returns:
        `call`, warm, with ``compile_seconds`` (>= 0) set.
    """
    start = time.perf_counter()
    call()
    first = time.perf_counter() - start
    start = time.perf_counter()
    call()
    steady = time.perf_counter() - start
    call.compile_seconds = max(first - steady, 0.0)
    return call


def call_peak_bytes(call) -> int:
    """Peak resident memory that one call of `call` adds to the process, in bytes.

    The process's peak is reset (Linux ``/proc/self/clear_refs``) after the allocator has
    given back what it holds free, and large blocks are set to come from and go back to the
    system directly, so the figure is what the call allocates at its peak: not the compiler,
    not an earlier call, not memory the allocator kept.

    Arguments:
        call: a warm zero-argument callable.

    Returns:
        The peak resident bytes during the call above the resident bytes before it.
    """
    import ctypes

    libc = ctypes.CDLL("libc.so.6")
    libc.mallopt(-3, 1 << 16)  # M_MMAP_THRESHOLD: no dynamic threshold keeping freed blocks
    libc.mallopt(-1, 1 << 16)  # M_TRIM_THRESHOLD
    libc.malloc_trim(0)
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")  # resets VmHWM to the current resident size
    before = _status_bytes("VmRSS:")
    call()
    return _status_bytes("VmHWM:") - before


def _status_bytes(field):
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"/proc/self/status has no {field}")
