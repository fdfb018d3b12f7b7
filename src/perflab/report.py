"""`python -m perflab report`: BEFORE/AFTER tables of variants from one recorded asv run.

The report reads what `asv run` recorded for one machine, commit and environment, and pairs
two values of a benchmark's ``variant`` parameter (BEFORE and AFTER) row by row, with optional
extra variant columns and the fastest variant of each row. Values, samples and statistics come
from asv's own loader (`asv.results.Results`); a pair is marked "~" (within noise) exactly when
`asv compare` would not flag it, by calling the function `asv compare` uses.

Results directory layout (asv's): ``<results_dir>/benchmarks.json`` (parameter names and units)
and ``<results_dir>/<machine>/machine.json`` next to one ``<commit[:8]>-<env>.json`` per commit
and environment.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import datetime
import fnmatch
import itertools
import math
import os
import platform
import sys
from collections.abc import Mapping, Sequence

from asv import util as asv_util
from asv.benchmarks import Benchmarks
from asv.machine import Machine, MachineCollection, iter_machine_files
from asv.results import Results, get_filename, iter_results
from asv_runner.statistics import get_err

# asv 0.6.6 keeps the decision `asv compare` makes (factor, then Mann-Whitney U on the samples
# or 99% CI overlap) in this private helper; calling it keeps the "~" marks identical to
# asv compare's instead of a re-implementation that could drift. asv is pinned in pyproject.
from asv.commands.compare import _is_result_better

DEFAULT_BENCHMARK = "bench_linear_solve.LinearSolveJVP.time_jvp"
# asv compare's default is 1.1; docs/reports/calibration.md measured that at 1.1 a 10% effect
# between two variants of one run is detected in a minority of runs, at 1.05 in all of them
# with no identical pair flagged.
DEFAULT_FACTOR = 1.05
VARIANT_PARAM = "variant"
ROW_PARAM = "size"
FORMATS = ("text", "markdown")

FASTER, SLOWER, NOISE, MISSING = "faster", "slower", "noise", "n/a"
NOISE_MARK = "~ within noise"


class ReportError(Exception):
    """A user error: printed as one line naming the command-line argument at fault.

    Arguments:
        argument: the option to blame, e.g. ``"--after"``.
        message: what is wrong and what is available instead.
    """

    def __init__(self, argument: str, message: str):
        super().__init__(f"{argument}: {message}")
        self.argument = argument


@dataclasses.dataclass(frozen=True)
class Cell:
    """One parameter combination of one benchmark in one recorded run.

    Attributes:
        value: asv's result: for ``time_*`` the median time per call in seconds, for
            ``track_*`` the returned value; ``None`` if it failed, NaN if skipped (n/a).
        stats: asv's statistics of the samples (``ci_99_a``, ``ci_99_b``, ``q_25``, ``q_75``,
            ``number``, ``repeat``), or ``None`` when asv kept none (``track_*`` benchmarks).
        samples: the per-call timings recorded with ``--record-samples``, or ``None``.
    """

    value: float | None
    stats: Mapping[str, float] | None = None
    samples: tuple[float, ...] | None = None

    @property
    def ok(self) -> bool:
        """Whether the cell holds a finite value (neither failed nor skipped)."""
        return isinstance(self.value, (int, float)) and math.isfinite(self.value)

    @property
    def status(self) -> str:
        """``"ok"``, ``"failed"`` (asv recorded None) or ``"n/a"`` (skipped: NaN)."""
        if self.ok:
            return "ok"
        return "failed" if self.value is None else "n/a"

    @property
    def n_samples(self) -> int | None:
        """The number of timings behind the value: recorded samples, else asv's ``repeat``."""
        if self.samples:
            return sum(1 for s in self.samples if s is not None and not math.isnan(s))
        if self.stats and self.stats.get("repeat"):
            return int(self.stats["repeat"])
        return None

    @property
    def number(self) -> int | None:
        """Calls averaged inside each timing (asv's ``number``), if recorded."""
        if self.stats and self.stats.get("number"):
            return int(self.stats["number"])
        return None

    @property
    def ci_99(self) -> tuple[float, float] | None:
        """asv's 99% confidence interval of the median, if recorded."""
        if self.stats and "ci_99_a" in self.stats and "ci_99_b" in self.stats:
            return (self.stats["ci_99_a"], self.stats["ci_99_b"])
        return None

    @property
    def iqr(self) -> tuple[float, float] | None:
        """The samples' 25% and 75% quantiles, if recorded."""
        if self.stats and "q_25" in self.stats and "q_75" in self.stats:
            return (self.stats["q_25"], self.stats["q_75"])
        return None

    @property
    def err(self) -> float | None:
        """asv's error measure (half the IQR), as `asv compare` prints after "±"."""
        return get_err(self.value, self.stats) if self.iqr is not None else None


