"""Cells: the recorded values of one run, by benchmark and parameter combination.

Second stage of the report (spec -> load -> **cells** -> comparisons -> tables -> render):
picks the benchmarks that names and globs select from a loaded run, turns each into a `Grid` of
`Cell` objects, and reads the single cells that ``{cell:...}`` references in prose name.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import math
import re
from collections.abc import Mapping, Sequence

from asv_runner.statistics import get_err

from .._asv import RecordedRun, ReportError, human_value, short_name

VARIANT_PARAM = "variant"


@dataclasses.dataclass(frozen=True)
class Cell:
    """One parameter combination of one benchmark in one recorded run.

    Attributes:
        value: asv's result: for ``time_*`` the median time per call in seconds, for
            ``track_*`` the returned value; ``None`` if it failed, NaN if skipped (n/a).
        stats: asv's statistics of the samples (``ci_99_a``, ``ci_99_b``, ``q_25``, ``q_75``,
            ``number``, ``repeat``), or ``None`` when asv kept none (``track_*`` benchmarks).
        samples: the per-call timings recorded with ``--record-samples``, or ``None``; for the
            interleaved classes one value per process.
        paired_group: cells with the same group were measured interleaved in the same
            processes, in the same sample order (one class of one recorded run), else ``None``.
    """

    value: float | None
    stats: Mapping[str, float] | None = None
    samples: tuple[float, ...] | None = None
    paired_group: str | None = None

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
    def values(self) -> list[float]:
        """The samples without failed or skipped ones, else the single value."""
        if self.samples:
            return [s for s in self.samples if s is not None and not math.isnan(s)]
        return [] if self.value is None else [self.value]

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
class Grid:
    """Every cell of one benchmark of one run, with what ``benchmarks.json`` says of it.

    Attributes:
        benchmark: the full benchmark name.
        param_names: the parameter names.
        param_values: each parameter's values as display labels.
        cells: label tuple (in `param_names` order) -> `Cell`.
        info: the benchmark's ``benchmarks.json`` entry (unit, baseline, optimised, control).
        fingerprints: the same keys -> the cells of the benchmark's ``_fingerprint`` twin, if
            recorded (variants that compiled to one program).
        where: the run it comes from, for messages (machine, commit, results file).
    """

    benchmark: str
    param_names: tuple[str, ...]
    param_values: tuple[tuple[str, ...], ...]
    cells: Mapping[tuple[str, ...], Cell]
    info: Mapping
    fingerprints: Mapping[tuple[str, ...], Cell] = dataclasses.field(default_factory=dict)
    where: str = ""

    @property
    def unit(self) -> str | None:
        """asv's unit of the benchmark."""
        return self.info.get("unit")

    @property
    def variants(self) -> tuple[str, ...] | None:
        """The values of the variant parameter, or ``None`` if the benchmark has none."""
        if VARIANT_PARAM not in self.param_names:
            return None
        return self.param_values[self.param_names.index(VARIANT_PARAM)]

    def values_of(self, param: str) -> tuple[str, ...]:
        """The values of one parameter."""
        return self.param_values[self.param_names.index(param)]


def grid(run: RecordedRun, name: str) -> Grid:
    """Every cell of one recorded benchmark.

    Arguments:
        run: the recorded run.
        name: the full benchmark name.

    Returns:
        The `Grid` (with the ``_fingerprint`` twin's cells when recorded).

    Raises:
        ReportError: when ``benchmarks.json`` does not describe the benchmark.
    """
    if name not in run.benchmarks:
        raise ReportError(
            "--benchmark",
            f"{name} is not in benchmarks.json next to the results ({run.results_dir}), so "
            "its parameter names are unknown; run `asv run --bench just-discover` to regenerate it",
        )
    fingerprints = {}
    if f"{name}_fingerprint" in run.names:
        fingerprints = _cells(run, f"{name}_fingerprint")[1]
    recorded, cells = _cells(run, name)
    where = f"machine {run.machine}, commit {run.commit[:8]} ({run.path})"
    return Grid(name, recorded.param_names, recorded.param_values, cells, run.info(name), fingerprints, where)


def _cells(run, name):
    recorded = run.recorded(name)
    # One class of one recorded run measured its cells in the same processes, in order.
    group = None
    if run.info(name).get("paired_processes"):
        group = f"{run.path}::{name.rsplit('.', 1)[0]}"
    cells = {
        key: Cell(value, stat, tuple(sample) if sample is not None else None, group)
        for key, value, stat, sample in recorded.combinations()
    }
    return recorded, cells


def select(run: RecordedRun, patterns: Sequence[str]) -> list[tuple[str, bool]]:
    """The recorded benchmarks named by `patterns`, in the patterns' order.

    A pattern matches a benchmark when it equals a run of whole dotted components of the full
    name (``LinearSolveJVP`` matches every method of that class, not ``LinearSolveJVPDefault``),
    or, when it holds ``*``, ``?`` or ``[``, matches the name or a dotted tail of it as a glob.

    Arguments:
        run: the recorded run.
        patterns: the ``--benchmark`` values.

    Returns:
        (full name, swept) without duplicates; swept: found by a pattern that names several.

    Raises:
        ReportError: when a pattern matches no recorded benchmark.
    """
    names = {}
    for pattern in patterns:
        found = _match(run, pattern)
        for name in found:
            names.setdefault(name, len(found) > 1)
    return list(names.items())


def _match(run, pattern):
    recorded = run.names
    found = [name for name in recorded if _matches(name, pattern)]
    if not found:
        shown = ", ".join(short_name(n) for n in recorded[:12])
        shown += ", ..." if len(recorded) > 12 else ""
        raise ReportError(
            "--benchmark",
            f"no recorded benchmark matches {pattern!r} in {run.path} "
            f"(machine {run.machine}, commit {run.commit[:8]}; recorded: {shown or 'none'})",
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


_REFERENCE = re.compile(r"\{cell:([^\[\]{}]+)\[([^\]{}]*)\]\}")


def fill_prose(text: str, run: RecordedRun, where: str = "") -> str:
    """Replace every ``{cell:Class.method[param=value,...]}`` with the recorded value.

    Arguments:
        text: Markdown.
        run: the run to read.
        where: the context to name in errors (e.g. ``"section 2: "``).

    Returns:
        The text with the values filled in (asv's unit formatting: ``1.23ms``).

    Raises:
        ReportError: when the benchmark, a parameter or the value does not exist.
    """

    def one(match):
        pattern, wanted = match.group(1).strip(), match.group(2)
        names = _match(run, pattern)
        if len(names) != 1:
            raise ReportError("prose", f"{where}{pattern!r} names {len(names)} benchmarks")
        name = names[0]
        pairs = [p.split("=", 1) for p in wanted.split(",") if p.strip()]
        if any(len(p) != 2 for p in pairs):
            raise ReportError("prose", f"{where}{match.group(0)}: expected param=value pairs")
        given = {k.strip(): v.strip() for k, v in pairs}
        recorded, cells = _cells(run, name)
        if set(given) != set(recorded.param_names):
            raise ReportError(
                "prose",
                f"{where}{match.group(0)} must give every parameter of {short_name(name)}: "
                f"{', '.join(recorded.param_names)}",
            )
        cell = cells.get(tuple(given[n] for n in recorded.param_names))
        if cell is None or cell.value is None or not cell.ok:
            status = "not recorded" if cell is None else cell.status
            raise ReportError("prose", f"{where}{match.group(0)} is {status} in {run.path}")
        return human_value(cell.value, run.unit(name))

    return _REFERENCE.sub(one, text)
