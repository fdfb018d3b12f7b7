"""asv's published regressions page lists regressions: timings that got slower, never companions
(fingerprints, flops, bytes, errors, compile times) and never a rate that improved. Read from
the regressions.json asv publishes and from the page itself, rendered in Chromium."""

from __future__ import annotations

import copy
import functools
import http.server
import json
import pathlib
import shutil
import subprocess
import sys
import threading

import pytest

from .conftest import QuietHandler

ROOT = pathlib.Path(__file__).resolve().parents[1]
TEMPLATE = "bench_linear_solve.LinearSolveJVP.track_jvp"
NAMES = {
    "bench_x.Solve.track_jvp": [1.0, 1.0, 1.0, 1.5, 1.5, 1.5],  # 50% slower: a regression
    "bench_x.Solve.track_jvp_flops": [1.0, 1.0, 1.0, 2.0, 2.0, 2.0],  # a changed program: news, not a regression
    "bench_x.Solve.track_jvp_compile": [1.0, 1.0, 1.0, 2.0, 2.0, 2.0],
    "bench_x.Solve.track_jvp_fingerprint": [1.0, 1.0, 1.0, 9.0, 9.0, 9.0],
    "bench_x.Solve.track_jvp_error": [0.0, 0.0, 0.0, 1e-14, 1e-14, 1e-14],
    "bench_x.Rate.track_seconds_per_gflop": [2.0, 2.0, 2.0, 1.0, 1.0, 1.0],  # a rate that improved
}


def _commits(n):
    out = subprocess.run(["git", "rev-list", f"--max-count={n}", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    commits = out.stdout.split()[::-1]
    if len(commits) < n:
        pytest.skip(f"needs {n} commits of history")
    return commits


def _publish(tmp_path, results):
    # `perflab dashboard`: asv publish, with the page's scripts served locally (no CDN).
    conf = json.loads((ROOT / "asv.conf.json").read_text())
    conf |= {
        "repo": str(ROOT),
        "benchmark_dir": str(ROOT / "benchmarks"),
        "results_dir": str(results),
        "html_dir": str(tmp_path / "html"),
    }
    (tmp_path / "asv.json").write_text(json.dumps(conf))
    done = subprocess.run(
        [sys.executable, "-m", "perflab", "dashboard", "--config", str(tmp_path / "asv.json")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads((tmp_path / "html" / "regressions.json").read_text())["regressions"]


def _history(tmp_path):
    # Six commits of synthetic results: each figure steps once, between the third and fourth.
    commits = _commits(6)
    results = tmp_path / "results"
    (results / "m").mkdir(parents=True)
    shutil.copy(ROOT / "results" / "vm-2core-xeon" / "machine.json", results / "m" / "machine.json")
    machine = json.loads((results / "m" / "machine.json").read_text()) | {"machine": "m"}
    (results / "m" / "machine.json").write_text(json.dumps(machine))
    known = json.loads((ROOT / "results" / "benchmarks.json").read_text())
    template = known[TEMPLATE]
    benchmarks = {"version": known["version"]}
    for name in NAMES:
        entry = copy.deepcopy(template) | {"name": name, "params": [], "param_names": []}
        benchmarks[name] = entry
    (results / "benchmarks.json").write_text(json.dumps(benchmarks))
    columns = ["result", "params", "version", "started_at", "duration"]
    for i, commit in enumerate(commits):
        run = {
            "commit_hash": commit,
            "env_name": "existing-py",
            "date": 1_700_000_000_000 + i * 1000,
            "params": {"machine": "m", "python": "3.11"},
            "python": "3.11",
            "requirements": {},
            "env_vars": {},
            "result_columns": columns,
            "results": {n: [[v[i]], [], template["version"], 1_700_000_000_000, 1.0] for n, v in NAMES.items()},
            "durations": {},
            "version": 2,
        }
        (results / "m" / f"{commit[:8]}-existing-py.json").write_text(json.dumps(run))
    return results


def _is_companion(name):
    return (
        name.rsplit(".", 1)[-1]
        .split("(")[0]
        .endswith(("_flops", "_bytes", "_fingerprint", "_error", "_compile", "_chunk", "_cores"))
    )


def test_regressions_page_lists_slower_timings_only(tmp_path):
    listed = {row[0] for row in _publish(tmp_path, _history(tmp_path))}
    assert listed == {"bench_x.Solve.track_jvp"}, listed


def _rendered_rows(page, html):
    # The benchmark names in the rows of the regressions page's (not ignored) table.
    handler = functools.partial(QuietHandler, directory=str(html))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        page.goto(f"http://127.0.0.1:{httpd.server_address[1]}/index.html#/regressions")
        page.wait_for_selector("#regressions-body table", state="attached", timeout=30_000)
        page.wait_for_timeout(500)
        return page.locator("#regressions-body table:not(.ignored) > tbody > tr > td:first-child").all_inner_texts()
    finally:
        httpd.shutdown()


def test_the_rendered_regressions_page_shows_the_slower_timing_alone(tmp_path, page):
    _publish(tmp_path, _history(tmp_path))
    rows = _rendered_rows(page, tmp_path / "html")
    assert rows == ["bench_x.Solve.track_jvp"], rows
    assert page.errors == []


def test_the_committed_results_publish_no_companion_regression(tmp_path):
    results = tmp_path / "results"
    shutil.copytree(ROOT / "results", results)
    rows = _publish(tmp_path, results)
    companions = [r[0] for r in rows if _is_companion(r[0])]
    assert not companions, companions


def test_the_rendered_regressions_page_of_the_committed_results_holds_no_companion(tmp_path, page):
    results = tmp_path / "results"
    shutil.copytree(ROOT / "results", results)
    entries = _publish(tmp_path, results)
    rows = _rendered_rows(page, tmp_path / "html")
    # The page shows what regressions.json lists (one row per jump of each listed figure: a
    # figure whose history steps twice has two rows), and no companion.
    jumps = [r[0] for r in entries for _ in (r[6] or [])]
    assert sorted(rows) == sorted(jumps), (rows, jumps)
    assert not [r for r in rows if _is_companion(r)], rows
    assert page.errors == []
