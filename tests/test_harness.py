"""The suite's harness: asv rounds map onto measuring processes, and provenance knows asv's builds."""

import json
import math
import os
import pickle
import statistics
import sys
import types

import pytest


def _fake_process(values):
    def run_process(module, qualname, *, full, timeout):
        assert not full  # a later round measures timings and compile times only
        return {"values": {k: [v] for k, v in values.items()}, "skipped": {}}

    return run_process


def test_each_asv_round_reads_its_own_process(tmp_path, monkeypatch):
    # A single commit's run hands one setup cache to every round (asv runs each benchmark
    # call in the cache's folder): the first read of a cell is the setup cache's process, the
    # second read the next round's, measured once for all readers of that round.
    from benchmarks import _interleave
    from benchmarks.bench_linear_solve import LinearSolveJVP

    params = ("lu", 10, "fused")
    first = {
        "values": {
            _interleave.key("jvp", params): [1.0],
            _interleave.key("primal", params): [0.5],
            _interleave.key("flops:jvp", params): [123.0],
            _interleave.key("compile:jvp", params): [0.2],
        },
        "skipped": {},
    }
    (tmp_path / "cache.pickle").write_bytes(pickle.dumps(first))
    monkeypatch.chdir(tmp_path)
    measured = []

    def run_process(module, qualname, *, full, timeout):
        measured.append(qualname)
        return _fake_process(
            {
                _interleave.key("jvp", params): 2.0,
                _interleave.key("primal", params): 1.0,
                _interleave.key("compile:jvp", params): 0.3,
            }
        )(module, qualname, full=full, timeout=timeout)

    monkeypatch.setattr(_interleave, "run_process", run_process)
    obj = LinearSolveJVP()
    assert obj.track_jvp(first, *params) == {"samples": [1.0], "number": 1}
    assert obj.track_jvp_over_primal(first, *params) == {"samples": [2.0], "number": 1}
    assert obj.track_jvp_compile(first, *params) == {"samples": [0.2], "number": 1}
    assert measured == []
    # Round two: one new process, read by every method of the round.
    assert obj.track_jvp(first, *params) == {"samples": [2.0], "number": 1}
    assert obj.track_jvp_over_primal(first, *params) == {"samples": [2.0], "number": 1}
    assert obj.track_jvp_compile(first, *params) == {"samples": [0.3], "number": 1}
    assert measured == ["LinearSolveJVP"]
    # A deterministic companion is read in one round only, from the first process.
    assert LinearSolveJVP.track_jvp_flops.rounds == 1
    assert obj.track_jvp_flops(first, *params) == 123.0


def test_rounds_are_processes_and_roles_are_exported():
    from benchmarks.bench_linear_solve import LinearSolveJVP

    cls = LinearSolveJVP
    assert cls.track_jvp.rounds == cls.processes > 1
    assert cls.track_jvp_over_primal.rounds == cls.processes
    assert cls.track_jvp_compile.rounds == cls.processes  # sampled in every process
    for metric in ("flops", "bytes", "memory", "fingerprint", "error"):
        assert getattr(cls, f"track_jvp_{metric}").rounds == 1
    assert (cls.track_jvp.baseline, cls.track_jvp.optimised) == ("separate_solves", "fused")
    # Generated timeouts cover a round that measures its own process.
    assert cls.track_jvp.timeout >= cls.timeout * 10


def test_a_class_without_its_own_setup_cache_is_refused():
    from benchmarks._interleave import InterleavedBenchmark

    with pytest.raises(TypeError, match="own `def setup_cache"):
        type("Shared", (InterleavedBenchmark,), {"params": [["a"]], "param_names": ["variant"]})


def test_rates_are_recorded_lower_is_better():
    # asv reads every figure as lower-is-better: no rate may be recorded as one.
    from benchmarks import bench_delta_rule, bench_sde

    for cls in (bench_delta_rule.DeltaRule, bench_delta_rule.MatmulPeak, bench_sde.EnsembleSimulation):
        names = [m for m in dir(cls) if m.startswith("track_")]
        assert not [
            m
            for m in names
            if m.endswith(("gflops", "per_second", "fraction", "_rng_bound")) and not m.endswith("over_rng_bound")
        ], names
    cache = {"values": {"forward|small|jax_scan": [2.0], "matmul|small|jax_scan": [1.0]}, "skipped": {}}
    slow = bench_delta_rule.DeltaRule().track_seconds_per_gflop(cache, "small", "jax_scan")["samples"][0]
    cache["values"]["forward|small|jax_scan"] = [1.0]
    fast = bench_delta_rule.DeltaRule().track_seconds_per_gflop(cache, "small", "jax_scan")["samples"][0]
    assert fast < slow
    assert bench_delta_rule.DeltaRule().track_time_over_peak(cache, "small", "jax_scan")["samples"][0] > 0


