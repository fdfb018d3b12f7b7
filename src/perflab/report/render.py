"""Rendering: reports as Markdown (``docs/reports/``) or terminal text, tables by `tabulate`.

Last stage of the report (spec -> load -> cells -> comparisons -> tables -> **render**): turns
a `Report` or `StudyReport` into text and decides nothing about the figures.
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Sequence

from tabulate import DataRow, TableFormat, tabulate

from .._asv import RecordedRun, short_name
from . import verdicts
from .cells import VARIANT_PARAM
from .comparisons import MISSING, NOISE_MARK, UNTESTED, UNTESTED_MARK, rule_text, timing
from .tables import Report, StudyReport, Table

FORMATS = ("text", "markdown")


def _pipe_separator(colwidths, colaligns):
    # A compact GitHub separator (|---:|---|) whatever the column widths.
    return "|" + "|".join("---:" if a == "right" else "---" for a in colaligns) + "|"


_MARKDOWN = TableFormat(
    lineabove=None,
    linebelowheader=_pipe_separator,
    linebetweenrows=None,
    linebelow=None,
    headerrow=DataRow("|", "|", "|"),
    datarow=DataRow("|", "|", "|"),
    padding=1,
    with_header_hide=None,
)


def _tabulate(head, body, fmt):
    # Numbers are already formatted strings: no re-parsing; every column right-aligned but the
    # last (Best: "value (variant)").
    aligns = ["right"] * (len(head) - 1) + ["left"]
    text = tabulate(body, headers=head, tablefmt=fmt, colalign=aligns, disable_numparse=True)
    return [line.rstrip() for line in text.splitlines()]


def _scale(unit):
    # Times are recorded in seconds; the tables show milliseconds.
    if unit == "seconds":
        return 1e3, "ms"
    return 1.0, unit


def number(value: float) -> str:
    """Four significant digits without exponents (0.01290, 6.305, 123.4): rows spanning
    microseconds to seconds stay comparable by eye and no digit pretends to more precision."""
    if value == 0:
        return "0"
    digits = max(0, 3 - math.floor(math.log10(abs(value))))
    return f"{value:.{digits}f}"


def _value(cell, scale):
    return number(cell.value * scale) if cell.ok else cell.status


def _spread(cell):
    # asv's error (half the interquartile range) relative to the median: the noise floor.
    if not cell.ok or cell.err is None or cell.value == 0:
        return "-"
    return f"±{cell.err / abs(cell.value) * 100:.1f}%"


def _count(cell):
    if not cell.ok:
        return "-"
    n = cell.n_samples
    return str(n) if n is not None else "1"


def header_cells(table: Table) -> list[str]:
    """The column headings of a table."""
    _, unit = _scale(table.unit)
    suffix = f" ({unit})" if unit else ""
    head = [p.capitalize() for p in table.row_params]
    head += [f"BEFORE{suffix}", f"AFTER{suffix}", "Speedup (CI)", "Change", "Spread B / A", "n B / A"]
    head += [f"{v}{suffix}" for v in table.extra]
    head += [f"Best{suffix}"] if timing(table.unit) else []
    if table.has_control:
        head += ["Control"]
    return head


def _speedup(comp):
    if comp.speedup is None:
        return "n/a"
    interval = comp.speedup_interval
    if interval is None:
        return f"{comp.speedup:.2f}x"
    return f"{comp.speedup:.2f}x ({interval[0]:.2f}-{interval[1]:.2f})"


def _change(comp):
    if comp.verdict == MISSING or comp.change is None:
        return "n/a"
    if comp.verdict == UNTESTED:
        return UNTESTED_MARK
    if not _flagged(comp):
        return NOISE_MARK
    return f"{comp.change * 100:+.1f}%"


def _flagged(comp):
    # The rule applied to the Speedup and interval as printed, so that Change never reads a
    # change the Speedup column's rounded interval does not show (or the reverse).
    interval = comp.speedup_interval
    if interval is None:
        return comp.flagged
    speedup, low, high = (float(f"{x:.2f}") for x in (comp.speedup, *interval))
    return (low > 1 or high < 1) and (speedup > comp.factor or speedup < 1 / comp.factor)


def _control(comp):
    # The identical-code pair of this row: anything but "within noise" condemns the table.
    if comp is None:
        return "-"
    if comp.verdict in (MISSING, UNTESTED):
        return _change(comp)
    mark = "ok" if comp.within_noise else "FLAGGED"
    return f"{mark} {comp.significance.ratio:.3f}"


def row_cells(table: Table, row) -> list[str]:
    """The cells of one row, formatted."""
    scale, _ = _scale(table.unit)
    comp = row.comparison
    speedup, change = _speedup(comp), _change(comp)
    pair = (row.cells[table.before], row.cells[table.after])
    out = list(row.labels)
    out += [_value(c, scale) for c in pair]
    out += [speedup, change]
    out += [" / ".join(_spread(c) for c in pair), " / ".join(_count(c) for c in pair)]
    out += [_value(row.cells[v], scale) for v in table.extra]
    if timing(table.unit):
        out += [f"{number(row.best[1].value * scale)} ({row.best[0]})" if row.best else "n/a"]
    if table.has_control:
        out += [_control(row.control)]
    return out


def control_lines(table: Table) -> list[str]:
    """The table's trust lines: its control's verdict (loudly when it failed), and the variants
    that compiled to the same program (from the recorded fingerprints)."""
    same = [f"Same program (identical optimised HLO): {'; '.join(table.same_programs)}."] if table.same_programs else []
    return _control_verdict(table) + same


def _control_verdict(table):
    if not table.has_control:
        return ["No identical-code control in this table: its verdicts are not checked."]
    failed = table.failed_controls
    if failed:
        where = ", ".join("/".join(row.labels) or "its only row" for row in failed)
        return [
            f"**UNTRUSTWORTHY: the identical-code control (`{table.before}` measured twice) was "
            f"flagged as changed at {where}; no verdict of this table can be relied on.**"
        ]
    tested = [row for row in table.rows if row.control is not None and row.control.verdict not in (MISSING, UNTESTED)]
    if not tested:
        return [
            "Identical-code control not tested (one value per cell: a figure recorded once per run, or a run "
            "recorded without its samples): no verdict of this table is checked."
        ]
    untested = len(table.rows) - len(tested)
    return [
        "Identical-code control (the baseline measured again under another name): within noise in every "
        + ("row." if not untested else f"tested row ({untested} row(s) untested).")
    ]


def markdown_table(table: Table) -> list[str]:
    """A table as GitHub Markdown lines (no title)."""
    body = [row_cells(table, row) for row in table.rows]
    return _tabulate(header_cells(table), body, _MARKDOWN)


def text_table(table: Table) -> list[str]:
    """A table as aligned plain-text lines (no title)."""
    body = [row_cells(table, row) for row in table.rows]
    return _tabulate(header_cells(table), body, "simple")


def machine_text(run: RecordedRun) -> str:
    """``vm (AMD EPYC, x86_64, 2 CPUs, 23.5 GiB RAM, Linux ...)``."""
    info = run.machine_info
    details = [info.get("cpu"), info.get("arch")]
    if info.get("num_cpu"):
        details.append(f"{info['num_cpu']} CPUs")
    if info.get("ram"):
        details.append(f"{_ram(info['ram'])} RAM")
    details.append(info.get("os"))
    return f"{run.machine} ({', '.join(d for d in details if d)})"


def pair_text(report: Report) -> str:
    """``BEFORE = variant a, AFTER = variant b`` (per benchmark when they differ)."""

    def one(before, after):
        return f"BEFORE = {VARIANT_PARAM} {before}, AFTER = {VARIANT_PARAM} {after}"

    pairs = report.pairs
    if len(pairs) == 1:
        return one(*pairs[0])
    by_bench = dict.fromkeys((t.benchmark, t.before, t.after) for t in report.tables)
    return "; ".join(f"{short_name(n)}: {one(b, a)}" for n, b, a in by_bench)


COLUMNS = (
    "Speedup = BEFORE/AFTER (AFTER/BEFORE for a rate): the geometric mean over processes of the "
    "per-process ratios for variants measured in the same processes (else the ratio of the two "
    "geometric means), with its interval (levels under Noise); Change = the same ratio as "
    "AFTER/BEFORE - 1, shown when the printed Speedup interval excludes 1 and the Speedup lies "
    'beyond the factor, else "~ within noise"; Best (timings only) = the row\'s best variant, '
    'named only when the rule finds it better than every other (else "tie: ..."), variants '
    'that compiled to one program counted once ("a = b")'
)


def noise_text(factor: float) -> str:
    """What the "~" mark, Spread and n mean."""
    return (
        f"{rule_text(factor)}. Spread = half the interquartile range of the samples "
        "relative to the median (asv's ±); n = timings per cell"
    )


def run_lines(report: Report) -> list[tuple[str, str]]:
    """Commit, recording time, environment and samples of a report's run."""
    run = report.run
    commit = run.commit
    if run.date:
        commit += f" (committed {when(run.date)})"
    names = list(dict.fromkeys(t.benchmark for t in report.tables))
    started = [t for t in (run.started_at(n) for n in names) if t]
    recorded = when(min(started)) if started else "unknown"
    if started and when(max(started)) != recorded:
        recorded += f" to {when(max(started))}"
    env = run.env_name
    if run.python:
        env += f" (python {run.python})"
    samples = [(n, _samples_text([t for t in report.tables if t.benchmark == n])) for n in names]
    if len({s for _, s in samples}) <= 1:
        sample_line = samples[0][1] if samples else "none"
    else:
        sample_line = "; ".join(f"{short_name(n)}: {s}" for n, s in samples)
    return [
        ("Commit", commit),
        ("Recorded", recorded),
        ("Environment", env),
        ("Samples per cell", sample_line),
    ]


