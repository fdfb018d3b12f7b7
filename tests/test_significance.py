"""The process-aware comparison: intervals, verdicts and bad input."""

import math

import numpy as np
import pytest

from perflab import significance as sig


def _processes(rng, n, offset_spread, ratio, inner=0.01):
    # Each process has its own offset (the machine's process-to-process noise); a paired
    # measurement sees it on both sides, an unpaired one only on its own.
    offsets = np.exp(rng.normal(0, offset_spread, n))
    before = offsets * np.exp(rng.normal(0, inner, n))
    after = offsets * ratio * np.exp(rng.normal(0, inner, n))
    return before.tolist(), after.tolist()


def test_paired_sees_through_process_offsets(rng):
    before, after = _processes(rng, 5, 0.3, 1.10)
    v = sig.compare(before, after, paired=True)
    assert v.tested and v.changed
    assert v.low < 1.10 < v.high
    # The same numbers unpaired carry the 30% offsets and cannot tell.
    assert not sig.compare(before, after, paired=False).changed


def test_identical_code_is_rarely_flagged(rng):
    flagged = sum(sig.compare(*_processes(rng, 5, 0.3, 1.0), paired=True).changed for _ in range(400))
    assert flagged <= 4  # 99% intervals, and the factor on top


def test_small_effect_below_factor_is_not_changed(rng):
    before, after = _processes(rng, 8, 0.0, 1.02, inner=0.001)
    v = sig.compare(before, after, paired=True)
    assert v.low > 1  # significant ...
    assert not v.changed  # ... but within the factor


def test_single_process_is_not_tested():
    v = sig.compare([1.0], [2.0], paired=True)
    assert not v.tested and not v.changed and math.isnan(v.low)
    assert v.ratio == pytest.approx(2.0)
    assert math.isnan(v.minimum_detectable())


def test_interval_matches_a_t_interval():
    b = [1.0, 1.0, 1.0, 1.0]
    a = [1.1, 1.2, 1.0, 1.15]
    v = sig.compare(b, a, paired=True, confidence=0.95)
    logs = np.log(a)
    half = 3.182446305284263 * logs.std(ddof=1) / 2  # t(0.975, 3)
    assert v.low == pytest.approx(math.exp(logs.mean() - half))
    assert v.high == pytest.approx(math.exp(logs.mean() + half))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(before=[1.0, 2.0], after=[1.0], paired=True), "as many processes"),
        (dict(before=[], after=[1.0], paired=False), "nothing to compare"),
        (dict(before=[1.0, -1.0], after=[1.0, 1.0], paired=True), "before: .*positive"),
        (dict(before=[1.0], after=[1.0], paired=True, factor=0.9), "factor"),
        (dict(before=[1.0], after=[1.0], paired=True, confidence=1.0), "confidence"),
    ],
)
def test_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        sig.compare(**kwargs)


def test_binomial_interval():
    low, high = sig.binomial_interval(0, 8)
    assert low == 0 and 0.3 < high < 0.4
    with pytest.raises(ValueError, match="successes"):
        sig.binomial_interval(9, 8)


def _hand_interval(before, after, paired, confidence):
    # The t intervals written out (as the module computed them before using scipy's tests).
    from scipy import stats

    la, lb = np.log(after), np.log(before)
    if paired:
        d = la - lb
        mean, se, df = d.mean(), d.std(ddof=1) / math.sqrt(len(d)), len(d) - 1
    else:
        mean = la.mean() - lb.mean()
        va, vb = la.var(ddof=1) / len(la), lb.var(ddof=1) / len(lb)
        se = math.sqrt(va + vb)
        df = (va + vb) ** 2 / (va**2 / (len(la) - 1) + vb**2 / (len(lb) - 1))
    t = stats.t.ppf(0.5 + confidence / 2, df)
    return math.exp(mean - t * se), math.exp(mean + t * se)


@pytest.mark.parametrize("paired", [True, False])
def test_scipy_intervals_equal_the_written_out_t_intervals(rng, paired):
    for n_before, n_after in [(5, 5), (4, 4), (8, 8)] if paired else [(5, 5), (4, 7), (3, 9)]:
        before = np.exp(rng.normal(0, 0.2, n_before)).tolist()
        after = np.exp(rng.normal(0.1, 0.3, n_after)).tolist()
        for confidence in (0.95, 0.999):
            v = sig.compare(before, after, paired=paired, confidence=confidence)
            low, high = _hand_interval(before, after, paired, confidence)
            assert v.low == pytest.approx(low, rel=1e-12) and v.high == pytest.approx(high, rel=1e-12)


def test_identical_samples_give_a_zero_width_interval():
    v = sig.compare([1.0, 1.1, 1.2], [1.0, 1.1, 1.2], paired=True)
    assert v.tested and not v.changed and v.low == v.high == v.ratio == 1.0