@dataclasses.dataclass(frozen=True)
class Comparison:
    """BEFORE vs AFTER for one row, judged the way `asv compare` judges two commits.

    Attributes:
        before: the BEFORE cell.
        after: the AFTER cell.
        factor: the ratio a change must exceed to count (asv's ``--factor``).
        verdict: ``"faster"`` or ``"slower"`` when `asv compare` would flag AFTER as better or
            worse, ``"noise"`` when it would not, ``"n/a"`` when either cell has no value.
        higher_is_better: True for rates (GFLOP/s, steps/s), where a larger value is better.
    """

    before: Cell
    after: Cell
    factor: float
    verdict: str
    higher_is_better: bool = False

    @property
    def speedup(self) -> float | None:
        """How many times better AFTER is: BEFORE / AFTER for times, AFTER / BEFORE for rates;
        ``None`` if either is missing or the divisor is zero."""
        num, den = (self.after, self.before) if self.higher_is_better else (self.before, self.after)
        if self.verdict == MISSING or den.value == 0:
            return None
        return num.value / den.value

    @property
    def change(self) -> float | None:
        """(AFTER - BEFORE) / BEFORE as a fraction, or ``None`` if not computable."""
        if self.verdict == MISSING or self.before.value == 0:
            return None
        return (self.after.value - self.before.value) / self.before.value

    @property
    def within_noise(self) -> bool:
        """True when `asv compare` would not flag the pair."""
        return self.verdict == NOISE


def compare(
    before: Cell, after: Cell, factor: float = DEFAULT_FACTOR, higher_is_better: bool = False
) -> Comparison:
    """Judge a pair of cells with `asv compare`'s rule.

    A change is flagged when the ratio exceeds `factor` and, where asv has statistics for both
    cells (and more than one sample each), the samples differ significantly: Mann-Whitney U at
    p < 0.002 on the recorded samples when there are enough of them, else non-overlapping 99%
    confidence intervals. Without statistics (``track_*``) only the factor decides, as in asv.

    Arguments:
        before: the reference cell.
        after: the cell compared with it.
        factor: the ratio a change must exceed.
        higher_is_better: judge a rate (larger is better) instead of a time; asv compare
            itself assumes lower is better for every unit.

    Returns:
        The `Comparison`.
    """
    if not (before.ok and after.ok):
        return Comparison(before, after, factor, MISSING, higher_is_better)

    def flagged_lower(a, b):
        return _is_result_better(
            a.value, b.value, (a.stats, _sample_list(a)), (b.stats, _sample_list(b)), factor
        )

    # AFTER improves on BEFORE when it is flagged lower (a time) or BEFORE is flagged lower (a rate).
    lower, higher = (before, after) if higher_is_better else (after, before)
    if flagged_lower(lower, higher):
        verdict = FASTER
    elif flagged_lower(higher, lower):
        verdict = SLOWER
    else:
        verdict = NOISE
    return Comparison(before, after, factor, verdict, higher_is_better)


def higher_is_better(unit: str | None) -> bool:
    """Whether a larger value of `unit` is better.

    The suite's convention: rates end in ``/s`` (``"GFLOP/s"``, ``"traj-steps/s"``) and shares
    of a bound start with ``fraction`` (``"fraction of PRNG bound"``); everything else
    (seconds, bytes, ``"ratio"`` of costs) is better when lower, as asv compare assumes.

    Arguments:
        unit: asv's unit string of a benchmark.

    Returns:
        True for rates and fractions of a bound, False otherwise.
    """
    if not unit:
        return False
    return unit.replace(" ", "").endswith("/s") or unit.lower().startswith("fraction")


def _sample_list(cell):
    return list(cell.samples) if cell.samples is not None else None


