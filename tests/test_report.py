"""`python -m perflab report` on a real asv results fixture (tests/data/asv_results).

The fixture was recorded with `asv run --python=same --record-samples -a rounds=1 -a repeat=7`
on a 2-core VM and trimmed with asv's own `Results.remove_result` / `Results.save` to
LinearSolveJVP.time_jvp, LinearSolveJVP.track_jvp_over_primal and LinearSolveJVPDefault.time_jvp.
Expected numbers are recomputed here from the JSON through asv's loader, not taken from report.py.
"""

from __future__ import annotations

import ast
import itertools
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from asv import _stats
from asv.results import Results
from asv_runner.statistics import compute_stats

from perflab import report
from perflab.__main__ import main

DATA = Path(__file__).parent / "data" / "asv_results"
RESULTS_FILE = DATA / "vm" / "b58392fc-existing-py_work_main_.venv_bin_python3.json"
COMMIT = "b58392fce14b0fda9e065d7987141b7ce0e92023"
ENV = "existing-py_work_main_.venv_bin_python3"
TIME_JVP = "bench_linear_solve.LinearSolveJVP.time_jvp"
TRACK = "bench_linear_solve.LinearSolveJVP.track_jvp_over_primal"
SOLVERS = ["tridiagonal", "lu", "cholesky"]
SIZES = ["10", "50", "100", "200", "500"]


@pytest.fixture(autouse=True)
def _no_asv_machine_file(tmp_path, monkeypatch):
    # The default machine comes from ~/.asv-machine.json; keep the developer's out of the tests.
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))


def run_report(capsys, *args):
    status = main(["report", "--results-dir", str(DATA), *args])
    out, err = capsys.readouterr()
    return status, out, err


def recorded(benchmark):
    """(solver, size, variant) -> (value, stats, samples), straight from asv's loader."""
    results = Results.load(str(RESULTS_FILE))
    params = results.get_result_params(benchmark)
    keys = [tuple(_unquote(p) for p in combo) for combo in itertools.product(*params)]
    return dict(
        zip(
            keys,
            zip(
                results.get_result_value(benchmark, params),
                results.get_result_stats(benchmark, params),
                results.get_result_samples(benchmark, params),
            ),
        )
    )


def _unquote(param_repr):
    value = ast.literal_eval(param_repr)
    return value if isinstance(value, str) else param_repr


def markdown_tables(text):
    """title -> (header cells, rows of cells) for every "## " section."""
    tables, title = {}, None
    for line in text.splitlines():
        if line.startswith("## "):
            title = line[3:]
            tables[title] = (None, [])
        elif title and line.startswith("| "):
            cells = [c.strip() for c in line.strip("|").split("|")]
            head, rows = tables[title]
            if head is None:
                tables[title] = (cells, rows)
            else:
                rows.append(cells)
    return tables


def close(text, expected, rel=5e-4):
    # The report prints four significant digits.
    return math.isclose(float(text), expected, rel_tol=rel)


# Structure and arithmetic -----------------------------------------------------------------


def test_markdown_tables_per_solver_with_seed_columns(capsys):
    status, out, err = run_report(capsys, "--format", "markdown", "--extra", "lineax")
    assert status == 0, err
    tables = markdown_tables(out)
    assert list(tables) == [f"LinearSolveJVP.time_jvp — solver={s}" for s in SOLVERS]
    for head, rows in tables.values():
        assert head == [
            "Size", "BEFORE (ms)", "AFTER (ms)", "Speedup", "Change", "Spread B / A", "n B / A",
            "lineax (ms)", "Best (ms)",
        ]
        assert [r[0] for r in rows] == SIZES
    assert "|---:|---:|---:|---:|---:|---:|---:|---:|---|" in out


