"""The report's driver: runs each stage once, in order, and hands its output to the next.

spec (`spec`) -> load (`perflab._asv`) -> cells (`cells`) -> comparisons (`comparisons`) ->
tables (`tables`) -> staleness (`check`) -> render (`render`). No stage calls a later one; this
module is the only one that knows the order.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from .. import _asv
from .._asv import RecordedRun, ReportError, short_name
from . import cells, check, comparisons, render, tables, verdicts
from .spec import NEWEST, Spec

DEFAULT_COMMAND = "python -m perflab report"


def build_report(
    run: RecordedRun,
    benchmarks: Sequence[str],
    before: str | None = None,
    after: str | None = None,
    extra: Sequence[str] = (),
    rows: Sequence[str] | None = None,
    factor: float = comparisons.DEFAULT_FACTOR,
    command: str = DEFAULT_COMMAND,
) -> tables.Report:
    """The tables of the selected benchmarks of one run.

    Arguments:
        run: the recorded run.
        benchmarks: benchmark names, dotted parts of names or globs (see `cells.select`).
        before: the BEFORE variant (default: per benchmark, its recorded ``baseline``).
        after: the AFTER variant (default: per benchmark, its recorded ``optimised``).
        extra: variants shown as extra columns.
        rows: the parameters down the rows (see `tables.arrange`).
        factor: the factor for the "~" (within noise) mark.
        command: the command line to state in the header.

    Returns:
        The `tables.Report`.

    Raises:
        ReportError: on any user error, naming the option at fault.
    """
    return _reports([(run, benchmarks, before, after, extra, rows)], factor, command)[0]


def _reports(sections, factor, command, where=lambda i: ""):
    # Each stage over every section before the next stage: cells, comparisons, tables.
    if not factor >= 1.0:
        raise ReportError("--factor", f"must be at least 1.0, got {factor}")
    selected = []
    for i, (run, patterns, _, _, extra, _) in enumerate(sections):
        with _context(where(i)):
            selected.append(_select(run, patterns, extra))
    judged = []
    for i, ((_, _, before, after, _, _), (grids, _, _)) in enumerate(zip(sections, selected)):
        with _context(where(i)):
            judged.append([comparisons.judge(g, *comparisons.roles(g, before, after), factor) for g in grids])
    reports = []
    for i, (section, (_, extras, skipped), grids) in enumerate(zip(sections, selected, judged)):
        run, _, _, _, extra, rows = section
        with _context(where(i)):
            arranged = [t for j, x in zip(grids, extras) for t in tables.arrange(j, x, rows)]
        reports.append(tables.Report(run, tuple(arranged), tuple(extra), factor, command, tuple(skipped)))
    return reports


def _select(run, patterns, extra):
    grids, skipped = [], []
    for name, swept in cells.select(run, patterns):
        # A pattern naming several benchmarks may sweep in ones without variants; those are
        # left out, but one named alone is an error.
        if swept and name in run.benchmarks and cells.VARIANT_PARAM not in run.param_names(name):
            skipped.append(name)
            continue
        grid = cells.grid(run, name)
        if grid.variants is None:
            raise ReportError(
                "--benchmark",
                f"{short_name(name)} has no parameter {cells.VARIANT_PARAM!r} "
                f"(parameters: {', '.join(grid.param_names) or 'none'})",
            )
        grids.append(grid)
    if not grids:
        raise ReportError(
            "--benchmark",
            f"none of {', '.join(short_name(n) for n in skipped)} has a parameter {cells.VARIANT_PARAM!r}",
        )
    # An extra variant only some benchmarks have (cython: tridiagonal only) is left out of the
    # others; one that none has is an error.
    extras = [[e for e in extra if e in g.variants] for g in grids]
    for e in extra:
        if not any(e in x for x in extras):
            raise ReportError("--extra", f"{e!r} is not a variant of any selected benchmark")
    return grids, extras, skipped


class _context:
    # Errors inside a study section name the spec and the section, as one line.
    def __init__(self, where):
        self.where = where

    def __enter__(self):
        return self

    def __exit__(self, kind, err, tb):
        if self.where and isinstance(err, ReportError):
            path, prefix = self.where
            raise ReportError(path, f"{prefix}{err.argument}: {err.message}") from None
        return False


def build_study(spec: Spec, results_dir: str) -> tables.StudyReport:
    """Load the runs a spec names, fill its prose and build every section's tables.

    Arguments:
        spec: the parsed spec.
        results_dir: the asv results directory.

    Returns:
        The `tables.StudyReport`.

    Raises:
        ReportError: naming the spec (and section) and what is missing: machine, commit,
            environment, benchmark, variant or a prose reference.
    """
    loaded = {}

    def run_of(machine, commit, env, prefix):
        # Another machine without a results folder is "not recorded yet" (None), not an error.
        if (machine, commit, env) not in loaded:
            if machine not in (None, spec.machine) and not verdicts.recorded(results_dir, machine):
                loaded[machine, commit, env] = None
                return None
            try:
                loaded[machine, commit, env] = _asv.load_run(results_dir, machine, commit, env)
            except ReportError as err:
                raise ReportError(spec.path, f"{prefix}{err.argument}: {err.message}") from None
            except _asv.UserError as err:
                raise ReportError(spec.path, f"{prefix}{_asv.one_line(err)}") from None
        return loaded[machine, commit, env]

    def where(item):
        # A section or criterion on another machine reads that machine's newest run by default.
        own = item.machine not in (None, spec.machine)
        commit = item.commit or (None if own else spec.commit)
        return (
            item.machine if own else spec.machine,
            None if commit in (None, NEWEST) else commit,
            item.env or (None if own else spec.env),
        )

    prefixes = [f"section {i} ({s.heading}): " for i, s in enumerate(spec.sections, 1)]
    top = spec.commit if spec.commit != NEWEST else None
    top_run = run_of(spec.machine, top, spec.env, "")
    if top_run is None:
        raise ReportError(spec.path, f"no recorded run of machine {spec.machine!r}")
    runs = [top_run]
    runs += [run_of(*where(s), p) for s, p in zip(spec.sections, prefixes)]
    own = [r for s, r in zip(spec.sections, runs[1:]) if s.machine in (None, spec.machine) and r is not None]
    if len({r.machine for r in [top_run, *own]}) > 1:
        raise ReportError(spec.path, "sections recorded on several machines; name `machine`")
    texts = [(spec.prose, runs[0], "")]
    texts += [(s.prose, r, f"section {i}: ") for i, (s, r) in enumerate(zip(spec.sections, runs[1:]), 1)]
    prose = []
    for text, run, at in texts:
        try:
            prose.append(text if run is None else cells.fill_prose(text, run, at))
        except ReportError as err:
            raise ReportError(spec.path, err.message) from None
    missing = [verdicts.unrecorded(r, s.benchmarks) for s, r in zip(spec.sections, runs[1:])]
    with_tables = [
        i
        for i, s in enumerate(spec.sections)
        if s.benchmarks and runs[i + 1] is not None and len(missing[i]) < len(s.benchmarks)
    ]
    sections = [
        (runs[i + 1], [b for b in s.benchmarks if b not in missing[i]], s.before, s.after, s.extra, s.rows)
        for i, s in ((i, spec.sections[i]) for i in with_tables)
    ]
    built = _reports(sections, spec.factor, spec.command, lambda k: (spec.path, prefixes[with_tables[k]]))
    reports = [None] * len(spec.sections)
    for i, report in zip(with_tables, built):
        reports[i] = report
    refs = verdicts.table_refs(spec.sections, runs[1:], reports)
    judgements = []
    for c in spec.criteria:
        machine, commit, env = where(c)
        run = run_of(machine, commit, env, f"{c.kind} {c.name!r}: ")
        try:
            judgements.append(verdicts.judge(c, run, machine or top_run.machine, spec.factor, refs))
        except ReportError as err:
            raise ReportError(spec.path, f"{err.argument}: {err.message}") from None
    return tables.StudyReport(
        spec,
        tuple(runs),
        tuple(prose),
        tuple(reports),
        results_dir,
        tuple(tuple(m) for m in missing),
        tuple(judgements),
    )


def study_text(spec: Spec, results_dir: str, root: str = ".") -> str:
    """The study report of `spec`, regenerated from the recorded results.

    Arguments:
        spec: the parsed spec.
        results_dir: the asv results directory.
        root: the repository root (for the Status line and relative paths).

    Returns:
        The Markdown text, ending with a newline.
    """
    return _render(build_study(spec, results_dir), results_dir, root)[0]


def _render(study, results_dir, root):
    states = [check.staleness(root, c, study.spec.study) for c in study.commits]
    results = os.path.relpath(results_dir, root)
    if results.startswith(".."):
        results = results_dir
    return render.render_study(study, check.status_text(study.spec.study, states), results), states


def check_study(spec: Spec, results_dir: str, root: str = ".") -> list[str]:
    """What is wrong with one study report: stale, drifted, missing, or not regenerable.

    Arguments:
        spec: the parsed spec.
        results_dir: the asv results directory.
        root: the repository root.

    Returns:
        One line per problem (empty when the report is current and regenerates byte for byte).
    """
    try:
        study = build_study(spec, results_dir)
    except _asv.PerflabError as err:
        # Without results, the commits the spec names can still be checked against git.
        named = [s.commit or spec.commit for s in spec.sections] + [spec.commit]
        commits = list(dict.fromkeys(c for c in named if c != NEWEST))
        states = [check.staleness(root, c, spec.study) for c in commits]
        return [f"not regenerated: {err.message}"] + [f"stale: {s.summary()}" for s in states if s.stale]
    text, states = _render(study, results_dir, root)
    problems = [f"stale: {s.summary()}" for s in states if s.stale]
    problems += verdicts.check_lines(study)
    drifted = check.drift(spec.output, text, spec.command)
    return problems + ([drifted] if drifted else [])