@dataclasses.dataclass(frozen=True)
class RecordedRun:
    """The results of one machine, commit and environment, with their metadata.

    Attributes:
        results: asv's `Results` object loaded from the results file.
        path: the results file.
        machine: the asv machine name.
        machine_info: the machine's ``machine.json`` (cpu, arch, os, ram, num_cpu, ...).
        benchmarks: the ``benchmarks.json`` entries (param_names, unit, ...) by name.
    """

    results: Results
    path: str
    machine: str
    machine_info: Mapping[str, str]
    benchmarks: Mapping[str, Mapping]

    @property
    def commit(self) -> str:
        """The full commit hash."""
        return self.results.commit_hash

    @property
    def env_name(self) -> str:
        """asv's environment name."""
        return self.results.env_name

    def cells(self, name: str) -> tuple[list[str], list[list[str]], dict[tuple[str, ...], Cell]]:
        """Every cell of one benchmark.

        Arguments:
            name: the full benchmark name, e.g. ``"bench_linear_solve.LinearSolveJVP.time_jvp"``.

        Returns:
            (param_names, param_values, cells): the parameter names, each parameter's values as
            display labels (``'lu'`` becomes ``lu``), and label tuple -> `Cell`.
        """
        results = self.results
        params = results.get_result_params(name)
        param_names = list(self.benchmarks.get(name, {}).get("param_names") or [])
        if len(param_names) != len(params):
            raise ReportError(
                "--results-dir",
                f"benchmarks.json does not match the recorded parameters of {name} "
                f"({len(param_names)} names, {len(params)} parameters); "
                "run `asv run --bench just-discover` to regenerate it",
            )
        values = results.get_result_value(name, params)
        stats = results.get_result_stats(name, params)
        samples = results.get_result_samples(name, params)
        cells = {}
        for combo, value, stat, sample in zip(
            itertools.product(*params), values, stats, samples
        ):
            key = tuple(_label(p) for p in combo)
            cells[key] = Cell(value, stat, tuple(sample) if sample is not None else None)
        return param_names, [[_label(v) for v in p] for p in params], cells

    def unit(self, name: str) -> str | None:
        """The benchmark's unit from ``benchmarks.json`` (``"seconds"`` for ``time_*``).

        Arguments:
            name: the full benchmark name.

        Returns:
            The unit, or ``None`` if asv recorded none.
        """
        return self.benchmarks.get(name, {}).get("unit")


def _label(param_repr):
    # asv stores parameter values as their repr(); show strings without their quotes.
    try:
        value = ast.literal_eval(param_repr)
    except (ValueError, SyntaxError):
        return param_repr
    return value if isinstance(value, str) else param_repr


def default_results_dir(directory: str = ".") -> str:
    """The results directory named by ``asv.conf.json`` in `directory`, else ``.asv/results``.

    Arguments:
        directory: where to look for ``asv.conf.json``.

    Returns:
        The results directory path (relative paths resolved against `directory`).
    """
    conf_path = os.path.join(directory, "asv.conf.json")
    results_dir = ".asv/results"
    if os.path.isfile(conf_path):
        # asv.conf.json may hold // comments, which asv itself accepts.
        conf = asv_util.load_json(conf_path, js_comments=True)
        results_dir = conf.get("results_dir", results_dir)
    return os.path.normpath(os.path.join(directory, results_dir))


def current_machine() -> str | None:
    """The machine name `asv run` would record under here, from ``~/.asv-machine.json``.

    Returns:
        The name, or ``None`` when asv has no machine information stored.
    """
    try:
        info = MachineCollection.load(platform.node())
    except (asv_util.UserError, OSError, ValueError):
        return None
    return info.get("machine")


def recorded_machines(results_dir: str) -> dict[str, str]:
    """The machines with results in `results_dir`.

    Arguments:
        results_dir: an asv results directory.

    Returns:
        machine name -> the directory holding its ``machine.json`` and results files.
    """
    machines = {}
    for path in iter_machine_files(results_dir):
        try:
            info = asv_util.load_json(path, api_version=Machine.api_version)
        except asv_util.UserError:
            continue
        if isinstance(info.get("machine"), str):
            machines[info["machine"]] = os.path.dirname(path)
    return machines


def load_run(
    results_dir: str,
    machine: str | None = None,
    commit: str | None = None,
    env: str | None = None,
) -> RecordedRun:
    """Load one recorded run: a machine's newest commit unless told otherwise.

    Arguments:
        results_dir: the asv results directory.
        machine: the asv machine name; default: this machine (``~/.asv-machine.json``) if it
            has results, else the only machine that has.
        commit: a commit hash prefix; default: the newest commit recorded (by commit date, then
            by when it was benchmarked).
        env: an asv environment name (or a unique part of one); required only when the commit
            was recorded in several environments.

    Returns:
        The `RecordedRun`.

    Raises:
        ReportError: when the directory, machine, commit or environment cannot be found.
    """
    if not os.path.isdir(results_dir):
        raise ReportError(
            "--results-dir", f"no asv results directory at {results_dir!r} (run `asv run` first)"
        )
    machines = recorded_machines(results_dir)
    if not machines:
        raise ReportError(
            "--results-dir", f"no asv results in {results_dir!r} (no <machine>/machine.json)"
        )
    known = ", ".join(sorted(machines))
    if machine is None:
        here = current_machine()
        if here in machines:
            machine = here
        elif len(machines) == 1:
            machine = next(iter(machines))
        else:
            raise ReportError(
                "--machine",
                f"no results for this machine ({here or 'unknown'}) in {results_dir!r}; "
                f"pick one of: {known}",
            )
    elif machine not in machines:
        raise ReportError(
            "--machine",
            f"no results for machine {machine!r} in {results_dir!r} (recorded: {known})",
        )

    runs = [r for r in iter_results(machines[machine]) if r.params.get("machine") == machine]
    if not runs:
        raise ReportError(
            "--machine",
            f"no results files for machine {machine!r} in {results_dir!r} (run `asv run` first)",
        )
    if commit is not None:
        chosen = [r for r in runs if r.commit_hash.lower().startswith(commit.lower())]
        commits = sorted({r.commit_hash[:8] for r in chosen})
        if not chosen:
            recorded = ", ".join(sorted({r.commit_hash[:8] for r in runs}))
            raise ReportError(
                "--commit",
                f"no results for commit {commit!r} on machine {machine!r} (recorded: {recorded})",
            )
        if len(commits) > 1:
            raise ReportError(
                "--commit", f"{commit!r} matches several commits: {', '.join(commits)}"
            )
        runs = chosen
    if env is not None:
        # An exact name first: one environment's name can be a part of another's.
        chosen = [r for r in runs if r.env_name == env] or [r for r in runs if env in r.env_name]
        if not chosen:
            recorded = ", ".join(sorted({r.env_name for r in runs}))
            raise ReportError(
                "--env", f"{env!r} matches no recorded environment (recorded: {recorded})"
            )
        runs = chosen
    newest = max(runs, key=_recency)
    chosen = [r for r in runs if r.commit_hash == newest.commit_hash]
    if len(chosen) > 1:
        envs = ", ".join(sorted(r.env_name for r in chosen))
        raise ReportError(
            "--env",
            f"commit {newest.commit_hash[:8]} was recorded in several environments; "
            f"pick one: {envs}",
        )
    results = chosen[0]

    machine_dir = machines[machine]
    machine_info = asv_util.load_json(
        os.path.join(machine_dir, "machine.json"), api_version=Machine.api_version
    )
    benchmarks_path = Benchmarks.get_benchmark_file_path(results_dir)
    if os.path.isfile(benchmarks_path):
        benchmarks = asv_util.load_json(benchmarks_path, api_version=Benchmarks.api_version)
        benchmarks.pop("version", None)
    else:
        benchmarks = {}
    return RecordedRun(
        results=results,
        path=os.path.join(
            machine_dir,
            os.path.basename(get_filename(machine, results.commit_hash, results.env_name)),
        ),
        machine=machine,
        machine_info=machine_info,
        benchmarks=benchmarks,
    )


def _recency(results):
    started = [t for t in results.started_at.values() if t is not None]
    return (results.date or 0, max(started, default=0))


def match_benchmarks(run: RecordedRun, patterns: Sequence[str]) -> list[str]:
    """The recorded benchmarks named by `patterns`, in the patterns' order.

    A pattern matches a benchmark when it equals a run of whole dotted components of the full
    name (``LinearSolveJVP`` matches every method of that class, not ``LinearSolveJVPDefault``;
    ``LinearSolveJVP.time_jvp`` matches ``bench_linear_solve.LinearSolveJVP.time_jvp``), or,
    when it holds ``*``, ``?`` or ``[``, matches the name or a dotted tail of it as a glob.

    Arguments:
        run: the recorded run.
        patterns: the ``--benchmark`` values.

    Returns:
        Full benchmark names, without duplicates.

    Raises:
        ReportError: when a pattern matches no recorded benchmark.
    """
    names = []
    for pattern in patterns:
        names.extend(n for n in _match_one(run, pattern) if n not in names)
    return names


def _match_one(run, pattern):
    recorded = sorted(run.results.get_all_result_keys())
    found = [name for name in recorded if _matches(name, pattern)]
    if not found:
        shown = ", ".join(_short(n) for n in recorded[:12])
        shown += ", ..." if len(recorded) > 12 else ""
        raise ReportError(
            "--benchmark",
            f"no recorded benchmark matches {pattern!r} in {run.path} "
            f"(recorded: {shown or 'none'})",
        )
    return found


def _matches(name, pattern):
    parts = name.split(".")
    is_glob = any(c in pattern for c in "*?[")
    wanted = pattern.split(".")
    for start in range(len(parts)):
        tail = parts[start:]
        if is_glob:
            if fnmatch.fnmatchcase(".".join(tail), pattern):
                return True
        elif tail[: len(wanted)] == wanted:
            return True
    return False


def _short(name):
    # The module prefix repeats in every title; asv's benchmark names are module.Class.method.
    parts = name.split(".")
    return ".".join(parts[-2:]) if len(parts) > 2 else name