def test_speedup_change_and_best_match_the_recorded_json(capsys):
    status, out, _ = run_report(capsys, "--format", "markdown", "--extra", "lineax")
    assert status == 0
    data = recorded(TIME_JVP)
    for solver in SOLVERS:
        _, rows = markdown_tables(out)[f"LinearSolveJVP.time_jvp — solver={solver}"]
        for size, before_ms, after_ms, speedup, change, _, _, lineax_ms, best in rows:
            before = data[(solver, size, "before")][0]
            after = data[(solver, size, "after")][0]
            assert close(before_ms, before * 1e3)
            assert close(after_ms, after * 1e3)
            assert close(lineax_ms, data[(solver, size, "lineax")][0] * 1e3)
            assert speedup == f"{before / after:.2f}x"
            assert change in ("~ within noise", f"{(after - before) / before * 100:+.1f}%")
            finite = {
                v: data[(solver, size, v)][0]
                for v in ["before", "after", "lineax", "fused", "cython"]
                if not math.isnan(data[(solver, size, v)][0])
            }
            fastest = min(finite, key=finite.get)
            value, name = best.split(" ")
            assert name == f"({fastest})"
            assert close(value, finite[fastest] * 1e3)


def test_pair_marks_agree_with_asv_statistics(capsys):
    status, out, _ = run_report(capsys, "--format", "markdown")
    assert status == 0
    data = recorded(TIME_JVP)
    for solver in SOLVERS:
        _, rows = markdown_tables(out)[f"LinearSolveJVP.time_jvp — solver={solver}"]
        for size, _, _, _, change, *_ in rows:
            b_value, b_stats, b_samples = data[(solver, size, "before")]
            a_value, a_stats, a_samples = data[(solver, size, "after")]
            f = report.DEFAULT_FACTOR
            beyond_factor = a_value < b_value / f or b_value < a_value / f
            significant = _stats.is_different(b_samples, a_samples, b_stats, a_stats)
            flagged = beyond_factor and significant
            assert (change == "~ within noise") == (not flagged), (solver, size)
            if flagged:
                assert change == f"{(a_value - b_value) / b_value * 100:+.1f}%"


def test_spread_and_sample_count_come_from_asv_statistics(capsys):
    status, out, _ = run_report(capsys, "--format", "markdown")
    assert status == 0
    data = recorded(TIME_JVP)
    for solver in SOLVERS:
        _, rows = markdown_tables(out)[f"LinearSolveJVP.time_jvp — solver={solver}"]
        for size, _, _, _, _, spread, count, *_ in rows:
            expected_spread, expected_count = [], []
            for variant in ("before", "after"):
                value, stats, samples = data[(solver, size, variant)]
                half_iqr = (stats["q_75"] - stats["q_25"]) / 2
                expected_spread.append(f"±{half_iqr / value * 100:.1f}%")
                expected_count.append(str(len(samples)))
            assert spread == " / ".join(expected_spread)
            assert count == " / ".join(expected_count) == "7 / 7"


def test_identical_pair_is_within_noise(capsys):
    status, out, _ = run_report(
        capsys, "--format", "markdown", "--before", "after", "--after", "after"
    )
    assert status == 0
    for _, rows in markdown_tables(out).values():
        for row in rows:
            assert row[3] == "1.00x"
            assert row[4] == "~ within noise"


def test_text_and_markdown_show_the_same_numbers(capsys):
    _, markdown, _ = run_report(capsys, "--format", "markdown", "--extra", "fused")
    _, text, _ = run_report(capsys, "--extra", "fused")
    assert "|" not in text and "## " not in text
    for title, (head, rows) in markdown_tables(markdown).items():
        assert f"{title}\n{'=' * len(title)}\n" in text
        block = text.split(f"{title}\n")[1]
        text_head = block.splitlines()[1]
        assert text_head.split() == " ".join(head).split()
        for row in rows:
            assert any(line.split() == " ".join(row).split() for line in block.splitlines())


def test_header_states_machine_commit_env_samples_and_command(capsys):
    status, out, _ = run_report(capsys, "--format", "markdown")
    assert status == 0
    header = out.split("\n## ")[0]
    assert "vm (AMD EPYC, x86_64, 2 CPUs, 23.5 GiB RAM, Linux 6.18.44-fc-v782)" in header
    assert COMMIT in header
    assert ENV in header
    assert "2026-11-23" in header  # the recorded run's date
    assert "7 timings of 1 call each" in header
    assert f"`python -m perflab report --results-dir {DATA} --format markdown`" in header


def test_track_benchmark_is_shown_unconverted(capsys):
    status, out, _ = run_report(capsys, "--format", "markdown", "-b", "track_jvp_over_primal")
    assert status == 0
    data = recorded(TRACK)
    head, rows = markdown_tables(out)["LinearSolveJVP.track_jvp_over_primal — solver=lu"]
    assert head[1:3] == ["BEFORE (ratio)", "AFTER (ratio)"]
    for size, before, after, *_ in rows:
        assert close(before, data[("lu", size, "before")][0])
        assert close(after, data[("lu", size, "after")][0])
    assert "no samples or statistics recorded" in out


