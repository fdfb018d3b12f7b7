"""`python -m perflab calibrate`: the verdicts on synthetic trials, and one real asv trial pair."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from asv_runner.statistics import compute_stats

from perflab import calibrate, report
from perflab.__main__ import main

ROOT = Path(__file__).resolve().parents[1]
NAME = calibrate.CALIBRATION


def cell(center, spread=0.001, n=20):
    samples = [center * (1 + spread * (k - n / 2) / n) for k in range(n)]
    value, stats = compute_stats(samples, 1)
    return report.Cell(value, stats, tuple(samples))


class FakeResults:
    def get_all_result_keys(self):
        return [NAME]


class FakeRun:
    """Just what calibrate reads of a `report.RecordedRun`."""

    def __init__(self, cells):
        self.cells_by_variant = cells
        self.results = FakeResults()
        self.benchmarks = {NAME: {"param_names": ["variant"]}}

    def cells(self, name):
        assert name == NAME
        variants = list(self.cells_by_variant)
        return ["variant"], [variants], {(v,): c for v, c in self.cells_by_variant.items()}


def trial(base=1.0, identical=1.0, plus5=1.05, plus10=1.10):
    return FakeRun(
        {"base": cell(base), "identical": cell(identical), "plus5pct": cell(plus5),
         "plus10pct": cell(plus10)}
    )


def test_clean_trials_have_no_false_positives_and_detect_both_effects():
    runs = [trial() for _ in range(4)]
    strict, loose = calibrate.judge(runs, [1.02, 1.1])
    assert (strict.false_within.hits, strict.false_within.total) == (0, 4)
    assert (strict.false_across.hits, strict.false_across.total) == (0, 12)  # 3 pairs x 4 cells
    assert strict.detected["plus5pct"].hits == 4 and strict.detected["plus10pct"].hits == 4
    # At asv compare's default factor a 5% effect is never flagged, and 10% only barely.
    assert loose.detected["plus5pct"].hits == 0
    assert calibrate.measured_effects(runs) == pytest.approx({"plus5pct": 0.05, "plus10pct": 0.10})


def test_shifted_identical_and_drifting_runs_count_as_false_positives():
    runs = [trial(identical=1.2), trial(base=1.3, identical=1.25, plus5=1.3 * 1.05, plus10=1.43)]
    (result,) = calibrate.judge(runs, [1.05])
    assert (result.false_within.hits, result.false_within.total) == (1, 2)
    assert result.false_across.hits == 3  # base, plus5pct, plus10pct moved by 30%; identical by 4%
    noise = {n.name: n for n in calibrate.noise_floor(runs, [1.05])}
    assert noise["Calibration.time_workload(variant=base)"].run_spread == pytest.approx(1.3)
    assert 0 < noise["Calibration.time_workload(variant=base)"].rel_iqr < 0.01
    assert noise["Calibration.time_workload(variant=base)"].flagged_across[1.05] == calibrate.Rate(1, 1)
    assert noise["Calibration.time_workload(variant=identical)"].flagged_across[1.05].hits == 0


def test_settings_reach_the_asv_command_line():
    settings = calibrate.Settings(("rounds=4", "repeat=20"), "1", (("XLA_FLAGS", "x"),))
    cmd = calibrate.asv_command("conf.json", "abc", ["^bench_calibration"], settings)
    assert cmd[1:4] == ["-m", "asv", "run"] and "--record-samples" in cmd
    assert cmd[cmd.index("--cpu-affinity") + 1] == "1"
    assert [cmd[i + 1] for i, a in enumerate(cmd) if a == "-a"] == ["rounds=4", "repeat=20"]
    assert settings.describe() == "-a rounds=4 -a repeat=20 --cpu-affinity 1 XLA_FLAGS=x"
    assert calibrate.Settings().describe() == "suite defaults"


@pytest.mark.parametrize(
    "args, argument",
    [
        (["--trials", "1"], "--trials"),
        (["--factor", "0.9"], "--factor"),
        (["--attribute", "rounds"], "--attribute"),
        (["--env", "=1"], "--env"),
        (["--append"], "--append"),
        (["--config", "/nonexistent/asv.conf.json"], "--config"),
    ],
)
def test_bad_arguments(capsys, args, argument):
    assert main(["calibrate", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"perflab calibrate: error: {argument}: ") and err.count("\n") == 1


def test_two_real_trials(tmp_path):
    # One short asv run per trial (1 round of 3 samples) through the real command line.
    out = tmp_path / "calibration.md"
    done = subprocess.run(
        [sys.executable, "-m", "perflab", "calibrate", "--trials", "2", "-a", "rounds=1",
         "-a", "repeat=3", "--factor", "1.05", "--output", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr
    text = out.read_text()
    assert text.startswith("# Noise calibration")
    assert "## Settings: -a rounds=1 -a repeat=3" in text
    assert "2 trials (one `asv run` each), 3 samples per cell" in text
    # 2 trials: 2 within-run identical pairs, 1 across-run pair of 4 cells.
    (row,) = [line for line in text.splitlines() if line.startswith("| 1.05 |")]
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert re.fullmatch(r"[0-2]/2 \(\d+%\)", cells[1]), cells
    assert re.fullmatch(r"[0-4]/4 \(\d+%\)", cells[2]), cells
    for variant in ("base", "identical", "plus5pct", "plus10pct"):
        assert f"Calibration.time_workload(variant={variant})" in text