@dataclasses.dataclass(frozen=True)
class Row:
    """One row of a table.

    Attributes:
        labels: the values of the row parameters (e.g. the size).
        cells: variant -> `Cell`, every variant recorded for this row.
        comparison: BEFORE vs AFTER.
        best: (variant, cell) of the best value in the row (the lowest; the highest for a
            rate), or ``None`` if none has a value.
    """

    labels: tuple[str, ...]
    cells: Mapping[str, Cell]
    comparison: Comparison
    best: tuple[str, Cell] | None


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

    @property
    def title(self) -> str:
        """E.g. ``"LinearSolveJVP.time_jvp — solver=lu"``."""
        fixed = ", ".join(f"{k}={v}" for k, v in self.fixed)
        return f"{_short(self.benchmark)} — {fixed}" if fixed else _short(self.benchmark)


def build_tables(
    run: RecordedRun,
    benchmark: str,
    before: str = "before",
    after: str = "after",
    extra: Sequence[str] = (),
    rows: Sequence[str] | None = None,
    factor: float = DEFAULT_FACTOR,
    variant_param: str = VARIANT_PARAM,
) -> list[Table]:
    """The tables of one benchmark: one per combination of the non-row, non-variant parameters.

    Arguments:
        run: the recorded run.
        benchmark: the full benchmark name.
        before: the BEFORE variant.
        after: the AFTER variant.
        extra: variants shown as extra columns.
        rows: the parameters down the rows; default ``size`` if the benchmark has it, else
            every parameter other than the variant.
        factor: asv's ``--factor`` for the "~" (within noise) mark.
        variant_param: the parameter that names the variant.

    Returns:
        The tables, in asv's parameter order.

    Raises:
        ReportError: when the benchmark has no variant parameter, a variant is not one of its
            values, or a row parameter does not exist.
    """
    if benchmark not in run.benchmarks:
        raise ReportError(
            "--benchmark",
            f"{benchmark} is not in benchmarks.json next to the results, so its parameter names "
            "are unknown; run `asv run --bench just-discover` to regenerate it",
        )
    param_names, param_values, cells = run.cells(benchmark)
    if variant_param not in param_names:
        raise ReportError(
            "--benchmark",
            f"{_short(benchmark)} has no parameter {variant_param!r} "
            f"(parameters: {', '.join(param_names) or 'none'})",
        )
    vi = param_names.index(variant_param)
    variants = param_values[vi]
    wanted = [("--before", before), ("--after", after)] + [("--extra", e) for e in extra]
    for option, variant in wanted:
        if variant not in variants:
            raise ReportError(
                option,
                f"{variant!r} is not a value of {variant_param!r} in {_short(benchmark)} "
                f"(values: {', '.join(variants)})",
            )
    others = [n for n in param_names if n != variant_param]
    if rows is None:
        rows = [ROW_PARAM] if ROW_PARAM in others else others
    for r in rows:
        if r not in others:
            raise ReportError(
                "--rows",
                f"{r!r} is not a parameter of {_short(benchmark)} other than {variant_param!r} "
                f"(parameters: {', '.join(others)})",
            )
    fixed_names = [n for n in others if n not in rows]
    index = {n: i for i, n in enumerate(param_names)}
    unit = run.unit(benchmark)
    rate = higher_is_better(unit)

    tables = []
    for fixed_values in itertools.product(*(param_values[index[n]] for n in fixed_names)):
        table_rows = []
        for row_values in itertools.product(*(param_values[index[n]] for n in rows)):
            where = dict(zip(fixed_names, fixed_values)) | dict(zip(rows, row_values))
            row_cells = {}
            for variant in variants:
                where[variant_param] = variant
                row_cells[variant] = cells[tuple(where[n] for n in param_names)]
            table_rows.append(
                Row(
                    labels=tuple(row_values),
                    cells=row_cells,
                    comparison=compare(row_cells[before], row_cells[after], factor, rate),
                    best=_best(row_cells, rate),
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
            )
        )
    return tables


def _best(cells, rate):
    # Lower is better except for rates; ties go to the first variant.
    candidates = [(v, c) for v, c in cells.items() if c.ok]
    if not candidates:
        return None
    return (max if rate else min)(candidates, key=lambda vc: vc[1].value)


@dataclasses.dataclass(frozen=True)
class Report:
    """Everything a rendered report shows.

    Attributes:
        run: the recorded run.
        tables: the tables, benchmark by benchmark.
        before: the BEFORE variant.
        after: the AFTER variant.
        extra: the extra variant columns.
        factor: the factor used for the "~" mark.
        command: the command line that produced the report.
        skipped: benchmarks matched by a pattern but left out for having no variant parameter.
    """

    run: RecordedRun
    tables: tuple[Table, ...]
    before: str
    after: str
    extra: tuple[str, ...]
    factor: float
    command: str
    skipped: tuple[str, ...] = ()


