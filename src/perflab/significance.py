"""Process-aware significance: is one cell's time different from another's?

The unit of noise is the process. On the 2-core machines perflab runs on, one program measured in
two processes can land 25-100% apart, while programs measured interleaved inside one process
share most of that offset (see docs/trust.md: on the noisier VM, small XLA programs still move
within a process, and the per-process ratios below carry that spread). So every value judged
here is one number per process (what `benchmarks/_interleave.py` records: the median over
interleaved rounds in that process), and the comparison is on the logarithms of those numbers:

- paired (two variants of one cell, measured interleaved in the same processes): a t interval on
  the per-process log ratios (`scipy.stats.ttest_rel`); process offsets cancel in each ratio.
- unpaired (cells of two runs, or of two classes): Welch's t interval on the difference of mean
  logs (`scipy.stats.ttest_ind` with ``equal_var=False``); the between-process spread of both
  sides enters the interval.

A pair is *changed* when the interval excludes a ratio of 1 and the estimate lies beyond the
factor. With one process per side there is nothing to judge: the verdict says so ("n=1, not
tested") instead of printing a percentage that looks judged.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Sequence

import numpy as np
from scipy import stats as _stats

DEFAULT_FACTOR = 1.05
# Chosen on the calibration's trials (docs/trust.md); unpaired is higher: each run's offset goes unestimated.
DEFAULT_CONFIDENCE = 0.95
UNPAIRED_CONFIDENCE = 0.999


@dataclasses.dataclass(frozen=True)
class Verdict:
    """The comparison of two cells, B (before) and A (after).

    Attributes:
        ratio: A / B, the geometric mean over processes (paired: of the per-process ratios).
        low: lower end of the confidence interval of `ratio` (NaN when not tested).
        high: upper end of it.
        n: processes per side (paired: the number of pairs).
        paired: whether the processes were paired.
        tested: whether there were enough processes to test (at least 2 per side).
        changed: tested, the interval excludes 1, and `ratio` lies beyond the factor.
        confidence: the interval's confidence level.
        factor: the factor the ratio must exceed.
    """

    ratio: float
    low: float
    high: float
    n: int
    paired: bool
    tested: bool
    changed: bool
    confidence: float
    factor: float

    @property
    def significant(self) -> bool:
        """Whether the interval excludes a ratio of 1, whatever the size of the effect."""
        return self.tested and (self.low > 1 or self.high < 1)

    @property
    def half_width(self) -> float:
        """Half the interval's width in log space, as a ratio (1.03 means +-3%); NaN if untested."""
        if not self.tested:
            return math.nan
        return math.exp((math.log(self.high) - math.log(self.low)) / 2)

    def minimum_detectable(self) -> float:
        """The smallest slowdown this comparison would flag: the factor, or the interval's
        half-width where that is wider (NaN when untested)."""
        return max(self.factor, self.half_width) if self.tested else math.nan


def _clean(values, side):
    out = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    if any(v <= 0 for v in out):
        raise ValueError(f"{side}: times and ratios must be positive, got {out}")
    return out


def compare(
    before: Sequence[float],
    after: Sequence[float],
    *,
    paired: bool,
    factor: float = DEFAULT_FACTOR,
    confidence: float | None = None,
) -> Verdict:
    """Judge whether `after` differs from `before`, process by process.

    Arguments:
        before: one value per process (seconds, or any positive figure).
        after: one value per process; for `paired=True`, in the same process order as `before`.
        paired: the two sides were measured interleaved in the same processes.
        factor: the smallest ratio worth flagging (1.05: 5%).
        confidence: the confidence level of the interval; default `DEFAULT_CONFIDENCE` when
            paired, `UNPAIRED_CONFIDENCE` otherwise.

    Returns:
        A `Verdict`.
    """
    if confidence is None:
        confidence = DEFAULT_CONFIDENCE if paired else UNPAIRED_CONFIDENCE
    if factor < 1:
        raise ValueError(f"factor must be at least 1, got {factor}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    b, a = _clean(before, "before"), _clean(after, "after")
    if not b or not a:
        raise ValueError(f"nothing to compare: {len(b)} value(s) before, {len(a)} after")
    if paired and len(a) != len(b):
        raise ValueError(f"paired comparison needs as many processes on each side, got {len(b)} and {len(a)}")
    la, lb = np.log(a), np.log(b)
    n = len(la) if paired else min(len(la), len(lb))
    # The estimate as a ratio of each pair (paired) or of the geometric means (Welch).
    if paired:
        mean = sum(math.log(x / y) for x, y in zip(a, b)) / n
    else:
        mean = sum(map(math.log, a)) / len(a) - sum(map(math.log, b)) / len(b)
    if n < 2:
        return Verdict(math.exp(mean), math.nan, math.nan, n, paired, False, False, confidence, factor)
    with warnings.catch_warnings():
        # Identical samples on both sides are a valid A/A pair: a zero-width interval.
        warnings.simplefilter("ignore", RuntimeWarning)
        test = _stats.ttest_rel(la, lb) if paired else _stats.ttest_ind(la, lb, equal_var=False)
        interval = test.confidence_interval(confidence_level=confidence)
    low, high = math.exp(interval.low), math.exp(interval.high)
    ratio = math.exp(mean)
    beyond = ratio > factor or ratio < 1 / factor
    changed = beyond and (low > 1 or high < 1)
    return Verdict(ratio, low, high, n, paired, True, changed, confidence, factor)


def binomial_interval(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    """Clopper-Pearson interval of a rate: 0 of 8 is (0, 0.37), not 0%.

    Arguments:
        successes: how many trials counted.
        trials: how many trials there were (at least 1).
        confidence: the interval's level.

    Returns:
        (low, high) as fractions.
    """
    if trials < 1 or not 0 <= successes <= trials:
        raise ValueError(f"need 0 <= successes <= trials and trials >= 1, got {successes} of {trials}")
    ci = _stats.binomtest(successes, trials).proportion_ci(confidence_level=confidence, method="exact")
    return ci.low, ci.high
