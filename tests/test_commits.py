"""`python -m perflab report --commits A B`: the two-commit gate on synthetic asv results.

Each test writes two results files, as asv would for two commits, by copying a committed
results file (results/vm-2core-xeon) and editing its values in a temporary directory.
"""

from __future__ import annotations

import copy
import json
import os
import re
from pathlib import Path

import pytest

from perflab import _asv
from perflab.__main__ import main
from perflab.report import commits

ROOT = Path(__file__).resolve().parents[1]
MACHINE = "vm-2core-xeon"
SOURCE = next((ROOT / "results" / MACHINE).glob("45e55adb-*.json"))
TIMED = "bench_linear_solve.LinearSolveJVPDefault.track_jvp"
FLOPS = "bench_linear_solve.LinearSolveJVPDefault.track_jvp_flops"
A, B = "a" * 40, "b" * 40


@pytest.fixture(autouse=True)
def _no_asv_machine_file(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))


def column(data, name):
    return data["result_columns"].index(name)


def write_pair(
    tmp_path,
    shift=1.0,
    apart_ms=None,
    b_samples=None,
    flops_change=False,
    rounds=5,
    machine=MACHINE,
    timed=TIMED,
    variant="default",
):
    """Results of commits A and B on `machine` (in ``tmp_path/results``); B's `variant` cells of
    `timed` (given five samples) scaled by `shift`."""
    results_dir = tmp_path / "results"
    (results_dir / machine).mkdir(parents=True)
    benchmarks = json.loads((ROOT / "results" / "benchmarks.json").read_text())
    benchmarks[timed]["rounds"] = rounds  # one sample per asv round, as the harness records them
    (results_dir / "benchmarks.json").write_text(json.dumps(benchmarks))
    described = json.loads((ROOT / "results" / MACHINE / "machine.json").read_text()) | {"machine": machine}
    (results_dir / machine / "machine.json").write_text(json.dumps(described))
    data = json.loads(SOURCE.read_text())
    data["params"]["machine"] = machine
    value, samples, started = column(data, "result"), column(data, "samples"), column(data, "started_at")
    entry = data["results"][timed]
    entry += [None] * (len(data["result_columns"]) - len(entry))  # a one-shot figure has no statistics
    # Tight samples: five processes within 1% of the recorded median.
    entry[samples] = [[v * (1 + 0.002 * k) for k in range(5)] for v in entry[value]]
    first = copy.deepcopy(data) | {"commit_hash": A}
    second = copy.deepcopy(data) | {"commit_hash": B}
    run = _asv.load_run(str(ROOT / "results"), MACHINE, "45e55adb")
    start = min(run.started_at(n) for n in run.names)
    end = max(run.started_at(n) + 1000 * run.duration(n) for n in run.names)
    offset = end - start if apart_ms is None else apart_ms  # back to back: interleaved rounds
    for one in second["results"].values():
        one[started] += offset
    scaled = second["results"][timed]
    for i in range(("default", "control").index(variant), len(scaled[value]), 2):  # even cells: default; odd: control
        scaled[value][i] *= shift
        scaled[samples][i] = [s * shift for s in scaled[samples][i]]
    if b_samples is not None:
        scaled[samples] = [s[:b_samples] for s in scaled[samples]]
    if flops_change:
        second["results"][FLOPS][value][0] += 1
    for data in (first, second):
        path = results_dir / machine / f"{data['commit_hash'][:8]}-{data['env_name']}.json"
        path.write_text(json.dumps(data))
    return results_dir


def gate(capsys, results_dir, *args):
    status = main(["report", "--results-dir", str(results_dir), "--commits", A[:8], B[:8], *args])
    out, err = capsys.readouterr()
    return status, out, err


def section(out, title):
    rest = out.split(title, 1)[1]
    for heading in ("Improvements (", "Single values that changed (", "Unchanged"):
        rest = rest.split(heading)[0] if heading not in title else rest
    return rest


