"""Replicate statistics as pure numeric functions: no artifacts, no payload keys.

Summaries and Welch's t work from n/mean/std alone; the rank and permutation tests need the
replicate values. The t and F distributions come from scipy.special (stdtr/stdtrit, fdtrc):
the same numbers as scipy.stats for a third of the import time, which every aggregate and
compare job pays. scipy.stats is imported only by the tests that need it (Mann-Whitney U,
permutation), inside the function.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

# Exact Mann-Whitney / permutation distributions are enumerated up to this many splits of
# the pooled values into the two groups (C(16, 8) = 12,870: n = 8 per group is exact).
EXACT_SPLITS = 100_000
CORRECTIONS = ("holm", "bh", "none")


def summarize(values: Sequence[float], confidence: float) -> dict[str, Any]:
    """n, mean, std (n-1), SEM and a t interval; spread is None when n < 2."""
    n = len(values)
    if n == 0:
        raise ValueError("no values to summarize")
    mean = math.fsum(values) / n
    summary: dict[str, Any] = {"n": n, "mean": mean, "std": None, "sem": None,
                               "ci_low": None, "ci_high": None, "confidence": confidence}
    if n >= 2:
        from scipy.special import stdtrit

        std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
        sem = std / math.sqrt(n)
        half = float(stdtrit(n - 1, 0.5 + confidence / 2)) * sem
        summary.update(std=std, sem=sem, ci_low=mean - half, ci_high=mean + half)
    return summary


# How a condition's interval respects its metric's bounds (assay.pipeline.metric_info): the words
# recorded beside the numbers in the condition artifact.
INTERVAL_T = "t"
INTERVAL_LOG = "t on log(mean), delta method"
INTERVAL_LOGIT = "t on logit(mean), delta method"
INTERVAL_NO_SPREAD = "none: no spread"


def bounded_interval(summary: Mapping[str, Any], bounds: str) -> dict[str, Any]:
    """A confidence interval of the mean that stays inside the metric's bounds.

    free: the t interval itself. non-negative: the t interval of log(mean) by the delta
    method (SE(log m) = SEM / m), back-transformed: [m / f, m * f], f = exp(t * SEM / m).
    fraction: likewise on logit(mean) (SE = SEM / (m (1 - m))). The estimand stays the
    arithmetic mean, zeros among the values are fine, and at n = 3-4 on skewed data it
    covers better than the plain t interval (docs/statistics.md has the simulation; a
    percentile bootstrap covers only 65-80 % there, so it is not used). No spread (n < 2 or
    equal values): no interval. A mean on the bound itself (all values 0, or all 1) has
    no spread either.
    """
    mean, sem, low, high = summary["mean"], summary.get("sem"), summary.get("ci_low"), \
        summary.get("ci_high")
    out: dict[str, Any] = {"interval_low": None, "interval_high": None,
                           "interval_method": INTERVAL_NO_SPREAD}
    if sem is None or low is None or sem == 0.0:
        return out
    if bounds == "free":
        out.update(interval_low=low, interval_high=high, interval_method=INTERVAL_T)
        return out
    t = (high - mean) / sem   # the t quantile summarize used, not recomputed differently
    if bounds == "non-negative":
        factor = math.exp(t * sem / mean)
        out.update(interval_low=mean / factor, interval_high=mean * factor,
                   interval_method=INTERVAL_LOG)
        return out
    if bounds == "fraction":
        centre = math.log(mean / (1.0 - mean))
        half = t * sem / (mean * (1.0 - mean))
        out.update(interval_low=_expit(centre - half), interval_high=_expit(centre + half),
                   interval_method=INTERVAL_LOGIT)
        return out
    raise ValueError(f"unknown bounds {bounds!r}")


def _expit(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


def check_bounds(values: Sequence[float], bounds: str) -> str | None:
    """Why ``values`` break the declared bounds, or None."""
    if bounds == "non-negative":
        bad = [v for v in values if v < 0]
        return f"{bad[0]!r} is negative" if bad else None
    if bounds == "fraction":
        bad = [v for v in values if not 0.0 <= v <= 1.0]
        return f"{bad[0]!r} is outside [0, 1]" if bad else None
    return None


def welch(treatment: Mapping[str, Any], control: Mapping[str, Any],
          confidence: float) -> dict[str, Any]:
    """Difference of means (treatment - control), its Welch interval, t, df and p."""
    diff = treatment["mean"] - control["mean"]
    result: dict[str, Any] = {"difference": diff, "ci_low": None, "ci_high": None,
                              "t": None, "df": None, "p": None, "confidence": confidence,
                              "n_treatment": treatment["n"], "n_control": control["n"]}
    if treatment.get("std") is None or control.get("std") is None:
        return result
    from scipy.special import stdtr, stdtrit

    v1 = treatment["std"] ** 2 / treatment["n"]
    v2 = control["std"] ** 2 / control["n"]
    se = math.sqrt(v1 + v2)
    if se == 0.0:
        return result
    df = (v1 + v2) ** 2 / (v1 ** 2 / (treatment["n"] - 1) + v2 ** 2 / (control["n"] - 1))
    t = diff / se
    p = float(2 * stdtr(df, -abs(t)))
    half = float(stdtrit(df, 0.5 + confidence / 2)) * se
    result.update(ci_low=diff - half, ci_high=diff + half, t=t, df=df, p=p)
    return result


# --- effect sizes ------------------------------------------------------------------------
def hedges_correction(df: float) -> float:
    """Hedges' exact small-sample factor J(df) = Γ(df/2) / (√(df/2) Γ((df-1)/2))."""
    from scipy.special import gammaln

    return math.exp(gammaln(df / 2) - gammaln((df - 1) / 2)) / math.sqrt(df / 2)


