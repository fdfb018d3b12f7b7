"""`python -m perflab report --cost`: what a recorded run cost, read the way asv recorded it.

asv keeps one `run_benchmarks` call's durations per results file. `asv run` is one call for all
rounds of a commit; `asv continuous` goes round by round, so its files hold the final round only
and the cost of all rounds is an estimate. Both kinds are committed under results/.
"""

from __future__ import annotations

from pathlib import Path

from perflab import _asv
from perflab.__main__ import main
from perflab.report.cost import class_costs, module_compiling, rounds_interleaved

ROOT = Path(__file__).resolve().parents[1]
RESULTS = str(ROOT / "results")
CLS = "bench_linear_solve.LinearSolveJVP"


def _cost(capsys, machine, commit):
    status = main(["report", "--results-dir", RESULTS, "--cost", "--machine", machine, "--commit", commit])
    out, err = capsys.readouterr()
    assert status == 0, err
    return out


def test_an_asv_continuous_run_is_one_round_and_its_rounds_are_estimated(capsys):
    run = _asv.load_run(RESULTS, "vm-2core-epyc", "21294ce8")
    assert rounds_interleaved(run)
    names = [n for n in run.names if n.rsplit(".", 1)[0] == CLS]
    key = run.info(names[0])["setup_cache_key"]
    rounds = {n: int(run.info(n).get("rounds") or 1) for n in names}
    expected = sum(run.duration(n) * rounds[n] for n in names) + run.duration(f"<setup_cache {key}>") * max(
        rounds.values()
    )
    (cost,) = [c for c in class_costs(run) if c.name == CLS]
    assert cost.rounds == max(rounds.values()) == 5
    assert abs(cost.round_seconds - expected) < 1e-9
    assert cost.round_seconds > 4 * cost.seconds  # every method of the class runs five rounds
    out = _cost(capsys, "vm-2core-epyc", "21294ce8")
    assert out.startswith("# What one round of the suite costs")
    assert "final round only" in out and "all rounds, estimated (min)" in out
    row = next(line for line in out.splitlines() if line.startswith(f"| {CLS} "))
    assert row.rstrip(" |").endswith(f"{expected / 60:.1f}")
    # A module's floor without compiling reads every round's estimate, not the final round.
    costs = class_costs(run)
    floors = module_compiling(costs, interleaved=True)
    module = [c for c in costs if c.module == "bench_linear_solve"]
    assert floors["bench_linear_solve"].seconds == sum(c.round_seconds for c in module)
    assert module_compiling(costs)["bench_linear_solve"].seconds == sum(c.seconds for c in module)
    module_row = next(line for line in out.splitlines() if line.startswith("| bench_linear_solve "))
    assert module_row.rstrip(" |").endswith(f"{2 * floors['bench_linear_solve'].without_compiling / 60:.1f}")


def test_an_asv_run_of_one_commit_is_the_whole_run(capsys):
    # Recorded by `asv run` (one call for all rounds): every round's time is in the file.
    run = _asv.load_run(RESULTS, "vm-2core-epyc", "990be985")
    assert not rounds_interleaved(run)
    out = _cost(capsys, "vm-2core-epyc", "990be985")
    assert out.startswith("# What a full run of the suite costs")
    assert "estimated" not in out
    total = sum(c.seconds for c in class_costs(run)) / 60
    assert f"**{total:.1f}**" in out
    # Several rounds in one call: the durations add up to several times the final round's span.
    assert sum(v for k, v in run.durations.items() if k != "<build>") > 3 * 60 * 15


def _raw_compile_per_process(results_file, cls):
    # Read straight from asv's results JSON: per program, the mean of its recorded samples.
    import itertools
    import json
    import math

    data = json.loads(Path(results_file).read_text())
    columns = data["result_columns"]
    total, programs, controls = 0.0, 0, 0
    for name, row in data["results"].items():
        if not (name.startswith(cls + ".") and name.endswith("_compile")):
            continue
        entry = dict(zip(columns, row))
        for combo, samples in zip(itertools.product(*entry["params"]), entry["samples"]):
            values = [v for v in samples or [] if v is not None and math.isfinite(v)]
            if combo[-1] == "'control'":
                controls += bool(values)
                continue
            if values:
                total += sum(values) / len(values)
                programs += 1
    return total, programs, controls


def test_compiling_per_process_adds_up_the_recorded_compile_times_without_the_control(capsys):
    run = _asv.load_run(RESULTS, "vm-2core-epyc", "8d15d4f2")
    expected, programs, controls = _raw_compile_per_process(run.path, CLS)
    assert programs > 50 and controls > 0  # the control twin records a compile time too, and is left out
    costs = class_costs(run)
    (cost,) = [c for c in costs if c.name == CLS]
    assert abs(cost.compiling - expected) < 1e-9
    assert cost.compiling_per_commit == cost.compiling * cost.measuring == cost.compiling * 5
    # asv-timed classes record no compile time: no floor.
    assert all(c.compiling == 0 for c in costs if c.measuring == 0)
    module = [c for c in costs if c.module == "bench_linear_solve"]
    floor = sum(c.compiling * c.measuring for c in module)
    out = _cost(capsys, "vm-2core-epyc", "8d15d4f2")
    assert "## Compiling: the floor under a comparison" in out
    row = next(line for line in out.splitlines() if line.startswith("| bench_linear_solve "))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells == [
        "bench_linear_solve",
        str(sum(c.measuring for c in module)),
        f"{floor / 60:.1f}",
        f"{2 * floor / 60:.1f}",
        # All but compiling: the module's recorded wall time (every class, compiling or not) less
        # its compiling, for two commits.
        f"{2 * (sum(c.seconds for c in module) - floor) / 60:.1f}",
    ]
    class_row = next(line for line in out.splitlines() if line.startswith(f"| {CLS} "))
    assert [c.strip() for c in class_row.strip("|").split("|")][5] == f"{cost.compiling:.1f}"


def test_the_committed_cost_page_is_what_its_command_generates(capsys):
    # docs/reports/suite_cost.md names the command that made it in its first line of text.
    import shlex

    page = (ROOT / "docs" / "reports" / "suite_cost.md").read_text()
    command = page.split("Generated by `", 1)[1].split("`", 1)[0]
    args = shlex.split(command)
    assert args[:4] == ["python", "-m", "perflab", "report"] and args[-2] == "-o"
    status = main([*args[3:-2], "--results-dir", RESULTS])
    out, err = capsys.readouterr()
    assert status == 0, err
    # The header states the command as given; what follows it must be the same.
    after = "` from the recorded run"
    assert out.split(after, 1)[1] == page.split(after, 1)[1]