def test_identical_commits_pass(tmp_path, capsys):
    status, out, err = gate(capsys, write_pair(tmp_path))
    assert status == 0, err
    assert out.rstrip().endswith("exit 0: no cell it judges regressed at 99.9%.")
    assert "Regressions (0)" in out and "Improvements (0)" in out
    assert "12 timing cell(s) within noise" in out
    assert "paired round by round" in out


def test_a_ten_percent_slowdown_is_listed_first_and_fails(tmp_path, capsys):
    status, out, _ = gate(capsys, write_pair(tmp_path, shift=1.10), "--format", "markdown")
    assert status == 1
    assert out.index("## Regressions (6)") < out.index("## Improvements (0)")
    rows = [line for line in section(out, "## Regressions (6)").splitlines() if "variant=" in line]
    assert len(rows) == 6 and all("variant=default" in r for r in rows)
    # B/A 1.100 with a zero-width paired interval; the identical-code twin did not move.
    assert all(
        re.search(r"\| 1\.100 \(1\.100-1\.100\) \| paired \| 1\.000 \(1\.000-1\.000\) \| fails +\|", r) for r in rows
    )


def test_the_control_and_the_companions_are_listed_but_never_fail_the_gate(tmp_path, capsys):
    # The control is the baseline's code (its own row judges that code); compile times are kept
    # off asv's regressions page by asv.conf.json, and off the gate by the same patterns.
    for case, timed, variant, mark in (
        ("control", TIMED, "control", "listed (control)"),
        ("compile", TIMED + "_compile", "default", "listed (companion)"),
    ):
        status, out, _ = gate(capsys, write_pair(tmp_path / case, shift=1.10, timed=timed, variant=variant))
        rows = [line for line in section(out, "Regressions (6)").splitlines() if "variant=" in line]
        assert len(rows) == 6 and all(f"variant={variant}" in r and r.rstrip(" |").endswith(mark) for r in rows), out
        assert status == 0, out
    # The same compile-time slowdown, judged with every benchmark gated, fails.
    _, runs = _asv.machine_runs(str(tmp_path / "compile" / "results"))
    a, b = (commits.pick_run(runs, c, str(ROOT), None, "--commits") for c in (A, B))
    assert commits.failed(commits.compare_commits(a, b))
    patterns = commits.ungated_patterns(str(ROOT / "asv.conf.json"))
    assert not commits.failed(commits.compare_commits(a, b, ungated=patterns))


def test_an_improvement_is_never_a_regression(tmp_path, capsys):
    status, out, _ = gate(capsys, write_pair(tmp_path, shift=0.90))
    assert status == 0
    assert "Regressions (0)" in out and "Improvements (6)" in out


def test_paired_when_interleaved_welch_otherwise(tmp_path):
    interleaved = write_pair(tmp_path / "i", shift=1.10)
    separate = write_pair(tmp_path / "s", shift=1.10, apart_ms=3_600_000)
    fewer = write_pair(tmp_path / "f", shift=1.10, b_samples=4)
    one_round = write_pair(tmp_path / "o", shift=1.10, rounds=1)
    cases = ((interleaved, True), (separate, False), (fewer, False), (one_round, False))
    for results_dir, paired in cases:
        _, runs = _asv.machine_runs(str(results_dir))
        a, b = (commits.pick_run(runs, c, str(ROOT), None, "--commits") for c in (A, B))
        assert commits.interleaved(a, b) == (results_dir != separate)
        changes = [c for c in commits.compare_commits(a, b) if c.verdict is not None]
        assert changes and all(c.verdict.paired == paired for c in changes)
        level = 0.99 if paired else 0.999
        assert all(c.verdict.confidence == commits.confidence_for(paired) == level for c in changes)


def test_the_gate_level_can_be_chosen(tmp_path, capsys):
    results_dir = write_pair(tmp_path, shift=1.10)
    status, out, _ = gate(capsys, results_dir, "--confidence", "0.9999")
    assert status == 1
    assert "paired round by round at 99.99% for cells of several rounds" in out and "Welch's at 99.99%" in out
    _, runs = _asv.machine_runs(str(results_dir))
    a, b = (commits.pick_run(runs, c, str(ROOT), None, "--commits") for c in (A, B))
    judged = [c.verdict for c in commits.compare_commits(a, b, confidence=0.9999) if c.verdict is not None]
    assert judged and all(v.confidence == 0.9999 for v in judged)
    for bad in ("1.5", "0.2"):
        status, _, err = gate(capsys, results_dir, "--confidence", bad)
        assert status == 2 and "--confidence" in err and bad in err
    status = main(["report", "--results-dir", str(results_dir), "--cost", "--confidence", "0.99"])
    assert status == 2 and "--commits only" in capsys.readouterr().err


