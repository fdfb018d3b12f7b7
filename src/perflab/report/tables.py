"""BEFORE/AFTER tables: rows of variants of one recorded run, each pair judged by `compare`."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Mapping, Sequence

from .. import variants as _variants
from .._asv import ReportError
from .compare import DEFAULT_FACTOR, Cell, Comparison, best, compare, higher_is_better
from .locate import RecordedRun, label, load_run, match_one, short_name

DEFAULT_BENCHMARK = "bench_linear_solve.LinearSolveJVP.time_jvp"
"""What ``python -m perflab report`` shows without ``--benchmark`` or ``--study``."""
VARIANT_PARAM = "variant"
ROW_PARAM = "size"
"""The default row parameter when a benchmark has it (otherwise every non-variant parameter)."""
FALLBACK_ROLES = ("before", "after")
"""BEFORE/AFTER for benchmarks of no registered study (e.g. a benchmark outside perflab)."""


@dataclasses.dataclass(frozen=True)
class Row:
    """One row of a table.

    Attributes:
        labels: the values of the row parameters (e.g. the size).
        cells: variant -> `Cell`, every variant recorded for this row.
        comparison: BEFORE vs AFTER.
        best: (variant, cell) of the best value in the row (the lowest; the highest for a
            rate), or ``None`` if none has a value.
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
    """One table: one benchmark at fixed values of the parameters that are neither rows nor
    the variant.

    Attributes:
        benchmark: the full benchmark name.
        unit: asv's unit (``"seconds"`` shown as ms; others shown as recorded).
        fixed: (parameter, value) pairs common to the whole table, e.g. ``(("solver", "lu"),)``.
        row_params: the parameters that vary down the rows, e.g. ``("size",)``.
        before: the BEFORE variant.
        after: the AFTER variant.
        extra: further variants shown as columns.
        rows: the rows.
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
        return [row for row in self.rows if row.control is not None and row.control.verdict in ("faster", "slower")]

    @property
    def title(self) -> str:
        """E.g. ``"LinearSolveJVP.time_jvp — solver=lu"``."""
        fixed = ", ".join(f"{k}={v}" for k, v in self.fixed)
        return f"{short_name(self.benchmark)} — {fixed}" if fixed else short_name(self.benchmark)


def study_of(benchmark: str) -> str | None:
    """The study a benchmark times, from its module: ``bench_sde.X.time_y`` -> ``"sde"``."""
    module = benchmark.split(".")[0]
    return module[len("bench_"):] if module.startswith("bench_") else None


def default_roles(benchmark: str, variants: Sequence[str]) -> tuple[str, str]:
    """BEFORE and AFTER for a benchmark: its study's registered baseline and optimised variants.

    Arguments:
        benchmark: the full benchmark name.
        variants: the benchmark's variant values.

    Returns:
        (before, after): from `perflab.variants.roles`, else ``("before", "after")``.

    Raises:
        ReportError: when the study's package cannot be imported.
    """
    study = study_of(benchmark)
    if study is None:
        return FALLBACK_ROLES
    try:
        found = _variants.roles(study, variants)
    except ImportError as err:
        raise ReportError(
            "--before",
            f"cannot read the BEFORE/AFTER roles of {short_name(benchmark)} from perflab.{study} "
            f"({err}); name --before and --after",
        ) from None
    return found or FALLBACK_ROLES


def build_tables(
    run: RecordedRun,
    benchmark: str,
    before: str | None = None,
    after: str | None = None,
    extra: Sequence[str] = (),
    rows: Sequence[str] | None = None,
    factor: float = DEFAULT_FACTOR,
    variant_param: str = VARIANT_PARAM,
) -> list[Table]:
    """The tables of one benchmark: one per combination of the non-row, non-variant parameters.

    Arguments:
        run: the recorded run.
        benchmark: the full benchmark name.
        before: the BEFORE variant; default: the study's registered baseline (`default_roles`).
        after: the AFTER variant; default: the study's registered optimised variant.
        extra: variants shown as extra columns.
        rows: the parameters down the rows; default ``size`` if the benchmark has it, else
            every parameter other than the variant.
        factor: the factor for the "~" (within noise) mark.
        variant_param: the parameter that names the variant.

    Returns:
        The tables, in asv's parameter order.

    Raises:
        ReportError: when the benchmark has no variant parameter, a variant is not one of its
            values, a row parameter does not exist, or no cell of it holds a value.
    """
    if benchmark not in run.benchmarks:
        raise ReportError(
            "--benchmark",
            f"{benchmark} is not in benchmarks.json next to the results ({run.results_dir}), so "
            "its parameter names are unknown; run `asv run --bench just-discover` to regenerate it",
        )
    param_names, param_values, cells = run.cells(benchmark)
    if variant_param not in param_names:
        raise ReportError(
            "--benchmark",
            f"{short_name(benchmark)} has no parameter {variant_param!r} "
            f"(parameters: {', '.join(param_names) or 'none'})",
        )
    vi = param_names.index(variant_param)
    variants = param_values[vi]
    if before is None or after is None:
        default_before, default_after = default_roles(benchmark, variants)
        before = default_before if before is None else before
        after = default_after if after is None else after
    wanted = [("--before", before), ("--after", after)] + [("--extra", e) for e in extra]
    for option, variant in wanted:
        if variant not in variants:
            raise ReportError(
                option,
                f"{variant!r} is not a value of {variant_param!r} in {short_name(benchmark)} "
                f"(values: {', '.join(variants)})",
            )
    others = [n for n in param_names if n != variant_param]
    if rows is None:
        rows = [ROW_PARAM] if ROW_PARAM in others else others
    for r in rows:
        if r not in others:
            raise ReportError(
                "--rows",
                f"{r!r} is not a parameter of {short_name(benchmark)} other than "
                f"{variant_param!r} (parameters: {', '.join(others)})",
            )
    if not any(c.ok for c in cells.values()):
        statuses = sorted({c.status for c in cells.values()})
        raise ReportError(
            "--benchmark",
            f"{short_name(benchmark)} holds no value on machine {run.machine}, commit "
            f"{run.commit[:8]} ({run.path}): all {len(cells)} cells {'/'.join(statuses)}",
        )
    fixed_names = [n for n in others if n not in rows]
    index = {n: i for i, n in enumerate(param_names)}
    unit = run.unit(benchmark)
    rate = higher_is_better(unit)
    control = run.control(benchmark)
    if control and not set(control) <= set(variants):
        control = None

    fingerprints = {}
    if f"{benchmark}_fingerprint" in run.names:
        fingerprints = run.cells(f"{benchmark}_fingerprint")[2]

    tables = []
    for fixed_values in itertools.product(*(param_values[index[n]] for n in fixed_names)):
        table_rows, same = [], []
        for row_values in itertools.product(*(param_values[index[n]] for n in rows)):
            where = dict(zip(fixed_names, fixed_values)) | dict(zip(rows, row_values))
            row_cells = {}
            groups = {}
            for variant in variants:
                where[variant_param] = variant
                row_cells[variant] = cells[tuple(where[n] for n in param_names)]
                program = fingerprints.get(tuple(where[n] for n in param_names))
                if program is not None and program.ok and (not control or variant != control[1]):
                    groups.setdefault(program.value, []).append(variant)
            for group in groups.values():
                if len(group) > 1:
                    at = ", ".join(f"{k}={v}" for k, v in zip(rows, row_values))
                    same.append(f"{at}: {' = '.join(group)}")
            table_rows.append(
                Row(
                    labels=tuple(row_values),
                    cells=row_cells,
                    comparison=compare(row_cells[before], row_cells[after], factor, rate),
                    best=best({v: c for v, c in row_cells.items() if not control or v != control[1]}, rate),
                    control=compare(row_cells[control[0]], row_cells[control[1]], factor, rate) if control else None,
                )
            )
        tables.append(
            Table(
                benchmark=benchmark,
                unit=unit,
                fixed=tuple(zip(fixed_names, fixed_values)),
                row_params=tuple(rows),
                before=before,
                after=after,
                extra=tuple(extra),
                rows=tuple(table_rows),
                same_programs=tuple(same),
            )
        )
    return tables


@dataclasses.dataclass(frozen=True)
class Report:
    """Everything a rendered report shows.

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


