"""Cells of a recorded run and the rule that judges a pair of them.

The rule lives in ONE place, `judge`: today it is `asv compare`'s (factor, then Mann-Whitney U
on the recorded samples or 99% CI overlap). A process-aware significance model replaces it by
replacing `judge`; every caller (tables, calibrate) goes through `compare`, and `Cell` keeps
what such a model needs (value, samples, asv's stats with ``number`` and ``repeat``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

from asv_runner.statistics import get_err

# asv 0.6.6 keeps the decision `asv compare` makes (factor, then Mann-Whitney U on the samples
# or 99% CI overlap) in this private helper; calling it keeps the "~" marks identical to
# asv compare's instead of a re-implementation that could drift. asv is pinned in pyproject.
from asv.commands.compare import _is_result_better

# asv compare's default is 1.1; docs/reports/calibration.md measured that at 1.1 a 10% effect
# between two variants of one run is detected in a minority of runs, at 1.05 in all of them
# with no identical pair flagged.
DEFAULT_FACTOR = 1.05

FASTER, SLOWER, NOISE, MISSING = "faster", "slower", "noise", "n/a"
NOISE_MARK = "~ within noise"


def describe(factor: float) -> str:
    """What the "~" mark means under `judge`, for report headers."""
    return (
        f"\"{NOISE_MARK}\" replaces a change asv compare would not flag: one below a factor "
        f"of {factor:g} or not significant (Mann-Whitney U on the recorded samples, "
        "else overlapping 99% CIs)"
    )


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


def judge(before: Cell, after: Cell, factor: float, higher_is_better: bool = False) -> str:
    """THE comparison rule: is AFTER better, worse, or not distinguishable from BEFORE?

    Today `asv compare`'s: a change is flagged when the ratio exceeds `factor` and, where asv
    has statistics for both cells (and more than one sample each), the samples differ
    significantly: Mann-Whitney U at p < 0.002 on the recorded samples when there are enough
    of them, else non-overlapping 99% confidence intervals. Without statistics (``track_*``)
    only the factor decides, as in asv. Swap this function to change how every pair is judged.

    Arguments:
        before: the reference cell.
        after: the cell compared with it.
        factor: the ratio a change must exceed.
        higher_is_better: judge a rate (larger is better) instead of a time; asv compare
            itself assumes lower is better for every unit.

    Returns:
        `FASTER` or `SLOWER` (AFTER better or worse), `NOISE` (not flagged), or `MISSING`
        when either cell has no value.
    """
    if not (before.ok and after.ok):
        return MISSING

    def flagged_lower(a, b):
        return _is_result_better(
            a.value, b.value, (a.stats, _sample_list(a)), (b.stats, _sample_list(b)), factor
        )

    # AFTER improves on BEFORE when it is flagged lower (a time) or BEFORE is flagged lower
    # (a rate).
    lower, higher = (before, after) if higher_is_better else (after, before)
    if flagged_lower(lower, higher):
        return FASTER
    if flagged_lower(higher, lower):
        return SLOWER
    return NOISE


def _sample_list(cell):
    return list(cell.samples) if cell.samples is not None else None


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
    verdict = judge(before, after, factor, higher_is_better)
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