def header_lines(report: Report) -> list[tuple[str, str]]:
    """The (key, value) lines of a single report's header."""
    lines = [("Machine", machine_text(report.run))] + run_lines(report)
    lines += [
        ("Pair", f"{pair_text(report)}; {COLUMNS}"),
        ("Noise", noise_text(report.factor)),
        ("Results file", report.run.path),
        ("Command", report.command),
    ]
    if report.skipped:
        why = f"(no {VARIANT_PARAM!r} parameter)"
        lines.append(("Skipped", ", ".join(f"{short_name(n)} {why}" for n in report.skipped)))
    return lines


def _samples_text(tables):
    cells = [c for t in tables for r in t.rows for c in r.cells.values() if c.ok]
    counts = sorted({c.n_samples for c in cells if c.n_samples is not None})
    numbers = sorted({c.number for c in cells if c.number is not None})
    if not counts:
        return "1 value (no samples or statistics recorded)"
    text = str(counts[0]) if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"
    if all(c.paired_group for c in cells):
        # The interleaved classes: one sample per measuring process.
        return (
            text + " processes, one sample each (the median of that process's interleaved rounds); "
            "the median of the samples shown"
        )
    text += " timings"
    if numbers:
        calls = str(numbers[0]) if len(numbers) == 1 else f"{numbers[0]}-{numbers[-1]}"
        text += f" of {calls} call{'s' if numbers != [1] else ''} each"
    return text + ", median shown"


