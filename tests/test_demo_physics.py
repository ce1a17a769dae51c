"""Tests for the demo polymer-adsorption model (assay.demo.physics).

The expensive part is a handful of default-size simulations (~0.2 s each);
they are cached per module so the whole file stays at a few seconds.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

from assay.demo.physics import (
    center_of_mass_height,
    contact_events,
    fraction_adsorbed,
    pair_distance_matrix,
    radius_of_gyration,
    simulate_polymer,
)

SEEDS = (1, 2, 3, 4)
CONDITIONS = {"free": 0.0, "weak": 1.0, "strong": 3.0}


@functools.cache
def _sim(seed: int, surface_epsilon: float) -> dict[str, np.ndarray]:
    out = simulate_polymer(seed=seed, surface_epsilon=surface_epsilon)
    for arr in out.values():
        arr.setflags(write=False)  # shared across tests: must not be mutated
    return out


def _sem(x: np.ndarray) -> float:
    return float(np.std(x, ddof=1) / np.sqrt(len(x)))


# --- simulate_polymer --------------------------------------------------------


def test_same_seed_is_bitwise_identical() -> None:
    first = _sim(1, 3.0)
    again = simulate_polymer(seed=1, surface_epsilon=3.0)
    assert first.keys() == again.keys() == {"positions", "time"}
    for key in first:
        assert first[key].tobytes() == again[key].tobytes()


def test_different_seed_differs() -> None:
    a = _sim(1, 3.0)["positions"]
    b = _sim(2, 3.0)["positions"]
    assert not np.array_equal(a, b)
    # not merely a shifted copy: the conformations themselves differ
    assert not np.allclose(radius_of_gyration(a), radius_of_gyration(b))


def test_condition_changes_trajectory_for_same_seed() -> None:
    assert not np.array_equal(_sim(1, 0.0)["positions"], _sim(1, 3.0)["positions"])


def test_shapes_dtypes_and_time() -> None:
    out = _sim(1, 1.0)
    pos, time = out["positions"], out["time"]
    assert pos.shape == (200, 24, 3) and pos.dtype == np.float64
    assert time.shape == (200,) and time.dtype == np.float64
    np.testing.assert_allclose(np.diff(time), 20 * 0.005)
    assert time[0] > 0.0

    small = simulate_polymer(seed=0, n_beads=7, n_frames=5, steps_per_frame=3, equilibration_steps=0)
    assert small["positions"].shape == (5, 7, 3)
    assert small["time"].shape == (5,)


@pytest.mark.parametrize("eps", CONDITIONS.values())
def test_physical_sanity_at_defaults(eps: float) -> None:
    pos = _sim(1, eps)["positions"]
    assert np.isfinite(pos).all()
    bonds = np.linalg.norm(np.diff(pos, axis=1), axis=2)
    assert bonds.min() > 0.5 and bonds.max() < 1.6
    assert abs(bonds.mean() - 1.0) < 0.05  # near bond_length, not drifting
    assert pos[:, :, 2].min() > -1e-12  # the wall is impenetrable


@pytest.mark.parametrize(
    ("temperature", "eps"), [(0.5, 0.0), (0.5, 4.0), (2.0, 0.0), (2.0, 4.0)]
)
def test_stable_at_corners_of_documented_range(temperature: float, eps: float) -> None:
    out = simulate_polymer(
        seed=5, temperature=temperature, surface_epsilon=eps, n_frames=50, equilibration_steps=200
    )
    pos = out["positions"]
    assert np.isfinite(pos).all()
    assert pos[:, :, 2].min() > -1e-12
    bonds = np.linalg.norm(np.diff(pos, axis=1), axis=2)
    assert bonds.min() > 0.3 and bonds.max() < 2.0
    # no bead "tunnels" into the wall core (it costs tens of kT below z ~ 0.7)
    assert pos[:, :, 2].min() > 0.6


def test_bond_spread_matches_equipartition() -> None:
    # harmonic bond: std(r) ~ sqrt(T / k). Catches integrator errors (e.g. an
    # overdamped Euler step at bond_k*dt = 0.5 inflates this by ~40%).
    pos = simulate_polymer(seed=11, surface_epsilon=0.0, n_frames=300, steps_per_frame=10)["positions"]
    bonds = np.linalg.norm(np.diff(pos, axis=1), axis=2)
    assert bonds.std() == pytest.approx(np.sqrt(1.0 / 100.0), rel=0.15)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n_beads": 1},
        {"n_frames": 0},
        {"steps_per_frame": 0},
        {"dt": 0.0},
        {"temperature": -1.0},
        {"surface_epsilon": -0.1},
        {"surface_epsilon": float("nan")},
        {"equilibration_steps": -1},
    ],
)
def test_rejects_bad_parameters(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        simulate_polymer(seed=0, **kwargs)


def test_seed_is_required() -> None:
    with pytest.raises(TypeError):
        simulate_polymer()  # type: ignore[call-arg]


# --- analysis functions ------------------------------------------------------


def test_radius_of_gyration_known_geometry() -> None:
    # two beads a distance d apart: Rg = d / 2; translation invariant
    pos = np.zeros((3, 2, 3))
    pos[:, 1, 0] = [1.0, 2.0, 4.0]
    pos[2] += 10.0
    np.testing.assert_allclose(radius_of_gyration(pos), [0.5, 1.0, 2.0])
    rg = radius_of_gyration(_sim(1, 1.0)["positions"])
    assert rg.shape == (200,) and rg.dtype == np.float64 and (rg > 0).all()


def test_center_of_mass_height() -> None:
    pos = _sim(1, 1.0)["positions"]
    np.testing.assert_allclose(center_of_mass_height(pos), pos[:, :, 2].mean(axis=1))


def test_pair_distance_matrix_defaults() -> None:
    pos = _sim(1, 1.0)["positions"]
    dist, pairs = pair_distance_matrix(pos)
    assert pairs.dtype == np.int64 and pairs.ndim == 2 and pairs.shape[1] == 2
    assert 32 <= len(pairs) <= 64
    assert (pairs[:, 1] - pairs[:, 0] >= 3).all()
    assert len(np.unique(pairs, axis=0)) == len(pairs)
    assert dist.shape == (len(pairs), 200) and dist.dtype == np.float64
    i, j = pairs[5]
    np.testing.assert_allclose(dist[5], np.linalg.norm(pos[:, i] - pos[:, j], axis=1))
    # deterministic choice of pairs
    np.testing.assert_array_equal(pair_distance_matrix(pos)[1], pairs)


def test_pair_distance_matrix_small_chain_keeps_all_pairs() -> None:
    pos = np.random.default_rng(0).normal(size=(4, 6, 3))
    _, pairs = pair_distance_matrix(pos)
    np.testing.assert_array_equal(pairs, [[0, 3], [0, 4], [0, 5], [1, 4], [1, 5], [2, 5]])


def test_pair_distance_matrix_explicit_pairs_and_stride() -> None:
    pos = _sim(1, 1.0)["positions"]
    dist, pairs = pair_distance_matrix(pos, pairs=np.array([[0, 23], [2, 3]]), stride=7)
    assert pairs.dtype == np.int64
    assert dist.shape == (2, len(range(0, 200, 7)))
    np.testing.assert_allclose(dist[1], np.linalg.norm(pos[::7, 2] - pos[::7, 3], axis=1))
    with pytest.raises(ValueError):
        pair_distance_matrix(pos, pairs=np.array([[0, 24]]))
    with pytest.raises(ValueError):
        pair_distance_matrix(pos, stride=0)


def test_contact_events_hand_made() -> None:
    z = np.array(
        [
            [2.0, 1.0],
            [1.0, 1.0],
            [1.2, 3.0],
            [3.0, 1.4],
            [0.9, 1.1],
        ]
    )
    pos = np.zeros((5, 2, 3))
    pos[:, :, 2] = z
    rows = contact_events(pos, cutoff=1.5)
    assert rows == [
        {"bead": 0, "start_frame": 1, "end_frame": 2, "n_frames": 2, "min_height": 1.0},
        {"bead": 0, "start_frame": 4, "end_frame": 4, "n_frames": 1, "min_height": 0.9},
        {"bead": 1, "start_frame": 0, "end_frame": 1, "n_frames": 2, "min_height": 1.0},
        {"bead": 1, "start_frame": 3, "end_frame": 4, "n_frames": 2, "min_height": 1.1},
    ]
    assert [r["n_frames"] for r in contact_events(pos, cutoff=1.5, min_frames=2)] == [2, 2, 2]
    np.testing.assert_allclose(fraction_adsorbed(pos, 1.5), [0.5, 1.0, 0.5, 0.5, 1.0])


@pytest.mark.parametrize("eps", CONDITIONS.values())
def test_contact_events_consistent_with_fraction_adsorbed(eps: float) -> None:
    pos = _sim(2, eps)["positions"]
    n_frames, n_beads, _ = pos.shape
    rows = contact_events(pos)  # default cutoff 1.5 == fraction_adsorbed default
    frac = fraction_adsorbed(pos)
    assert frac.shape == (n_frames,) and frac.dtype == np.float64
    assert ((frac >= 0) & (frac <= 1)).all()

    # rebuild the per-frame adsorbed mask from the events
    mask = np.zeros((n_frames, n_beads), dtype=bool)
    for r in rows:
        assert r["end_frame"] - r["start_frame"] + 1 == r["n_frames"] >= 1
        assert r["min_height"] < 1.5
        assert not mask[r["start_frame"] : r["end_frame"] + 1, r["bead"]].any()  # no overlap
        mask[r["start_frame"] : r["end_frame"] + 1, r["bead"]] = True
        # maximal runs: the frames just outside are not adsorbed
        for f in (r["start_frame"] - 1, r["end_frame"] + 1):
            if 0 <= f < n_frames:
                assert pos[f, r["bead"], 2] >= 1.5
    np.testing.assert_allclose(mask.mean(axis=1), frac)
    keys = [(r["bead"], r["start_frame"]) for r in rows]
    assert keys == sorted(keys)
    assert sum(r["n_frames"] for r in rows) == pytest.approx(frac.sum() * n_beads)


# --- the science: conditions must produce a real, replicate-robust effect ----


def _condition_metrics(eps: float) -> dict[str, np.ndarray]:
    per_seed = [_sim(s, eps)["positions"] for s in SEEDS]
    return {
        "fraction_adsorbed": np.array([fraction_adsorbed(p).mean() for p in per_seed]),
        "com_height": np.array([center_of_mass_height(p).mean() for p in per_seed]),
        "n_events": np.array([len(contact_events(p)) for p in per_seed], dtype=float),
    }


def test_surface_attraction_separates_free_from_strong() -> None:
    free = _condition_metrics(CONDITIONS["free"])
    strong = _condition_metrics(CONDITIONS["strong"])
    for name in ("fraction_adsorbed", "com_height", "n_events"):
        gap = abs(strong[name].mean() - free[name].mean())
        se = np.hypot(_sem(strong[name]), _sem(free[name]))
        assert gap > 3 * se, (name, free[name], strong[name])
    # direction and size, not just "different": the sticky wall binds the chain
    assert strong["fraction_adsorbed"].min() > free["fraction_adsorbed"].max()
    assert strong["fraction_adsorbed"].mean() > 0.6 > 0.2 > free["fraction_adsorbed"].mean()
    assert strong["com_height"].max() < free["com_height"].min()


def test_weak_attraction_is_intermediate() -> None:
    frac = {name: _condition_metrics(eps)["fraction_adsorbed"].mean() for name, eps in CONDITIONS.items()}
    assert frac["free"] < frac["weak"] < frac["strong"]
