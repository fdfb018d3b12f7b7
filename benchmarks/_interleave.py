"""The interleaved measurement: every variant of a cell timed in the same fresh process, one
process per asv round.

On the 2-core machines this suite runs on, the largest source of noise is the process: the same
program started again lands 25-100% away, and much of that move is shared by the programs one
process runs (its speed, its placement). So each asv round of an `InterleavedBenchmark` class is
one fresh Python process (this module run as a script) that builds and warms every callable of
every cell, then measures the variants of a cell in a new random order in each of
`rounds_per_process` rounds (A C B, B A C, ...), each measurement `k` calls long with `k` set so
that it lasts `measurement_time`, and keeps per callable the median per-call time over its
rounds. asv records one sample per round, so `asv compare`, `asv publish` and the report see the
process as the unit of noise, and the samples of one class share their round order: the report
pairs the variants of a cell round by round.

How rounds map onto processes. asv keys a class's `setup_cache` and runs it once per
`run_benchmarks` call, handing its result to every round of that call:

- commits compared with asv's `--interleave-rounds` (the default of `asv continuous`; `asv run`
  interleaves only when given the flag, asv 0.6.6) get one `run_benchmarks` call per
  (round, commit), alternating the commit order round by round: each round's `setup_cache`
  measures that round's process, so commit A's and commit B's processes alternate;
- a single commit (`asv run --python=same ...`) gets one call for all rounds: `setup_cache`
  measures the first process and each later round measures its own when it first reads the
  cache (`_RoundCache`), so a recording still holds one sample per process.

Either way the deterministic companions (cost, fingerprint, error: the same in every process)
are recorded by the first process of each commit and class. Under interleaved rounds that
process keeps them, for the rest of that asv invocation, in a file keyed by the invocation (the
asv process that started the benchmark server), the commit, asv's environment and the class
(`_described_path`), and every later round's process measures timings and compile times only,
as a single commit's later rounds always have; asv reads the companions in one round only.

asv's ``--quick`` runs one round: one process, the smoke run.

Relative times. In a cell with at least `MIN_RELATIVE` variants (the control twin aside), each
variant's time is also recorded divided by the geometric mean of those variants' times in the
same process, round by round inside it (`track_<operation>_relative`, one sample per asv round).
The process's own speed cancels in that figure, so a change to one variant between two commits
stands out of the process-to-process spread that hides it in the variant's own time. One
variant's change moves the divisor by its 1/k share (k variants): its own figure shows
(k-1)/k of the change (80% in a cell of five), the others' move the other way by 1/k. A change
every variant shares (the whole library slower) cancels, and shows in the own times only. It is
the figure `asv compare` can judge a one-variant change by; the project's two-commit rule
(`perflab.report.commits`) takes its own kind of median round by round from the own times.
"""

from __future__ import annotations

import functools
import gc
import hashlib
import importlib
import itertools
import json
import math
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from . import _companions

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Benchmark-side twins of the baseline, measured like any variant (never library variants):
# `control` runs the baseline's very callable under a second name (identical code: the report
# must find no difference); the `plus*` twins run it and then spin for a known fraction of the
# time those very calls took (a known slowdown on top of the real program's own noise), for
# calibration.
CONTROL = "control"
INJECTED = {"plus5pct": 0.05, "plus10pct": 0.10}
INJECT_ENV = "PERFLAB_INJECT"
QUICK_ENV = "PERFLAB_QUICK"
# Calibration across commits only: a scratch commit adds this module to the library, with
# ``FRACTION = 0.10``, to make one variant of every class that much slower in that commit.
SLOWDOWN_MODULE = "perflab._calibration_slowdown"
# A cell's variants (the twins aside) needed for relative times: with fewer, one variant's change
# would be half or more of the divisor.
MIN_RELATIVE = 3
RELATIVE_UNIT = "x geometric mean of variants"


def quick() -> bool:
    """Whether PERFLAB_QUICK=1 asks for one timed round per callable inside each process."""
    return os.environ.get(QUICK_ENV) == "1"


def library_slowdown() -> float:
    """The slowdown a calibration's scratch commit built into the installed library (else 0)."""
    try:
        module = importlib.import_module(SLOWDOWN_MODULE)
    except ImportError:
        return 0.0
    return float(module.FRACTION)


