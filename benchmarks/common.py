"""Shared pieces of the asv suite: base classes, device sync, skip helpers, interleaved measurement.

Two ways to measure live here:

- `InterleavedBenchmark`, for every class that compares variants: its `setup_cache` measures all
  cells in several fresh processes, the variants of a cell interleaved in each (see
  `_interleave.py`), and its `track_<operation>` methods hand asv one sample per process.
- `Benchmark`, asv's own timing (one process per cell and round), for memory and single-value
  figures. asv (asv_runner >= 0.3) calls `setup` before every sample, so compiled functions and
  inputs are cached at module level with `functools.lru_cache`: no compilation, data generation
  or host transfer happens inside a timed call.

Nothing here imports JAX or torch at module level: the suite can be imported (by asv's discovery,
or a forkserver) without starting a numerical runtime; `jax_x64()` configures JAX on first use.
"""

from __future__ import annotations

import functools
import importlib
import itertools
import math
import os
import statistics
import sys
import time
import timeit
import types
import zlib

from . import _companions, _interleave


@functools.lru_cache(maxsize=None)
def jax_x64():
    """Import JAX with float64 enabled and the persistent compilation cache on; return the module.

    The cache lives in a folder per machine and JAX version (`compile_cache_dir`), and JAX keys
    every entry by the program, its compile options, the backend and the jaxlib version, so a
    different program never hits; a cold cache only costs compile time, outside every timer.
    """
    import jax

    jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_compilation_cache_dir", compile_cache_dir("jax"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
    return jax