def test_the_gate_needs_its_own_level_whatever_the_listing_shows(capsys):
    # A recorded docs-only pair (whole suite through asv continuous, benchmarked code identical):
    # a cell flagged at the listing's 99% is listed, and fails the gate only when its level is
    # lowered to the listing's.
    pair = ["report", "--results-dir", str(ROOT / "results"), "--machine", "vm-2core-epyc"]
    pair += ["--commits", "ace86d6e", "a341ac88"]
    status = main(pair)
    out = capsys.readouterr().out
    assert status == 0
    assert out.count("listed (not at the gate's 99.9%)") == 1
    assert out.rstrip().endswith(
        "exit 0: no cell it judges regressed at 99.9%; 1 listed regression(s) do not hold at that level."
    )
    assert not re.findall(r"\sfails\s*$", out, re.M)
    assert main([*pair, "--gate-confidence", "0.99"]) == 1
    lowered = capsys.readouterr().out
    assert len(re.findall(r"\sfails\s*$", lowered, re.M)) == 1
    assert "not at the gate's" not in lowered
    assert lowered.rstrip().endswith("exit 1: 1 cell(s) it judges regressed at 99%.")
    # Both listings flag the same cells: only the exit status moved.
    heads = [re.findall(r"^(?:Regressions|Improvements|Slower|Faster).*$", t, re.M) for t in (out, lowered)]
    assert heads[0] == heads[1] and "Regressions (3)" in heads[0]
    for bad in ("1", "0.4"):
        assert main([*pair, "--gate-confidence", bad]) == 2
        err = capsys.readouterr().err
        assert "--gate-confidence" in err and bad in err
    status = main(["report", "--results-dir", str(ROOT / "results"), "--cost", "--gate-confidence", "0.99"])
    assert status == 2 and "--commits only" in capsys.readouterr().err


def test_a_cell_is_judged_again_only_where_the_gate_is_stricter(tmp_path):
    _, runs = _asv.machine_runs(str(write_pair(tmp_path, shift=1.10)))
    a, b = (commits.pick_run(runs, c, str(ROOT), None, "--commits") for c in (A, B))
    for level, again in ((0.999, True), (0.99, False)):
        moved = [c for c in commits.compare_commits(a, b, gate_confidence=level) if c.kind == commits.REGRESSION]
        assert moved and all((c.at_gate is not None) == again for c in moved)
        assert all(c.at_gate.verdict.confidence == level for c in moved if c.at_gate is not None)
        assert all(c.fails_gate for c in moved)  # a zero-width interval at 1.10 holds at any level
    quiet = commits.compare_commits(a, b, gate_confidence=0.999)
    assert all(c.at_gate is None for c in quiet if c.kind == commits.NOISE and c.relative_kind in (None, commits.NOISE))


RECORDED = "bench_linear_solve.LinearSolveJVP.track_jvp"


def add_relative_times(data, benchmarks, variants):
    # The harness's relative times of RECORDED's cells (`_interleave.relative_times`), from each
    # round's samples: every variant over the geometric mean of its cell's variants, the control aside.
    from benchmarks import _interleave

    name = RECORDED + "_relative"
    benchmarks[name] = benchmarks[RECORDED] | {"name": name, "unit": _interleave.RELATIVE_UNIT}
    value, samples = column(data, "result"), column(data, "samples")
    entry = copy.deepcopy(data["results"][RECORDED])
    width = len(variants)
    for start in range(0, len(entry[samples]), width):
        cell = entry[samples][start : start + width]
        for k in range(len(cell[0])):
            times = {_interleave.key("jvp", (v,)): [cell[i][k]] for i, v in enumerate(variants)}
            relative = _interleave.relative_times(times, "jvp", (), variants)
            for i, v in enumerate(variants):
                entry[samples][start + i][k] = relative[_interleave.key("relative:jvp", (v,))]
        for i in range(start, start + width):
            entry[value][i] = sorted(entry[samples][i])[2]
    data["results"][name] = entry


