"""Convergence estimators for time series, as pure numeric functions (numpy only).

Per replicate series (Chodera 2016, as ``pymbar.timeseries`` 4 computes them): the
equilibration time t0 that maximizes the number of uncorrelated samples, the statistical
inefficiency g of the production part (Chodera et al. 2007; g = 1 + 2 tau), its effective
sample size N_eff = (n - t0) / g and the Monte-Carlo standard error of its mean.
Per condition (Vehtari et al. 2021, as ``arviz_stats`` computes them): the rank-normalized
split R-hat across replicates and their combined bulk ESS.

Why not call pymbar and arviz-stats at run time: each import pulls in scipy.stats
(pymbar ~0.9 s, arviz_stats.base ~0.8 s on the CI machine), which every collect and
aggregate job with a series would pay, more than the demo's whole collect job. These are
line-by-line ports of their algorithms; ``tests/test_convergence.py`` checks them against
pymbar 4 and arviz-stats on AR(1) series with known g and on the demo's series. Two
deliberate differences from pymbar's ``detect_equilibration``: g and N_eff are float64
(pymbar keeps float32, used here only to choose t0 as it does), and the reported N_eff counts the n - t0 production samples
(pymbar's selection criterion, kept for choosing t0, counts n - t0 + 1).

Only operations whose rounding does not depend on the CPU (elementwise arithmetic,
numpy's fixed-order reductions, sqrt, scipy's ndtri): no BLAS, no FFT, so the same series
gives the same bits on every node (stored numbers are pinned by the tests).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

# pymbar's defaults: the correlation function is summed until it first drops to or below
# zero after this many lags.
MINTIME = 3
# detect_equilibration tries at most about this many origins t0 (pymbar's nskip): every
# origin costs one g estimate, so a long series is sampled, not searched frame by frame.
MAX_ORIGINS = 200
# Stored diagnostics keep this many significant digits: they are estimates whose own error
# is tens of percent; more digits would only make the pinned bytes fragile.
DIGITS = 6


def rounded(value: float | None) -> float | None:
    """``value`` to DIGITS significant digits (None stays None)."""
    return None if value is None else float(f"{value:.{DIGITS}g}")


# np.add.reduce is what np.sum and ndarray.mean compute with (the same pairwise sum, the
# same bits), without their Python wrappers: those were half the diagnostics' time on the
# demo's short series, where detect_equilibration makes ~1,000 small sums per series.
_sum = np.add.reduce


def statistical_inefficiency(series: Any, *, fast: bool = False,
                             mintime: int = MINTIME) -> float:
    """g of one series (pymbar.timeseries.statistical_inefficiency, same algorithm).

    Sums the normalized autocorrelation C(t) (1 - t/N) until C first drops to <= 0 after
    ``mintime`` lags; ``fast`` widens the step by one each lag. g >= 1. A constant series
    has no defined g: ValueError (callers treat it as one independent sample).
    """
    x = np.asarray(series, dtype=np.float64)
    dx = x - x.mean()
    sigma2 = (dx * dx).mean()
    if sigma2 == 0:
        raise ValueError("constant series: its statistical inefficiency is undefined")
    return _inefficiency(dx, sigma2, fast, mintime)


def _inefficiency(dx: np.ndarray, sigma2: float, fast: bool, mintime: int) -> float:
    """The lag loop of statistical_inefficiency on the centred series. pymbar sums
    a*b + b*a; 2 * sum(a*b) is the same number bit for bit (doubling is exact)."""
    n = dx.size
    g, t, increment = 1.0, 1, 1
    while t < n - 1:
        c = 2.0 * _sum(dx[0:n - t] * dx[t:n]) / (2.0 * float(n - t) * sigma2)
        if c <= 0.0 and t > mintime:
            break
        g += 2.0 * c * (1.0 - float(t) / float(n)) * float(increment)
        t += increment
        if fast:
            increment += 1
    return max(g, 1.0)


def origin_stride(n: int) -> int:
    """pymbar's nskip for a series of n frames: at most about MAX_ORIGINS origins."""
    return max(1, math.ceil((n - 1) / MAX_ORIGINS))