def when(ms: float) -> str:
    """An asv date (JavaScript timestamp: milliseconds since the epoch, UTC) as text."""
    return datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _ram(value):
    # asv records RAM in bytes as a string; anything else is shown as recorded.
    try:
        return f"{int(value) / 2**30:.1f} GiB"
    except (TypeError, ValueError):
        return str(value)


def markdown_bullets(lines: Sequence[tuple[str, str]], code: Sequence[str] = ("Command", "Results file")) -> list[str]:
    """``- **Key:** value`` lines, values of the `code` keys in backticks."""
    return [f"- **{k}:** `{v}`" if k in code else f"- **{k}:** {v}" for k, v in lines]


def markdown_tables(tables: Sequence[Table], level: int = 2) -> list[str]:
    """Every table with its title as a heading of `level`."""
    lines = []
    for table in tables:
        lines += ["", f"{'#' * level} {table.title}", ""]
        lines += markdown_table(table)
        lines += [""] + control_lines(table)
    return lines


def render_markdown(report: Report) -> str:
    """The report as Markdown (for ``docs/reports/``).

    Arguments:
        report: the report.

    Returns:
        The text, ending with a newline.
    """
    names = ", ".join(dict.fromkeys(short_name(t.benchmark) for t in report.tables))
    lines = [f"# Benchmark report: {names}", ""]
    lines += markdown_bullets(header_lines(report))
    lines += markdown_tables(report.tables)
    return "\n".join(lines) + "\n"


