"""Tables: judged benchmarks arranged into rows and tables, and tables into reports.

Fourth stage of the report (spec -> load -> cells -> comparisons -> **tables** -> render):
one table per combination of the parameters that are neither rows nor the variant, one row per
combination of the row parameters; a `Report` holds the tables of one run, a `StudyReport` the
reports of a study's sections.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from .._asv import RecordedRun, ReportError, short_name
from .cells import VARIANT_PARAM, Cell
from .comparisons import FASTER, SLOWER, Comparison, JudgedGrid

if TYPE_CHECKING:
    from .spec import Spec

ROW_PARAM = "size"
"""The default row parameter when a benchmark has it (otherwise every non-variant parameter)."""


@dataclasses.dataclass(frozen=True)
class Row:
    """One row of a table.

    Attributes:
        labels: the values of the row parameters (e.g. the size).
        cells: variant -> `Cell`, every variant recorded for this row.
        comparison: BEFORE vs AFTER.
        best: (name, cell) of the row's best variant, named only when the rule finds it better
            than every other (``"tie: a, b"`` otherwise; ``"a = b"`` for one program), or
            ``None`` without a value or for a figure that is not a timing.
        control: the benchmark's baseline vs its identical-code control twin, judged by the
            same rule, or ``None`` where the benchmark has no control.
    """

    labels: tuple[str, ...]
    cells: Mapping[str, Cell]
    comparison: Comparison
    best: tuple[str, Cell] | None
    control: Comparison | None = None


@dataclasses.dataclass(frozen=True)
class Table:
    """One benchmark at fixed values of the parameters that are neither rows nor the variant.

    Attributes:
        benchmark: the full benchmark name.
        unit: asv's unit (``"seconds"`` shown as ms; others shown as recorded).
        fixed: (parameter, value) pairs common to the whole table, e.g. ``(("solver", "lu"),)``.
        row_params: the parameters that vary down the rows, e.g. ``("size",)``.
        before: the BEFORE variant.
        after: the AFTER variant.
        extra: further variants shown as columns.
        rows: the rows.
        same_programs: ``"size=10: a = b"`` for variants that compiled to one program.
    """

    benchmark: str
    unit: str | None
    fixed: tuple[tuple[str, str], ...]
    row_params: tuple[str, ...]
    before: str
    after: str
    extra: tuple[str, ...]
    rows: tuple[Row, ...]
    same_programs: tuple[str, ...] = ()

    @property
    def has_control(self) -> bool:
        """Whether the rows carry an identical-code control pair."""
        return any(row.control is not None for row in self.rows)

    @property
    def failed_controls(self) -> list[Row]:
        """Rows whose identical-code control was flagged as changed: the table is untrustworthy."""
        return [r for r in self.rows if r.control is not None and r.control.verdict in (FASTER, SLOWER)]

    @property
    def title(self) -> str:
        """E.g. ``"LinearSolveJVP.track_jvp — solver=lu"``."""
        fixed = ", ".join(f"{k}={v}" for k, v in self.fixed)
        return f"{short_name(self.benchmark)} — {fixed}" if fixed else short_name(self.benchmark)


def arrange(judged: JudgedGrid, extra: Sequence[str] = (), rows: Sequence[str] | None = None) -> list[Table]:
    """The tables of one judged benchmark: one per combination of the non-row parameters.

    Arguments:
        judged: the benchmark, judged.
        extra: variants shown as extra columns.
        rows: the parameters down the rows; default ``size`` if the benchmark has it, else
            every parameter other than the variant.

    Returns:
        The tables, in asv's parameter order.

    Raises:
        ReportError: when an extra variant or a row parameter does not exist.
    """
    grid, others = judged.grid, judged.others
    name = short_name(grid.benchmark)
    variants = grid.variants or ()
    for variant in extra:
        if variant not in variants:
            raise ReportError(
                "--extra",
                f"{variant!r} is not a value of {VARIANT_PARAM!r} in {name} (values: {', '.join(variants)})",
            )
    if rows is None:
        rows = [ROW_PARAM] if ROW_PARAM in others else list(others)
    for r in rows:
        if r not in others:
            raise ReportError(
                "--rows",
                f"{r!r} is not a parameter of {name} other than {VARIANT_PARAM!r} (parameters: {', '.join(others)})",
            )
    fixed_names = [n for n in others if n not in rows]
    tables = []
    for fixed_values in itertools.product(*(grid.values_of(n) for n in fixed_names)):
        table_rows, same = [], []
        for row_values in itertools.product(*(grid.values_of(n) for n in rows)):
            where = dict(zip(fixed_names, fixed_values)) | dict(zip(rows, row_values))
            one = judged.judged[tuple(where[n] for n in others)]
            at = ", ".join(f"{k}={v}" for k, v in zip(rows, row_values))
            same += [f"{at}: {' = '.join(group)}" for group in one.same_program]
            table_rows.append(Row(tuple(row_values), one.cells, one.comparison, one.best, one.control))
        tables.append(
            Table(
                benchmark=grid.benchmark,
                unit=grid.unit,
                fixed=tuple(zip(fixed_names, fixed_values)),
                row_params=tuple(rows),
                before=judged.before,
                after=judged.after,
                extra=tuple(extra),
                rows=tuple(table_rows),
                same_programs=tuple(same),
            )
        )
    return tables


@dataclasses.dataclass(frozen=True)
class Report:
    """The tables of one recorded run: a single report, or one section of a study report.

    Attributes:
        run: the recorded run.
        tables: the tables, benchmark by benchmark.
        extra: the extra variant columns.
        factor: the factor used for the "~" mark.
        command: the command line that produced the report.
        skipped: benchmarks matched by a pattern but left out for having no variant parameter.
    """

    run: RecordedRun
    tables: tuple[Table, ...]
    extra: tuple[str, ...]
    factor: float
    command: str
    skipped: tuple[str, ...] = ()

    @property
    def pairs(self) -> list[tuple[str, str]]:
        """The distinct (BEFORE, AFTER) pairs of the tables, in order."""
        return list(dict.fromkeys((t.before, t.after) for t in self.tables))


@dataclasses.dataclass(frozen=True)
class StudyReport:
    """A study report's content: its runs, filled prose and section reports.

    Attributes:
        spec: the `perflab.report.spec.Spec`.
        runs: the run of the spec itself (its ``commit``) and of each section, in order; ``None``
            for a section on another machine that has no results yet.
        prose: the filled prose of the spec, then of each section.
        reports: per section, its `Report`, or ``None`` for a prose-only section.
        results_dir: where the results were read.
        missing: per section, the benchmarks it names that its run has not recorded.
        judgements: the claims and goals judged (`perflab.report.verdicts.Judgement`).
    """

    spec: Spec
    runs: tuple[RecordedRun | None, ...]
    prose: tuple[str, ...]
    reports: tuple[Report | None, ...]
    results_dir: str
    missing: tuple[tuple[str, ...], ...] = ()
    judgements: tuple = ()

    @property
    def run(self) -> RecordedRun:
        """The spec's own run (its ``commit``)."""
        run = self.runs[0]
        if run is None:
            raise ValueError("a study report's first run is its spec's own, which is always recorded")
        return run

    @property
    def commits(self) -> list[str]:
        """The distinct full commit hashes shown, in order."""
        return list(dict.fromkeys(r.commit for r in self.runs if r is not None))
