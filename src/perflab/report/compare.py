"""Cells of a recorded run and the rule that judges a pair of them.

The rule lives in ONE place, `judge`: the process-aware comparison of `perflab.significance`.
Each sample of a cell measured by the suite's interleaved classes is one process (the median of
that process's interleaved rounds); two variants of one cell in one recorded run share their
processes and are compared pair by pair (process offsets cancel), other pairs with Welch's
interval over processes. A cell with fewer than two processes is shown as "n=1, not tested",
never as a percentage that looks judged.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

from asv_runner.statistics import get_err

from .. import significance

# docs/reports/calibration.md measures the false positives and detection rates at this factor.
DEFAULT_FACTOR = significance.DEFAULT_FACTOR
CONFIDENCE = significance.DEFAULT_CONFIDENCE
UNPAIRED_CONFIDENCE = significance.UNPAIRED_CONFIDENCE

FASTER, SLOWER, NOISE, MISSING, UNTESTED = "faster", "slower", "noise", "n/a", "untested"
NOISE_MARK = "~ within noise"
UNTESTED_MARK = "n=1, not tested"


def describe(factor: float) -> str:
    """What the marks mean under `judge`, for report headers."""
    return (
        f"\"{NOISE_MARK}\" marks a pair whose interval of the ratio includes 1 or whose ratio is "
        f"within a factor of {factor:g}; the interval is over processes (one sample per process): "
        f"{CONFIDENCE:.0%}, paired process by process, for variants measured interleaved in the same "
        f"processes, else Welch's at {UNPAIRED_CONFIDENCE:.1%}. \"{UNTESTED_MARK}\" marks a pair "
        "with a single value on a side"
    )


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


def judge(
    before: Cell, after: Cell, factor: float, higher_is_better: bool = False
) -> tuple[str, significance.Verdict | None]:
    """THE comparison rule: is AFTER better, worse, or not distinguishable from BEFORE?

    `perflab.significance.compare` on the per-process samples: paired when both cells belong to
    the same `paired_group`, else Welch's interval; changed when the interval excludes 1 and the
    ratio lies beyond `factor`.

    Arguments:
        before: the reference cell.
        after: the cell compared with it.
        factor: the ratio a change must exceed.
        higher_is_better: judge a rate (larger is better) instead of a time.

    Returns:
        (verdict, significance verdict): `FASTER` or `SLOWER` (AFTER better or worse), `NOISE`
        (not flagged), `UNTESTED` (a single value on a side) or `MISSING` (no value).
    """
    if not (before.ok and after.ok):
        return MISSING, None
    b, a = _values(before), _values(after)
    if min(len(a), len(b)) < 2 and min(a + b) <= 0:
        # Single values such as an error of exactly 0: nothing to test, and no ratio exists.
        return UNTESTED, None
    paired = before.paired_group is not None and before.paired_group == after.paired_group and len(a) == len(b)
    verdict = significance.compare(b, a, paired=paired, factor=factor)
    if not verdict.tested:
        return UNTESTED, verdict
    if not verdict.changed:
        return NOISE, verdict
    better = verdict.ratio > 1 if higher_is_better else verdict.ratio < 1
    return (FASTER if better else SLOWER), verdict


def _values(cell):
    if cell.samples:
        return [s for s in cell.samples if s is not None and not math.isnan(s)]
    return [cell.value]


@dataclasses.dataclass(frozen=True)
class Comparison:
    """BEFORE vs AFTER for one row, judged by `judge`.

    Attributes:
        before: the BEFORE cell.
        after: the AFTER cell.
        factor: the ratio a change must exceed to count (asv's ``--factor``).
        verdict: ``"faster"`` or ``"slower"`` when the rule flags AFTER as better or worse,
            ``"noise"`` when it does not, ``"n/a"`` when either cell has no value.
        higher_is_better: True for rates (GFLOP/s, steps/s), where a larger value is better.
        significance: the process-aware verdict behind `verdict` (ratio AFTER / BEFORE and its
            interval), ``None`` when a cell is missing.
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
        ``None`` if either is missing or the divisor is zero."""
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


def compare(
    before: Cell, after: Cell, factor: float = DEFAULT_FACTOR, higher_is_better: bool = False
) -> Comparison:
    """Judge a pair of cells (see `judge`) and keep the figures derived from them.

    Arguments:
        before: the reference cell.
        after: the cell compared with it.
        factor: the ratio a change must exceed.
        higher_is_better: judge a rate (larger is better) instead of a time.

    Returns:
        The `Comparison`.
    """
    verdict, detail = judge(before, after, factor, higher_is_better)
    return Comparison(before, after, factor, verdict, higher_is_better, detail)


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


def best(cells: Mapping[str, Cell], rate: bool) -> tuple[str, Cell] | None:
    """The best cell of a row: the lowest value, the highest for a rate; ties to the first.

    Arguments:
        cells: variant -> cell.
        rate: whether higher is better.

    Returns:
        (variant, cell), or ``None`` when no cell has a value.
    """
    candidates = [(v, c) for v, c in cells.items() if c.ok]
    if not candidates:
        return None
    return (max if rate else min)(candidates, key=lambda vc: vc[1].value)