def hedges_g(treatment: Mapping[str, Any], control: Mapping[str, Any],
             confidence: float) -> dict[str, Any]:
    """Hedges' g (pooled SD, exact J) and its normal-theory interval.

    Var(g) = J² · ((n1+n2)/(n1·n2) + d²/(2(n1+n2))), as in Borenstein et al. (2009),
    Introduction to Meta-Analysis, ch. 4. None when either group has fewer than 2 values
    or both have zero spread.
    """
    n1, n2 = treatment["n"], control["n"]
    out: dict[str, Any] = {"hedges_g": None, "g_ci_low": None, "g_ci_high": None}
    if n1 < 2 or n2 < 2 or treatment.get("std") is None or control.get("std") is None:
        return out
    df = n1 + n2 - 2
    pooled = math.sqrt(((n1 - 1) * treatment["std"] ** 2 + (n2 - 1) * control["std"] ** 2)
                       / df)
    if pooled == 0.0:
        return out
    from scipy.special import ndtri

    correction = hedges_correction(df)
    d = (treatment["mean"] - control["mean"]) / pooled
    g = correction * d
    se = correction * math.sqrt((n1 + n2) / (n1 * n2) + d ** 2 / (2 * (n1 + n2)))
    half = float(ndtri(0.5 + confidence / 2)) * se
    out.update(hedges_g=g, g_ci_low=g - half, g_ci_high=g + half)
    return out


def ratio_of_means(treatment_mean: float, control_mean: float) -> float | None:
    """treatment / control, only where both means are positive (else a ratio misleads)."""
    if treatment_mean > 0 and control_mean > 0:
        return treatment_mean / control_mean
    return None


# --- tests from the replicate values -----------------------------------------------------
def _splits(n1: int, n2: int) -> int:
    return math.comb(n1 + n2, n1)


def mann_whitney(x: Sequence[float], y: Sequence[float]) -> dict[str, Any]:
    """Two-sided Mann-Whitney U of x against y; U is x's statistic.

    Exact whenever the splits of the pooled values can be enumerated: scipy's exact
    distribution without ties, the exact permutation distribution of U with ties (scipy's
    "exact" assumes no ties). Larger samples: normal approximation, tie and continuity
    corrected. All values equal: no evidence of a difference, p = 1.
    """
    n1, n2 = len(x), len(y)
    if n1 == 0 or n2 == 0:
        raise ValueError("Mann-Whitney U needs values in both groups")
    import numpy as np
    from scipy import stats

    pooled = list(x) + list(y)
    if len(set(pooled)) == 1:
        return {"statistic": n1 * n2 / 2, "p": 1.0, "method": "exact"}
    ties = len(set(pooled)) < len(pooled)
    exact = _splits(n1, n2) <= EXACT_SPLITS
    if exact and not ties:
        result = stats.mannwhitneyu(x, y, alternative="two-sided", method="exact")
        return {"statistic": float(result.statistic), "p": float(result.pvalue),
                "method": "exact"}
    if exact:
        def u_statistic(a: Any, b: Any, axis: int = -1) -> Any:
            ranks = stats.rankdata(np.concatenate([a, b], axis=axis), axis=axis)
            return ranks[..., :a.shape[axis]].sum(axis=axis) - n1 * (n1 + 1) / 2

        result = stats.permutation_test((np.asarray(x, float), np.asarray(y, float)),
                                        u_statistic, permutation_type="independent",
                                        vectorized=True, n_resamples=math.inf,
                                        alternative="two-sided")
        return {"statistic": float(result.statistic), "p": float(result.pvalue),
                "method": "exact (ties: permutation distribution)"}
    result = stats.mannwhitneyu(x, y, alternative="two-sided", method="asymptotic",
                                use_continuity=True)
    return {"statistic": float(result.statistic), "p": float(result.pvalue),
            "method": "asymptotic"}