def build_report(
    results_dir: str,
    benchmarks: Sequence[str] = (DEFAULT_BENCHMARK,),
    before: str = "before",
    after: str = "after",
    extra: Sequence[str] = (),
    rows: Sequence[str] | None = None,
    machine: str | None = None,
    commit: str | None = None,
    env: str | None = None,
    factor: float = DEFAULT_FACTOR,
    command: str = "python -m perflab report",
) -> Report:
    """Load a recorded run and build the tables of the selected benchmarks.

    Arguments:
        results_dir: the asv results directory.
        benchmarks: benchmark names, dotted parts of names or globs (see `match_benchmarks`).
        before: the BEFORE variant.
        after: the AFTER variant.
        extra: variants shown as extra columns.
        rows: the parameters down the rows (see `build_tables`).
        machine: the asv machine name (see `load_run`).
        commit: a commit hash prefix (see `load_run`).
        env: an environment name (see `load_run`).
        factor: the factor for the "~" (within noise) mark.
        command: the command line to state in the header.

    Returns:
        The `Report`.

    Raises:
        ReportError: on any user error (see `load_run`, `match_benchmarks`, `build_tables`).
    """
    if not factor >= 1.0:
        raise ReportError("--factor", f"must be at least 1.0, got {factor}")
    run = load_run(results_dir, machine=machine, commit=commit, env=env)
    tables, done, skipped, used = [], set(), [], set()
    for pattern in benchmarks:
        found = _match_one(run, pattern)
        for name in found:
            if name in done:
                continue
            done.add(name)
            # A pattern naming several benchmarks (LinearSolveJVP*) may sweep in ones without
            # variants (LinearSolveJVPDefault); those are left out, but one named alone is an error.
            sweep = len(found) > 1 and name in run.benchmarks
            if sweep and VARIANT_PARAM not in _param_names(run, name):
                skipped.append(name)
                continue
            # An extra variant that only some of the selected benchmarks have (cython is
            # tridiagonal-only, so absent from the batched benchmark) is left out of the others.
            values = _variant_values(run, name)
            here = [e for e in extra if values is None or e in values]
            used.update(here)
            tables.extend(build_tables(run, name, before, after, here, rows, factor))
    for e in extra:
        if e not in used:
            raise ReportError("--extra", f"{e!r} is not a variant of any selected benchmark")
    if not tables:
        raise ReportError(
            "--benchmark",
            f"none of {', '.join(_short(n) for n in skipped)} has a parameter {VARIANT_PARAM!r}",
        )
    return Report(run, tuple(tables), before, after, tuple(extra), factor, command, tuple(skipped))


def _variant_values(run, name):
    info = run.benchmarks.get(name, {})
    names = info.get("param_names") or []
    if VARIANT_PARAM not in names:
        return None
    return [_label(v) for v in info["params"][names.index(VARIANT_PARAM)]]


def _param_names(run, name):
    return run.benchmarks.get(name, {}).get("param_names") or []


# Rendering --------------------------------------------------------------------------------


def _scale(unit):
    # Times are recorded in seconds; the tables show milliseconds.
    if unit == "seconds":
        return 1e3, "ms"
    return 1.0, unit


def _number(value):
    # Four significant digits without exponents (0.01290, 6.305, 123.4): rows spanning
    # microseconds to seconds stay comparable by eye and no digit pretends to more precision.
    if value == 0:
        return "0"
    digits = max(0, 3 - math.floor(math.log10(abs(value))))
    return f"{value:.{digits}f}"


def _value(cell, scale):
    return _number(cell.value * scale) if cell.ok else cell.status


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


def _header_cells(table):
    _, unit = _scale(table.unit)
    suffix = f" ({unit})" if unit else ""
    head = [p.capitalize() for p in table.row_params]
    head += [f"BEFORE{suffix}", f"AFTER{suffix}", "Speedup", "Change", "Spread B / A", "n B / A"]
    head += [f"{v}{suffix}" for v in table.extra]
    head += [f"Best{suffix}"]
    return head


def _row_cells(table, row):
    scale, _ = _scale(table.unit)
    comp = row.comparison
    speedup = f"{comp.speedup:.2f}x" if comp.speedup is not None else "n/a"
    if comp.change is None:
        change = "n/a"
    elif comp.within_noise:
        change = NOISE_MARK
    else:
        change = f"{comp.change * 100:+.1f}%"
    pair = (row.cells[table.before], row.cells[table.after])
    out = list(row.labels)
    out += [_value(c, scale) for c in pair]
    out += [speedup, change]
    out += [" / ".join(_spread(c) for c in pair), " / ".join(_count(c) for c in pair)]
    out += [_value(row.cells[v], scale) for v in table.extra]
    out += [f"{_number(row.best[1].value * scale)} ({row.best[0]})" if row.best else "n/a"]
    return out


