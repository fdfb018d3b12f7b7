"""`python -m perflab dashboard`: `asv publish`, made to work without internet access.

asv 0.6.6's published `index.html` loads jQuery, flot, bootstrap and three small plugins from
CDNs; without network access (CI, the GPU machine, air-gapped clusters) the page shows only
"external dependencies failed to load". This command publishes as usual, copies the same
libraries (kept in `perflab/_www/`) next to the page and points every CDN reference at them.
An `index.html` referring to a CDN file not known here is an error, so a newer asv that adds a
dependency is noticed instead of leaving a half-working page.

It also mends asv's graph of a string parameter (`#bench?x-axis=variant`, the view that compares
variants): asv 0.6.6 draws it as bars on flot's category axis, ordered side by side by
flot-orderbars 1.0.0, which measures the axis from the raw labels, gets NaN and draws nothing
once two or more series are shown (with the CDN too). perflab's own flot plugin
(`perflab/_www/perflab.flot.categorybars.js`), loaded right after orderBars, places those bars
instead; the third-party files stay unmodified.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from importlib import resources

from . import _asv

VENDOR_DIR = "vendor"
# CDN address (as asv 0.6.6 writes it) -> the file in perflab/_www that replaces it.
CDN_FILES = {
    "https://code.jquery.com/jquery-3.3.1.min.js": "jquery-3.3.1.min.js",
    "https://cdnjs.cloudflare.com/ajax/libs/flot/0.8.3/jquery.flot.min.js": "jquery.flot-0.8.3.js",
    "https://cdnjs.cloudflare.com/ajax/libs/flot/0.8.3/jquery.flot.time.min.js": "jquery.flot.time-0.8.3.js",
    "https://cdnjs.cloudflare.com/ajax/libs/flot/0.8.3/jquery.flot.selection.min.js": "jquery.flot.selection-0.8.3.js",
    "https://cdnjs.cloudflare.com/ajax/libs/flot/0.8.3/jquery.flot.categories.min.js": (
        "jquery.flot.categories-0.8.3.js"
    ),
    "https://cdn.jsdelivr.net/npm/flot-orderbars@1.0.0/js/jquery.flot.orderBars.js": "jquery.flot.orderBars-1.0.0.js",
    "https://cdnjs.cloudflare.com/ajax/libs/stupidtable/1.0.1/stupidtable.min.js": "stupidtable-1.1.3.min.js",
    "https://cdnjs.cloudflare.com/ajax/libs/blueimp-md5/2.19.0/js/md5.min.js": "md5-2.19.0.min.js",
    "https://cdn.jsdelivr.net/npm/bootstrap@3.1.1/dist/js/bootstrap.min.js": "bootstrap-3.1.1.min.js",
    "https://cdn.jsdelivr.net/npm/bootstrap@3.1.1/dist/css/bootstrap.min.css": "bootstrap-3.1.1.min.css",
}
_TAG = re.compile(r"<(script|link)\b[^>]*>", re.IGNORECASE)
_URL = re.compile(r'\b(src|href)="(https?://[^"]+)"')
ORDERBARS = "jquery.flot.orderBars-1.0.0.js"
CATEGORY_BARS = "perflab.flot.categorybars.js"
_ORDERBARS_TAG = re.compile(
    r'<script\b[^>]*"' + re.escape(f"{VENDOR_DIR}/{ORDERBARS}") + r'"[^>]*>\s*</script>',
    re.IGNORECASE,
)
# Subresource-integrity hashes name the CDN's minified builds; the local copies are verified by
# being shipped in the package instead.
_CDN_ATTRS = re.compile(r'\s+(integrity|crossorigin|referrerpolicy)="[^"]*"')


class DashboardError(_asv.PerflabError):
    """A user error, printed as one line naming the argument at fault."""


def make_offline(html_dir: str) -> list[str]:
    """Point the published pages in `html_dir` at local copies of their CDN files.

    A page that loads flot-orderbars also gets perflab's category-bars plugin right after it
    (see the module docstring), copied next to the page.

    Arguments:
        html_dir: the directory `asv publish` wrote.

    Returns:
        The CDN addresses replaced, in page order.

    Raises:
        DashboardError: when `html_dir` has no ``index.html`` or a page loads a CDN file that
            has no local copy.
    """
    index = os.path.join(html_dir, "index.html")
    if not os.path.isfile(index):
        raise DashboardError("--html-dir", f"no index.html in {html_dir!r} (run `asv publish`)")
    vendor = os.path.join(html_dir, VENDOR_DIR)
    os.makedirs(vendor, exist_ok=True)
    www = resources.files("perflab") / "_www"
    replaced = []
    for name in sorted(os.listdir(html_dir)):
        if not name.endswith(".html"):
            continue
        path = os.path.join(html_dir, name)
        with open(path, encoding="utf-8") as f:
            page = f.read()

        def local(tag_match, name=name):
            tag = tag_match.group(0)
            url = _URL.search(tag)
            if url is None or tag_match.group(1).lower() == "link" and "stylesheet" not in tag:
                return tag
            address = url.group(2)
            if address not in CDN_FILES:
                raise DashboardError(
                    "--html-dir",
                    f"{name} loads {address}, which has no local copy in perflab/_www",
                )
            target = CDN_FILES[address]
            with resources.as_file(www / target) as source:
                shutil.copyfile(source, os.path.join(vendor, target))
            replaced.append(address)
            tag = tag.replace(url.group(0), f'{url.group(1)}="{VENDOR_DIR}/{target}"')
            return _CDN_ATTRS.sub("", tag)

        rewritten = _TAG.sub(local, page)
        if CATEGORY_BARS not in rewritten:
            rewritten, added = _ORDERBARS_TAG.subn(
                lambda m: f'{m.group(0)}\n    <script src="{CATEGORY_BARS}"></script>', rewritten
            )
            if added:
                with resources.as_file(www / CATEGORY_BARS) as source:
                    shutil.copyfile(source, os.path.join(html_dir, CATEGORY_BARS))
        if rewritten != page:
            with open(path, "w", encoding="utf-8") as f:
                f.write(rewritten)
    return replaced


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register the ``dashboard`` subcommand.

    Arguments:
        subparsers: the object returned by `argparse.ArgumentParser.add_subparsers`.

    Returns:
        The subcommand's parser.
    """
    parser = subparsers.add_parser(
        "dashboard",
        help="asv publish, with the page's JavaScript served locally (works offline)",
        description=(
            "Run `asv publish`, then copy the dashboard's JavaScript/CSS next to index.html and "
            "point the page at it, so `asv preview` works without internet access."
        ),
    )
    parser.add_argument("--config", default="asv.conf.json", help="asv configuration file")
    parser.add_argument("--html-dir", help="the published directory (default: html_dir of --config)")
    parser.add_argument("--no-publish", action="store_true", help="only rewrite an already published directory")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Run the ``dashboard`` subcommand.

    Arguments:
        args: the parsed arguments (see `add_parser`).

    Returns:
        The exit status: 0, or asv publish's when it fails.

    Raises:
        DashboardError: on a user error (printed as one line, exit 2).
    """
    html_dir = args.html_dir
    if html_dir is None:
        if not os.path.isfile(args.config):
            raise DashboardError("--config", f"no asv configuration at {args.config!r}")
        conf = _asv.load_config(args.config)
        root = os.path.dirname(os.path.abspath(args.config))
        html_dir = os.path.join(root, conf.get("html_dir", "html"))
    if not args.no_publish:
        done = subprocess.run([sys.executable, "-m", "asv", "publish", "--config", args.config])
        if done.returncode != 0:
            return done.returncode
    replaced = make_offline(html_dir)
    print(f"{html_dir}: {len(replaced)} CDN references served locally; view with `asv preview`")
    return 0
