"""`python -m perflab report` on the committed results (results/), so a renamed benchmark breaks
a test. Expected numbers are recomputed here from the JSON through asv's loader, not taken from
the report's modules.
"""

from __future__ import annotations

import ast
import importlib
import itertools
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from asv.results import Results
from asv_runner.statistics import compute_stats

from perflab import report, significance, variants
from perflab.__main__ import main


@pytest.fixture(autouse=True)
def _this_machine_is_the_xeon(monkeypatch, request):
    # These tests read the committed vm-2core-xeon results; results/ also holds other machines,
    # so the report's default machine ("this machine") is pinned to the one they were written for.
    from perflab import _asv

    if "several_machines" not in request.node.name:
        monkeypatch.setattr(_asv, "current_machine", lambda: "vm-2core-xeon")


ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "results"
MACHINE = "vm-2core-xeon"
BENCH = "bench_linear_solve.LinearSolveJVP.track_jvp"
TRACK = "bench_linear_solve.LinearSolveJVP.track_jvp_error"
_INFO = json.loads((DATA / "benchmarks.json").read_text())[BENCH]
SOLVERS = [ast.literal_eval(v) for v in _INFO["params"][0]]
SIZES = _INFO["params"][1]
VARIANTS = [ast.literal_eval(v) for v in _INFO["params"][2]]
BEFORE, AFTER, CONTROL = _INFO["baseline"], _INFO["optimised"], _INFO["control"]


def _newest():
    # The run the report reads by default: the newest commit date, as asv's own loader reads it.
    runs = [Results.load(str(p)) for p in (DATA / MACHINE).glob("*.json") if p.name != "machine.json"]
    newest = max(runs, key=lambda r: (r.date or 0, max(t for t in r.started_at.values() if t)))
    return newest, next(p for p in (DATA / MACHINE).glob(f"{newest.commit_hash[:8]}-*.json"))


_RESULTS, RESULTS_FILE = _newest()
COMMIT, ENV = _RESULTS.commit_hash, _RESULTS.env_name


@pytest.fixture(autouse=True)
def _no_asv_machine_file(tmp_path, monkeypatch):
    # The default machine comes from ~/.asv-machine.json; keep the developer's out of the tests.
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))


def run_report(capsys, *args, bench=("-b", "LinearSolveJVP.track_jvp")):
    status = main(["report", "--results-dir", str(DATA), *bench, *args])
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


def test_markdown_tables_per_solver_with_extra_and_control_columns(capsys):
    status, out, err = run_report(capsys, "--format", "markdown", "--extra", "lineax")
    assert status == 0, err
    tables = markdown_tables(out)
    assert list(tables) == [f"LinearSolveJVP.track_jvp — solver={s}" for s in SOLVERS]
    for head, rows in tables.values():
        assert head == [
            "Size",
            "BEFORE (ms)",
            "AFTER (ms)",
            "Speedup (CI)",
            "Change",
            "Spread B / A",
            "n B / A",
            "lineax (ms)",
            "Best (ms)",
            "Control",
        ]
        assert [r[0] for r in rows] == SIZES


def test_speedup_change_and_best_match_the_recorded_json(capsys):
    status, out, _ = run_report(capsys, "--format", "markdown", "--extra", "lineax")
    assert status == 0
    data = recorded(BENCH)
    for solver in SOLVERS:
        _, rows = markdown_tables(out)[f"LinearSolveJVP.track_jvp — solver={solver}"]
        for size, before_ms, after_ms, speedup, change, _, _, lineax_ms, best, control in rows:
            before, after = data[(solver, size, BEFORE)], data[(solver, size, AFTER)]
            assert close(before_ms, before[0] * 1e3)
            assert close(after_ms, after[0] * 1e3)
            assert close(lineax_ms, data[(solver, size, "lineax")][0] * 1e3)
            # One class of one run: the variants shared their processes, so the pair is paired.
            verdict = significance.compare(before[2], after[2], paired=True)
            assert speedup == f"{1 / verdict.ratio:.2f}x ({1 / verdict.high:.2f}-{1 / verdict.low:.2f})"
            # Change follows the Speedup and interval as printed (two decimals), never contradicting them.
            shown, low, high = (float(f"{x:.2f}") for x in (1 / verdict.ratio, 1 / verdict.high, 1 / verdict.low))
            flagged = (low > 1 or high < 1) and (shown > 1.05 or shown < 1 / 1.05)
            assert change == (f"{(verdict.ratio - 1) * 100:+.1f}%" if flagged else "~ within noise")
            finite = {
                v: data[(solver, size, v)][0]
                for v in VARIANTS
                if v != CONTROL and not math.isnan(data[(solver, size, v)][0])
            }
            fastest = min(finite, key=finite.get)
            # Best names a variant alone only when the rule finds it better than every other.
            value, name = best.split(" ", 1)
            assert name == f"({fastest})" or name.startswith(f"(tie: {fastest}, ")
            assert close(value, finite[fastest] * 1e3)
            twin = significance.compare(before[2], data[(solver, size, CONTROL)][2], paired=True)
            assert control == f"{'FLAGGED' if twin.changed else 'ok'} {twin.ratio:.3f}"