def injected_variants() -> list[str]:
    """The injected-slowdown twins in effect: all of `INJECTED` when PERFLAB_INJECT=1, else none."""
    return list(INJECTED) if os.environ.get(INJECT_ENV) == "1" else []


def spin(seconds: float) -> None:
    """Busy-wait for `seconds` of wall clock (a known amount of added time)."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def _timed(call, k, fraction):
    # A callable may carry its own clock (``call.timer``, e.g. `time.thread_time`); wall clock
    # otherwise.
    clock = getattr(call, "timer", time.perf_counter)
    start = clock()
    for _ in range(k):
        call()
    if fraction:
        spin(fraction * (clock() - start))
    return (clock() - start) / k


def _calls_for(call, target):
    # One warm call, then grow k until a batch lasts a tenth of the target, then scale.
    call()
    k = 1
    while True:
        took = _timed(call, k, 0.0) * k
        if took >= target / 10 or k >= 1 << 20:
            break
        k *= 10
    return max(1, math.ceil(target / max(took / k, 1e-9)))


def measure(calls, *, rounds, target, twins=None, seed=0, slowed=None):
    """Time the callables of one cell interleaved: the median of `measure_rounds`.

    Returns:
        label -> median per-call seconds over the rounds.
    """
    return _medians(measure_rounds(calls, rounds=rounds, target=target, twins=twins, seed=seed, slowed=slowed))


def _medians(times):
    return {label: statistics.median(ts) for label, ts in times.items()}


def measure_rounds(calls, *, rounds, target, twins=None, seed=0, slowed=None):
    """Time the callables of one cell interleaved, in a new random order each round.

    Arguments:
        calls: label -> zero-argument callable (built, compiled and warm; blocking).
        rounds: how many times each callable is measured.
        target: seconds one measurement should last; sets the calls per measurement.
        twins: label -> (label of a callable in `calls`, fraction): a twin runs that callable
            and then spins for `fraction` of the time those calls just took.
        seed: seeds the order of the rounds.
        slowed: label -> fraction: that callable spins for `fraction` of its time after each
            measurement (a scratch commit's known slowdown, see `library_slowdown`).

    Returns:
        label -> per-call seconds of each round, in round order.
    """
    twins = dict(twins or {})
    slowed = dict(slowed or {})
    plan = {label: (call, slowed.get(label, 0.0)) for label, call in calls.items()}
    counts = {label: _calls_for(call, target) for label, call in calls.items()}
    for label, (of, fraction) in twins.items():
        plan[label] = (calls[of], fraction)
        counts[label] = counts[of]
    order = list(plan)
    rng = random.Random(seed)
    times = {label: [] for label in plan}
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(rounds):
            rng.shuffle(order)
            for label in order:
                call, fraction = plan[label]
                times[label].append(_timed(call, counts[label], fraction))
    finally:
        if gc_was_enabled:
            gc.enable()
    return times


def _centre(variants):
    return [v for v in variants if v != CONTROL and v not in INJECTED]


def relative_times(times: dict, operation: str, head, variants) -> dict:
    """One process's times of a cell's variants over their geometric mean (see the module's doc).

    The divisor was the variants' median at first: where the changed variant was its cell's
    median the divisor moved with it, up to the whole change, and `asv compare` saw 4-8.5% of a
    10% slowdown (`LinearSolveJVP`, trial 8 of docs/reports/calibration_commits.md). The geometric
    mean moves by a fixed 1/k share. Chosen on the recorded samples of four +10% trials (asv's
    rule, factor 1.05, on ratios of the processes' medians): the geometric mean of all the
    variants flagged 69 of 80 slowed cells and 1 of 320 unchanged ones; the median 65 and 0; the
    median of the other variants 69 and 11 (with an even count left, one variant's change moves
    the others' divisor by half of it); the geometric mean of the others 69 and 5.

    The ratio is taken round by round (a round measures every variant of the cell within
    milliseconds, so a process that changes speed between rounds changes all of them alike) and
    its median over the rounds is kept: measured on `LinearSolveJVP` (six processes, idle 2-core
    VM, the median as divisor), its spread from process to process was a median 2.4% against
    3.7% for the ratio of the rounds' medians and 13.7% for the own time.

    Arguments:
        times: label -> per-call seconds of each round, as `measure_rounds` returns them.
        operation: the operation whose times are divided.
        head: the cell's parameters but the variant.
        variants: the cell's variants; the mean is over those measured, the twins aside.

    Returns:
        ``{"relative:<operation>|...|<variant>": ratio}`` for every variant measured (twins
        too); empty when fewer than `MIN_RELATIVE` were measured.
    """
    measured = [v for v in variants if key(operation, (*head, v)) in times]
    centre = [times[key(operation, (*head, v))] for v in _centre(measured)]
    if len(centre) < MIN_RELATIVE:
        return {}
    divisors = [math.exp(sum(map(math.log, one)) / len(one)) for one in zip(*centre)]
    out = {}
    for v in measured:
        own = times[key(operation, (*head, v))]
        out[key(f"relative:{operation}", (*head, v))] = statistics.median(t / d for t, d in zip(own, divisors))
    return out


def key(operation: str, params) -> str:
    """The cache key of one cell of one operation: ``"jvp|lu|100|fused"``."""
    return "|".join([operation, *map(str, params)])


class InterleavedBenchmark:
    """Base class for comparing variants: every cell measured interleaved, one process per round.

    A subclass declares `params`/`param_names` with the variant parameter last, lists its timed
    `operations` (and any per-process `ratios` of two of them), names the `baseline` variant the
    control twin copies (and the `optimised` one reports treat as AFTER), implements
    `build(operation, *params)` returning a warm, blocking zero-argument callable (or raising
    `NotImplementedError` via `common.skip`/`common.require`: that cell is recorded n/a, with
    the reason), and defines its own one-line ``setup_cache`` returning
    ``self.measure_round()``: asv keys a setup cache by the module and line of its definition,
    so an inherited one would hand one class's measurements to every class.
    `track_<operation>` (seconds per call), `track_<ratio>`, the companions'
    `track_<operation>_<metric>` methods and, for classes of `MIN_RELATIVE` or more variants,
    `track_<operation>_relative` (see the module's doc) are generated.

    The variant list must include `"control"` (the baseline's callable measured again under a
    second name: identical code, which the report must not find different). Under
    PERFLAB_INJECT=1 (calibration only) the twins `plus5pct` and `plus10pct` are added.

    Attributes:
        processes: asv rounds, one fresh measuring process each; the unit of noise.
        rounds_per_process: interleaved measurements of each callable in one process.
        measurement_time: seconds one measurement lasts (it holds as many calls as that takes).
    """

    operations: tuple[str, ...] = ()
    # name -> (numerator operation, denominator operation, unit): per-process ratios.
    ratios: dict[str, tuple[str, str, str]] = {}
    baseline: str = ""
    optimised: str = ""
    processes = 5
    rounds_per_process = 7
    measurement_time = 0.004
    # Per asv benchmark call (one cell of one round); a round that measures its own process
    # takes that process's time, so it gets the class's whole budget.
    timeout = 120

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if not cls.__name__.startswith("_") and "setup_cache" not in vars(cls):
            raise TypeError(
                f"{cls.__module__}.{cls.__qualname__} must define its own `def setup_cache(self): "
                "return self.measure_round()`: asv shares a setup cache between classes whose "
                "setup_cache is defined at the same module and line"
            )
        if "setup_cache" in vars(cls):
            cls.setup_cache.timeout = cls.timeout * 10
        for operation in cls.operations:
            if f"track_{operation}" not in vars(cls):
                setattr(cls, f"track_{operation}", _samples_method(operation))
            for metric, unit in _companions.METRICS.items():
                if f"track_{operation}_{metric}" not in vars(cls):
                    setattr(cls, f"track_{operation}_{metric}", _companion_method(metric, operation, unit))
        if len(_centre(getattr(cls, "params", [[]])[-1])) >= MIN_RELATIVE:
            for operation in cls.operations:
                if f"track_{operation}_relative" not in vars(cls):
                    setattr(cls, f"track_{operation}_relative", _relative_method(operation))
        for name, (numerator, denominator, unit) in cls.ratios.items():
            if f"track_{name}" not in vars(cls):
                setattr(cls, f"track_{name}", _ratio_method(numerator, denominator, unit))
        for name in dir(cls):
            if name.startswith("track_"):
                fn = getattr(cls, name)
                setattr(cls, name, _per_round(cls, name, getattr(fn, "__wrapped__", fn)))

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

    def measure_process(self, full: bool = True) -> dict:
        """Build and measure every cell of this class in the current process.

        Arguments:
            full: also record the deterministic companions (cost, fingerprint, error), which
                one process per cache suffices for; compile times are recorded in every process.

        Returns:
            ``{"values": {key: value}, "skipped": {key: reason}}``.
        """
        values, skipped = {}, {}
        slowdown, slowed_variant = library_slowdown(), self.slowed_variant()
        for head, variants in self.cells():
            calls, twins, slowed = {}, {}, {}
            for operation in self.operations:
                for variant in variants:
                    name = key(operation, (*head, variant))
                    twin = variant == CONTROL or variant in INJECTED
                    try:
                        call = self.build(operation, *head, self.baseline if twin else variant)
                    except NotImplementedError as err:
                        skipped[name] = str(err)
                        continue
                    if variant in INJECTED:
                        twins[name] = (key(operation, (*head, self.baseline)), INJECTED[variant])
                        continue
                    calls[name] = call
                    if slowdown and variant == slowed_variant:
                        slowed[name] = slowdown
                    if full:
                        figures = _companions.describe(call, functools.partial(self.reference, operation, *head))
                    else:
                        figures = _companions.compile_time(call)
                    values.update({key(f"{metric}:{operation}", (*head, variant)): v for metric, v in figures.items()})
            twins = {n: t for n, t in twins.items() if t[0] in calls}
            if calls:
                rounds = 1 if quick() else self.rounds_per_process
                times = measure_rounds(
                    calls,
                    rounds=rounds,
                    target=self.measurement_time,
                    twins=twins,
                    seed=int.from_bytes(os.urandom(4), "little"),
                    slowed=slowed,
                )
                values.update(_medians(times))
                for operation in self.operations:
                    values.update(relative_times(times, operation, head, variants))
        return {"values": values, "skipped": skipped}

    def slowed_variant(self) -> str:
        """The variant a calibration's slower scratch commit slows: the optimised one, else the
        first that is neither the baseline nor a twin."""
        others = [v for v in self.params[-1] if v not in (self.baseline, CONTROL, *INJECTED)]
        return self.optimised or (others[0] if others else self.baseline)

    def measure_round(self) -> dict:
        """This asv round's measuring process, started fresh; the body of every `setup_cache`.

        Returns:
            ``{"values": {key: [value]}, "skipped": {...}, "provenance": {...}}``.
        """
        provenance = _recorded_provenance()
        cls = type(self)
        path = _described_path(cls)
        described = _read_json(path) if path else None
        cache = run_process(cls.__module__, cls.__qualname__, full=described is None, timeout=self.timeout * 10)
        if described is not None:
            cache["values"] = {**described, **cache["values"]}
        elif path:
            _write_json(path, {k: v for k, v in cache["values"].items() if _deterministic(k)})
        cache["provenance"] = provenance
        return cache

    def setup(self, cache, *params):
        names = [key(operation, params) for operation in self.operations]
        if not any(name in cache["values"] for name in names):
            _skip(cache["skipped"].get(names[0], f"{names[0]} was not measured"))

    def samples(self, cache, operation: str, params) -> dict:
        """asv's timing-result form for one cell: this round's sample (seconds per call).

        Arguments:
            cache: this round's measurements.
            operation: one of `operations`.
            params: the cell's parameter values, the variant last.

        Returns:
            ``{"samples": [...], "number": 1}``; NaN (n/a) where this operation was not
            measured in an otherwise measured cell.
        """
        name = key(operation, params)
        if name not in cache["values"]:
            return math.nan
        return {"samples": cache["values"][name], "number": 1}

    def ratio(self, cache, numerator: str, denominator: str, params) -> dict:
        """This round's ratio of two operations of one cell (measured interleaved in its process).

        Returns:
            ``{"samples": [...], "number": 1}``; NaN where either is missing.
        """
        num, den = (cache["values"].get(key(op, params)) for op in (numerator, denominator))
        if num is None or den is None:
            return math.nan
        return {"samples": [a / b for a, b in zip(num, den)], "number": 1}


def _skip(reason):
    raise NotImplementedError(reason)


def _per_round(cls, name, fn):
    # A sampled figure is read once per asv round, from that round's process; a deterministic
    # companion (one value, the same in every process) is read in one round only.
    deterministic = getattr(fn, "deterministic", False)

    @functools.wraps(fn)
    def track(self, cache, *params):
        return fn(self, _RoundCache.of(cache, type(self), name, params), *params)

    track.rounds = 1 if deterministic else cls.processes
    track.timeout = cls.timeout * 10
    # Exported by asv into benchmarks.json: the report and the calibration read the roles,
    # the control and the pairing there.
    track.baseline = cls.baseline
    track.optimised = cls.optimised
    track.control = CONTROL
    track.paired_processes = True
    track.processes = cls.processes
    return track


class _RoundCache:
    # asv runs every benchmark call with its current folder set to the setup cache's folder,
    # and a cache serves one round (interleaved commits) or all rounds (a single commit). The
    # n-th read of one (method, cell) from a folder is round n's: the first is the process
    # `setup_cache` measured, a later one the process of its round, measured by the round's
    # first reader and kept beside the cache for the round's other readers.
    @staticmethod
    def of(cache, cls, method, params):
        folder = os.getcwd()
        if not os.path.exists(os.path.join(folder, "cache.pickle")):
            return cache  # called outside asv (tests): the cache is all there is
        counter = os.path.join(folder, "perflab-reads", hashlib.sha1(repr((method, params)).encode()).hexdigest())
        os.makedirs(os.path.dirname(counter), exist_ok=True)
        n = 0
        if os.path.exists(counter):
            with open(counter) as fh:
                n = int(fh.read())
        with open(counter, "w") as fh:
            fh.write(str(n + 1))
        if n == 0:
            return cache
        path = os.path.join(folder, f"perflab-process-{n}.json")
        if not os.path.exists(path):
            measured = run_process(cls.__module__, cls.__qualname__, full=False, timeout=cls.timeout * 10)
            with open(path + ".tmp", "w") as fh:
                json.dump(measured, fh)
            os.replace(path + ".tmp", path)
        with open(path) as fh:
            measured = json.load(fh)
        # Deterministic companions come from the first process; timings from this round's.
        values = {**{k: v for k, v in cache["values"].items() if ":" in k}, **measured["values"]}
        return {**cache, "values": values}


def _deterministic(name):
    metric = name.split(":", 1)[0] if ":" in name else None
    return metric in _companions.METRICS and metric not in _companions.SAMPLED


def _read_json(path):
    try:
        with open(path) as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None


def _write_json(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".tmp", "w") as fh:
        json.dump(data, fh)
    os.replace(path + ".tmp", path)


# asv's benchmark server and the processes it forks (or spawns) run this script.
_ASV_RUN_SCRIPT = os.path.join("asv", "benchmark.py")
DESCRIBED_DIR = "perflab-described"


def asv_invocation(pid: int | None = None, proc: str = "/proc") -> str | None:
    """The asv process this one runs under, as ``"<pid>-<start time>"`` (unique while the
    machine is up); ``None`` outside asv or where the process table cannot be read.

    asv starts a benchmark server (``asv/benchmark.py run_server``) per `run_benchmarks` call,
    that is per round and commit under interleaved rounds, and forks each benchmark process
    from it (or spawns ``asv/benchmark.py`` directly): the first ancestor not running that
    script is the asv command itself, the same for every round of one invocation.

    Arguments:
        pid: the process to start from (default: this one).
        proc: the process table's mount point.

    Returns:
        The invocation's key, or ``None``.
    """
    pid = os.getpid() if pid is None else pid
    under_asv = False
    for _ in range(8):
        try:
            with open(os.path.join(proc, str(pid), "cmdline"), "rb") as fh:
                argv = fh.read().decode(errors="replace").split("\0")
            with open(os.path.join(proc, str(pid), "stat")) as fh:
                # The command name (field 2) may hold spaces; the fields after it do not.
                fields = fh.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            return None
        if any(a.endswith(_ASV_RUN_SCRIPT) for a in argv):
            under_asv = True
            pid = int(fields[1])  # ppid
            continue
        # Field 22, the start time, tells a reused pid apart.
        return f"{pid}-{fields[19]}" if under_asv else None
    return None


def _described_path(cls):
    # Only asv's own builds (ASV_COMMIT, ASV_ENV_NAME set) under a known invocation keep one.
    commit, env = os.environ.get("ASV_COMMIT"), os.environ.get("ASV_ENV_NAME")
    invocation = asv_invocation() if commit and env else None
    if invocation is None:
        return None
    name = hashlib.sha1(repr((commit, env, cls.__module__, cls.__qualname__)).encode()).hexdigest()
    root = os.path.join(tempfile.gettempdir(), DESCRIBED_DIR)
    _forget_finished(root, invocation)
    return os.path.join(root, invocation, name + ".json")


def _forget_finished(root, current):
    # An invocation's files are of no use once it has ended: remove those of asv processes
    # that are gone (their pid free, or reused by a process started at another time).
    try:
        entries = os.listdir(root)
    except OSError:
        return
    for entry in entries:
        if entry == current:
            continue
        pid, _, start = entry.partition("-")
        try:
            with open(os.path.join("/proc", pid, "stat")) as fh:
                alive = fh.read().rsplit(")", 1)[1].split()[19] == start
        except (OSError, IndexError):
            alive = False
        if not alive:
            shutil.rmtree(os.path.join(root, entry), ignore_errors=True)


def _recorded_provenance():
    # A recorded run must have timed the commit it is labelled with: checked before anything is
    # measured. asv's own builds (ASV_COMMIT set) are judged by the wheel's build info, written
    # by setup.py from asv's clean checkout of that commit; `--python=same` runs by the
    # installed perflab's own `provenance.check`. Commits that predate either cannot say.
    label = os.environ.get("ASV_COMMIT")
    if label:
        try:
            from perflab import _build_info
        except ImportError:
            return None
        commit = _build_info.COMMIT or ""
        if commit and not (commit.startswith(label) or label.startswith(commit)):
            raise RuntimeError(f"asv built commit {label[:8]}, but the installed perflab says it is {commit[:8]}")
        if _build_info.DIRTY:
            raise RuntimeError(f"asv's build of commit {label[:8]} has uncommitted changes in its build info")
        return {"commit": commit or label, "dirty": False, "source": "build info of asv's wheel"}
    try:
        from perflab import provenance
    except ImportError:
        return None
    labelled = getattr(provenance, "labelled_commit", lambda: None)()
    code = provenance.check(labelled)
    return {"commit": code.commit, "dirty": code.dirty, "source": code.source}


def _samples_method(operation):
    def track(self, cache, *params):
        return self.samples(cache, operation, params)

    track.unit = "seconds"
    return track


def _companion_method(metric, operation, unit):
    def track(self, cache, *params):
        recorded = cache["values"].get(key(f"{metric}:{operation}", params))
        if not recorded:
            return math.nan
        if metric in _companions.SAMPLED:
            return {"samples": recorded, "number": 1}
        return recorded[0]

    track.unit = unit
    track.deterministic = metric not in _companions.SAMPLED
    return track


def _relative_method(operation):
    def track(self, cache, *params):
        recorded = cache["values"].get(key(f"relative:{operation}", params))
        return {"samples": recorded, "number": 1} if recorded else math.nan

    track.unit = RELATIVE_UNIT
    return track


def _ratio_method(numerator, denominator, unit):
    def track(self, cache, *params):
        return self.ratio(cache, numerator, denominator, params)

    track.unit = unit
    return track


def run_process(module: str, qualname: str, *, full: bool, timeout: float) -> dict:
    """Run the measuring worker of `module.qualname` in one fresh process.

    Arguments:
        module, qualname: the class.
        full: whether the process also records the deterministic companions.
        timeout: seconds before the process is given up.

    Returns:
        ``{"values": {key: [value]}, "skipped": {key: reason}}``.
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([_ROOT, *filter(None, [env.get("PYTHONPATH")])])
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "out.json")
        cmd = [sys.executable, "-m", "benchmarks._interleave", module, qualname, "full" if full else "timing", out]
        proc = subprocess.run(cmd, env=env, cwd=tmp, capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            raise RuntimeError(
                f"{module}.{qualname}: measuring process failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}"
            )
        with open(out) as fh:
            result = json.load(fh)
    return {"values": {k: [v] for k, v in result["values"].items()}, "skipped": result["skipped"]}


def _main(argv):
    module, qualname, mode, out = argv
    cls = getattr(importlib.import_module(module), qualname)
    result = cls().measure_process(full=mode == "full")
    with open(out, "w") as fh:
        json.dump(result, fh)


if __name__ == "__main__":
    _main(sys.argv[1:])
