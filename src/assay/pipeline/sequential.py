"""Group-sequential stopping: alpha spending, boundaries, adjusted p, and the precision rule.

Both rules are what adaptive replicates stop on (assay.pipeline.adaptive: replicates.until
precision and decided).

A study that looks at its comparison after every batch of replicates and stops at the
first p < alpha rejects a true null far more often than alpha (8 looks: ~0.15 at alpha =
0.05). A group-sequential design spends alpha over the looks instead (Lan & DeMets 1983):
the spending function alpha(t) says how much of alpha may be used up by information
fraction t (here replicates so far / max replicates), and the two-sided boundary c_k of
look k is the z such that, under the null, P(the test first crosses at look k) =
alpha(t_k) - alpha(t_{k-1}). The z statistics of the looks are taken as a Brownian motion
in t (Cov(Z_i, Z_j) = sqrt(t_i / t_j)); the exit probabilities are computed by the
Armitage-McPherson-Rowe recursion on a grid. A look's test p (Welch, ...) stops the study
when it is below the look's nominal level 2 (1 - Phi(c_k)).

Spending functions (two-sided alpha, alpha/2 on each side, as gsDesign and ldbounds
spend it): ``obrien_fleming``: 4 - 4 Phi(z_{1-alpha/4} / sqrt(t)) (spends almost nothing
early); ``pocock``: alpha ln(1 + (e - 1) t). With 5 equal looks at alpha = 0.05 they give
the published boundaries 4.877, 3.357, 2.680, 2.290, 2.031 and 2.438, 2.427, 2.410, 2.397,
2.386 (tests/test_sequential.py).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

SPENDING = ("obrien_fleming", "pocock")
# Grid of the recursion: points per unit of the score's standard deviation (Simpson's
# rule: the boundaries agree with published ones to 1e-4 from 40 on), and how far out it
# reaches where a look has no finite boundary.
_GRID_PER_SD = 80
_GRID_SDS = 10.0


def spent(kind: str, t: float, alpha: float) -> float:
    """alpha(t): the two-sided error allowed to be spent by information fraction t."""
    from scipy.special import ndtr, ndtri

    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    t = min(max(float(t), 0.0), 1.0)
    if t == 0:
        return 0.0
    if kind == "obrien_fleming":
        return float(4 - 4 * ndtr(ndtri(1 - alpha / 4) / math.sqrt(t)))
    if kind == "pocock":
        return float(alpha * math.log(1 + (math.e - 1) * t))
    raise ValueError(f"unknown spending function {kind!r}; expected one of {SPENDING}")


def _check_fractions(fractions: Sequence[float]) -> list[float]:
    out = [float(t) for t in fractions]
    if not out or any(not 0 < t <= 1 for t in out) or any(
            b <= a for a, b in zip(out, out[1:])):
        raise ValueError(f"information fractions must increase within (0, 1], got {out}")
    return out


def _weights(grid: np.ndarray) -> np.ndarray:
    """Simpson's rule on an odd number of equally spaced points (the integrals end exactly
    at the boundaries, where the density is cut: a plain sum would be off by O(h))."""
    w = np.ones(grid.size)
    w[1:-1:2], w[2:-1:2] = 4.0, 2.0
    return w * (grid[1] - grid[0]) / 3.0


def _step(density: np.ndarray, grid: np.ndarray, new: np.ndarray, dt: float) -> np.ndarray:
    """Density of the score at the next look, from its (sub-)density on ``grid`` (only the
    continuation region) after an independent N(0, dt) increment."""
    sd = math.sqrt(dt)
    kernel = np.exp(-0.5 * ((new[:, None] - grid[None, :]) / sd) ** 2) / (sd * math.sqrt(
        2 * math.pi))
    return np.sum(kernel * (density * _weights(grid))[None, :], axis=1)


def boundaries(fractions: Sequence[float], alpha: float = 0.05,
               kind: str = "obrien_fleming") -> list[float]:
    """Two-sided z boundaries c_1..c_K for looks at the given information fractions.

    A look whose boundary cannot spend its share (the share is ~0) gets +inf."""
    from scipy.special import ndtri

    ts = _check_fractions(fractions)
    out: list[float] = []
    previous_t, previous_spent = 0.0, 0.0
    grid = density = None
    for t in ts:
        share = spent(kind, t, alpha) - previous_spent
        if grid is None:   # first look: Z ~ N(0, 1)
            c = float(ndtri(1 - share / 2)) if share > 0 else math.inf
            sd = math.sqrt(t)
            limit = c * sd if math.isfinite(c) else _GRID_SDS * sd
            points = max(int(2 * limit / sd * _GRID_PER_SD), 201) | 1
            grid = np.linspace(-limit, limit, points)
            density = np.exp(-0.5 * (grid / sd) ** 2) / (sd * math.sqrt(2 * math.pi))
        else:
            c = _solve_boundary(grid, density, t, t - previous_t, share)
            sd = math.sqrt(t)
            limit = c * sd if math.isfinite(c) else _GRID_SDS * sd
            points = max(int(2 * limit / sd * _GRID_PER_SD), 201) | 1
            new = np.linspace(-limit, limit, points)
            density = _step(density, grid, new, t - previous_t)
            grid = new
        out.append(c)
        previous_t, previous_spent = t, spent(kind, t, alpha)
    return out


def _exit_probability(grid: np.ndarray, density: np.ndarray, dt: float,
                      score_limit: float) -> float:
    """P(continue so far, then |score| >= score_limit at the next look)."""
    from scipy.special import ndtr

    sd = math.sqrt(dt)
    outside = ndtr((grid - score_limit) / sd) + ndtr((-score_limit - grid) / sd)
    return float(np.sum(density * outside * _weights(grid)))


def _solve_boundary(grid: np.ndarray, density: np.ndarray, t: float, dt: float,
                    share: float) -> float:
    """The c whose exit probability at this look equals ``share`` (bisection on z)."""
    if share <= 0:
        return math.inf
    low, high = 0.0, 12.0
    for _ in range(80):
        mid = (low + high) / 2
        if _exit_probability(grid, density, dt, mid * math.sqrt(t)) > share:
            low = mid
        else:
            high = mid
    return (low + high) / 2


def nominal_levels(bounds: Sequence[float]) -> list[float]:
    """Each look's nominal two-sided p level: a test with p below it stops the study."""
    from scipy.special import ndtr

    return [0.0 if not math.isfinite(c) else float(2 * (1 - ndtr(c))) for c in bounds]