def test_spread_and_sample_count_come_from_asv_statistics(capsys):
    status, out, _ = run_report(capsys, "--format", "markdown")
    assert status == 0
    data = recorded(BENCH)
    for solver in SOLVERS:
        _, rows = markdown_tables(out)[f"LinearSolveJVP.track_jvp — solver={solver}"]
        for size, _, _, _, _, spread, count, *_ in rows:
            expected_spread, expected_count = [], []
            for variant in (BEFORE, AFTER):
                value, stats, samples = data[(solver, size, variant)]
                half_iqr = (stats["q_75"] - stats["q_25"]) / 2
                expected_spread.append(f"±{half_iqr / value * 100:.1f}%")
                expected_count.append(str(len(samples)))
            assert spread == " / ".join(expected_spread)
            assert count == " / ".join(expected_count)


def test_identical_pair_is_within_noise(capsys):
    status, out, _ = run_report(capsys, "--format", "markdown", "--before", AFTER, "--after", AFTER)
    assert status == 0
    for _, rows in markdown_tables(out).values():
        for row in rows:
            assert row[3] == "1.00x (1.00-1.00)"
            assert row[4] == "~ within noise"


def test_text_and_markdown_show_the_same_numbers(capsys):
    _, markdown, _ = run_report(capsys, "--format", "markdown", "--extra", "lineax")
    _, text, _ = run_report(capsys, "--extra", "lineax")
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
    info = json.loads((DATA / MACHINE / "machine.json").read_text())
    assert f"{MACHINE} ({info['cpu']}, {info['arch']}, {info['num_cpu']} CPUs" in header
    assert COMMIT in header and ENV in header
    assert "processes, one sample each" in header
    assert f"`python -m perflab report --results-dir {DATA} -b LinearSolveJVP.track_jvp --format markdown`" in header


def test_single_value_benchmark_is_shown_untested(capsys):
    status, out, _ = run_report(capsys, "--format", "markdown", bench=("-b", "LinearSolveJVP.track_jvp_error"))
    assert status == 0
    data = recorded(TRACK)
    head, rows = markdown_tables(out)["LinearSolveJVP.track_jvp_error — solver=lu"]
    unit = _asv_unit(TRACK)
    assert head[1:3] == [f"BEFORE ({unit})", f"AFTER ({unit})"]
    for size, before, after, _, change, *_ in rows:
        assert close(before, data[("lu", size, BEFORE)][0])
        assert close(after, data[("lu", size, AFTER)][0])
        assert change == "n=1, not tested"
    assert "no samples or statistics recorded" in out
    # Its control is untested, and the report says why without claiming a single process.
    assert "Identical-code control not tested (one value per cell: a figure recorded once per run" in out


def _asv_unit(name):
    return json.loads((DATA / "benchmarks.json").read_text())[name]["unit"]


def test_rows_option_and_glob_selection(capsys):
    status, out, _ = run_report(capsys, "--format", "markdown", "--rows", "solver,size")
    assert status == 0
    ((title, (head, rows)),) = markdown_tables(out).items()
    assert title == "LinearSolveJVP.track_jvp"
    assert head[:2] == ["Solver", "Size"] and len(rows) == len(SOLVERS) * len(SIZES)

    status, out, _ = run_report(capsys, "--format", "markdown", bench=("-b", "LinearSolveJVP.track_jvp_*"))
    assert status == 0
    methods = {t.split(" — ")[0] for t in markdown_tables(out)}
    assert "LinearSolveJVP.track_jvp_error" in methods and "LinearSolveJVP.track_jvp" not in methods
    assert not any("Default" in m for m in methods)


