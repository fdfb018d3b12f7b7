"""Variants measured interleaved in one process, repeated over several fresh processes.

On the 2-core machines this suite runs on, the largest source of noise is the process: the same
program started again lands 25-100% away, while inside one process it moves by 1-2%. So
`InterleavedBenchmark.setup_cache` starts `processes` fresh Python processes (this module run as a
script). Each builds and warms every callable of every cell, then measures the variants of a cell
in a new random order in each of `rounds_per_process` rounds (A C B, B A C, ...), each
measurement `k` calls long with `k` set so that a measurement lasts `measurement_time`, and keeps
per callable the median per-call time over its rounds. asv then records, per cell, one sample per
process: the statistics of asv compare and of the report see the process as the unit of noise,
and samples of one class share their process order, so the report can pair the variants of a
cell process by process.
"""

from __future__ import annotations

import gc
import importlib
import json
import math
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time

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


def quick() -> bool:
    """Whether PERFLAB_QUICK=1 asks for a smoke run: one process, one round per callable.

    asv's own ``--quick`` does not reach `setup_cache`, where the processes are started, so
    ``PERFLAB_QUICK=1 asv run --quick`` is the suite's quick run; results of one process are
    shown as "n=1, not tested" by the report.
    """
    return os.environ.get(QUICK_ENV) == "1"


def injected_variants() -> list[str]:
    """The injected-slowdown twins in effect: all of `INJECTED` when PERFLAB_INJECT=1, else none."""
    return list(INJECTED) if os.environ.get(INJECT_ENV) == "1" else []


def spin(seconds: float) -> None:
    """Busy-wait for `seconds` of wall clock (a known amount of added time)."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def _timed(call, k, fraction):
    start = time.perf_counter()
    for _ in range(k):
        call()
    if fraction:
        spin(fraction * (time.perf_counter() - start))
    return (time.perf_counter() - start) / k


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


def measure(calls, *, rounds, target, twins=None, seed=0):
    """Time the callables of one cell interleaved, in a new random order each round.

    Arguments:
        calls: label -> zero-argument callable (built, compiled and warm; blocking).
        rounds: how many times each callable is measured.
        target: seconds one measurement should last; sets the calls per measurement.
        twins: label -> (label of a callable in `calls`, fraction): a twin runs that callable
            and then spins for `fraction` of the time those calls just took.
        seed: seeds the order of the rounds.

    Returns:
        label -> median per-call seconds over the rounds.
    """
    twins = dict(twins or {})
    plan = {label: (call, 0.0) for label, call in calls.items()}
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
    return {label: statistics.median(ts) for label, ts in times.items()}


def key(operation: str, params) -> str:
    """The cache key of one cell of one operation: ``"jvp|lu|100|fused"``."""
    return "|".join([operation, *map(str, params)])


def run_processes(module: str, qualname: str, processes: int, timeout: float) -> dict:
    """Run the measuring worker of `module.qualname` in `processes` fresh processes, one at a time.

    Returns:
        ``{"values": {key: [one value per process]}, "skipped": {key: reason},
        "processes": processes}``; values of a key are in process order in every key.
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([_ROOT, *filter(None, [env.get("PYTHONPATH")])])
    values, skipped = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for index in range(processes):
            out = os.path.join(tmp, f"{index}.json")
            cmd = [sys.executable, "-m", "benchmarks._interleave", module, qualname, str(index), out]
            proc = subprocess.run(cmd, env=env, cwd=tmp, capture_output=True, text=True, timeout=timeout)
            if proc.returncode != 0:
                raise RuntimeError(
                    f"{module}.{qualname}: measuring process {index} failed (exit {proc.returncode}):\n"
                    f"{proc.stderr[-4000:]}"
                )
            with open(out) as fh:
                result = json.load(fh)
            for name, value in result["values"].items():
                values.setdefault(name, []).append(value)
            skipped.update(result["skipped"])
    return {"values": values, "skipped": skipped, "processes": processes}


def _main(argv):
    module, qualname, index, out = argv
    cls = getattr(importlib.import_module(module), qualname)
    result = cls().measure_process(int(index))
    with open(out, "w") as fh:
        json.dump(result, fh)


if __name__ == "__main__":
    _main(sys.argv[1:])
