"""`python -m perflab report`: tables of variants, study reports and their checks.

A pipeline that reads straight through, one module per stage: `spec` (parse a study's spec)
-> `perflab._asv` (load the recorded run) -> `cells` (the benchmarks and cells selected) ->
`comparisons` (the one judging rule) -> `tables` (rows and tables) -> `render` (Markdown or
text); `verdicts` judges a spec's claims and goals on the cells they name, with the
comparisons' own rule. `check` tells whether a study report is stale; `cost` renders a run's
cost per class;
`pipeline` drives the stages in order; `cli` parses the command line.
"""

from .._asv import PerflabError as PerflabError
from .._asv import RecordedRun as RecordedRun
from .._asv import ReportError as ReportError
from .._asv import default_results_dir as default_results_dir
from .._asv import load_run as load_run
from .._asv import short_name as short_name
from .cells import VARIANT_PARAM as VARIANT_PARAM
from .cells import Cell as Cell
from .cells import Grid as Grid
from .check import Staleness as Staleness
from .check import staleness as staleness
from .cli import add_parser as add_parser
from .cli import run as run
from .comparisons import DEFAULT_FACTOR as DEFAULT_FACTOR
from .comparisons import FASTER as FASTER
from .comparisons import MISSING as MISSING
from .comparisons import NOISE as NOISE
from .comparisons import NOISE_MARK as NOISE_MARK
from .comparisons import SLOWER as SLOWER
from .comparisons import UNTESTED as UNTESTED
from .comparisons import UNTESTED_MARK as UNTESTED_MARK
from .comparisons import Comparison as Comparison
from .comparisons import best as best
from .comparisons import compare as compare
from .comparisons import higher_is_better as higher_is_better
from .pipeline import build_report as build_report
from .pipeline import build_study as build_study
from .pipeline import check_study as check_study
from .pipeline import study_text as study_text
from .render import FORMATS as FORMATS
from .render import RENDERERS as RENDERERS
from .render import render_markdown as render_markdown
from .render import render_study as render_study
from .render import render_text as render_text
from .spec import Section as Section
from .spec import Spec as Spec
from .spec import load_spec as load_spec
from .tables import Report as Report
from .tables import Row as Row
from .tables import Table as Table