def write_recorded_pair(tmp_path, speeds, slower=None, by=1.10, paired_processes=True, relative=False):
    """Commit A: the committed vm-2core-epyc run of 21294ce8 as recorded; commit B: the same
    samples, round k of every cell scaled by ``speeds[k]`` (that process's own speed, shared
    by the variants it measured) and the `slower` variant's cells of RECORDED by `by` besides.
    The two runs lie back to back, as asv's interleaved rounds leave them."""
    machine = "vm-2core-epyc"
    results_dir = tmp_path / "results"
    (results_dir / machine).mkdir(parents=True)
    benchmarks = json.loads((ROOT / "results" / "benchmarks.json").read_text())
    benchmarks[RECORDED]["paired_processes"] = paired_processes
    (results_dir / "benchmarks.json").write_text(json.dumps(benchmarks))
    (results_dir / machine / "machine.json").write_text((ROOT / "results" / machine / "machine.json").read_text())
    data = json.loads(next((ROOT / "results" / machine).glob("21294ce8-*.json")).read_text())
    value, samples, started = column(data, "result"), column(data, "samples"), column(data, "started_at")
    first, second = copy.deepcopy(data) | {"commit_hash": A}, copy.deepcopy(data) | {"commit_hash": B}
    run = _asv.load_run(str(ROOT / "results"), machine, "21294ce8")
    span = max(run.started_at(n) + 1000 * run.duration(n) for n in run.names) - min(
        run.started_at(n) for n in run.names
    )
    variants = [v.strip("'") for v in benchmarks[RECORDED]["params"][-1]]
    for name, entry in second["results"].items():
        entry[started] += span
        if name != RECORDED:
            continue
        for i, cell in enumerate(entry[samples]):
            scale = by if variants[i % len(variants)] == slower else 1.0
            entry[samples][i] = [x * scale * speeds[k] if x is not None else None for k, x in enumerate(cell)]
            entry[value][i] = sorted(entry[samples][i])[2]
    if relative:
        for one in (first, second):
            add_relative_times(one, benchmarks, variants)
        (results_dir / "benchmarks.json").write_text(json.dumps(benchmarks))
    for one in (first, second):
        path = results_dir / machine / f"{one['commit_hash'][:8]}-{one['env_name']}.json"
        path.write_text(json.dumps(one))
    return results_dir


def recorded_changes(results_dir):
    _, runs = _asv.machine_runs(str(results_dir), "vm-2core-epyc")
    a, b = (commits.pick_run(runs, c, str(ROOT), None, "--commits") for c in (A, B))
    return [c for c in commits.compare_commits(a, b) if c.benchmark == RECORDED]


SPEEDS = [1.0, 1.4, 0.75, 1.25, 0.85]  # far more than a 10% slowdown, in both directions


def test_a_slowdown_of_one_variant_is_seen_beyond_the_change_its_cell_shares(tmp_path, capsys):
    # Every process of B ran at its own speed, and `fused` got 10% slower on top: its own
    # times cannot tell, its change beyond what the other variants of its cell share can.
    results_dir = write_recorded_pair(tmp_path, SPEEDS, slower="fused")
    changes = recorded_changes(results_dir)
    fused = [c for c in changes if dict(c.params)["variant"] == "fused"]
    others = [c for c in changes if dict(c.params)["variant"] != "fused"]
    assert len(fused) == 10 and len(others) == 50
    assert all(c.kind == commits.NOISE for c in changes)  # the cells' own rule: within noise
    assert all(c.relative_kind == commits.REGRESSION and abs(c.relative.ratio - 1.10) < 1e-9 for c in fused)
    assert all(c.relative_kind == commits.NOISE and abs(c.relative.ratio - 1) < 1e-9 for c in others)
    status = main(
        ["report", "--results-dir", str(results_dir), "--machine", "vm-2core-epyc", "--commits", A[:8], B[:8]]
    )
    out = capsys.readouterr().out
    assert status == 1
    rows = section(out, "Slower beyond the change their cell's variants share (").splitlines()
    assert sum("variant=fused" in r for r in rows) == 10