def test_output_file(capsys, tmp_path):
    target = tmp_path / "linear_solve.md"
    status, out, _ = run_report(capsys, "--format", "markdown", "--output", str(target))
    assert status == 0 and out == ""
    assert target.read_text().startswith("# Benchmark report: LinearSolveJVP.track_jvp")


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
    assert report.compare(slow, fast).speedup == pytest.approx(slow.value / fast.value, rel=1e-3)
    assert fast.n_samples == 10 and fast.number == 1 and fast.ci_99 and fast.iqr


def cell(center, n=10):
    samples = [center * (1 + 0.001 * k) for k in range(n)]
    value, stats = compute_stats(samples, 1)
    return report.Cell(value, stats, tuple(samples))


def test_rates_are_better_when_higher():
    # GFLOP/s or steps/s: asv compare assumes lower is better, the report must not.
    assert report.higher_is_better("GFLOP/s") and report.higher_is_better("steps / s")
    assert report.higher_is_better("fraction of PRNG bound")
    assert not report.higher_is_better("seconds") and not report.higher_is_better("ratio")
    assert not report.higher_is_better(None)
    low, high = cell(100.0), cell(300.0)
    rate = report.compare(low, high, higher_is_better=True)
    assert rate.verdict == report.FASTER and rate.speedup == pytest.approx(3.0, rel=1e-3)
    assert rate.change == pytest.approx(2.0, rel=1e-3)
    assert report.compare(high, low, higher_is_better=True).verdict == report.SLOWER
    assert report.compare(low, high).verdict == report.SLOWER
    assert report.compare(low, cell(104.0), higher_is_better=True).within_noise
    assert report.best({"a": low, "b": high}, rate=True) == ("b", high)
    # One value per side (a single process): nothing to judge, and the report says so.
    single = report.compare(report.Cell(100.0), report.Cell(300.0), higher_is_better=True)
    assert single.verdict == report.UNTESTED and single.speedup == pytest.approx(3.0)
    assert report.best({"a": low, "b": high}, rate=False) == ("a", low)
    # Single values of 0 (an exact error): no ratio exists; the row says n/a instead of failing.
    exact = report.compare(report.Cell(0.0), report.Cell(0.0))
    assert exact.verdict == report.UNTESTED and exact.speedup is None and exact.change is None
    # Several processes must still hold positive times: a zero there is refused, not hidden.
    with pytest.raises(ValueError, match="positive"):
        report.compare(cell(0.0), cell(1.0))


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
    (results_dir / MACHINE / name).write_text(json.dumps(data))


def test_newest_commit_by_default_and_commit_prefix(tmp_path, capsys):
    results_dir = copy_results(tmp_path)
    older = "0123456789abcdef0123456789abcdef01234567"
    add_run(results_dir, commit=older, date=1_000_000_000_000)
    bench = ["-b", "LinearSolveJVP.track_jvp"]
    assert main(["report", "--results-dir", str(results_dir), *bench]) == 0
    assert COMMIT in capsys.readouterr().out
    assert main(["report", "--results-dir", str(results_dir), *bench, "--commit", "0123"]) == 0
    assert older in capsys.readouterr().out


