"""Replicate statistics against scipy.stats as the reference implementation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from assay.pipeline.statistics import summarize, welch

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


# --- effect sizes --------------------------------------------------------------------------
from itertools import combinations

from statsmodels.stats.multitest import multipletests

from assay.pipeline.statistics import (
    adjust_pvalues,
    hedges_correction,
    hedges_g,
    mann_whitney,
    permutation_test,
    ratio_of_means,
    welch_anova,
)

# Hedges & Olkin (1985), Statistical Methods for Meta-Analysis, table of the exact
# small-sample factor J(m), m = n1 + n2 - 2.
HEDGES_J = {2: 0.5642, 3: 0.7236, 4: 0.7979, 5: 0.8407, 6: 0.8686, 8: 0.9027, 10: 0.9227,
            20: 0.9619, 50: 0.9849}


@pytest.mark.parametrize("df,expected", sorted(HEDGES_J.items()))
def test_hedges_correction_matches_the_published_table(df, expected):
    assert hedges_correction(df) == pytest.approx(expected, abs=6e-5)


def test_hedges_g_matches_borenstein_worked_example():
    """Borenstein et al. (2009), Introduction to Meta-Analysis, ch. 4: means 103 and 100,
    SDs 5.5 and 4.5, n = 50 each: d = 0.5970, g = 0.5924, Var(g) = 0.0411."""
    treatment = {"n": 50, "mean": 103.0, "std": 5.5}
    control = {"n": 50, "mean": 100.0, "std": 4.5}
    result = hedges_g(treatment, control, 0.95)
    assert result["hedges_g"] == pytest.approx(0.5924, abs=5e-5)
    half = (result["g_ci_high"] - result["g_ci_low"]) / 2
    variance = (half / stats.norm.ppf(0.975)) ** 2
    assert variance == pytest.approx(0.0411, abs=5e-5)
    assert result["g_ci_low"] + half == pytest.approx(result["hedges_g"], rel=1e-12)


@pytest.mark.parametrize("treatment,control", SAMPLES)
def test_hedges_g_uncorrected_is_statsmodels_standardized_difference(treatment, control):
    from statsmodels.stats.meta_analysis import effectsize_smd

    a, b = summarize(treatment, 0.95), summarize(control, 0.95)
    result = hedges_g(a, b, 0.95)
    smd_bc, _ = effectsize_smd(a["mean"], a["std"], a["n"], b["mean"], b["std"], b["n"])
    approximate_j = 1 - 3 / (4 * (a["n"] + b["n"]) - 9)   # statsmodels' approximation
    d = result["hedges_g"] / hedges_correction(a["n"] + b["n"] - 2)
    assert d == pytest.approx(smd_bc / approximate_j, rel=1e-12)


def test_hedges_g_needs_two_values_per_group_and_some_spread():
    none = {"hedges_g": None, "g_ci_low": None, "g_ci_high": None}
    assert hedges_g(summarize([1.0], 0.95), summarize([1.0, 2.0], 0.95), 0.95) == none
    assert hedges_g(summarize([1.0, 1.0], 0.95), summarize([2.0, 2.0], 0.95), 0.95) == none
    equal = hedges_g(summarize([1.0, 3.0], 0.95), summarize([3.0, 1.0], 0.95), 0.95)
    assert equal["hedges_g"] == 0.0 and equal["g_ci_low"] < 0 < equal["g_ci_high"]


def test_ratio_of_means_only_where_both_are_positive():
    assert ratio_of_means(3.0, 2.0) == 1.5
    assert ratio_of_means(3.0, 0.0) is None and ratio_of_means(-1.0, 2.0) is None


# --- tests from the replicate values -------------------------------------------------------
MW_SAMPLES = [
    ([1.0, 2.0], [3.0, 4.0]),                                # n = 2
    ([0.3, 1.2, 2.5, 0.1], [0.5, 3.3, 4.1, 2.2, 5.0]),
    ([1.0, 2.0, 3.0], [1.5, 2.5, 3.5]),
    (list(np.random.default_rng(5).normal(0, 1, 8)), list(np.random.default_rng(6).normal(1, 1, 8))),
]


@pytest.mark.parametrize("x,y", MW_SAMPLES)
def test_mann_whitney_without_ties_is_scipy_exact(x, y):
    result = mann_whitney(x, y)
    reference = stats.mannwhitneyu(x, y, alternative="two-sided", method="exact")
    assert result["method"] == "exact"
    assert result["statistic"] == reference.statistic
    assert result["p"] == pytest.approx(reference.pvalue, rel=1e-12)


def _enumerated_u_p(x, y):
    """Exact two-sided p of U by listing every split of the pooled values (independent of
    scipy): twice the smaller tail, at most 1."""
    pooled = np.asarray(x + y)
    ranks = stats.rankdata(pooled)
    n1 = len(x)
    observed = ranks[:n1].sum() - n1 * (n1 + 1) / 2
    us = np.array([ranks[list(idx)].sum() - n1 * (n1 + 1) / 2
                   for idx in combinations(range(len(pooled)), n1)])
    less, greater = np.mean(us <= observed + 1e-9), np.mean(us >= observed - 1e-9)
    return observed, min(1.0, 2 * min(less, greater))


@pytest.mark.parametrize("x,y", [([1.0, 2.0, 2.0, 3.0], [2.0, 3.0, 3.0, 4.0]),
                                 ([1.0, 1.0], [1.0, 2.0]),
                                 ([5.0, 5.0, 6.0], [1.0, 5.0, 2.0, 2.0])])
def test_mann_whitney_with_ties_is_the_exact_permutation_distribution(x, y):
    result = mann_whitney(x, y)
    statistic, p = _enumerated_u_p(x, y)
    assert result["method"] == "exact (ties: permutation distribution)"
    assert result["statistic"] == statistic
    assert result["p"] == pytest.approx(p, rel=1e-12)

    def u(a, b, axis=-1):
        return stats.mannwhitneyu(a, b, axis=axis, method="asymptotic").statistic

    reference = stats.permutation_test((x, y), u, permutation_type="independent",
                                       n_resamples=np.inf, vectorized=True)
    assert result["p"] == pytest.approx(reference.pvalue, rel=1e-12)


def test_mann_whitney_of_large_samples_is_asymptotic_like_scipy():
    x = list(np.random.default_rng(1).normal(0, 1, 30).round(1))   # ties included
    y = list(np.random.default_rng(2).normal(0.5, 1, 30).round(1))
    result = mann_whitney(x, y)
    reference = stats.mannwhitneyu(x, y, alternative="two-sided", method="asymptotic")
    assert result["method"] == "asymptotic"
    assert result["p"] == pytest.approx(reference.pvalue, rel=1e-12)


def test_mann_whitney_of_identical_values_is_p_one():
    assert mann_whitney([2.0, 2.0], [2.0, 2.0, 2.0]) == {"statistic": 3.0, "p": 1.0,
                                                         "method": "exact"}


def _difference(a, b, axis=-1):
    return np.mean(a, axis=axis) - np.mean(b, axis=axis)


@pytest.mark.parametrize("x,y", MW_SAMPLES[:3] + [([1.0, 2.0, 2.0, 3.0], [2.0, 3.0, 3.0, 4.0])])
def test_permutation_test_small_samples_are_exact_like_scipy(x, y):
    result = permutation_test(x, y, permutations=9999, seed=0)
    reference = stats.permutation_test((x, y), _difference, permutation_type="independent",
                                       n_resamples=np.inf, vectorized=True)
    assert result["method"] == "exact"
    assert result["statistic"] == pytest.approx(np.mean(x) - np.mean(y), rel=1e-12)
    assert result["p"] == pytest.approx(reference.pvalue, rel=1e-12)


def test_permutation_test_random_resamples_are_seeded_like_scipy():
    x = list(np.random.default_rng(7).normal(0, 1, 12))
    y = list(np.random.default_rng(8).normal(0.8, 1, 12))
    result = permutation_test(x, y, permutations=999, seed=42)
    reference = stats.permutation_test((x, y), _difference, permutation_type="independent",
                                       n_resamples=999, vectorized=True,
                                       rng=np.random.default_rng(42))
    assert result["method"] == "999 random permutations"
    assert result["p"] == reference.pvalue
    assert permutation_test(x, y, permutations=999, seed=42) == result
    assert permutation_test(x, y, permutations=999, seed=43)["p"] != result["p"]


def test_permutation_test_of_equal_groups_is_p_one():
    assert permutation_test([1.0, 1.0], [1.0, 1.0], permutations=99, seed=0)["p"] == 1.0
    assert permutation_test([1.0, 2.0], [2.0, 1.0], permutations=99, seed=0)["p"] == 1.0


# --- Welch's ANOVA -------------------------------------------------------------------------
ANOVA_GROUPS = [
    [[1.0, 2.0, 4.0], [0.5, 0.7, 0.2, 0.9], [3.0, 3.5, 2.0]],
    [[10.0, 10.5], [3.0, 9.0, 1.0]],                              # k = 2: Welch's t squared
    [list(np.random.default_rng(s).normal(s % 3, 1 + s, 4 + s)) for s in range(5)],
]


@pytest.mark.parametrize("groups", ANOVA_GROUPS)
def test_welch_anova_matches_scipy_and_statsmodels(groups):
    from statsmodels.stats.oneway import anova_oneway

    result = welch_anova([summarize(g, 0.95) for g in groups])
    reference = stats.f_oneway(*groups, equal_var=False)
    assert result["F"] == pytest.approx(reference.statistic, rel=1e-10)
    assert result["p"] == pytest.approx(reference.pvalue, rel=1e-8)
    data = np.concatenate(groups)
    labels = np.repeat(np.arange(len(groups)), [len(g) for g in groups])
    other = anova_oneway(data, labels, use_var="unequal")
    assert result["F"] == pytest.approx(other.statistic, rel=1e-10)
    assert (result["df_between"], result["df_within"]) == pytest.approx(other.df, rel=1e-10)
    assert result["p"] == pytest.approx(other.pvalue, rel=1e-8)
    assert result["k"] == len(groups)


def test_welch_anova_of_two_groups_is_welch_t_squared():
    a, b = summarize(ANOVA_GROUPS[1][0], 0.95), summarize(ANOVA_GROUPS[1][1], 0.95)
    t = welch(a, b, 0.95)
    result = welch_anova([a, b])
    assert result["F"] == pytest.approx(t["t"] ** 2, rel=1e-12)
    assert result["p"] == pytest.approx(t["p"], rel=1e-10)


def test_welch_anova_of_equal_means_has_f_zero_and_p_one():
    result = welch_anova([summarize([1.0, 3.0], 0.95), summarize([0.0, 4.0], 0.95)])
    assert result["F"] == 0.0 and result["p"] == 1.0


def test_welch_anova_without_spread_says_why():
    result = welch_anova([summarize([1.0, 1.0], 0.95), summarize([2.0, 3.0], 0.95)])
    assert result == {"F": None, "df_between": None, "df_within": None, "p": None, "k": 2,
                      "reason": "a condition has fewer than 2 values or no spread"}
    assert welch_anova([summarize([1.0, 2.0], 0.95)])["reason"] == "fewer than 2 conditions"


# --- multiple testing ----------------------------------------------------------------------
P_FAMILIES = [
    [0.01, 0.04, 0.03, 0.2],
    [0.001, 0.001, 0.5, 0.049, 0.051, 1.0, 0.0],       # ties, 0 and 1
    list(np.random.default_rng(9).uniform(0, 0.2, 25)),
    [0.5],
]


@pytest.mark.parametrize("pvalues", P_FAMILIES)
@pytest.mark.parametrize("method,reference_method", [("holm", "holm"), ("bh", "fdr_bh")])
def test_corrections_match_statsmodels(pvalues, method, reference_method):
    expected = multipletests(pvalues, method=reference_method)[1]
    assert adjust_pvalues(pvalues, method) == pytest.approx(list(expected), rel=1e-12,
                                                            abs=1e-15)


def test_untestable_p_values_stay_none_and_leave_the_family():
    adjusted = adjust_pvalues([0.01, None, 0.04], "holm")
    assert adjusted[1] is None
    assert adjusted[0] == pytest.approx(0.02) and adjusted[2] == pytest.approx(0.04)
    assert adjust_pvalues([0.01, None], "none") == [0.01, None]
    assert adjust_pvalues([], "bh") == []


def test_unknown_correction_is_refused():
    with pytest.raises(ValueError, match="unknown correction 'bonferroni'"):
        adjust_pvalues([0.1], "bonferroni")