def _header_lines(report):
    run = report.run
    info = run.machine_info
    details = [info.get("cpu"), info.get("arch")]
    if info.get("num_cpu"):
        details.append(f"{info['num_cpu']} CPUs")
    if info.get("ram"):
        details.append(f"{_ram(info['ram'])} RAM")
    details.append(info.get("os"))
    machine = f"{run.machine} ({', '.join(d for d in details if d)})"

    commit = run.commit
    if run.results.date:
        commit += f" (committed {_when(run.results.date)})"
    names = list(dict.fromkeys(t.benchmark for t in report.tables))
    started = [run.results.started_at.get(n) for n in names]
    started = [t for t in started if t]
    recorded = _when(min(started)) if started else "unknown"
    if started and _when(max(started)) != recorded:
        recorded += f" to {_when(max(started))}"
    env = run.env_name
    if run.results.params.get("python"):
        env += f" (python {run.results.params['python']})"

    samples = [(n, _samples_text([t for t in report.tables if t.benchmark == n])) for n in names]
    if len({s for _, s in samples}) <= 1:
        sample_line = samples[0][1] if samples else "none"
    else:
        sample_line = "; ".join(f"{_short(n)}: {s}" for n, s in samples)
    lines = [
        ("Machine", machine),
        ("Commit", commit),
        ("Recorded", recorded),
        ("Environment", env),
        ("Samples per cell", sample_line),
        (
            "Pair",
            f"BEFORE = {VARIANT_PARAM} {report.before}, AFTER = {VARIANT_PARAM} {report.after}; "
            "Speedup = BEFORE/AFTER (AFTER/BEFORE for rates such as GFLOP/s); "
            "Change = (AFTER - BEFORE)/BEFORE; Best = the row's best variant (lowest time, "
            "highest rate)",
        ),
        (
            "Noise",
            f"\"{NOISE_MARK}\" replaces a change asv compare would not flag: one below a factor "
            f"of {report.factor:g} or not significant (Mann-Whitney U on the recorded samples, "
            "else overlapping 99% CIs). Spread = half the interquartile range of the samples "
            "relative to the median (asv's ±); n = timings per cell",
        ),
        ("Results file", run.path),
        ("Command", report.command),
    ]
    if report.skipped:
        why = f"(no {VARIANT_PARAM!r} parameter)"
        lines.append(("Skipped", ", ".join(f"{_short(n)} {why}" for n in report.skipped)))
    return lines


def _samples_text(tables):
    cells = [c for t in tables for r in t.rows for c in r.cells.values() if c.ok]
    counts = sorted({c.n_samples for c in cells if c.n_samples is not None})
    numbers = sorted({c.number for c in cells if c.number is not None})
    if not counts:
        return "1 value (no samples or statistics recorded)"
    text = str(counts[0]) if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"
    text += " timings"
    if numbers:
        calls = str(numbers[0]) if len(numbers) == 1 else f"{numbers[0]}-{numbers[-1]}"
        text += f" of {calls} call{'s' if numbers != [1] else ''} each"
    return text + ", median shown"


def _when(ms):
    # asv stores dates as JavaScript timestamps (milliseconds since the epoch, UTC).
    return datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.timezone.utc).strftime(
        "%Y-%m-%d %H:%M UTC"
    )


def _ram(value):
    # asv records RAM in bytes as a string; anything else is shown as recorded.
    try:
        return f"{int(value) / 2**30:.1f} GiB"
    except (TypeError, ValueError):
        return str(value)


def render_markdown(report: Report) -> str:
    """The report as Markdown (for ``docs/reports/``).

    Arguments:
        report: the report.

    Returns:
        The text, ending with a newline.
    """
    names = ", ".join(dict.fromkeys(_short(t.benchmark) for t in report.tables))
    lines = [f"# Benchmark report: {names}", ""]
    lines += [f"- **{key}:** {_md_code(key, value)}" for key, value in _header_lines(report)]
    for table in report.tables:
        head = _header_cells(table)
        lines += ["", f"## {table.title}", ""]
        lines.append("| " + " | ".join(head) + " |")
        aligns = ["---:"] * (len(head) - 1) + ["---"]
        lines.append("|" + "|".join(aligns) + "|")
        for row in table.rows:
            lines.append("| " + " | ".join(_row_cells(table, row)) + " |")
    return "\n".join(lines) + "\n"


def _md_code(key, value):
    return f"`{value}`" if key in ("Command", "Results file") else value