def adjusted_p(fractions: Sequence[float], bounds: Sequence[float], look: int,
               p: float) -> float:
    """Stagewise-ordering adjusted p of stopping at ``look`` (1-based) with nominal p:
    the null probability of crossing at an earlier look, or at this one with a z at least
    as large (Jennison & Turnbull 2000, ch. 8)."""
    from scipy.special import ndtri

    ts = _check_fractions(fractions)
    if not 1 <= look <= len(ts) or len(bounds) != len(ts):
        raise ValueError(f"look {look} of {len(ts)} looks ({len(bounds)} boundaries)")
    z = float(ndtri(1 - min(max(p, 1e-300), 1.0) / 2))
    total, previous_t = 0.0, 0.0
    grid = density = None
    for k, (t, c) in enumerate(zip(ts, bounds), start=1):
        cut = z if k == look else c
        sd = math.sqrt(t)
        if grid is None:
            from scipy.special import ndtr

            crossing = float(2 * (1 - ndtr(cut))) if math.isfinite(cut) else 0.0
        else:
            crossing = (_exit_probability(grid, density, t - previous_t, cut * sd)
                        if math.isfinite(cut) else 0.0)
        total += crossing
        if k == look:
            return min(1.0, total)
        limit = c * sd if math.isfinite(c) else _GRID_SDS * sd
        points = max(int(2 * limit / sd * _GRID_PER_SD), 201) | 1
        new = np.linspace(-limit, limit, points)
        if grid is None:
            density = np.exp(-0.5 * (new / sd) ** 2) / (sd * math.sqrt(2 * math.pi))
        else:
            density = _step(density, grid, new, t - previous_t)
        grid, previous_t = new, t
    return min(1.0, total)


# --- the precision rule ---------------------------------------------------------------------
def half_width(summary: dict[str, Any]) -> float | None:
    """Half the confidence interval of a condition's metric summary (None when n < 2)."""
    low, high = summary.get("ci_low"), summary.get("ci_high")
    return None if low is None or high is None else (high - low) / 2


def precise_enough(summary: dict[str, Any], *, absolute: float | None = None,
                   relative: float | None = None) -> bool:
    """The CI half-width is at most ``absolute``, or at most ``relative`` x |mean|; with
    neither target, or n < 2, never."""
    half = half_width(summary)
    if half is None or (absolute is None and relative is None):
        return False
    if absolute is not None and half <= absolute:
        return True
    return relative is not None and half <= relative * abs(summary["mean"])
