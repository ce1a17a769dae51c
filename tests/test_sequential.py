"""Group-sequential stopping (assay.pipeline.sequential): published boundaries, an independent
multivariate-normal check, and 2,000 simulated null studies in which the spending design
keeps the false-positive rate at alpha while stopping at the first p < alpha does not."""

from __future__ import annotations

import math

import numpy as np
import pytest

from assay.pipeline import sequential as sq
from assay.pipeline.statistics import welch

FIVE = [0.2, 0.4, 0.6, 0.8, 1.0]


def test_boundaries_are_the_published_ones():
    """Lan-DeMets spending, 5 equal looks, two-sided alpha 0.05 (Jennison & Turnbull 2000,
    tables 7.6 and 7.7; the same numbers from R gsDesign sfLDOF/sfLDPocock)."""
    assert sq.boundaries(FIVE, 0.05, "obrien_fleming") == pytest.approx(
        [4.8769, 3.3569, 2.6803, 2.2898, 2.0310], abs=2e-4)
    assert sq.boundaries(FIVE, 0.05, "pocock") == pytest.approx(
        [2.4380, 2.4268, 2.4101, 2.3966, 2.3859], abs=2e-4)


@pytest.mark.parametrize("kind", sq.SPENDING)
def test_the_null_crossing_probability_is_alpha_by_an_independent_method(kind):
    """Three looks at t = 1/3, 2/3, 1: 1 - P(|Z_k| < c_k for all k) = alpha, with the
    looks' correlation sqrt(t_i / t_j), from scipy's multivariate normal CDF."""
    from scipy.stats import multivariate_normal

    ts = [1 / 3, 2 / 3, 1.0]
    c = sq.boundaries(ts, 0.05, kind)
    cov = [[math.sqrt(min(a, b) / max(a, b)) for b in ts] for a in ts]
    mvn = multivariate_normal(mean=[0, 0, 0], cov=cov, abseps=1e-7, releps=1e-7)
    inside = 0.0
    for signs in np.ndindex(2, 2, 2):   # inclusion-exclusion over the box's corners
        corner = [c[k] if s == 0 else -c[k] for k, s in enumerate(signs)]
        inside += (-1) ** sum(signs) * mvn.cdf(corner)
    assert 1 - inside == pytest.approx(0.05, abs=2e-4)


def test_adjusted_p():
    bounds = sq.boundaries(FIVE, 0.05, "obrien_fleming")
    nominal = sq.nominal_levels(bounds)
    assert sq.adjusted_p(FIVE, bounds, 1, 1e-7) == pytest.approx(1e-7, rel=1e-6)
    # Stopping exactly on the last boundary spends the whole alpha.
    assert sq.adjusted_p(FIVE, bounds, 5, nominal[4]) == pytest.approx(0.05, abs=2e-4)
    # Crossing at look 3: more than its nominal p (earlier looks could have stopped it).
    p3 = sq.adjusted_p(FIVE, bounds, 3, nominal[2] / 2)
    assert nominal[2] / 2 < p3 < 0.05


def _null_studies(n_studies: int, batch: int, looks: int, seed: int) -> np.ndarray:
    """p of Welch's test at every look of every simulated study (both conditions drawn
    from the same normal: every rejection is a false positive)."""
    rng = np.random.default_rng(seed)
    data = rng.normal(size=(n_studies, 2, batch * looks))
    out = np.empty((n_studies, looks))
    for k in range(looks):
        n = batch * (k + 1)
        a, b = data[:, 0, :n], data[:, 1, :n]
        for i in range(n_studies):
            summaries = [{"n": n, "mean": float(x[i].mean()), "std": float(x[i].std(ddof=1))}
                         for x in (a, b)]
            out[i, k] = welch(summaries[0], summaries[1], 0.95)["p"]
    return out


@pytest.mark.parametrize("kind", sq.SPENDING)
def test_two_thousand_null_studies_keep_alpha_and_naive_looks_do_not(kind):
    """Batches of 3 replicates per condition, up to 24 (8 looks), alpha 0.05. The
    Monte-Carlo standard error of a rate near 0.05 over 2,000 studies is 0.0049; the
    design's rate must be within 3 of them of alpha, the naive one is far beyond."""
    looks, batch, alpha, n_studies = 8, 3, 0.05, 2000
    p = _null_studies(n_studies, batch, looks, seed=26)
    nominal = np.array(sq.nominal_levels(
        sq.boundaries([(k + 1) / looks for k in range(looks)], alpha, kind)))
    tolerance = 3 * math.sqrt(alpha * (1 - alpha) / n_studies)
    designed = float(np.mean((p < nominal).any(axis=1)))
    naive = float(np.mean((p < alpha).any(axis=1)))
    single = float(np.mean(p[:, -1] < alpha))   # one look at 24: the test is exact
    assert abs(single - alpha) < tolerance
    assert abs(designed - alpha) < tolerance, (designed, naive)
    assert naive > alpha + tolerance
    assert naive > 2 * alpha


def test_precision_rule():
    summary = {"n": 4, "mean": 2.0, "ci_low": 1.75, "ci_high": 2.25}
    assert sq.half_width(summary) == 0.25
    assert sq.precise_enough(summary, absolute=0.25)
    assert not sq.precise_enough(summary, absolute=0.2)
    assert sq.precise_enough(summary, relative=0.125) and not sq.precise_enough(
        summary, relative=0.1)
    assert not sq.precise_enough({"n": 1, "mean": 2.0, "ci_low": None, "ci_high": None},
                                 absolute=1.0)
    assert not sq.precise_enough(summary)