def test_skipped_variant_shows_na(capsys):
    status, out, _ = run_report(capsys, "--format", "markdown", "--before", "cython")
    assert status == 0
    _, rows = markdown_tables(out)["LinearSolveJVP.time_jvp — solver=lu"]
    assert all(r[1] == "n/a" and r[3] == "n/a" and r[4] == "n/a" for r in rows)


def test_rows_option_and_glob_selection(capsys):
    status, out, _ = run_report(capsys, "--format", "markdown", "--rows", "solver,size")
    assert status == 0
    (title, (head, rows)), = markdown_tables(out).items()
    assert title == "LinearSolveJVP.time_jvp"
    assert head[:2] == ["Solver", "Size"] and len(rows) == 15

    status, out, _ = run_report(capsys, "--format", "markdown", "-b", "LinearSolveJVP*")
    assert status == 0
    titles = list(markdown_tables(out))
    assert len(titles) == 6 and not any("Default" in t for t in titles)
    assert "LinearSolveJVPDefault.time_jvp (no 'variant' parameter)" in out


def test_output_file(capsys, tmp_path):
    target = tmp_path / "linear_solve.md"
    status, out, _ = run_report(capsys, "--format", "markdown", "--output", str(target))
    assert status == 0 and out == ""
    assert target.read_text().startswith("# Benchmark report: LinearSolveJVP.time_jvp")


def test_compare_on_synthetic_cells():
    def cell(center, n=10):
        samples = [center * (1 + 0.001 * k) for k in range(n)]
        value, stats = compute_stats(samples, 1)
        return report.Cell(value, stats, tuple(samples))

    slow, fast, close_by = cell(2.0), cell(1.0), cell(1.05)
    assert report.compare(slow, fast).verdict == report.FASTER
    assert report.compare(fast, slow).verdict == report.SLOWER
    assert report.compare(fast, close_by, factor=1.1).within_noise  # beyond no factor
    assert report.compare(fast, close_by, factor=1.01).verdict == report.SLOWER
    assert report.compare(fast, fast).within_noise
    assert report.compare(fast, report.Cell(float("nan"))).verdict == report.MISSING
    assert report.compare(slow, fast).speedup == pytest.approx(slow.value / fast.value)
    assert fast.n_samples == 10 and fast.number == 1 and fast.ci_99 and fast.iqr


def test_rates_are_better_when_higher():
    # GFLOP/s or steps/s: asv compare assumes lower is better, the report must not.
    assert report.higher_is_better("GFLOP/s") and report.higher_is_better("steps / s")
    assert report.higher_is_better("fraction of PRNG bound")
    assert not report.higher_is_better("seconds") and not report.higher_is_better("ratio")
    assert not report.higher_is_better(None)
    low, high = report.Cell(100.0), report.Cell(300.0)
    rate = report.compare(low, high, higher_is_better=True)
    assert rate.verdict == report.FASTER and rate.speedup == pytest.approx(3.0)
    assert rate.change == pytest.approx(2.0)
    assert report.compare(high, low, higher_is_better=True).verdict == report.SLOWER
    assert report.compare(low, high).verdict == report.SLOWER
    assert report.compare(low, report.Cell(105.0), higher_is_better=True).within_noise
    assert report.best({"a": low, "b": high}, rate=True) == ("b", high)
    assert report.best({"a": low, "b": high}, rate=False) == ("a", low)


# Selecting the run ------------------------------------------------------------------------


def copy_results(tmp_path):
    target = tmp_path / "results"
    shutil.copytree(DATA, target)
    return target


def add_run(results_dir, commit=None, env=None, date=None):
    # A second results file, as asv would write for another commit or environment.
    data = json.loads(RESULTS_FILE.read_text())
    data["commit_hash"] = commit or data["commit_hash"]
    data["env_name"] = env or data["env_name"]
    data["date"] = date or data["date"]
    name = f"{data['commit_hash'][:8]}-{data['env_name']}.json"
    (results_dir / "vm" / name).write_text(json.dumps(data))


