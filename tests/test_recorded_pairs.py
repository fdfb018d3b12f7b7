"""Recorded identical-code pairs judged as A/A trials (`calibrate --across-commits identical
--pairs`), and the git rule that tells benchmarked code from the rest."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from perflab import _commit_calibration as cc
from perflab.__main__ import main
from perflab.report import check

from .test_commits import MACHINE, write_pair

ROOT = Path(__file__).resolve().parents[1]


def _git(repo, *args):
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


def _commit(repo, files, message):
    for name, text in files.items():
        path = repo / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", message)
    return _git(repo, "rev-parse", "HEAD")


@pytest.fixture
def repo(tmp_path, monkeypatch):
    # A project with a study, its benchmarks, report code and asv.conf.json (the real one).
    root = tmp_path / "repo"
    root.mkdir()
    _git(root, "init", "-q")
    _git(root, "config", "user.email", "t@example.invalid")
    _git(root, "config", "user.name", "t")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    files = {
        "README.md": "readme\n",
        "benchmarks/bench_x.py": "x = 1\n",
        "src/perflab/x/__init__.py": "y = 1\n",
        "src/perflab/report/cells.py": "z = 1\n",
        "asv.conf.json": (ROOT / "asv.conf.json").read_text(),
    }
    _commit(root, files, "base")
    return root


def _conf(repo, change):
    conf = json.loads((repo / "asv.conf.json").read_text())
    change(conf)
    return json.dumps(conf, indent=4)


def test_measured_changes_tell_benchmarked_code_from_the_rest(repo):
    base = _git(repo, "rev-parse", "HEAD")
    docs = _commit(repo, {"README.md": "readme, edited\n", "docs/a.md": "a\n"}, "docs")
    assert check.measured_changes(str(repo), base, docs) == []
    assert check.changed_areas(str(repo), base, docs) == ["README.md", "docs/"]
    report = _commit(repo, {"src/perflab/report/cells.py": "z = 2\n"}, "report code")
    assert check.measured_changes(str(repo), docs, report) == []
    assert check.changed_areas(str(repo), docs, report) == ["src/perflab/report/"]
    bench = _commit(repo, {"benchmarks/bench_x.py": "x = 2\n"}, "benchmark")
    assert check.measured_changes(str(repo), report, bench) == ["benchmarks/bench_x.py"]
    study = _commit(repo, {"src/perflab/x/__init__.py": "y = 2\n"}, "study")
    assert check.measured_changes(str(repo), bench, study) == ["src/perflab/x/__init__.py"]
    # asv.conf.json changes what was measured only through its pinned versions.
    other = _commit(repo, {"asv.conf.json": _conf(repo, lambda c: c.update(build_cache_size=9))}, "cache")
    assert check.measured_changes(str(repo), study, other) == []
    pinned = _commit(repo, {"asv.conf.json": _conf(repo, lambda c: c["matrix"]["req"].update(numpy="9.9"))}, "pin")
    assert check.measured_changes(str(repo), other, pinned) == ["asv.conf.json (matrix)"]
    assert check.measured_changes(str(repo), base, "f" * 40) is None


def _recorded(repo, tmp_path, first, second):
    # The synthetic A/A pair of test_commits, recorded under two real commits of `repo`.
    results_dir = write_pair(tmp_path / "pair")
    for old, new in (("a" * 40, first), ("b" * 40, second)):
        path = next((results_dir / MACHINE).glob(f"{old[:8]}-*.json"))
        data = json.loads(path.read_text()) | {"commit_hash": new}
        path.unlink()
        (path.parent / f"{new[:8]}{path.name[8:]}").write_text(json.dumps(data))
    return results_dir


def test_a_recorded_pair_is_judged_as_an_identical_trial(repo, tmp_path, monkeypatch, capsys):
    base = _git(repo, "rev-parse", "HEAD")
    docs = _commit(repo, {"README.md": "readme, edited\n"}, "docs")
    results_dir = _recorded(repo, tmp_path, base, docs)
    monkeypatch.chdir(repo)
    pairs = cc.recorded_pairs(".", str(results_dir), MACHINE, [f"{base[:7]}:{docs[:7]}"])
    assert [p.name for p in pairs] == [f"{base[:8]} -> {docs[:8]}"] and pairs[0].areas == ("README.md",)
    # The same counts as the calibration's own judging of that pair's folder.
    (trial,) = cc.judge_recorded_pairs(pairs, 1.05)
    alone = cc.judge_pair("identical", str(results_dir), MACHINE, 1.05)
    assert trial.false == alone.false and trial.pair == pairs[0].name and trial.false
    status = main(
        [
            "calibrate",
            "--across-commits",
            "identical",
            "--pairs",
            f"{base[:7]}:{docs[:7]}",
            "--machine",
            MACHINE,
            "--results-dir",
            str(results_dir),
        ]
    )
    out = capsys.readouterr().out
    assert status == 0
    assert out.startswith("# Identical code across commits, recorded pairs\n")
    assert f"| 0 | {base[:8]} -> {docs[:8]} | {MACHINE} | bench_linear_solve | yes | README.md |" in out
    cells = trial.total("false").cells
    assert f"- Trial 0 (identical, {base[:8]} -> {docs[:8]}, 5 rounds, level 99.0%): unchanged cells" in out
    assert f"0/{cells} (0.0%; 95% CI 0.0%-" in out and "the gate exits 0." in out
    assert "Unchanged cells, every trial together, per level:" in out
    # No slowed variant on an identical pair: no detection columns, all n/a.
    assert "| asv compare |\n|---|---|---|---|---|---|---|---|\n" in out and "slowed detected" not in out


def test_pairs_that_are_not_identical_code_or_not_recorded_are_refused(repo, tmp_path, monkeypatch, capsys):
    base = _git(repo, "rev-parse", "HEAD")
    bench = _commit(repo, {"benchmarks/bench_x.py": "x = 2\n"}, "benchmark")
    results_dir = _recorded(repo, tmp_path, base, bench)
    monkeypatch.chdir(repo)

    def refused(*args):
        status = main(["calibrate", *args])
        err = capsys.readouterr().err
        assert status == 2 and err.count("\n") == 1, err
        return err

    where = ["--machine", MACHINE, "--results-dir", str(results_dir)]
    err = refused("--across-commits", "identical", "--pairs", f"{base[:8]}:{bench[:8]}", *where)
    assert "--pairs: " in err and "benchmarked code differs" in err and "benchmarks/bench_x.py" in err
    err = refused("--across-commits", "identical", "--pairs", base[:8], *where)
    assert "--pairs: expected OLD:NEW" in err
    err = refused("--across-commits", "identical", "--pairs", f"{base[:8]}:cccccccc", *where)
    assert "--pairs: no results for commit 'cccccccc'" in err
    err = refused("--across-commits", "identical", "--pairs", f"{base[:8]}:{bench[:8]}")
    assert "--machine: " in err
    err = refused("--across-commits", "slower", "--pairs", f"{base[:8]}:{bench[:8]}", *where)
    assert "--pairs: " in err and "give --across-commits identical" in err
    err = refused("--machine", MACHINE)
    assert "--machine: only --pairs reads recorded results" in err


def test_small_rates_keep_their_digits():
    # A rate or bound under 0.05% is not printed as 0.0%, which reads as none at all.
    assert cc._rate(1, 2825) == "1/2825 (0.04%; 95% CI <0.01%-0.2%)"
    assert cc._rate(0, 9541) == "0/9541 (0.0%; 95% CI 0.0%-0.04%)"
    assert cc._rate(3, 10) == "3/10 (30.0%; 95% CI 6.7%-65.2%)"


@pytest.mark.parametrize("page", ["commit_pairs.md", "calibration_commits.md"])
def test_the_committed_across_commit_pages_are_what_their_command_writes(page, tmp_path, monkeypatch):
    # Every figure on these pages is regenerated from the committed results by the command in
    # its header; an edit by hand, or a rule changed since, shows here.
    text = (ROOT / "docs" / "reports" / page).read_text()
    match = re.search(r"Generated by `(.+?)`", text)
    assert match, f"{page} names no command"
    argv = shlex.split(match.group(1))[3:]
    for pair in (a for i, a in enumerate(argv) if i and argv[i - 1] == "--pairs"):
        for rev in re.split("[,:]", pair):
            known = subprocess.run(["git", "cat-file", "-e", f"{rev}^{{commit}}"], cwd=ROOT, capture_output=True)
            if known.returncode:
                pytest.skip(f"commit {rev} is not in this clone's history (a shallow clone?)")
    argv[argv.index("-o") + 1] = str(tmp_path / page)
    monkeypatch.chdir(ROOT)
    assert main(argv) == 0
    assert (tmp_path / page).read_text().replace(str(tmp_path / page), f"docs/reports/{page}") == text