def test_relative_times_are_shown_to_four_digits(tmp_path, capsys):
    # asv writes a value of a unit it does not know in full; the report shortens it.
    results_dir = write_recorded_pair(tmp_path, SPEEDS, slower="fused", by=1.5, relative=True)
    main(["report", "--results-dir", str(results_dir), "--machine", "vm-2core-epyc", "--commits", A[:8], B[:8]])
    rows = [r for r in capsys.readouterr().out.splitlines() if "_relative " in r]
    assert rows and all("x geometric mean of variants" in r for r in rows)
    assert not any(re.search(r"\d\.\d{5,} x geometric", r) for r in rows)
    assert any(re.search(r"\b\d\.\d{1,3} x geometric", r) for r in rows)


def test_a_faster_variant_leaves_the_others_unmoved(tmp_path):
    # The median over five variants is the change most of them share: `separate_solves` (the
    # baseline) twice as fast makes the others neither slower nor faster beyond it.
    changes = recorded_changes(write_recorded_pair(tmp_path, SPEEDS, slower="separate_solves", by=0.5))
    assert not commits.failed(changes)
    moved = {dict(c.params)["variant"] for c in changes if c.relative_kind != commits.NOISE}
    assert moved == {"separate_solves"}
    assert all(
        c.relative_kind == commits.IMPROVEMENT for c in changes if dict(c.params)["variant"] == "separate_solves"
    )


def test_a_variant_fails_the_gate_by_its_own_times_only_beyond_its_control(tmp_path, capsys):
    # Every process of B 20% slower: every cell's own times regress, the control's too. The
    # baseline's row judges that shared change (the control is the baseline measured again);
    # the other variants moved with their control and are listed, not gated.
    changes = recorded_changes(write_recorded_pair(tmp_path / "slow", [1.2] * 5))
    variants = {dict(c.params)["variant"] for c in changes}
    assert all(c.kind == commits.REGRESSION for c in changes)
    failing = {dict(c.params)["variant"] for c in changes if c.fails_gate}
    assert failing == {"separate_solves"}, failing
    moved = {dict(c.params)["variant"] for c in changes if c.moved_with_control}
    assert moved == variants - {"separate_solves", "control"}
    assert all(abs(c.beyond_control.ratio - 1) < 1e-9 for c in changes if c.beyond_control is not None)
    # `fused` 20% slower in B with its control unmoved: beyond the control, so it fails.
    changes = recorded_changes(write_recorded_pair(tmp_path / "fused", [1.0] * 5, slower="fused", by=1.2))
    fused = [c for c in changes if dict(c.params)["variant"] == "fused"]
    assert fused and all(c.fails_gate and not c.moved_with_control for c in fused)
    assert not any(c.fails_gate for c in changes if dict(c.params)["variant"] != "fused")


def test_the_relative_rule_needs_variants_measured_in_the_same_processes(tmp_path):
    # Cells asv timed process by process share no process; a cell of two variants (the control
    # twin aside) has no change that most of its variants share.
    changes = recorded_changes(write_recorded_pair(tmp_path, SPEEDS, slower="fused", paired_processes=False))
    assert changes and all(c.relative is None for c in changes)
    _, runs = _asv.machine_runs(str(write_pair(tmp_path / "two")))
    a, b = (commits.pick_run(runs, c, str(ROOT), None, "--commits") for c in (A, B))
    assert all(c.relative is None for c in commits.compare_commits(a, b) if c.benchmark == TIMED)