def detect_equilibration(series: Any, *, nskip: int | None = None) -> tuple[int, float]:
    """(t0, g of series[t0:]) choosing t0 as pymbar.timeseries.detect_equilibration does:
    the origin (every nskip-th) with the most uncorrelated samples (n - t + 1) / g, g by
    the fast estimate. A constant series gives (0, 1.0), as in pymbar."""
    x = np.asarray(series, dtype=np.float64)
    n = x.size
    if x.std() == 0.0:
        return 0, 1.0
    nskip = origin_stride(n) if nskip is None else nskip
    best_t, best_g, best_neff = 0, 1.0, -math.inf
    for t in range(0, n - 1, nskip):
        dx = x[t:n] - _sum(x[t:n]) / (n - t)          # x[t:n].mean(), the same bits
        sigma2 = _sum(dx * dx) / (n - t)
        if sigma2 == 0:   # the rest of the series is constant (pymbar issue #122)
            g = float(n - t + 1)
        else:
            g = _inefficiency(dx, sigma2, True, MINTIME)
        # pymbar keeps g and N_eff as float32: the same rounding picks the same t0
        neff = float(np.float32((n - t + 1) / np.float32(g)))
        if neff > best_neff:
            best_t, best_g, best_neff = t, g, neff
    if nskip > 1 and best_neff < 1.0:   # pymbar's untried origins count as N_eff = 1
        return 1, 1.0
    return best_t, best_g