def test_newest_commit_by_default_and_commit_prefix(tmp_path, capsys):
    results_dir = copy_results(tmp_path)
    older = "0123456789abcdef0123456789abcdef01234567"
    add_run(results_dir, commit=older, date=1_000_000_000_000)
    assert main(["report", "--results-dir", str(results_dir)]) == 0
    assert COMMIT in capsys.readouterr().out
    assert main(["report", "--results-dir", str(results_dir), "--commit", "0123"]) == 0
    assert older in capsys.readouterr().out


def test_several_environments_need_env(tmp_path, capsys):
    results_dir = copy_results(tmp_path)
    add_run(results_dir, env="virtualenv-py3.11-numpy2.4.6")
    assert main(["report", "--results-dir", str(results_dir)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--env" in err and "virtualenv-py3.11-numpy2.4.6" in err
    assert main(["report", "--results-dir", str(results_dir), "--env", "virtualenv-py3.11"]) == 0
    assert "virtualenv-py3.11-numpy2.4.6" in capsys.readouterr().out


def test_results_dir_from_asv_conf(tmp_path, monkeypatch, capsys):
    copy_results(tmp_path)
    conf = '{\n  // asv allows comments\n  "results_dir": "results"\n}'
    (tmp_path / "asv.conf.json").write_text(conf)
    monkeypatch.chdir(tmp_path)
    assert main(["report"]) == 0
    assert os.path.join("results", "vm") in capsys.readouterr().out


# Errors: one line on stderr naming the argument, exit status 2 ------------------------------


@pytest.mark.parametrize(
    "args, argument, detail",
    [
        (["--results-dir", "/nonexistent/results"], "--results-dir", "/nonexistent/results"),
        (["--machine", "nosuchmachine"], "--machine", "recorded: vm"),
        (["--benchmark", "NoSuchBenchmark"], "--benchmark", "NoSuchBenchmark"),
        (["--benchmark", "LinearSolveJVPDefault"], "--benchmark", "no parameter 'variant'"),
        (["--after", "nosuchvariant"], "--after", "values: before, after, lineax, fused, cython"),
        (["--before", "nosuchvariant"], "--before", "nosuchvariant"),
        (["--extra", "lineax,nosuchvariant"], "--extra", "nosuchvariant"),
        (["--commit", "ffff"], "--commit", "recorded: b58392fc"),
        (["--env", "nosuchenv"], "--env", ENV),
        (["--rows", "nosuchparam"], "--rows", "nosuchparam"),
        (["--factor", "0.5"], "--factor", "0.5"),
    ],
)
def test_errors(capsys, args, argument, detail):
    if args[0] == "--results-dir":
        status = main(["report", *args])
        out, err = capsys.readouterr()
    else:
        status, out, err = run_report(capsys, *args)
    assert status == 2
    assert out == ""
    assert err.count("\n") == 1
    assert err.startswith(f"perflab report: error: {argument}: ")
    assert detail in err


def test_several_machines_need_machine(tmp_path, capsys):
    results_dir = copy_results(tmp_path)
    other = results_dir / "gpu-box"
    other.mkdir()
    machine = json.loads((DATA / "vm" / "machine.json").read_text()) | {"machine": "gpu-box"}
    (other / "machine.json").write_text(json.dumps(machine))
    assert main(["report", "--results-dir", str(results_dir)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("perflab report: error: --machine: ") and "gpu-box, vm" in err
    assert main(["report", "--results-dir", str(results_dir), "--machine", "vm"]) == 0


def test_empty_results_dir(tmp_path, capsys):
    assert main(["report", "--results-dir", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("perflab report: error: --results-dir: ")


# The entry point --------------------------------------------------------------------------


def test_python_m_perflab():
    bare = subprocess.run([sys.executable, "-m", "perflab"], capture_output=True, text=True)
    assert bare.returncode == 2
    assert "report" in bare.stderr and "usage:" in bare.stderr
    helped = subprocess.run(
        [sys.executable, "-m", "perflab", "report", "--help"], capture_output=True, text=True
    )
    assert helped.returncode == 0
    for option in ("--results-dir", "--machine", "--commit", "--env", "--benchmark", "--before",
                   "--after", "--extra", "--factor", "--format", "--output"):
        assert option in helped.stdout
