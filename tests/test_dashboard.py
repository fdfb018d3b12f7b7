"""The asv dashboard: published from the results fixture, made offline, browsed in Chromium."""

from __future__ import annotations

import functools
import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from perflab import dashboard
from perflab.__main__ import main

from .conftest import QuietHandler

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "data" / "asv_results"
GRAPH = "bench_linear_solve.LinearSolveJVP.time_jvp"
CATEGORIES = "https://cdnjs.cloudflare.com/ajax/libs/flot/0.8.3/jquery.flot.categories.min.js"


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """`asv publish` of the fixture results into a temporary html directory, made offline."""
    tmp = tmp_path_factory.mktemp("dashboard")
    conf = json.loads(
        "\n".join(
            line for line in (ROOT / "asv.conf.json").read_text().splitlines() if not line.lstrip().startswith("//")
        )
    )
    results = tmp / "results"
    shutil.copytree(RESULTS, results)
    conf |= {
        "repo": str(ROOT),
        "benchmark_dir": str(ROOT / "benchmarks"),
        "results_dir": str(results),
        "html_dir": str(tmp / "html"),
    }
    config = tmp / "asv.conf.json"
    config.write_text(json.dumps(conf))
    done = subprocess.run(
        [sys.executable, "-m", "perflab", "dashboard", "--config", str(config)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "10 CDN references served locally" in done.stdout
    return tmp / "html"


def test_every_cdn_reference_points_at_a_shipped_copy(published):
    page = (published / "index.html").read_text()
    assert "cdn" not in page and "integrity=" not in page
    for target in dashboard.CDN_FILES.values():
        assert f'"vendor/{target}"' in page
        assert (published / "vendor" / target).stat().st_size > 1000


def test_unknown_cdn_file_is_an_error(tmp_path, capsys):
    (tmp_path / "index.html").write_text(
        '<html><script src="https://cdn.example.org/new-dependency.js"></script></html>'
    )
    assert main(["dashboard", "--no-publish", "--html-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("perflab dashboard: error: --html-dir: ")
    assert "https://cdn.example.org/new-dependency.js" in err


def test_missing_index_is_an_error(tmp_path, capsys):
    assert main(["dashboard", "--no-publish", "--html-dir", str(tmp_path)]) == 2
    assert "no index.html" in capsys.readouterr().err


@pytest.fixture(scope="module")
def server(published):
    handler = functools.partial(QuietHandler, directory=str(published))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


# Pixels of the plot canvas that are neither transparent nor white: drawn axes, grid and points.
_INK = """canvas => {
    const d = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
    let ink = 0, colours = new Set();
    for (let i = 0; i < d.length; i += 4) {
        if (d[i + 3] > 0 && !(d[i] > 250 && d[i + 1] > 250 && d[i + 2] > 250)) {
            ink++; colours.add(d[i] + ',' + d[i + 1] + ',' + d[i + 2]);
        }
    }
    return [ink, colours.size];
}"""


def _screenshot(page, tmp_path, name):
    shot = Path(os.environ.get("PERFLAB_SCREENSHOT_DIR", tmp_path)) / name
    shot.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shot))
    assert shot.stat().st_size > 10_000


def test_dashboard_draws_a_graph_without_javascript_errors(server, page, tmp_path):
    page.goto(f"{server}/index.html")
    page.wait_for_selector(f"[id='summarygrid-{GRAPH}'] canvas.flot-base", timeout=30_000)
    assert "failed to load" not in page.inner_text("body")

    page.goto(f"{server}/index.html#{GRAPH}")
    canvas = page.wait_for_selector("#main-graph canvas.flot-base", timeout=30_000)
    page.wait_for_timeout(500)
    width, height = canvas.evaluate("c => [c.width, c.height]")
    assert width > 300 and height > 200
    ink, colours = canvas.evaluate(_INK)
    assert ink > 1000 and colours > 3, (ink, colours)  # axes plus coloured series
    legend = page.locator("#main-graph .legend td.legendLabel").all_inner_texts()
    assert legend and all("variant-" in label for label in legend)
    _screenshot(page, tmp_path, "dashboard.png")
    assert page.errors == []


def test_category_bars_plugin_loads_after_orderbars(published):
    page = (published / "index.html").read_text()
    order = [
        page.index(f'"vendor/{dashboard.CDN_FILES[CATEGORIES]}"'),
        page.index(f'"vendor/{dashboard.ORDERBARS}"'),
        page.index(f'<script src="{dashboard.CATEGORY_BARS}"></script>'),
        page.index('src="graphdisplay.js"'),
    ]
    assert order == sorted(order)
    assert page.count(dashboard.CATEGORY_BARS) == 1
    assert (published / dashboard.CATEGORY_BARS).stat().st_size > 1000


def test_make_offline_twice_adds_the_plugin_once(published, tmp_path):
    html = tmp_path / "html"
    shutil.copytree(published, html)
    before = (html / "index.html").read_text()
    assert dashboard.make_offline(str(html)) == []
    assert (html / "index.html").read_text() == before


# Each bar the plot holds, where flot puts it: [series, category label, x and y of the bar's
# middle in canvas pixels, the colour there]. The x is flot's own (after the bar-ordering
# plugins), so a bar flot cannot place (NaN) reads as not drawn.
_BARS = """() => {
    const plot = $('#main-graph').data('plot');
    const canvas = document.querySelector('#main-graph canvas.flot-base');
    const ctx = canvas.getContext('2d');
    const ratio = canvas.width / $(canvas).width();
    const off = plot.getPlotOffset();
    const labels = {};
    for (const [label, index] of Object.entries(plot.getAxes().xaxis.categories || {})) {
        labels[index] = label;
    }
    const bars = [];
    plot.getData().forEach((s, k) => {
        const pts = s.datapoints.points, ps = s.datapoints.pointsize;
        s.data.forEach((raw, j) => {
            if (raw[1] === null) return;
            const x = pts[j * ps], y = pts[j * ps + 1];
            const cx = Math.round((off.left + s.xaxis.p2c(x)) * ratio);
            const cy = Math.round((off.top + s.yaxis.p2c(y / 2)) * ratio);
            const p = Number.isFinite(cx) && Number.isFinite(cy)
                ? Array.from(ctx.getImageData(cx, cy, 1, 1).data) : null;
            bars.push([k, raw[0], x, p]);
        });
    });
    return {bars: bars, series: plot.getData().length,
            ticks: $('#main-graph .flot-x-axis .flot-tick-label').map(
                (i, e) => $(e).text()).get()};
}"""


def test_variant_view_draws_a_bar_per_variant(server, page, tmp_path):
    # asv's graph of a string parameter: bars on a category axis, one per series and variant.
    page.goto(f"{server}/index.html#{GRAPH}?x-axis=variant")
    canvas = page.wait_for_selector("#main-graph canvas.flot-base", timeout=30_000)
    page.wait_for_timeout(500)
    variants = json.loads((RESULTS / "benchmarks.json").read_text())[GRAPH]["params"][2]
    variants = [v.strip("'") for v in variants]
    drawn = page.evaluate(_BARS)
    assert drawn["ticks"] == variants, drawn["ticks"]  # every variant, in the suite's order
    assert drawn["series"] >= 2  # the case that drew nothing: several series side by side
    bars = drawn["bars"]
    assert {variant for _, variant, _, _ in bars} == set(variants)
    not_drawn = [bar for bar in bars if bar[3] is None or bar[3][3] == 0 or min(bar[3][:3]) > 250]
    assert not not_drawn, not_drawn  # every bar's middle is inked
    for variant in variants:
        here = sorted((x, k) for k, v, x, _ in bars if v == variant)
        # side by side: each series at its own x, the colours of neighbouring bars differ
        assert len({x for x, _ in here}) == len(here), (variant, here)
        colours = {tuple(p) for _, v, _, p in bars if v == variant}
        assert len(colours) == len(here), (variant, colours)
    ink, colours = canvas.evaluate(_INK)
    assert ink > 20_000 and colours > drawn["series"], (ink, colours)
    _screenshot(page, tmp_path, "dashboard-variant.png")
    assert page.errors == []