def compile_cache_dir(tool: str) -> str:
    """Folder for `tool`'s persistent compilation cache on this machine (`PERFLAB_CACHE_DIR` or
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


class CostlySetupBenchmark(Benchmark):
    """Base class for cases whose process start-up costs seconds (JAX import and compilation,
    building a large model): one round and 3 to 10 samples within 4 s keep a recorded run short
    on a shared 2-core machine, where asv starts a process per case and method."""

    rounds = 1
    repeat = (3, 10, 4.0)


class InterleavedBenchmark:
    """Base class for comparing variants: every cell measured interleaved, in several processes.

    A subclass declares `params`/`param_names` with the variant parameter last, lists its timed
    `operations` (and any per-process `ratios` of two of them), names the `baseline` variant the
    control twin copies, and implements `build(operation, *params)` returning a warm, blocking
    zero-argument callable (or raising `NotImplementedError` via `skip`/`require`: that cell is
    recorded n/a, with the reason). `track_<operation>` (seconds per call, one sample per
    process) and `track_<ratio>` methods are generated.

    The variant list must include `"control"` (the baseline's callable measured again under a
    second name, by the benchmark: identical code, which the report must not find different).
    Under PERFLAB_INJECT=1 (calibration only) the twins `plus5pct` and `plus10pct` are added.

    Attributes:
        processes: fresh processes per run; the unit of noise (asv records one sample each).
        rounds_per_process: interleaved measurements of each callable in one process.
        measurement_time: seconds one measurement lasts (it holds as many calls as that takes).
    """

    operations: tuple[str, ...] = ()
    # name -> (numerator operation, denominator operation, unit): per-process ratios.
    ratios: dict[str, tuple[str, str, str]] = {}
    baseline: str = ""
    processes = 5
    rounds_per_process = 7
    measurement_time = 0.004
    # asv: the track methods only read the cache, so one asv process per cell suffices.
    rounds = 1
    timeout = 120

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        # Each class gets its own `track_<operation>` and `track_<ratio>` functions unless it
        # writes them, so the attributes below (exported by asv into benchmarks.json: the
        # report and the calibration read the baseline, the control and the process pairing
        # there) never leak between classes.
        for operation in cls.operations:
            if f"track_{operation}" not in vars(cls):
                setattr(cls, f"track_{operation}", _samples_method(operation))
            for metric, unit in _companions.METRICS.items():
                if f"track_{operation}_{metric}" not in vars(cls):
                    setattr(cls, f"track_{operation}_{metric}", _companion_method(metric, operation, unit))
        for name, (numerator, denominator, unit) in cls.ratios.items():
            if f"track_{name}" not in vars(cls):
                setattr(cls, f"track_{name}", _ratio_method(numerator, denominator, unit))
        cls.setup_cache = _class_setup_cache(cls)
        for name, fn in list(vars(cls).items()):
            if name.startswith("track_") and callable(fn):
                fn.baseline = cls.baseline
                fn.control = _interleave.CONTROL
                fn.paired_processes = True
                fn.processes = cls.processes

    def build(self, operation: str, *params):
        """The warm callable of `operation` at `params` (the variant last); see the class doc."""
        raise NotImplementedError

    def reference(self, operation: str, *head):
        """The study's reference output for `operation` at a cell (all parameters but the
        variant), for the recorded numerical error; ``None`` where the class has none."""
        return None

    def cells(self):
        """The parameter combinations, grouped by everything but the variant."""
        for head in itertools.product(*self.params[:-1]):
            yield head, list(self.params[-1])

    def measure_process(self, index: int) -> dict:
        """Build and measure every cell of this class in the current process (one process of
        `setup_cache`); returns ``{"values": {key: seconds}, "skipped": {key: reason}}``."""
        values, skipped = {}, {}
        for head, variants in self.cells():
            calls, twins = {}, {}
            for operation in self.operations:
                for variant in variants:
                    name = _interleave.key(operation, (*head, variant))
                    twin = variant == _interleave.CONTROL or variant in _interleave.INJECTED
                    try:
                        call = self.build(operation, *head, self.baseline if twin else variant)
                    except NotImplementedError as err:
                        skipped[name] = str(err)
                        continue
                    if variant in _interleave.INJECTED:
                        of = _interleave.key(operation, (*head, self.baseline))
                        twins[name] = (of, _interleave.INJECTED[variant])
                        continue
                    calls[name] = call
                    if index == 0:
                        # Deterministic figures need one process; all of them outside the timer.
                        reference = functools.partial(self.reference, operation, *head)
                        values.update(_companions.describe(call, operation, (*head, variant), reference))
            twins = {n: t for n, t in twins.items() if t[0] in calls}
            if calls:
                rounds = 1 if _interleave.quick() else self.rounds_per_process
                seed = zlib.crc32(repr((index, head)).encode())
                values.update(
                    _interleave.measure(calls, rounds=rounds, target=self.measurement_time, twins=twins, seed=seed)
                )
        return {"values": values, "skipped": skipped}

    def _measure_all(self):
        # Becomes each subclass's `setup_cache` (see `_class_setup_cache`).
        cls = type(self)
        provenance = _provenance()
        processes = 1 if _interleave.quick() else self.processes
        cache = _interleave.run_processes(cls.__module__, cls.__qualname__, processes, self.timeout * 10)
        cache["provenance"] = provenance
        return cache

    _measure_all.timeout = 3600

    def setup(self, cache, *params):
        names = [_interleave.key(operation, params) for operation in self.operations]
        if not any(name in cache["values"] for name in names):
            skip(cache["skipped"].get(names[0], f"{names[0]} was not measured"))

    def samples(self, cache, operation: str, params) -> dict:
        """asv's timing-result form for one cell: one sample (seconds per call) per process.

        Arguments:
            cache: what `setup_cache` returned.
            operation: one of `operations`.
            params: the cell's parameter values, the variant last.

        Returns:
            ``{"samples": [...], "number": 1}``, from which asv computes its statistics; NaN
            (n/a) where this operation was not measured in an otherwise measured cell.
        """
        name = _interleave.key(operation, params)
        if name not in cache["values"]:
            return math.nan
        return {"samples": cache["values"][name], "number": 1}

    def ratio(self, cache, numerator: str, denominator: str, params) -> dict:
        """Per-process ratio of two operations of one cell (measured interleaved in each process).

        Returns:
            ``{"samples": [...], "number": 1}``, one ratio per process; NaN where either is missing.
        """
        num, den = (cache["values"].get(_interleave.key(op, params)) for op in (numerator, denominator))
        if num is None or den is None:
            return math.nan
        return {"samples": [a / b for a, b in zip(num, den)], "number": 1}


def _provenance():
    # A recorded run must have timed the commit asv labels it with: checked before anything is
    # measured. Commits that predate perflab.provenance cannot say.
    try:
        from perflab import provenance
    except ImportError:
        return None
    code = provenance.check(_labelled_commit())
    return {"commit": code.commit, "dirty": code.dirty, "source": code.source}


def _labelled_commit():
    # asv sets ASV_COMMIT for the environments it builds; for `--python=same` it does not, and
    # the label is the `--set-commit-hash` value of the asv command that started this process
    # (up the process tree: forkserver, then asv). Resolved with git in the project's folder.
    label = os.environ.get("ASV_COMMIT") or _set_commit_hash_argument()
    if not label:
        return None
    import subprocess

    where = os.environ.get("ASV_CONF_DIR") or os.getcwd()
    out = subprocess.run(["git", "-C", where, "rev-parse", "--verify", f"{label}^{{commit}}"],
                         capture_output=True, text=True)
    return out.stdout.strip() if out.returncode == 0 else label


def _set_commit_hash_argument():
    pid = os.getpid()
    for _ in range(8):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                args = [a.decode(errors="replace") for a in fh.read().split(b"\0") if a]
            with open(f"/proc/{pid}/stat") as fh:
                parent = int(fh.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            return None
        for i, arg in enumerate(args):
            if arg == "--set-commit-hash" and i + 1 < len(args):
                return args[i + 1]
            if arg.startswith("--set-commit-hash="):
                return arg.split("=", 1)[1]
        if parent <= 1:
            return None
        pid = parent
    return None


def _class_setup_cache(cls):
    # asv keys a setup_cache by "<module without its package>:<first line>" and runs it once per
    # key per run, handing the result to every class that shares the key: an inherited
    # setup_cache would hand one class's measurements to all. So each class gets its own copy
    # of the function, owned by a module named after the class ("bench_x.Cls"), registered in
    # sys.modules at import, in every process that imports the suite.
    base = InterleavedBenchmark._measure_all
    owner = f"{cls.__module__}.{cls.__qualname__}"
    sys.modules.setdefault(owner, types.ModuleType(owner))
    fn = types.FunctionType(base.__code__, base.__globals__, "setup_cache", base.__defaults__, base.__closure__)
    fn.__module__, fn.__qualname__ = owner, f"{cls.__qualname__}.setup_cache"
    fn.timeout = base.timeout
    return fn


def _samples_method(operation):
    def track(self, cache, *params):
        return self.samples(cache, operation, params)

    track.unit = "seconds"
    return track


def _companion_method(metric, operation, unit):
    def track(self, cache, *params):
        # Recorded by the first process only: one deterministic value, not a sample list.
        recorded = cache["values"].get(_interleave.key(f"{metric}:{operation}", params))
        return recorded[0] if recorded else math.nan

    track.unit = unit
    return track


def _ratio_method(numerator, denominator, unit):
    def track(self, cache, *params):
        return self.ratio(cache, numerator, denominator, params)

    track.unit = unit
    return track


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