def test_the_relative_rule_reads_the_harness_relative_times_where_both_runs_have_them(tmp_path):
    # Own times identical in A and B; B's relative-time row of `fused` alone 20% higher. The rule
    # judges the rows (the ratio taken inner round by inner round in its process), so it sees
    # them move; where one run lacks the rows it falls back to the own times, which did not.
    results_dir = write_recorded_pair(tmp_path, SPEEDS, relative=True)
    path = next((results_dir / "vm-2core-epyc").glob(f"{B[:8]}-*.json"))
    data = json.loads(path.read_text())
    samples = column(data, "samples")
    variants = [
        v.strip("'") for v in json.loads((ROOT / "results" / "benchmarks.json").read_text())[RECORDED]["params"][-1]
    ]
    rows = data["results"][RECORDED + "_relative"]
    for i, cell in enumerate(rows[samples]):
        if variants[i % len(variants)] == "fused":
            rows[samples][i] = [x * 1.2 for x in cell]
    path.write_text(json.dumps(data))
    changes = recorded_changes(results_dir)
    fused = [c for c in changes if dict(c.params)["variant"] == "fused"]
    assert len(fused) == 10 and all(c.kind == commits.NOISE for c in changes)
    assert all(c.relative_kind == commits.REGRESSION and abs(c.relative.ratio - 1.2) < 1e-9 for c in fused)
    assert all(c.relative_kind == commits.NOISE for c in changes if c not in fused)
    del data["results"][RECORDED + "_relative"]
    path.write_text(json.dumps(data))
    changes = recorded_changes(results_dir)
    assert len(changes) == 60 and all(abs(c.relative.ratio - 1) < 1e-9 for c in changes)


def test_identical_code_is_within_noise_beyond_the_common_change(tmp_path):
    changes = recorded_changes(write_recorded_pair(tmp_path, SPEEDS))
    assert len(changes) == 60 and all(c.relative_kind == commits.NOISE for c in changes)
    assert all(c.relative.confidence == commits.RELATIVE_CONFIDENCE == 0.99 for c in changes)


def test_single_values_are_changed_or_unchanged_never_regressions(tmp_path, capsys):
    status, out, _ = gate(capsys, write_pair(tmp_path, flops_change=True))
    assert status == 0
    changed = section(out, "Single values that changed (1)")
    assert "LinearSolveJVPDefault.track_jvp_flops" in changed and "variant=default" in changed
    assert "Regressions (0)" in out


def test_missing_commit_and_ambiguous_machine_are_clear_errors(tmp_path, capsys):
    results_dir = write_pair(tmp_path)
    status = main(["report", "--results-dir", str(results_dir), "--commits", A[:8], "cccccccc"])
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1
    assert "--commits: no results for commit 'cccccccc'" in err and "recorded: aaaaaaaa, bbbbbbbb" in err
    other = results_dir / "gpu-box"
    other.mkdir()
    info = json.loads((results_dir / MACHINE / "machine.json").read_text()) | {"machine": "gpu-box"}
    (other / "machine.json").write_text(json.dumps(info))
    status, _, err = gate(capsys, results_dir)
    assert status == 2 and "--machine: " in err and f"gpu-box, {MACHINE}" in err
    status, _, err = gate(capsys, results_dir, "--machine", MACHINE)
    assert status == 0, err


def test_git_revisions_are_resolved(tmp_path, capsys):
    # A revision git knows (HEAD) names its full hash; one never recorded is an error naming it.
    status = main(["report", "--results-dir", str(write_pair(tmp_path)), "--commits", "HEAD", B[:8]])
    err = capsys.readouterr().err
    assert status == 2 and "no results for commit 'HEAD' (" in err