def build_report(
    results_dir: str | None = None,
    benchmarks: Sequence[str] = (DEFAULT_BENCHMARK,),
    before: str | None = None,
    after: str | None = None,
    extra: Sequence[str] = (),
    rows: Sequence[str] | None = None,
    machine: str | None = None,
    commit: str | None = None,
    env: str | None = None,
    factor: float = DEFAULT_FACTOR,
    command: str = "python -m perflab report",
    run: RecordedRun | None = None,
) -> Report:
    """Load a recorded run and build the tables of the selected benchmarks.

    Arguments:
        results_dir: the asv results directory (unused when `run` is given).
        benchmarks: benchmark names, dotted parts of names or globs (see `match_benchmarks`).
        before: the BEFORE variant (default: per benchmark, its study's registered baseline).
        after: the AFTER variant (default: per benchmark, its study's registered optimised one).
        extra: variants shown as extra columns.
        rows: the parameters down the rows (see `build_tables`).
        machine: the asv machine name (see `load_run`).
        commit: a commit hash prefix (see `load_run`).
        env: an environment name (see `load_run`).
        factor: the factor for the "~" (within noise) mark.
        command: the command line to state in the header.
        run: an already loaded run, instead of `results_dir`, `machine`, `commit`, `env`.

    Returns:
        The `Report`.

    Raises:
        ReportError: on any user error (see `load_run`, `match_benchmarks`, `build_tables`).
    """
    if not factor >= 1.0:
        raise ReportError("--factor", f"must be at least 1.0, got {factor}")
    if run is None:
        run = load_run(results_dir, machine=machine, commit=commit, env=env)
    tables, done, skipped, used = [], set(), [], set()
    for pattern in benchmarks:
        found = match_one(run, pattern)
        for name in found:
            if name in done:
                continue
            done.add(name)
            # A pattern naming several benchmarks (LinearSolveJVP*) may sweep in ones without
            # variants (LinearSolveJVPDefault); those are left out, but one named alone is an error.
            sweep = len(found) > 1 and name in run.benchmarks
            if sweep and VARIANT_PARAM not in run.param_names(name):
                skipped.append(name)
                continue
            # An extra variant that only some of the selected benchmarks have (cython is
            # tridiagonal-only, so absent from the batched benchmark) is left out of the others.
            values = variant_values(run, name)
            here = [e for e in extra if values is None or e in values]
            used.update(here)
            tables.extend(build_tables(run, name, before, after, here, rows, factor))
    for e in extra:
        if e not in used:
            raise ReportError("--extra", f"{e!r} is not a variant of any selected benchmark")
    if not tables:
        raise ReportError(
            "--benchmark",
            f"none of {', '.join(short_name(n) for n in skipped)} has a parameter "
            f"{VARIANT_PARAM!r}",
        )
    return Report(run, tuple(tables), tuple(extra), factor, command, tuple(skipped))


def variant_values(run: RecordedRun, name: str) -> list[str] | None:
    """The values of a benchmark's variant parameter, or ``None`` if it has none."""
    info = run.benchmarks.get(name, {})
    names = info.get("param_names") or []
    if VARIANT_PARAM not in names:
        return None
    return [label(v) for v in info["params"][names.index(VARIANT_PARAM)]]