def test_call_peak_bytes_sees_what_a_call_allocates():
    import numpy as np

    from benchmarks.common import call_peak_bytes

    def call():
        return float(np.ones(4_000_000).sum())  # 32 MB, freed on return

    call()
    got = call_peak_bytes(call)
    assert 30e6 < got < 40e6, got
    assert call_peak_bytes(lambda: 1.0) < 2e6


def _wheel_install(monkeypatch, commit, dirty, editable):
    from perflab import provenance

    class Dist:
        def read_text(self, name):
            assert name == "direct_url.json"
            info = {"dir_info": {"editable": True}} if editable else {"archive_info": {}}
            return json.dumps({"url": "file:///x", **info})

    monkeypatch.setattr(provenance.importlib.metadata, "distribution", lambda name: Dist())
    info = types.ModuleType("perflab._build_info")
    info.COMMIT, info.DIRTY = commit, dirty
    monkeypatch.setitem(sys.modules, "perflab._build_info", info)
    import perflab

    monkeypatch.setattr(perflab, "_build_info", info, raising=False)
    return provenance


def test_a_wheel_is_judged_by_its_build_info_not_the_enclosing_checkout(monkeypatch):
    # asv's environments live inside the user's checkout: a wheel asv built from the parent
    # commit must not be read as the checkout's HEAD (nor its local edits as the wheel's).
    provenance = _wheel_install(monkeypatch, "ab" * 20, False, editable=False)
    code = provenance.installed()
    assert code == provenance.Installed("ab" * 20, False, "build info of the installed wheel")
    assert provenance.check("abababab").commit == "ab" * 20
    with pytest.raises(provenance.ProvenanceError, match="installed perflab is commit abababab"):
        provenance.check("cd" * 20)


def test_an_editable_install_is_judged_by_its_checkout(monkeypatch, tmp_path):
    provenance = _wheel_install(monkeypatch, "ab" * 20, False, editable=True)
    code = provenance.installed()
    assert code.source.startswith("git checkout") and code.commit != "ab" * 20
    # Uncommitted edits in the checkout are refused for an editable install.
    monkeypatch.setattr(provenance, "dirty", lambda top: True)
    monkeypatch.delenv(provenance.ALLOW_ENV, raising=False)
    with pytest.raises(provenance.ProvenanceError, match="uncommitted changes"):
        provenance.check(code.commit)


def test_the_harness_judges_asv_builds_by_build_info(monkeypatch):
    from benchmarks import _interleave

    _wheel_install(monkeypatch, "ab" * 20, False, editable=False)
    monkeypatch.setenv("ASV_COMMIT", "ab" * 20)
    assert _interleave._recorded_provenance()["commit"] == "ab" * 20
    monkeypatch.setenv("ASV_COMMIT", "cd" * 20)
    with pytest.raises(RuntimeError, match="asv built commit cdcdcdcd"):
        _interleave._recorded_provenance()