def test_commit_calibration_counts_false_flags_and_detections(tmp_path):
    # The across-commits calibration: an A/A pair flags nothing; a 10% slower variant (the
    # class's slowed one: LinearSolveJVPDefault has only `default` beside its control) is
    # detected in every cell, and its control is not flagged.
    from perflab import _commit_calibration as cc

    (tmp_path / "same").mkdir()
    (tmp_path / "slow").mkdir()
    same = cc.judge_pair("identical", str(write_pair(tmp_path / "same")), MACHINE, 1.05)
    cls = "LinearSolveJVPDefault"
    assert same.false[cls].own == 0 and same.false[cls].cells > 0 and not same.detected
    assert same.rounds == 5 and same.confidence == commits.confidence_for(True)
    slow = cc.judge_pair("slower", str(write_pair(tmp_path / "slow", shift=1.10)), MACHINE, 1.05, number=1)
    detected = slow.detected[cls]
    assert detected.own == detected.cells == detected.above_one > 0
    assert slow.false[cls].own == 0
    # The same pair judged at another level says so; a 3% slowdown is not beyond the factor,
    # but its interval still excludes 1.
    loose = cc.judge_pair("slower:3", str(write_pair(tmp_path / "slow3", shift=1.03)), MACHINE, 1.05, 0.95, 2)
    assert loose.confidence == 0.95 and loose.detected[cls].own == 0 < loose.detected[cls].above_one
    text = cc.render([same, slow, loose], 1.05)
    assert "| 0 (identical) | 5 | 99.0% | LinearSolveJVPDefault | 0/" in text
    assert "| 1 (slower (+10%)) | 5 | 99.0% |" in text and "| 2 (slower (+3%)) | 5 | 95.0% |" in text
    # Each trial's verdict is stated against its own goal: the 10% slowdown caught everywhere
    # meets "flagged in 95%"; the 3% one (below the factor, so never flagged) is judged by its
    # interval alone, which excluded 1 in every cell.
    # Its unchanged cells are the control's, which the gate does not judge.
    trial1 = "- Trial 1 (slower (+10%), 5 rounds, level 99.0%): unchanged cells flagged none by the two-commit gate"
    assert trial1 + " (no cell it judges; own times 0/" in text
    assert "by the two-commit gate (met" in text and "by the two-commit gate (missed" not in text
    n = loose.detected[cls].cells
    assert f"slowed cells' interval above 1 in {n}/{n} (100.0%" in text and f"(met; own times {n}/{n} (100.0%" in text
    assert "relative none); flagged 0/" in text  # a cell of two variants has no relative rule


def test_commit_calibration_counts_the_relative_rule(tmp_path):
    # B's processes ran at their own speeds and `fused` (LinearSolveJVP's optimised variant, the
    # one a slower trial slows) got 10% slower in its JVP cells only: the relative rule finds
    # those ten of its twenty timing cells, the gate counts them, and nothing else is flagged.
    from perflab import _commit_calibration as cc

    trial = cc.judge_pair("slower", str(write_recorded_pair(tmp_path, SPEEDS, slower="fused")), "vm-2core-epyc", 1.05)
    detected, false = trial.detected["LinearSolveJVP"], trial.false["LinearSolveJVP"]
    assert detected.cells == 20 and detected.relative == detected.gate == 10 and detected.relative_cells == 20
    # own times judge compile times too
    assert false.cells > false.relative_cells == 100 and false.relative == false.gate == 0
    text = cc.render([trial], 1.05)
    row = next(line for line in text.splitlines() if "| LinearSolveJVP |" in line).split(" | ")
    # gate, own times, relative, asv compare: of the slowed variant's 20 cells
    assert row[8].startswith("10/20 (50.0%") and row[9].startswith("0/20") and row[10].startswith("10/20 (50.0%")


