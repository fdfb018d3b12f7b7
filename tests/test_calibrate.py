"""`python -m perflab calibrate`: its verdicts on synthetic trials, and real trials in a fresh home."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from perflab import calibrate

ROOT = Path(__file__).resolve().parents[1]
NAME = "bench_x.Cls.track_t"
INFO = {
    NAME: {
        "param_names": ["size", "variant"],
        "baseline": "base",
        "control": "control",
        "unit": "seconds",
        "paired_processes": True,
    }
}


def trial(rng, *, control=1.0, plus5=1.05, plus10=1.10, offset=0.3, inner=0.005, processes=5):
    offsets = np.exp(rng.normal(0, offset, processes))
    cells = {}
    for size in ("10", "20"):
        for variant, ratio in (("base", 1.0), ("control", control), ("plus5pct", plus5), ("plus10pct", plus10)):
            values = offsets * ratio * np.exp(rng.normal(0, inner, processes))
            cells[(NAME, (size, variant))] = values.tolist()
    return calibrate.Recorded(cells, INFO)


def test_identical_code_is_not_flagged_and_effects_are(rng):
    trials = [trial(rng) for _ in range(6)]
    result = calibrate.judge(trials, 1.05, 0.99)["Cls"]
    assert (result.false_within.hits, result.false_within.total) == (0, 12)
    assert result.detected["plus10pct"].hits == 12
    # Across runs the 30% process offsets stay in every unpaired comparison: nothing is flagged.
    assert result.false_across_report.hits == 0 and result.false_across_report.total == 5 * 2 * 2
    assert np.median(result.measured["plus10pct"]) == pytest.approx(1.10, rel=0.02)


def test_significance_alone_is_counted_beside_the_rule(rng):
    # A true 3% slowdown with tight processes: the interval excludes 1 every time, yet the
    # estimate never passes the 1.05 factor, so the rule flags none of them.
    trials = [trial(rng, plus5=1.03, offset=0.01, inner=0.002) for _ in range(4)]
    result = calibrate.judge(trials, 1.05, 0.95)["Cls"]
    assert result.detected["plus5pct"].hits == 0
    assert (result.significant["plus5pct"].hits, result.significant["plus5pct"].total) == (8, 8)
    # Identical code: the interval excludes 1 about 5% of the time and the rule flags none.
    assert result.false_within.hits == 0


def test_a_broken_control_is_counted_as_a_false_positive(rng):
    trials = [trial(rng, control=1.2) for _ in range(3)]
    assert calibrate.judge(trials, 1.05, 0.99)["Cls"].false_within.hits == 6


def test_rates_carry_binomial_intervals():
    tally = calibrate.Tally(0, 8)
    assert str(tally).startswith("0/8 (0.0%, 95% CI 0.0-36.9%)")


def test_empty_results_folder_is_a_clear_error(tmp_path):
    with pytest.raises(calibrate.CalibrationError, match="no benchmarks.json"):
        calibrate.load_trial(str(tmp_path))


def test_real_trials_in_a_fresh_home(tmp_path):
    # A home where asv never ran: calibrate makes its own machine file.
    # The trials are labelled HEAD; a developer's uncommitted edits are deliberate here.
    env = {
        "HOME": str(tmp_path),
        "PATH": "/usr/bin:/bin",
        "PERFLAB_CACHE_DIR": str(tmp_path / "cache"),
        "PERFLAB_PROVENANCE_REASON": "the test suite calibrates the working tree",
    }
    out = tmp_path / "cal.md"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "perflab",
            "calibrate",
            "--trials",
            "2",
            "-b",
            "Calibration\\.",
            "-o",
            str(out),
            "--keep",
            str(tmp_path / "kept"),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    text = out.read_text()
    row = next(line for line in text.splitlines() if line.startswith("| Calibration"))
    # Two trials: two control pairs within runs; 4 cells (twins excluded) x 1 pair across runs.
    assert re.search(r"\| \d/2 \(", row) and "/4 (" in row, row
    # The kept trials judge again to the same table.
    again = tmp_path / "again.md"
    cmd = [sys.executable, "-m", "perflab", "calibrate", "--from", str(tmp_path / "kept"), "-o", str(again)]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert again.read_text().split("## Minimum")[1] == text.split("## Minimum")[1]


def test_failed_asv_run_carries_asv_output(tmp_path):
    env = {"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-m", "perflab", "calibrate", "--trials", "2", "-b", "NoSuchBenchmark"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2
    assert "calibrate: error: --bench" in done.stderr
    assert len(done.stderr.strip().splitlines()) > 1, "asv's own output must follow the error line"


def test_judging_kept_trials_needs_them(tmp_path):
    with pytest.raises(calibrate.CalibrationError, match="--from: no folder"):
        calibrate.judge_kept(str(tmp_path / "none"))
    (tmp_path / "trial0").mkdir()
    with pytest.raises(calibrate.CalibrationError, match="1 trial folder"):
        calibrate.judge_kept(str(tmp_path))