def permutation_test(x: Sequence[float], y: Sequence[float], *, permutations: int,
                     seed: int) -> dict[str, Any]:
    """Two-sided permutation test of the difference of means (x - y).

    Exact (every split) when there are at most ``permutations`` splits; otherwise
    ``permutations`` random splits from a generator seeded with ``seed``, p counted with
    the observed split included (never 0).
    """
    import numpy as np
    from scipy import stats

    def difference(a: Any, b: Any, axis: int = -1) -> Any:
        return np.mean(a, axis=axis) - np.mean(b, axis=axis)

    exact = _splits(len(x), len(y)) <= permutations
    kwargs: dict[str, Any] = dict(permutation_type="independent", vectorized=True,
                                  n_resamples=permutations, alternative="two-sided")
    data = (np.asarray(x, float), np.asarray(y, float))
    try:
        result = stats.permutation_test(data, difference, rng=np.random.default_rng(seed),
                                        **kwargs)
    except TypeError:   # scipy < 1.15 names the generator random_state
        result = stats.permutation_test(data, difference,
                                        random_state=np.random.default_rng(seed), **kwargs)
    return {"statistic": float(result.statistic), "p": float(min(1.0, result.pvalue)),
            "method": "exact" if exact else f"{permutations} random permutations"}


def welch_anova(groups: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Welch's one-way ANOVA (Welch 1951) from each group's n, mean and std.

    Needs at least two groups, each with n >= 2 and a nonzero spread; otherwise F and p
    are None and ``reason`` says why.
    """
    out: dict[str, Any] = {"F": None, "df_between": None, "df_within": None, "p": None,
                           "k": len(groups)}
    if len(groups) < 2:
        return {**out, "reason": "fewer than 2 conditions"}
    if any(g["n"] < 2 or not g.get("std") for g in groups):
        return {**out, "reason": "a condition has fewer than 2 values or no spread"}
    from scipy.special import fdtrc

    k = len(groups)
    weights = [g["n"] / g["std"] ** 2 for g in groups]
    total = math.fsum(weights)
    grand = math.fsum(w * g["mean"] for w, g in zip(weights, groups)) / total
    between = math.fsum(w * (g["mean"] - grand) ** 2 for w, g in zip(weights, groups)) / (k - 1)
    lam = math.fsum((1 - w / total) ** 2 / (g["n"] - 1) for w, g in zip(weights, groups))
    f_stat = between / (1 + 2 * (k - 2) * lam / (k ** 2 - 1))
    df_within = (k ** 2 - 1) / (3 * lam)
    return {**out, "F": f_stat, "df_between": float(k - 1), "df_within": df_within,
            "p": float(fdtrc(k - 1, df_within, f_stat))}


# --- multiple testing --------------------------------------------------------------------
def adjust_pvalues(pvalues: Sequence[float | None], method: str) -> list[float | None]:
    """Holm (family-wise error) or Benjamini-Hochberg (false discovery rate) adjusted p.

    None (a test that could not be made) stays None and is not counted in the family.
    """
    if method not in CORRECTIONS:
        raise ValueError(f"unknown correction {method!r}; expected one of {CORRECTIONS}")
    present = [(p, i) for i, p in enumerate(pvalues) if p is not None]
    out: list[float | None] = [None] * len(pvalues)
    m = len(present)
    if method == "none":
        for p, i in present:
            out[i] = p
        return out
    ordered = sorted(present)
    if method == "holm":
        running = 0.0
        for rank, (p, i) in enumerate(ordered):
            running = max(running, min(1.0, (m - rank) * p))
            out[i] = running
    else:
        running = 1.0
        for rank in range(m - 1, -1, -1):
            p, i = ordered[rank]
            running = min(running, m * p / (rank + 1))
            out[i] = min(1.0, running)
    return out