def render_text(report: Report) -> str:
    """The report as aligned plain-text tables for a terminal.

    Arguments:
        report: the report.

    Returns:
        The text, ending with a newline.
    """
    header = _header_lines(report)
    width = max(len(k) for k, _ in header)
    lines = [f"{key:<{width}}  {value}" for key, value in header]
    for table in report.tables:
        head = _header_cells(table)
        body = [_row_cells(table, row) for row in table.rows]
        widths = [max(len(r[i]) for r in [head] + body) for i in range(len(head))]
        lines += ["", table.title, "=" * len(table.title)]
        lines.append(_text_row(head, widths))
        lines.append("  ".join("-" * w for w in widths))
        lines += [_text_row(r, widths) for r in body]
    return "\n".join(lines) + "\n"


def _text_row(cells, widths):
    # Numbers right-aligned, the last column (Best: "value (variant)") left-aligned.
    padded = [c.rjust(w) for c, w in zip(cells[:-1], widths[:-1])]
    padded.append(cells[-1].ljust(widths[-1]))
    return "  ".join(padded).rstrip()


RENDERERS = {"text": render_text, "markdown": render_markdown}


# Command line -----------------------------------------------------------------------------


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register the ``report`` subcommand.

    Arguments:
        subparsers: the object returned by `argparse.ArgumentParser.add_subparsers`.

    Returns:
        The subcommand's parser.
    """
    parser = subparsers.add_parser(
        "report",
        help="BEFORE/AFTER tables of variants from recorded asv results",
        description=(
            "Tables of two variants of the same recorded asv run (BEFORE vs AFTER), per value of "
            "the non-size, non-variant parameters, one row per size. Reads the newest commit "
            "recorded for this machine unless told otherwise. '~' marks a change that asv "
            "compare would not flag."
        ),
    )
    where = parser.add_argument_group("which results")
    where.add_argument(
        "--results-dir",
        help="asv results directory (default: results_dir of ./asv.conf.json, else .asv/results)",
    )
    where.add_argument(
        "--machine", help="asv machine name (default: this machine, else the only one recorded)"
    )
    where.add_argument("--commit", help="commit hash prefix (default: the newest recorded)")
    where.add_argument(
        "--env", help="asv environment name, when the commit was recorded in several"
    )
    what = parser.add_argument_group("what to show")
    what.add_argument(
        "--benchmark",
        "-b",
        dest="benchmarks",
        action="extend",
        nargs="+",
        metavar="NAME",
        help=(
            f"benchmark(s): a full name, dotted part of one (e.g. LinearSolveJVP) or a glob "
            f"(e.g. 'LinearSolveJVP.*'); repeatable (default: {DEFAULT_BENCHMARK})"
        ),
    )
    what.add_argument("--before", default="before", help="the BEFORE variant (default: before)")
    what.add_argument("--after", default="after", help="the AFTER variant (default: after)")
    what.add_argument(
        "--extra",
        action="extend",
        nargs="+",
        default=[],
        metavar="VARIANT",
        help="further variants shown as columns (repeatable, or comma-separated)",
    )
    what.add_argument(
        "--rows",
        metavar="PARAM",
        help="comma-separated parameters down the rows (default: size, else all but the variant)",
    )
    what.add_argument(
        "--factor",
        type=float,
        default=DEFAULT_FACTOR,
        help=f"change needed before asv compare flags it (default: {DEFAULT_FACTOR})",
    )
    out = parser.add_argument_group("output")
    out.add_argument(
        "--format", choices=FORMATS, default="text", help="output format (default: text)"
    )
    out.add_argument("--output", "-o", metavar="FILE", help="write to FILE instead of stdout")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Run the ``report`` subcommand.

    Arguments:
        args: the parsed arguments (see `add_parser`); ``command_line``, if set, is the command
            stated in the header.

    Returns:
        The exit status, 0.

    Raises:
        ReportError: on a user error (``python -m perflab`` prints it as one line, exit 2).
    """
    command = getattr(args, "command_line", None) or "python -m perflab report"
    try:
        report = build_report(
            results_dir=args.results_dir or default_results_dir(),
            benchmarks=args.benchmarks or [DEFAULT_BENCHMARK],
            before=args.before,
            after=args.after,
            extra=[v for e in args.extra for v in e.split(",") if v],
            rows=[r for r in args.rows.split(",") if r] if args.rows else None,
            machine=args.machine,
            commit=args.commit,
            env=args.env,
            factor=args.factor,
            command=command,
        )
    except asv_util.UserError as err:
        # asv's own loaders report malformed or outdated files this way.
        raise ReportError("--results-dir", " ".join(str(err).split())) from None
    text = RENDERERS[args.format](report)
    if args.output:
        try:
            with open(args.output, "w", encoding="utf-8") as f:
                f.write(text)
        except OSError as err:
            raise ReportError("--output", f"cannot write {args.output!r}: {err.strerror}")
    else:
        sys.stdout.write(text)
    return 0
