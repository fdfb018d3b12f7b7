"""`python -m perflab report`: BEFORE/AFTER tables of variants from recorded asv results.

The report reads what `asv run` recorded for one machine, commit and environment, and pairs
two values of a benchmark's ``variant`` parameter (BEFORE and AFTER) row by row, with optional
extra variant columns and the best variant of each row. Values, samples and statistics come
from asv's own loader (through `perflab._asv`); a pair is judged by `compare.judge` (today
exactly `asv compare`'s rule). Study reports (``docs/reports/<study>.toml`` -> ``.md``) are
described in `perflab.report.spec`; staleness and drift checks in `perflab.report.check`.

Modules: `locate` (results, machines, commits, one run), `compare` (cells and the judging
rule), `tables` (rows and tables), `render` (Markdown and text), `spec` (study reports),
`check` (stale and drifted reports), `cli` (the command line).
"""

from .._asv import PerflabError as PerflabError
from .._asv import ReportError as ReportError
from .._asv import default_results_dir as default_results_dir
from .check import check_spec as check_spec
from .check import staleness as staleness
from .cli import add_parser as add_parser
from .cli import run as run
from .compare import DEFAULT_FACTOR as DEFAULT_FACTOR
from .compare import FASTER as FASTER
from .compare import MISSING as MISSING
from .compare import NOISE as NOISE
from .compare import NOISE_MARK as NOISE_MARK
from .compare import SLOWER as SLOWER
from .compare import UNTESTED as UNTESTED
from .compare import UNTESTED_MARK as UNTESTED_MARK
from .compare import Cell as Cell
from .compare import Comparison as Comparison
from .compare import best as best
from .compare import compare as compare
from .compare import higher_is_better as higher_is_better
from .compare import judge as judge
from .locate import RecordedRun as RecordedRun
from .locate import current_machine as current_machine
from .locate import load_run as load_run
from .locate import match_benchmarks as match_benchmarks
from .locate import recorded_machines as recorded_machines
from .locate import short_name as short_name
from .render import FORMATS as FORMATS
from .render import RENDERERS as RENDERERS
from .render import render_markdown as render_markdown
from .render import render_text as render_text
from .spec import Section as Section
from .spec import Spec as Spec
from .spec import build_study as build_study
from .spec import load_spec as load_spec
from .spec import render_study as render_study
from .tables import DEFAULT_BENCHMARK as DEFAULT_BENCHMARK
from .tables import VARIANT_PARAM as VARIANT_PARAM
from .tables import Report as Report
from .tables import Row as Row
from .tables import Table as Table
from .tables import build_report as build_report
from .tables import build_tables as build_tables
