"""Comparisons: the one rule that judges a pair of cells, applied to a benchmark's grid.

Third stage of the report (spec -> load -> cells -> **comparisons** -> tables -> render). The
rule is `compare`, the process-aware comparison of `perflab.significance`: two variants of one
cell measured interleaved in the same processes are compared process by process (offsets
cancel), other pairs with Welch's interval over processes. A pair with a single value on a side
is "n=1, not tested", never a percentage that looks judged. `judge` applies it to every
parameter combination of a benchmark: BEFORE vs AFTER, and the baseline vs its identical-code
control; BEFORE and AFTER default to the ``baseline`` and ``optimised`` variants the recorded
run's ``benchmarks.json`` names.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Mapping, Sequence

from .. import significance
from .._asv import ReportError, short_name
from .cells import VARIANT_PARAM, Cell, Grid

# docs/reports/calibration.md measures the false positives and detection rates at this factor.
DEFAULT_FACTOR = significance.DEFAULT_FACTOR
CONFIDENCE = significance.DEFAULT_CONFIDENCE
UNPAIRED_CONFIDENCE = significance.UNPAIRED_CONFIDENCE

FASTER, SLOWER, NOISE, MISSING, UNTESTED = "faster", "slower", "noise", "n/a", "untested"
NOISE_MARK = "~ within noise"
UNTESTED_MARK = "n=1, not tested"


def rule_text(factor: float) -> str:
    """What the marks mean under `compare`, for report headers."""
    return (
        f'"{NOISE_MARK}" marks a pair whose interval of the ratio includes 1 or whose ratio is '
        f"within a factor of {factor:g}; the interval is over processes (one sample per process): "
        f"{CONFIDENCE:.0%}, paired process by process, for variants measured interleaved in the same "
        f'processes, else Welch\'s at {UNPAIRED_CONFIDENCE:.1%}. "{UNTESTED_MARK}" marks a pair '
        "with a single value on a side"
    )


@dataclasses.dataclass(frozen=True)
class Comparison:
    """BEFORE vs AFTER, judged by `compare`.

    Attributes:
        before: the BEFORE cell.
        after: the AFTER cell.
        factor: the ratio a change must exceed to count (asv's ``--factor``).
        verdict: `FASTER` or `SLOWER` when the rule flags AFTER as better or worse, `NOISE`
            when it does not, `UNTESTED` with a single value on a side, `MISSING` when either
            cell has no value.
        higher_is_better: True for rates (GFLOP/s, steps/s), where a larger value is better.
        significance: the process-aware verdict behind `verdict` (ratio AFTER / BEFORE and its
            interval), ``None`` when a cell is missing or no ratio exists.
    """

    before: Cell
    after: Cell
    factor: float
    verdict: str
    higher_is_better: bool = False
    significance: significance.Verdict | None = None

    @property
    def speedup(self) -> float | None:
        """How many times better AFTER is: BEFORE / AFTER for times, AFTER / BEFORE for rates;
        ``None`` when no ratio exists."""
        if self.significance is None:
            return None
        ratio = self.significance.ratio
        return ratio if self.higher_is_better else 1 / ratio

    @property
    def speedup_interval(self) -> tuple[float, float] | None:
        """The confidence interval of `speedup`, or ``None`` when untested or missing."""
        v = self.significance
        if v is None or not v.tested:
            return None
        return (v.low, v.high) if self.higher_is_better else (1 / v.high, 1 / v.low)

    @property
    def change(self) -> float | None:
        """(AFTER - BEFORE) / BEFORE as a fraction, or ``None`` if not computable."""
        if self.significance is None:
            return None
        return self.significance.ratio - 1

    @property
    def within_noise(self) -> bool:
        """True when the rule does not flag the pair."""
        return self.verdict == NOISE

    @property
    def flagged(self) -> bool:
        """True when the rule flags AFTER as better or worse."""
        return self.verdict in (FASTER, SLOWER)


def compare(before: Cell, after: Cell, factor: float = DEFAULT_FACTOR, higher_is_better: bool = False) -> Comparison:
    """THE comparison rule: is AFTER better, worse, or not distinguishable from BEFORE?

    `perflab.significance.compare` on the per-process samples: paired when both cells belong to
    the same `Cell.paired_group`, else Welch's interval; changed when the interval excludes 1
    and the ratio lies beyond `factor`.

    Arguments:
        before: the reference cell.
        after: the cell compared with it.
        factor: the ratio a change must exceed.
        higher_is_better: judge a rate (larger is better) instead of a time.

    Returns:
        The `Comparison`.
    """

    def done(verdict, detail=None):
        return Comparison(before, after, factor, verdict, higher_is_better, detail)

    if not (before.ok and after.ok):
        return done(MISSING)
    b, a = before.values, after.values
    if min(len(a), len(b)) < 2 and min(a + b) <= 0:
        # Single values such as an error of exactly 0: nothing to test, and no ratio exists.
        return done(UNTESTED)
    paired = before.paired_group is not None and before.paired_group == after.paired_group and len(a) == len(b)
    detail = significance.compare(b, a, paired=paired, factor=factor)
    if not detail.tested:
        return done(UNTESTED, detail)
    if not detail.changed:
        return done(NOISE, detail)
    better = detail.ratio > 1 if higher_is_better else detail.ratio < 1
    return done(FASTER if better else SLOWER, detail)


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


def timing(unit: str | None) -> bool:
    """Whether `unit` is a time or a ratio of times (a Best variant means something there), as
    opposed to a count, a size, an error or a chunk length."""
    if not unit:
        return False
    unit = unit.strip()
    return unit in ("seconds", "ratio") or unit.startswith(("s/", "ms/", "x ")) or unit.replace(" ", "").endswith("/s")


def best(
    cells: Mapping[str, Cell],
    rate: bool,
    factor: float = DEFAULT_FACTOR,
    same_program: Sequence[Sequence[str]] = (),
) -> tuple[str, Cell] | None:
    """The best variant of a row, named only when the rule finds it better than every other.

    Variants that compiled to one program count as one candidate, named ``"a = b"``. The
    candidate with the best value is named alone when `compare` flags it as better than every
    other candidate; otherwise the result reads ``"tie: a, b"``, naming every candidate the rule
    cannot tell from it.

    Arguments:
        cells: variant -> cell.
        rate: whether higher is better.
        factor: the ratio a difference must exceed (as in `compare`).
        same_program: groups of variants that compiled to one program.

    Returns:
        (name, cell of the best value), or ``None`` when no cell has a value.
    """
    group_of = {v: " = ".join(g) for g in same_program for v in g}
    candidates = {}
    for variant, cell in cells.items():
        name = group_of.get(variant, variant)
        if cell.ok and (name not in candidates or (cell.value > candidates[name].value) == rate):
            candidates[name] = cell
    if not candidates:
        return None
    ranked = sorted(candidates.items(), key=lambda nc: nc[1].value, reverse=rate)
    name, top = ranked[0]
    tied = [n for n, c in ranked[1:] if compare(c, top, factor, rate).verdict != FASTER]
    return (f"tie: {', '.join([name, *tied])}" if tied else name), top


@dataclasses.dataclass(frozen=True)
class Judged:
    """One parameter combination (all but the variant) of a benchmark, judged.

    Attributes:
        cells: variant -> `Cell`, every variant recorded here.
        comparison: BEFORE vs AFTER.
        best: (name, cell) of the best variant as `best` names it (the control twin left out;
            a tie or one program named so), ``None`` without a value or for a figure that is
            not a timing (`timing`).
        control: the baseline vs its identical-code control twin, or ``None`` without one.
        same_program: groups of variants (two or more) that compiled to one program, from the
            recorded fingerprints.
    """

    cells: Mapping[str, Cell]
    comparison: Comparison
    best: tuple[str, Cell] | None
    control: Comparison | None
    same_program: tuple[tuple[str, ...], ...] = ()


@dataclasses.dataclass(frozen=True)
class JudgedGrid:
    """A benchmark's grid with every combination judged (see `judge`).

    Attributes:
        grid: the cells.
        before: the BEFORE variant.
        after: the AFTER variant.
        others: the parameters other than the variant, in asv's order.
        judged: label tuple of `others` -> `Judged`.
    """

    grid: Grid
    before: str
    after: str
    others: tuple[str, ...]
    judged: Mapping[tuple[str, ...], Judged]


def _variants(grid: Grid) -> tuple[str, ...]:
    if grid.variants is None:
        raise ReportError("--benchmark", f"{short_name(grid.benchmark)} has no {VARIANT_PARAM!r} parameter")
    return grid.variants


def roles(grid: Grid, before: str | None, after: str | None) -> tuple[str, str]:
    """BEFORE and AFTER of a benchmark: as named, else the recorded ``baseline``/``optimised``.

    Arguments:
        grid: the benchmark's cells (its ``benchmarks.json`` entry names the roles).
        before: the BEFORE variant named by the user, or ``None``.
        after: the AFTER variant named by the user, or ``None``.

    Returns:
        (before, after).

    Raises:
        ReportError: when a role is neither named nor recorded, or not a value of the variant
            parameter.
    """
    variants = _variants(grid)
    chosen = []
    for option, given, key in (("--before", before, "baseline"), ("--after", after, "optimised")):
        value = given if given is not None else grid.info.get(key)
        if not value:
            raise ReportError(
                option,
                f"benchmarks.json records no {key!r} variant for {short_name(grid.benchmark)}; "
                f"name {option} (a spec: {option[2:]} = ...)",
            )
        if value not in variants:
            raise ReportError(
                option,
                f"{value!r} is not a value of {VARIANT_PARAM!r} in {short_name(grid.benchmark)} "
                f"(values: {', '.join(variants)})",
            )
        chosen.append(value)
    return chosen[0], chosen[1]


def judge(grid: Grid, before: str, after: str, factor: float = DEFAULT_FACTOR) -> JudgedGrid:
    """Judge every parameter combination of a benchmark: BEFORE vs AFTER, baseline vs control.

    Arguments:
        grid: the benchmark's cells; it must have a variant parameter.
        before: the BEFORE variant (see `roles`).
        after: the AFTER variant.
        factor: the ratio a change must exceed.

    Returns:
        The `JudgedGrid`.

    Raises:
        ReportError: when no cell of the benchmark holds a value.
    """
    if not any(c.ok for c in grid.cells.values()):
        statuses = sorted({c.status for c in grid.cells.values()})
        raise ReportError(
            "--benchmark",
            f"{short_name(grid.benchmark)} holds no value on {grid.where}: "
            f"all {len(grid.cells)} cells {'/'.join(statuses)}",
        )
    names = grid.param_names
    others = tuple(n for n in names if n != VARIANT_PARAM)
    variants = _variants(grid)
    rate = higher_is_better(grid.unit)
    control = (grid.info.get("baseline"), grid.info.get("control"))
    if not all(control) or not set(control) <= set(variants):
        control = None
    judged = {}
    for labels in itertools.product(*(grid.values_of(n) for n in others)):
        where = dict(zip(others, labels))
        cells, programs = {}, {}
        for variant in variants:
            key = tuple(variant if n == VARIANT_PARAM else where[n] for n in names)
            cells[variant] = grid.cells[key]
            program = grid.fingerprints.get(key)
            if program is not None and program.ok and (not control or variant != control[1]):
                programs.setdefault(program.value, []).append(variant)
        real = {v: c for v, c in cells.items() if not control or v != control[1]}
        judged[labels] = Judged(
            cells=cells,
            comparison=compare(cells[before], cells[after], factor, rate),
            best=best(real, rate, factor, [g for g in programs.values() if len(g) > 1]) if timing(grid.unit) else None,
            control=compare(cells[control[0]], cells[control[1]], factor, rate) if control else None,
            same_program=tuple(tuple(g) for g in programs.values() if len(g) > 1),
        )
    return JudgedGrid(grid, before, after, others, judged)