def series_diagnostics(series: Any) -> dict[str, Any]:
    """t0, g, N_eff, mean and MCSE of the production part series[t0:].

    g here is the careful (not fast) estimate on the production part; N_eff = (n - t0) / g;
    MCSE = sd(production, n-1) / sqrt(N_eff). A constant production part is one
    independent sample (N_eff = 1, as pymbar counts it) with MCSE 0.
    """
    x = np.asarray(series, dtype=np.float64)
    if x.ndim != 1 or x.size < 2:
        raise ValueError(f"a series needs at least 2 values in one dimension, got shape "
                         f"{x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("the series holds NaN or infinite values")
    n = int(x.size)
    t0, _ = detect_equilibration(x)
    production = x[t0:]
    try:
        g = statistical_inefficiency(production)
        n_eff = production.size / g
        mcse = float(production.std(ddof=1)) / math.sqrt(n_eff)
    except ValueError:   # constant
        g, n_eff, mcse = float(production.size), 1.0, 0.0
    return {"n": n, "t0": int(t0), "g": rounded(g), "n_eff": rounded(n_eff),
            "mean": rounded(float(production.mean())), "mcse": rounded(mcse)}


# --- across replicates (chains) ----------------------------------------------------------
def _average_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n, ties sharing their average rank (scipy.stats.rankdata 'average')."""
    flat = values.ravel()
    order = np.argsort(flat, kind="mergesort")
    ordered = flat[order]
    new = np.r_[True, ordered[1:] != ordered[:-1]]
    group = np.cumsum(new)
    bounds = np.r_[np.nonzero(new)[0], flat.size]
    average = 0.5 * (bounds[group] + bounds[group - 1] + 1)
    ranks = np.empty(flat.size, dtype=np.float64)
    ranks[order] = average
    return ranks.reshape(values.shape)


def _z_scale(values: np.ndarray) -> np.ndarray:
    """Rank-normalize: ranks -> Blom's (r - 3/8) / (S + 1/4) -> normal quantiles."""
    from scipy.special import ndtri

    ranks = _average_ranks(values)
    return ndtri((ranks - 0.375) / (values.size - 0.75 + 1.0))


def _split(chains: np.ndarray) -> np.ndarray:
    half = chains.shape[1] // 2
    return np.vstack((chains[:, :half], chains[:, -half:]))


def _rhat(chains: np.ndarray) -> float:
    draws = chains.shape[1]
    chain_mean = chains.mean(axis=1)
    between = draws * np.var(chain_mean, ddof=1)
    within = np.mean(np.var(chains, axis=1, ddof=1))
    return float(np.sqrt((between / within + draws - 1) / draws))


def _checked_chains(chains: Sequence[Any] | np.ndarray, min_chains: int) -> np.ndarray:
    array = np.asarray(chains, dtype=np.float64)
    if array.ndim != 2 or array.shape[0] < min_chains or array.shape[1] < 4:
        raise ValueError(f"needs at least {min_chains} chains of at least 4 draws, got shape "
                         f"{array.shape}")
    if not np.isfinite(array).all():
        raise ValueError("the chains hold NaN or infinite values")
    return array


def rank_rhat(chains: Sequence[Any] | np.ndarray) -> float:
    """Rank-normalized split R-hat (arviz_stats rhat, method='rank'): the larger of the
    bulk (rank-normalized) and tail (folded about the median) split R-hats. Chains are
    rows of equal length (>= 2 chains, >= 4 draws)."""
    split = _split(_checked_chains(chains, 2))
    bulk = _rhat(_z_scale(split))
    folded = np.abs(split - np.median(split))
    return max(bulk, _rhat(_z_scale(folded)))


def _autocov(chains: np.ndarray, lag: int) -> np.ndarray:
    """Each chain's autocovariance at one lag (biased, divided by n), by direct sums."""
    n = chains.shape[1]
    centred = chains - chains.mean(axis=1, keepdims=True)
    return np.sum(centred[:, :n - lag] * centred[:, lag:], axis=1) / n


def _ess(chains: np.ndarray) -> float:
    """ESS of chains by Geyer's initial monotone sequence (arviz_stats _ess, lags summed
    directly, computed only as far as the sequence goes)."""
    if np.max(chains) - np.min(chains) < np.finfo(float).resolution:
        return float(chains.size)
    n_chain, n_draw = chains.shape
    acov: dict[int, float] = {}

    def mean_acov(lag: int) -> float:
        if lag not in acov:
            acov[lag] = float(np.mean(_autocov(chains, lag)))
        return acov[lag]

    mean_var = mean_acov(0) * n_draw / (n_draw - 1.0)
    var_plus = mean_var * (n_draw - 1.0) / n_draw
    if n_chain > 1:
        var_plus += float(np.var(chains.mean(axis=1), ddof=1))
    rho = np.zeros(n_draw)
    rho_even, rho_odd = 1.0, 1.0 - (mean_var - mean_acov(1)) / var_plus
    rho[0], rho[1] = rho_even, rho_odd
    t = 1
    while t < n_draw - 3 and rho_even + rho_odd > 0.0:   # initial positive sequence
        rho_even = 1.0 - (mean_var - mean_acov(t + 1)) / var_plus
        rho_odd = 1.0 - (mean_var - mean_acov(t + 2)) / var_plus
        if rho_even + rho_odd >= 0:
            rho[t + 1], rho[t + 2] = rho_even, rho_odd
        t += 2
    max_t = t - 2
    if rho_even > 0:
        rho[max_t + 1] = rho_even
    t = 1
    while t <= max_t - 2:   # initial monotone sequence
        if rho[t + 1] + rho[t + 2] > rho[t - 1] + rho[t]:
            rho[t + 1] = rho[t + 2] = (rho[t - 1] + rho[t]) / 2.0
        t += 2
    size = n_chain * n_draw
    tau = -1.0 + 2.0 * np.sum(rho[:max_t + 1]) + np.sum(rho[max_t + 1:max_t + 2])
    tau = max(tau, 1 / np.log10(size))
    return float(size / tau)


def bulk_ess(chains: Sequence[Any] | np.ndarray) -> float:
    """Combined bulk ESS of chains (arviz_stats ess, method='bulk'): the ESS of the
    rank-normalized split chains. Rows of equal length (>= 1 chain, >= 4 draws)."""
    return _ess(_z_scale(_split(_checked_chains(chains, 1))))