def test_labelled_commit_reads_asv_commit(monkeypatch):
    from perflab import provenance

    monkeypatch.setenv("ASV_COMMIT", "HEAD")
    monkeypatch.setenv("ASV_CONF_DIR", os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    label = provenance.labelled_commit()
    assert label and len(label) == 40


def test_a_scratch_commit_slows_one_variant(monkeypatch):
    # Calibration across commits: a commit that adds perflab._calibration_slowdown makes the
    # measuring code slow one variant by that fraction of its own time; no module, no slowdown.
    from benchmarks import _interleave
    from benchmarks.bench_linear_solve import LinearSolveJVP, LinearSolveJVPDefault

    assert _interleave.library_slowdown() == 0.0
    module = types.ModuleType("perflab._calibration_slowdown")
    module.FRACTION = 0.1
    monkeypatch.setitem(sys.modules, "perflab._calibration_slowdown", module)
    assert _interleave.library_slowdown() == 0.1
    assert LinearSolveJVP().slowed_variant() == "fused"
    assert LinearSolveJVPDefault().slowed_variant() == "default"

    class Clock:
        t = 0.0

        def __call__(self):
            self.t += 1e-9
            return self.t

    clock = Clock()
    monkeypatch.setattr(_interleave.time, "perf_counter", clock)

    def call():
        clock.t += 1e-5

    values = _interleave.measure({"a": call, "b": call}, rounds=4, target=1e-3, slowed={"b": 0.1})
    assert values["b"] / values["a"] == pytest.approx(1.10, rel=0.005)


def test_relative_times_divide_by_the_geometric_mean_of_the_variants():
    # A variant's time over the geometric mean of its cell's variants (the twins aside), round by
    # round inside a process, then the median over the rounds: the process's speed cancels, and
    # so does a change of speed between its rounds; one variant's change shows by (k-1)/k in its
    # own figure and by 1/k the other way in the others'.
    from benchmarks import _interleave

    head = ("lu", 10)
    variants = ["a", "b", "c", "control", "plus10pct"]
    own = dict(zip(variants, [1.0, 2.0, 4.0, 1.1, 1.1]))
    mean = (1.0 * 2.0 * 4.0) ** (1 / 3)
    # Three rounds, the second at half the speed of the others.
    times = {_interleave.key("jvp", (*head, v)): [t, 2 * t, t] for v, t in own.items()}
    got = _interleave.relative_times(times, "jvp", head, variants)
    assert got == {_interleave.key("relative:jvp", (*head, v)): pytest.approx(t / mean) for v, t in own.items()}
    # A process twice as slow records the same relative times.
    slower = {k: [2 * t for t in ts] for k, ts in times.items()}
    assert _interleave.relative_times(slower, "jvp", head, variants) == pytest.approx(got)
    # One variant 10% slower: the mean moves by 1.1 ** (1/3).
    changed = {**times, _interleave.key("jvp", (*head, "c")): [4.4, 8.8, 4.4]}
    moved = _interleave.relative_times(changed, "jvp", head, variants)
    for v, share in (("c", 1.10 ** (2 / 3)), ("a", 1.10 ** (-1 / 3))):
        rel = _interleave.key("relative:jvp", (*head, v))
        assert moved[rel] == pytest.approx(got[rel] * share)
    # The median over rounds of the per-round ratios, not the ratio of the medians.
    drifting = {**times, _interleave.key("jvp", (*head, "a")): [1.0, 3.0, 1.2]}
    ratio = _interleave.relative_times(drifting, "jvp", head, variants)[_interleave.key("relative:jvp", (*head, "a"))]
    means = [math.prod(r) ** (1 / 3) for r in ([1.0, 2.0, 4.0], [3.0, 4.0, 8.0], [1.2, 2.0, 4.0])]
    assert ratio == pytest.approx(statistics.median([1.0 / means[0], 3.0 / means[1], 1.2 / means[2]]))
    # Too few variants measured (a skipped one does not count): nothing recorded.
    del times[_interleave.key("jvp", (*head, "c"))]
    assert _interleave.relative_times(times, "jvp", head, variants) == {}


def test_relative_times_are_recorded_per_process_and_read_per_round(monkeypatch):
    from benchmarks import _interleave
    from benchmarks.bench_calibration import Calibration
    from benchmarks.bench_linear_solve import LinearSolveJVPDefault

    assert Calibration.track_workload_relative.rounds == Calibration.processes
    assert Calibration.track_workload_relative.unit == _interleave.RELATIVE_UNIT
    # A class of fewer variants (default and its control) has no relative figure.
    assert not hasattr(LinearSolveJVPDefault, "track_jvp_relative")
    per_round = {"base": [1.0, 3.0], "more5pct": [2.0, 2.0], "more10pct": [4.0, 1.0], "control": [1.5, 1.5]}

    def measure_rounds(calls, **kwargs):
        assert set(calls) == {_interleave.key("workload", (v,)) for v in per_round}
        return {label: per_round[label.split("|")[-1]] for label in calls}

    monkeypatch.setattr(_interleave, "measure_rounds", measure_rounds)
    values = Calibration().measure_process(full=False)["values"]
    # Own times: the median of the rounds; relative times: the median of the rounds' ratios to
    # the geometric mean of the variants, the control aside (round 1: 2.0, round 2: 6 ** (1/3)).
    assert values[_interleave.key("workload", ("base",))] == 2.0
    relative = {k.split("|")[-1]: v for k, v in values.items() if k.startswith("relative:")}
    means = (2.0, 6.0 ** (1 / 3))
    expected = {v: statistics.median([ts[0] / means[0], ts[1] / means[1]]) for v, ts in per_round.items()}
    assert relative == pytest.approx(expected)
    cache = {"values": {k: [v] for k, v in values.items()}, "skipped": {}}
    recorded = Calibration().track_workload_relative(cache, "more10pct")
    assert recorded == {"samples": [expected["more10pct"]], "number": 1}


def _fake_proc(root, table):
    # A process table: pid -> (ppid, start time, argv).
    for pid, (ppid, start, argv) in table.items():
        d = root / str(pid)
        d.mkdir(parents=True)
        (d / "cmdline").write_bytes("\0".join(argv).encode() + b"\0")
        fields = ["S", str(ppid)] + ["0"] * 17 + [str(start)] + ["0"] * 5
        (d / "stat").write_text(f"{pid} (py thon) " + " ".join(fields))


def test_the_asv_invocation_is_the_first_ancestor_outside_asvs_benchmark_script(tmp_path):
    from benchmarks._interleave import asv_invocation

    server = ["/env/bin/python", "/site-packages/asv/benchmark.py", "run_server", "benchmarks", "sock"]
    _fake_proc(
        tmp_path,
        {
            30: (20, 900, server),  # a process forked by the server: its command line
            20: (10, 800, server),  # the server, one per round and commit
            10: (1, 700, ["/usr/bin/python", "/venv/bin/asv", "continuous", "HEAD~1", "HEAD"]),
            40: (10, 950, ["/env/bin/python", "/site-packages/asv/benchmark.py", "setup_cache", "x"]),  # spawned
            50: (1, 990, ["python", "-m", "pytest"]),
        },
    )
    assert asv_invocation(30, str(tmp_path)) == "10-700"
    assert asv_invocation(40, str(tmp_path)) == "10-700"  # launch method spawn: the same invocation
    assert asv_invocation(50, str(tmp_path)) is None  # not under asv
    assert asv_invocation(99, str(tmp_path)) is None  # no such process


def test_later_rounds_of_a_commit_take_the_deterministic_companions_from_its_first(tmp_path, monkeypatch):
    # Under interleaved rounds each round's setup_cache measures one process; only the first of
    # each commit and class records the companions that are the same in every process.
    from benchmarks import _interleave
    from benchmarks.bench_linear_solve import LinearSolveJVP, LinearSolveJVPDefault

    params = ("lu", 10, "fused")
    calls = []

    def run_process(module, qualname, *, full, timeout):
        calls.append((qualname, full))
        n = float(len(calls))
        values = {_interleave.key("jvp", params): [n], _interleave.key("compile:jvp", params): [n / 10]}
        if full:
            values[_interleave.key("flops:jvp", params)] = [123.0]
            values[_interleave.key("fingerprint:jvp", params)] = [7.0]
        return {"values": values, "skipped": {}}

    monkeypatch.setattr(_interleave, "run_process", run_process)
    monkeypatch.setattr(_interleave, "_recorded_provenance", lambda: None)
    monkeypatch.setattr(_interleave, "asv_invocation", lambda: "10-700")
    monkeypatch.setattr(_interleave.tempfile, "gettempdir", lambda: str(tmp_path))
    monkeypatch.setenv("ASV_ENV_NAME", "virtualenv-py3.11")
    monkeypatch.setenv("ASV_COMMIT", "a" * 40)
    first = LinearSolveJVP().measure_round()
    second = LinearSolveJVP().measure_round()
    assert calls == [("LinearSolveJVP", True), ("LinearSolveJVP", False)]
    assert second["values"][_interleave.key("flops:jvp", params)] == [123.0]
    assert second["values"][_interleave.key("fingerprint:jvp", params)] == [7.0]
    # Timings and compile times are this round's own.
    assert second["values"][_interleave.key("jvp", params)] == [2.0] != first["values"][_interleave.key("jvp", params)]
    assert second["values"][_interleave.key("compile:jvp", params)] == [0.2]
    # Another class, another commit: each records its own first.
    LinearSolveJVPDefault().measure_round()
    monkeypatch.setenv("ASV_COMMIT", "b" * 40)
    LinearSolveJVP().measure_round()
    assert calls[2:] == [("LinearSolveJVPDefault", True), ("LinearSolveJVP", True)]
    # Outside asv (no invocation found) every round records everything, as before.
    monkeypatch.setattr(_interleave, "asv_invocation", lambda: None)
    LinearSolveJVP().measure_round()
    assert calls[-1] == ("LinearSolveJVP", True)


def test_finished_invocations_files_are_removed(tmp_path, monkeypatch):
    from benchmarks import _interleave

    root = tmp_path / _interleave.DESCRIBED_DIR
    (root / "999999999-1").mkdir(parents=True)  # no such pid
    (root / "10-700").mkdir()
    monkeypatch.setattr(_interleave.tempfile, "gettempdir", lambda: str(tmp_path))
    monkeypatch.setattr(_interleave, "asv_invocation", lambda: "10-700")
    monkeypatch.setenv("ASV_ENV_NAME", "virtualenv-py3.11")
    monkeypatch.setenv("ASV_COMMIT", "a" * 40)
    from benchmarks.bench_linear_solve import LinearSolveJVP

    path = _interleave._described_path(LinearSolveJVP)
    assert path.startswith(str(root / "10-700"))
    assert sorted(p.name for p in root.iterdir()) == ["10-700"]
