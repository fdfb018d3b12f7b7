import http.server
import os
import pathlib
import shutil
import sys

# The thread pools and host devices are set in one place, shared with the asv suite, before
# numpy, BLAS or JAX load (so the import order below is deliberate).
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
# isort: off
import benchmarks._env  # noqa: F401
import jax
import numpy as np
import pytest

# isort: on

# The benchmark modules (imported while collecting test_benchmarks.py) default equinox's runtime
# checks to NaN-on-error, as their timings were specified; equinox reads the variable once, at
# import, so without this the whole session would run in that mode and the tests that expect
# an error would see NaN. The NaN mode is tested in subprocesses where it is the subject.
os.environ.setdefault("EQX_ON_ERROR", "raise")

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_dtype_promotion", "strict")


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture
def key():
    return jax.random.key(1234)


def _chromium():
    for candidate in (os.environ.get("PERFLAB_CHROMIUM"), "chromium", "chromium-browser"):
        if candidate and shutil.which(candidate):
            return shutil.which(candidate)
    return None


@pytest.fixture(scope="module")
def chromium():
    """Headless Chromium through playwright; skips (or fails in CI) when either is missing."""
    playwright = pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed (pip install playwright)"
    )
    executable = _chromium()
    if executable is None:
        # CI installs Chromium and sets PERFLAB_REQUIRE_BROWSER=1: there a missing browser is a
        # failed install, not a reason to skip.
        if os.environ.get("PERFLAB_REQUIRE_BROWSER") == "1":
            pytest.fail("PERFLAB_REQUIRE_BROWSER=1 but no Chromium executable was found")
        pytest.skip("no Chromium executable (apt-get install chromium, or set PERFLAB_CHROMIUM)")
    with playwright.sync_playwright() as p:
        # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start.
        browser = p.chromium.launch(executable_path=executable, headless=True, args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture
def page(chromium):
    """A fresh page; `page.errors` collects page errors and console errors."""
    page = chromium.new_page(viewport={"width": 1280, "height": 900})
    page.errors = []
    page.on("pageerror", lambda e: page.errors.append(f"pageerror: {e}"))
    page.on(
        "console",
        lambda m: page.errors.append(f"console: {m.text}") if m.type == "error" else None,
    )
    yield page
    page.close()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass
