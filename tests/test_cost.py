"""`python -m perflab report --cost`: what a recorded run cost, read the way asv recorded it.

asv keeps one `run_benchmarks` call's durations per results file. `asv run` is one call for all
rounds of a commit; `asv continuous` goes round by round, so its files hold the final round only
and the cost of all rounds is an estimate. Both kinds are committed under results/.
"""

from __future__ import annotations

from pathlib import Path

from perflab import _asv
from perflab.__main__ import main
from perflab.report.cost import class_costs, rounds_interleaved

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
