"""Replicate statistics against scipy.stats as the reference implementation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from assay.statistics import summarize, welch

SAMPLES = [
    ([1.0, 2.0, 4.0], [0.5, 0.7, 0.2, 0.9]),
    ([10.0, 10.5], [3.0, 9.0, 1.0]),
    (list(np.random.default_rng(3).normal(2, 1, 12)), list(np.random.default_rng(4).normal(0, 3, 7))),
]


@pytest.mark.parametrize("confidence", [0.9, 0.95, 0.99])
@pytest.mark.parametrize("values", [s[0] for s in SAMPLES] + [s[1] for s in SAMPLES])
def test_summary_matches_scipy(values, confidence):
    result = summarize(values, confidence)
    low, high = stats.t.interval(confidence, len(values) - 1, loc=np.mean(values),
                                 scale=stats.sem(values))
    assert result["n"] == len(values)
    assert result["mean"] == pytest.approx(np.mean(values), rel=1e-12)
    assert result["std"] == pytest.approx(np.std(values, ddof=1), rel=1e-12)
    assert result["sem"] == pytest.approx(stats.sem(values), rel=1e-12)
    assert (result["ci_low"], result["ci_high"]) == pytest.approx((low, high), rel=1e-10)


def test_one_value_has_a_mean_and_no_spread():
    assert summarize([3.5], 0.95) == {"n": 1, "mean": 3.5, "std": None, "sem": None,
                                      "ci_low": None, "ci_high": None, "confidence": 0.95}


def test_no_values_is_an_error():
    with pytest.raises(ValueError):
        summarize([], 0.95)


@pytest.mark.parametrize("treatment,control", SAMPLES)
def test_welch_matches_scipy(treatment, control):
    result = welch(summarize(treatment, 0.95), summarize(control, 0.95), 0.95)
    reference = stats.ttest_ind(treatment, control, equal_var=False)
    assert result["difference"] == pytest.approx(np.mean(treatment) - np.mean(control))
    assert result["t"] == pytest.approx(reference.statistic, rel=1e-10)
    assert result["p"] == pytest.approx(reference.pvalue, rel=1e-8)
    assert result["df"] == pytest.approx(reference.df, rel=1e-10)
    interval = reference.confidence_interval(0.95)
    assert (result["ci_low"], result["ci_high"]) == pytest.approx(
        (interval.low, interval.high), rel=1e-8)


def test_welch_without_spread_reports_only_the_difference():
    result = welch(summarize([2.0], 0.95), summarize([1.0, 1.5], 0.95), 0.95)
    assert result["difference"] == 0.75
    assert result["t"] is None and result["p"] is None and result["ci_low"] is None


def test_identical_constant_groups_have_no_test():
    result = welch(summarize([1.0, 1.0], 0.95), summarize([1.0, 1.0], 0.95), 0.95)
    assert result["difference"] == 0.0 and result["p"] is None
    assert not any(isinstance(v, float) and math.isnan(v) for v in result.values())