def render_text(report: Report) -> str:
    """The report as aligned plain-text tables for a terminal.

    Arguments:
        report: the report.

    Returns:
        The text, ending with a newline.
    """
    header = header_lines(report)
    width = max(len(k) for k, _ in header)
    lines = [f"{key:<{width}}  {value}" for key, value in header]
    for table in report.tables:
        lines += ["", table.title, "=" * len(table.title)]
        lines += text_table(table)
        lines += control_lines(table)
    return "\n".join(lines) + "\n"


def render_study(study: StudyReport, status: str, results: str) -> str:
    """A study report as Markdown: one header, then every section.

    Arguments:
        study: the study's reports and filled prose.
        status: the header's Status line (see `perflab.report.check.status_text`).
        results: the results directory as the header states it.

    Returns:
        The text, ending with a newline.
    """
    spec = study.spec
    lines = [f"# {spec.title}", ""]
    if study.prose[0].strip():
        lines += [study.prose[0].strip(), ""]
    header = [
        ("Machine", machine_text(study.run)),
        ("Columns", COLUMNS),
        ("Noise", noise_text(spec.factor)),
        ("Results", results),
        ("Command", spec.command),
        ("Status", status),
    ]
    lines += markdown_bullets(header, code=("Command", "Results"))
    top = len(lines)
    missing = study.missing or ((),) * len(spec.sections)
    parts = zip(spec.sections, study.prose[1:], study.reports, study.runs[1:], missing)
    for section, prose, report, run, unrecorded in parts:
        lines += ["", f"## {section.heading}", ""]
        if prose.strip():
            lines += [prose.strip(), ""]
        lines += verdicts.missing_lines(section, run, unrecorded)
        if report is None:
            if lines[-1] == "":
                lines.pop()
            continue
        bullets = run_lines(report)
        bullets += [("Pair", pair_text(report)), ("Results file", report.run.relative_path)]
        if report.skipped:
            bullets.append(("Skipped", ", ".join(f"{short_name(n)} (no 'variant' parameter)" for n in report.skipped)))
        lines += markdown_bullets(bullets)
        lines += markdown_tables(report.tables, level=3)
    if study.judgements:
        lines[top:top] = [""] + verdicts.render_section(study, lines[:top], lines[top:])
    return "\n".join(lines) + "\n"


RENDERERS = {"text": render_text, "markdown": render_markdown}

__all__ = [
    "FORMATS",
    "RENDERERS",
    "render_markdown",
    "render_text",
    "markdown_table",
    "text_table",
    "header_lines",
    "run_lines",
    "machine_text",
    "pair_text",
    "noise_text",
    "when",
    "number",
    "render_study",
]