def test_commit_calibration_counts_asv_compare_on_relative_times(tmp_path):
    # With the harness's relative times recorded, asv compare's rule sees a variant made 50%
    # slower through processes whose speeds moved 25-40%, where its rule on the own times sees
    # nothing: in 9 of its 10 JVP cells (in lu/50 the recorded processes' ratios spread +-15%,
    # more than five samples resolve). The primal cells (unchanged) have no relative row here,
    # so they count as not flagged by it.
    from perflab import _commit_calibration as cc

    results_dir = write_recorded_pair(tmp_path, SPEEDS, slower="fused", by=1.5, relative=True)
    trial = cc.judge_pair("slower", str(results_dir), "vm-2core-epyc", 1.05)
    detected = trial.detected["LinearSolveJVP"]
    assert detected.cells == 20 and detected.asv_relative_cells == 10
    assert detected.asv_relative == 9 and detected.asv_either >= 9 > detected.asv == 0
    text = cc.render([trial], 1.05)
    row = next(line for line in text.splitlines() if "| LinearSolveJVP |" in line).split(" | ")
    assert row[13].startswith("9/10 (90.0%") and row[14].startswith(f"{detected.asv_either}/20")
    # The gate fails on a regression it lists in a relative-time row as well: such a cell counts
    # as detected by it, beside the two rules on the cell's own times.
    assert 0 < detected.relative_row <= detected.asv_relative_cells
    assert row[11].startswith(f"{detected.relative_row}/10")
    assert detected.gate >= max(detected.relative_row, detected.relative, detected.own)
    assert f"relative row {detected.relative_row}/10" in text
    # The summary (all classes) states the goal against either row of a cell, both figures beside it.
    total = trial.total("detected")
    assert f"{total.asv_either}/{total.cells} ({total.asv_either / total.cells:.1%}" in text
    assert f"by asv compare (missed; own times {total.asv}/{total.cells}" in text
    assert "relative times 9/10 (90.0%" in text
    # Trials recorded before the harness recorded relative times say so.
    old = cc.judge_pair(
        "slower", str(write_recorded_pair(tmp_path / "old", SPEEDS, slower="fused")), "vm-2core-epyc", 1.05
    )
    assert old.detected["LinearSolveJVP"].asv_relative_cells == 0
    assert "relative times none)" in cc.render([old], 1.05)


def test_a_kept_trial_names_its_measuring_setting_and_host(tmp_path):
    # A trial recorded under JAX/XLA variables measured that setting, and on the machine whose CPU
    # it kept: judged again from the kept folder, its rows and its verdict line name both; a trial
    # without them reads as the default, with no machine named.
    from perflab import _commit_calibration as cc

    setting = cc.measuring_setting({"JAX_CPU_ENABLE_ASYNC_DISPATCH": "false", "HOME": "/h", "PATH": "/b"})
    assert setting == "JAX_CPU_ENABLE_ASYNC_DISPATCH=false"
    host = cc.measuring_host()
    assert host.endswith(f", {os.cpu_count()} CPUs") and len(host) > len(" CPUs, 2")
    kept = tmp_path / "kept"
    kept.mkdir()
    for number, kind, text in ((0, "identical", None), (1, "slower", setting)):
        # A kept trial's folder is its asv results folder, machine "calibrate".
        folder = kept / f"commits{number}"
        write_pair(tmp_path / f"scratch{number}", shift=1.10 if number else 1.0, machine="calibrate").rename(folder)
        (folder / "kind.txt").write_text(kind + "\n")
        if text:
            (folder / "setting.txt").write_text(text + "\n")
            (folder / "host.txt").write_text(host + "\n")
    same, slow = cc.judge_kept(str(kept), 1.05)
    assert (same.setting, slow.setting) == ("", setting)
    assert (same.host, slow.host) == ("", host)
    rendered = cc.render([same, slow], 1.05)
    assert "| 0 (identical) | 5 |" in rendered
    assert f"| 1 (slower (+10%), {setting}, on {host}) | 5 |" in rendered
    assert f"- Trial 1 (slower (+10%), {setting}, on {host}, 5 rounds" in rendered
    assert "names its CPU there too (`host.txt`)" in rendered
    assert "host.txt" not in cc.render([same], 1.05)
    # A folder that is not a kept trial is refused naming --from, not read as some kind.
    (kept / "commits0" / "kind.txt").unlink()
    with pytest.raises(_asv.PerflabError, match=r"--from: .*commits0 keeps no kind.txt"):
        cc.judge_kept(str(kept), 1.05)


@pytest.mark.parametrize("kind", ["slower:0", "slower:abc", "faster", "identical:5"])
def test_commit_calibration_kinds_are_checked(kind):
    from perflab import _commit_calibration as cc

    with pytest.raises(_asv.PerflabError, match="--across-commits: .*slower:N"):
        cc.slowdown_of(kind)
    assert cc.slowdown_of("slower") == 0.10 and cc.slowdown_of("slower:5") == 0.05