def test_several_environments_need_env(tmp_path, capsys):
    results_dir = copy_results(tmp_path)
    add_run(results_dir, env="virtualenv-py3.11-numpy2.4.6", date=2_000_000_000_000)
    bench = ["-b", "LinearSolveJVP.track_jvp"]
    assert main(["report", "--results-dir", str(results_dir), *bench]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--env" in err and "virtualenv-py3.11-numpy2.4.6" in err
    assert main(["report", "--results-dir", str(results_dir), *bench, "--env", "virtualenv-py3.11-numpy"]) == 0
    assert "virtualenv-py3.11-numpy2.4.6" in capsys.readouterr().out


def test_results_dir_from_asv_conf(tmp_path, monkeypatch, capsys):
    copy_results(tmp_path)
    conf = '{\n  // asv allows comments\n  "results_dir": "results"\n}'
    (tmp_path / "asv.conf.json").write_text(conf)
    monkeypatch.chdir(tmp_path)
    assert main(["report", "-b", "LinearSolveJVP.track_jvp"]) == 0
    assert os.path.join("results", MACHINE) in capsys.readouterr().out


# Errors: one line on stderr naming the argument, exit status 2 ------------------------------


@pytest.mark.parametrize(
    "args, argument, detail",
    [
        (["--results-dir", "/nonexistent/results"], "--results-dir", "/nonexistent/results"),
        (["--machine", "nosuchmachine"], "--machine", MACHINE),
        (["--benchmark", "NoSuchBenchmark"], "--benchmark", "NoSuchBenchmark"),
        (["--benchmark", "LinearSolveJVPDefault.track_jvp"], "--after", "records no 'optimised' variant"),
        (["--after", "nosuchvariant"], "--after", f"values: {', '.join(VARIANTS)}"),
        (["--before", "nosuchvariant"], "--before", "nosuchvariant"),
        (["--extra", "lineax,nosuchvariant"], "--extra", "nosuchvariant"),
        (["--commit", "ffff"], "--commit", f"{COMMIT[:8]}"),
        (["--env", "nosuchenv"], "--env", ENV),
        (["--rows", "nosuchparam"], "--rows", "nosuchparam"),
        (["--factor", "0.5"], "--factor", "0.5"),
    ],
)
def test_errors(capsys, args, argument, detail):
    if args[0] == "--results-dir":
        status = main(["report", *args, "-b", "X"])
        out, err = capsys.readouterr()
    else:
        status, out, err = run_report(
            capsys, *args, bench=() if args[0] == "--benchmark" else ("-b", "LinearSolveJVP.track_jvp")
        )
    assert status == 2
    assert out == ""
    assert err.count("\n") == 1
    assert err.startswith(f"perflab report: error: {argument}: ")
    assert detail in err


def test_several_machines_need_machine(tmp_path, capsys):
    results_dir = copy_results(tmp_path)
    other = results_dir / "gpu-box"
    other.mkdir()
    machine = json.loads((DATA / MACHINE / "machine.json").read_text()) | {"machine": "gpu-box"}
    (other / "machine.json").write_text(json.dumps(machine))
    bench = ["-b", "LinearSolveJVP.track_jvp"]
    assert main(["report", "--results-dir", str(results_dir), *bench]) == 2
    err = capsys.readouterr().err
    assert err.startswith("perflab report: error: --machine: ") and "gpu-box" in err and MACHINE in err
    assert main(["report", "--results-dir", str(results_dir), *bench, "--machine", MACHINE]) == 0


def test_empty_results_dir(tmp_path, capsys):
    assert main(["report", "--results-dir", str(tmp_path), "-b", "X"]) == 2
    assert capsys.readouterr().err.startswith("perflab report: error: --results-dir: ")


# The entry point --------------------------------------------------------------------------


def test_python_m_perflab():
    bare = subprocess.run([sys.executable, "-m", "perflab"], capture_output=True, text=True)
    assert bare.returncode == 2
    assert "report" in bare.stderr and "usage:" in bare.stderr
    helped = subprocess.run([sys.executable, "-m", "perflab", "report", "--help"], capture_output=True, text=True)
    assert helped.returncode == 0
    for option in (
        "--results-dir",
        "--machine",
        "--commit",
        "--env",
        "--benchmark",
        "--before",
        "--after",
        "--extra",
        "--factor",
        "--format",
        "--output",
    ):
        assert option in helped.stdout


# Study reports: docs/reports/<study>.toml -> .md -------------------------------------------

CELL = "{{cell:LinearSolveJVP.track_jvp[solver=lu,size=10,variant=fused]}}"
FIXTURE_SPEC = """\
title = "Fixture report"
commit = "{commit}"
machine = "vm-2core-xeon"
prose = "Fused at size 10: CELL."

[[sections]]
heading = "1. JVP"
benchmarks = ["LinearSolveJVP.track_jvp"]
extra = ["lineax"]

[[sections]]
heading = "2. Ratio"
benchmarks = ["LinearSolveJVP.track_jvp_over_primal"]
before = "lineax"
after = "fused"
rows = ["solver", "size"]

[[sections]]
heading = "Closing words"
prose = "No figures here."
""".replace("CELL", CELL)


def git(root, *args):
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def study_root(tmp_path, commit=COMMIT[:8], spec=FIXTURE_SPEC):
    root = tmp_path / "repo"
    (root / "docs" / "reports").mkdir(parents=True)
    (root / "docs" / "reports" / "linear_solve.toml").write_text(spec.format(commit=commit))
    return root


def sections(text):
    """heading -> body for every "## " section of a study report."""
    out, heading = {}, None
    for line in text.splitlines():
        if line.startswith("## "):
            heading = line[3:]
            out[heading] = []
        elif heading:
            out[heading].append(line)
    return {h: "\n".join(b) for h, b in out.items()}


def test_study_report_renders_one_header_and_every_section(tmp_path, monkeypatch, capsys):
    root = study_root(tmp_path)
    monkeypatch.chdir(root)
    assert main(["report", "--study", "linear_solve", "--results-dir", str(DATA)]) == 0
    assert "wrote docs/reports/linear_solve.md" in capsys.readouterr().out
    text = (root / "docs" / "reports" / "linear_solve.md").read_text()
    assert text.startswith("# Fixture report\n") and text.count("\n# ") == 0
    assert text.count("**Machine:**") == 1 and text.count("**Command:**") == 1
    assert "`python -m perflab report --study linear_solve`" in text
    assert list(sections(text)) == ["1. JVP", "2. Ratio", "Closing words"]
    # The placeholder is filled from the recorded value, with asv's unit formatting.
    fused = recorded(BENCH)[("lu", "10", "fused")][0]
    from asv.util import human_value

    assert f"Fused at size 10: {human_value(fused, 'seconds')}." in text
    body = sections(text)
    # Defaults from the recorded benchmarks.json: its baseline and optimised variants.
    assert f"BEFORE = variant {BEFORE}, AFTER = variant {AFTER}" in body["1. JVP"]
    assert "BEFORE = variant lineax, AFTER = variant fused" in body["2. Ratio"]
    assert body["Closing words"].strip() == "No figures here."
    assert "### LinearSolveJVP.track_jvp — solver=lu" in body["1. JVP"]
    assert "### LinearSolveJVP.track_jvp_over_primal\n" in body["2. Ratio"]
    # The tables are the single-report tables of the same run, byte for byte.
    _, single, _ = run_report(capsys, "--format", "markdown", "--extra", "lineax", "--commit", COMMIT[:8])
    for title in markdown_tables(single):
        table = single.split(f"## {title}\n")[1].split("\n## ")[0].strip()
        assert table in body["1. JVP"]
    # Outside a git repository the recorded commit cannot be placed in history: stale.
    assert f"**Status:** stale: recorded at {COMMIT[:8]}, a commit not in this" in text


def test_study_report_to_stdout_is_deterministic(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(study_root(tmp_path))
    args = ["report", "--study", "linear_solve", "--results-dir", str(DATA), "--output", "-"]
    assert main(args) == 0
    first = capsys.readouterr().out
    assert main(args) == 0
    assert capsys.readouterr().out == first and first.startswith("# Fixture report")


def test_default_roles_come_from_benchmarks_json(tmp_path, capsys):
    results_dir = copy_results(tmp_path)
    status = main(["report", "--results-dir", str(results_dir), "-b", "LinearSolveJVP.track_jvp"])
    assert status == 0 and f"BEFORE = variant {BEFORE}, AFTER = variant {AFTER}" in capsys.readouterr().out
    # A benchmarks.json without the optimised variant (recorded before the harness wrote it):
    # the spec or --after must name it.
    path = results_dir / "benchmarks.json"
    data = json.loads(path.read_text())
    del data[BENCH]["optimised"]
    path.write_text(json.dumps(data))
    assert main(["report", "--results-dir", str(results_dir), "-b", "LinearSolveJVP.track_jvp"]) == 2
    err = capsys.readouterr().err
    assert "--after: benchmarks.json records no 'optimised' variant for LinearSolveJVP.track_jvp" in err
    bench = ["-b", "LinearSolveJVP.track_jvp", "--after", "fused"]
    assert main(["report", "--results-dir", str(results_dir), *bench]) == 0


def test_report_imports_no_study_package(tmp_path):
    # Roles come from the recorded run, so reading results never imports JAX, torch or a study.
    code = (
        "import sys, os\n"
        "from perflab import report\n"
        "from perflab.report import pipeline, spec\n"
        "os.chdir(sys.argv[1])\n"
        "for one in spec.load_specs('.'):\n"
        "    pipeline.study_text(one, 'results', '.')\n"
        "studies = ('linear_solve', 'sde', 'delta_rule', 'tree_transforms', 'meanflow')\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('jax', 'torch', 'jaxlib')\n"
        "       or any(m.startswith(f'perflab.{s}') for s in studies)]\n"
        "print(bad)\n"
    )
    done = subprocess.run([sys.executable, "-c", code, str(ROOT)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_report_without_a_selection_lists_what_is_recorded(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    assert main(["report"]) == 0
    out = capsys.readouterr().out
    assert f"Recorded on machine {MACHINE}" in out and COMMIT[:8] in out
    for path in sorted((ROOT / "docs" / "reports").glob("*.toml")):
        assert f"python -m perflab report --study {path.stem}" in out
    assert main(["report", "--before", "x"]) == 2
    assert "--before: needs --benchmark" in capsys.readouterr().err


def make_history(tmp_path):
    """A git repository whose first commit is the recorded one, with results for it."""
    root = tmp_path / "repo"
    (root / "src" / "perflab" / "linear_solve").mkdir(parents=True)
    (root / "src" / "perflab" / "linear_solve" / "a.py").write_text("x = 1\n")
    git(root.parent, "init", "-q", str(root))
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "recorded")
    recorded_commit = git(root, "rev-parse", "HEAD")
    results_dir = copy_results(tmp_path)
    add_run(results_dir, commit=recorded_commit, date=2_000_000_000_000)
    (root / "docs" / "reports").mkdir(parents=True)
    (root / "docs" / "reports" / "linear_solve.toml").write_text(FIXTURE_SPEC.format(commit=recorded_commit[:8]))
    return root, results_dir, recorded_commit


def test_check_current_then_stale_then_drifted(tmp_path, monkeypatch, capsys):
    root, results_dir, recorded_commit = make_history(tmp_path)
    monkeypatch.chdir(root)
    results = ["--results-dir", str(results_dir)]
    assert main(["report", "--study", "linear_solve", *results]) == 0
    text = (root / "docs" / "reports" / "linear_solve.md").read_text()
    assert f"**Status:** current: no commit after {recorded_commit[:8]} changed" in text
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "report")  # touches no watched path
    capsys.readouterr()
    assert main(["report", "--check", *results]) == 0
    assert capsys.readouterr().out.startswith("linear_solve: current")

    (root / "src" / "perflab" / "linear_solve" / "a.py").write_text("x = 2\n")
    git(root, "commit", "-q", "-am", "change the study")
    later = git(root, "log", "-1", "--abbrev=8", "--format=%h")
    assert main(["report", "--check", *results]) == 1
    out = capsys.readouterr().out
    assert f"linear_solve: stale: recorded at {recorded_commit[:8]} (" in out
    assert f"later changes: {later}" in out
    assert "linear_solve: drifted: " in out  # the header's Status line changed too
    assert main(["report", "--study", "linear_solve", *results]) == 0
    regenerated = (root / "docs" / "reports" / "linear_solve.md").read_text()
    assert f"**Status:** stale: recorded at {recorded_commit[:8]} (" in regenerated
    assert f"later changes: {later}\n" in regenerated
    capsys.readouterr()
    assert main(["report", "--check", *results]) == 1
    out = capsys.readouterr().out
    assert "stale" in out and "drifted" not in out

    # A hand edit of the generated file is drift.
    edited = regenerated.replace("**Status:**", "**Status (edited):**")
    (root / "docs" / "reports" / "linear_solve.md").write_text(edited)
    assert main(["report", "--check", *results]) == 1
    assert "linear_solve: drifted: docs/reports/linear_solve.md differs" in capsys.readouterr().out


def test_check_without_results_says_why(tmp_path, monkeypatch, capsys):
    root, _, _ = make_history(tmp_path)
    monkeypatch.chdir(root)
    assert main(["report", "--check", "--results-dir", str(tmp_path / "none")]) == 1
    out = capsys.readouterr().out
    assert "linear_solve: not regenerated: " in out and "no asv results directory" in out
    assert "stale" not in out  # the named commit is still checked against git: current


# Study reports on bad input: one line naming the spec and what is missing -------------------


def study_error(capsys, root, monkeypatch, results_dir):
    monkeypatch.chdir(root)
    status = main(["report", "--study", "linear_solve", "--results-dir", str(results_dir)])
    out, err = capsys.readouterr()
    assert status == 2 and out == "" and err.count("\n") == 1
    spec = os.path.join("docs", "reports", "linear_solve.toml")
    assert err.startswith(f"perflab report: error: {spec}: ")
    return err


def test_study_on_empty_results_dir(tmp_path, monkeypatch, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    err = study_error(capsys, study_root(tmp_path), monkeypatch, empty)
    assert "--results-dir" in err and "no <machine>/machine.json" in err


def test_study_on_missing_commit(tmp_path, monkeypatch, capsys):
    err = study_error(capsys, study_root(tmp_path, commit="ffffffff"), monkeypatch, DATA)
    assert "--commit" in err and "'ffffffff'" in err and f"machine '{MACHINE}'" in err
    assert "recorded: " in err and COMMIT[:8] in err


def test_study_on_missing_machine(tmp_path, monkeypatch, capsys):
    spec = FIXTURE_SPEC.replace(f'machine = "{MACHINE}"', 'machine = "gpu-box"')
    err = study_error(capsys, study_root(tmp_path, spec=spec), monkeypatch, DATA)
    assert "--machine" in err and "'gpu-box'" in err and MACHINE in err


def test_study_on_missing_benchmark(tmp_path, monkeypatch, capsys):
    spec = FIXTURE_SPEC.replace('"LinearSolveJVP.track_jvp"]', '"NoSuchClass.track_jvp"]')
    err = study_error(capsys, study_root(tmp_path, spec=spec), monkeypatch, DATA)
    assert "section 1 (1. JVP): --benchmark" in err and "'NoSuchClass.track_jvp'" in err
    assert f"commit {COMMIT[:8]}" in err


def test_study_on_partial_results_without_benchmarks_json(tmp_path, monkeypatch, capsys):
    results_dir = copy_results(tmp_path)
    (results_dir / "benchmarks.json").unlink()
    err = study_error(capsys, study_root(tmp_path), monkeypatch, results_dir)
    assert "benchmarks.json" in err and BENCH in err and "just-discover" in err


def test_study_on_foreign_results_files(tmp_path, monkeypatch, capsys):
    results_dir = copy_results(tmp_path)
    for path in (results_dir / MACHINE).glob("*.json"):
        if path.name != "machine.json":
            path.unlink()
    (results_dir / MACHINE / "other-tool.json").write_text('{"hello": 1}')
    err = study_error(capsys, study_root(tmp_path), monkeypatch, results_dir)
    assert "--machine" in err and "other-tool.json not readable as asv results" in err


def test_benchmark_without_any_value_is_an_error(tmp_path, capsys):
    results_dir = copy_results(tmp_path)
    path = results_dir / MACHINE / RESULTS_FILE.name
    data = json.loads(path.read_text())
    column = data["result_columns"].index("result")
    entry = data["results"][BENCH]
    entry[column] = [None] * len(entry[column])
    path.write_text(json.dumps(data))
    assert main(["report", "--results-dir", str(results_dir), "-b", "LinearSolveJVP.track_jvp"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("perflab report: error: --benchmark: ")
    assert "LinearSolveJVP.track_jvp holds no value" in err and f"commit {COMMIT[:8]}" in err


@pytest.mark.parametrize(
    "spec, detail",
    [
        ('title = "x"\ncolour = 1\n[[sections]]\nheading = "h"\n', "unknown key(s) colour"),
        ('[[sections]]\nheading = "h"\n', "needs a title"),
        ('title = "x"\n', "needs at least one [[sections]]"),
        ('title = "x"\n[[sections]]\nbenchmarks = ["A"]\n', "section 1: needs a heading"),
        ('title = "x"\n[[sections]]\nheading = "h"\nrows = 3\n', "section 1: rows must be"),
        ('title = "x"\nfactor = 0.5\n[[sections]]\nheading = "h"\n', "factor must be"),
        ("title = \n", "not valid TOML"),
    ],
)
def test_bad_specs(tmp_path, monkeypatch, capsys, spec, detail):
    root = study_root(tmp_path)
    (root / "docs" / "reports" / "linear_solve.toml").write_text(spec)
    err = study_error(capsys, root, monkeypatch, DATA)
    assert detail in err


def test_unknown_study_and_table_options_with_study(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(study_root(tmp_path))
    assert main(["report", "--study", "nosuch"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("perflab report: error: --study: ") and "specs: linear_solve" in err
    assert main(["report", "--study", "linear_solve", "--before", "x"]) == 2
    assert "--before: not used with --study" in capsys.readouterr().err


def test_committed_results_are_found_before_asv_default(tmp_path, monkeypatch, capsys):
    # results/ at the root wins over asv.conf.json's results_dir and .asv/results.
    copy_results(tmp_path)
    (tmp_path / "asv.conf.json").write_text('{"results_dir": "elsewhere"}')
    monkeypatch.chdir(tmp_path)
    assert main(["report", "-b", "LinearSolveJVP.track_jvp"]) == 0
    assert os.path.join("results", MACHINE) in capsys.readouterr().out


@pytest.mark.parametrize(
    "command",
    [
        ["report", "-b", "LinearSolveJVP.track_jvp"],
        ["calibrate", "--across-commits", "identical", "--pairs", "a:b", "--machine", MACHINE],
    ],
    ids=["report", "calibrate"],
)
def test_unreadable_config_is_one_line_naming_it(tmp_path, monkeypatch, capsys, command):
    # No results/ and an asv.conf.json that is not JSON: one line naming the file, exit 2,
    # never a parser traceback.
    (tmp_path / "asv.conf.json").write_text("{not json")
    monkeypatch.chdir(tmp_path)
    assert main(command) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"perflab {command[0]}: error: ") and "asv.conf.json is not valid JSON" in line


# The repository's own specs ---------------------------------------------------------------

REPO_SPECS = sorted((ROOT / "docs" / "reports").glob("*.toml"))


@pytest.mark.parametrize("path", REPO_SPECS, ids=lambda p: p.stem)
def test_repository_spec_names_real_benchmarks_and_variants(path):
    spec = report.load_spec(str(path))
    bench = (ROOT / "benchmarks" / f"bench_{spec.study}.py").read_text()
    module = importlib.import_module(f"benchmarks.bench_{spec.study}")
    assert spec.commit != "newest", "a committed report names its recorded commit"
    for section in spec.sections:
        for pattern in section.benchmarks:
            cls, _, method = pattern.partition(".")
            assert isinstance(getattr(module, cls, None), type), (section.heading, pattern)
            if method:  # interleaved classes generate their track methods
                assert callable(getattr(getattr(module, cls), method, None)), (section.heading, pattern)
        for variant in [section.before, section.after, *section.extra]:
            if variant is not None:
                twin = variant == "control"  # the benchmark's own identical-code twin
                quoted = twin or f'"{variant}"' in bench or f"'{variant}'" in bench
                registered = any(variant in op.variants for op in variants.for_study(spec.study))
                assert quoted or registered, (section.heading, variant)


@pytest.mark.parametrize("path", REPO_SPECS, ids=lambda p: p.stem)
def test_repository_report_regenerates_byte_for_byte(path):
    results_dir = ROOT / "results"
    if not results_dir.is_dir():
        pytest.skip(
            f"{path.stem}: no committed results (results/ absent at the repository root); "
            f"docs/reports/{path.stem}.md cannot be regenerated until they are committed"
        )
    spec = report.load_spec(os.path.relpath(path, ROOT))
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        text = report.study_text(spec, "results", ".")
    finally:
        os.chdir(cwd)
    committed = (ROOT / "docs" / "reports" / f"{path.stem}.md").read_text(encoding="utf-8")
    assert text == committed, f"docs/reports/{path.stem}.md differs from `{spec.command}`"


def test_harness_and_pinned_versions_make_reports_stale(tmp_path):
    root = tmp_path / "repo"
    (root / "benchmarks").mkdir(parents=True)
    (root / "benchmarks" / "_interleave.py").write_text("x = 1\n")
    (root / "asv.conf.json").write_text(
        '{\n  // pins\n  "matrix": {"req": {"jax": "0.1"}},\n  "pythons": ["3.11"]\n}\n'
    )
    git(root.parent, "init", "-q", str(root))
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "recorded")
    recorded_commit = git(root, "rev-parse", "HEAD")

    def later():
        return report.staleness(str(root), recorded_commit, "linear_solve").later

    (root / "asv.conf.json").write_text('{\n  "matrix": {"req": {"jax": "0.1"}},\n  "pythons": ["3.12"]\n}\n')
    git(root, "commit", "-q", "-am", "not the pinned versions")
    (root / "README").write_text("words\n")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "unrelated")
    assert later() == ()
    (root / "benchmarks" / "_new_harness.py").write_text("y = 1\n")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "a new harness module")
    harness = git(root, "log", "-1", "--abbrev=8", "--format=%h")
    assert later() == (harness,)
    (root / "asv.conf.json").write_text('{\n  "matrix": {"req": {"jax": "0.2"}},\n  "pythons": ["3.12"]\n}\n')
    git(root, "commit", "-q", "-am", "a new pin")
    pin = git(root, "log", "-1", "--abbrev=8", "--format=%h")
    assert later() == (pin, harness)
