"""Toy physics for the demo study: a bead-spring polymer near an attractive surface.

The demo needs a simulation whose *condition parameters visibly change the
physics* (so that replicate statistics have something real to detect), that is
bitwise reproducible from a seed (so artifacts are content-addressable), and
that costs well under a second per replicate (so the workflow demo is quick).
A 24-bead Langevin-dynamics chain adsorbing onto a flat wall at ``z = 0``
satisfies all three with nothing but numpy.

Model (reduced units: bead diameter ``sigma = 1``, bead mass ``m = 1``,
friction ``gamma = 1``, ``k_B = 1``):

* harmonic bonds ``U = bond_k / 2 * (r - bond_length)**2``;
* soft-sphere excluded volume between non-bonded beads (``|i - j| >= 2``),
  ``U = k_ev / 2 * (1 - r)**2`` for ``r < 1`` -- bounded, so an overlapping
  start cannot blow up, yet stiff enough (50 kT at full overlap) that beads
  do not pass through each other in practice;
* a wall = a fixed purely repulsive 9-3 core (length scale 1.35, WCA-style:
  cut and shifted at its minimum ``z_c ~ 1.16``) plus an attractive well of
  depth ``surface_epsilon``: flat ``-eps`` for ``z <= z_c``, smoothstep
  (cubic, C1) taper to zero at ``z_c + 1``. So ``surface_epsilon = 0`` is a purely
  repulsive, non-sticky wall and nothing else changes with the condition.
  The core scale puts bound beads at ``z ~ 1.0-1.4``, so the default contact
  cutoff 1.5 means "touching the surface" and counts episodes of binding
  rather than flicker in the well's tail (with a 1.0 core, free-vs-strong
  event counts were only ~2 SE apart for some seed sets; now > 7 SE);
* Langevin dynamics with the BAOAB splitting. BAOAB rather than overdamped
  Euler because at the default ``bond_k * dt = 0.5`` Euler sits exactly on the
  stability limit of the fastest Rouse mode and bond fluctuations come out far
  too wide; BAOAB reproduces the exact ``sqrt(T / bond_k)`` bond spread.
  Forces are capped and ``z`` is reflected at 0 as safety nets; in the
  documented range (``surface_epsilon`` in [0, 4], ``temperature`` in
  [0.5, 2]) no bead gets below ``z ~ 0.77``, so neither net ever acts.

Same bits on every x86-64 machine: the dynamics use only operations that IEEE 754 rounds
correctly (+, -, *, /, sqrt) and numpy's einsum/reductions, whose order is fixed by the
numpy build, never BLAS (its kernel depends on the CPU OpenBLAS detects) nor transcendental
ufuncs (``exp``, ``power``, ``sin``: numpy dispatches AVX-512 versions with other last
bits, and glibc picks FMA variants by CPU). The chaotic dynamics would amplify any such
last-bit difference into another trajectory. ``tests/test_demo_physics.py`` runs the
simulation under several OpenBLAS core types and numpy dispatch levels and compares bits.

With defaults (24 beads, 1000 equilibration + 4000 recorded steps) one call
takes ~0.25 s on one core (measured 0.23-0.25 s).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "simulate_polymer",
    "radius_of_gyration",
    "center_of_mass_height",
    "pair_distance_matrix",
    "contact_events",
    "fraction_adsorbed",
]

# --- fixed model constants (not condition parameters) -----------------------
_EV_K = 100.0  # soft-sphere excluded-volume stiffness (kT / sigma^2)
_EV_SIGMA = 1.0  # excluded-volume diameter
_WALL_REP_EPS = 1.0  # strength of the repulsive 9-3 core (independent of condition)
_WALL_SIGMA = 1.35  # length scale of the 9-3 core: sets where adsorbed beads sit
# minimum of the 9-3 wall, where the core is cut: 0.4 ** (1 / 6) * _WALL_SIGMA, spelled out
# so that no libm pow (whose last bit may vary by CPU variant) enters the dynamics
_WALL_ZC = 1.158805195558952
_WELL_WIDTH = 1.0  # taper width of the attractive well beyond z_c
_WALL_Z_FLOOR = 0.5 * _WALL_SIGMA  # z used to evaluate the core below this (keeps it finite)
_FRICTION = 1.0  # Langevin friction gamma (bead mass m = 1): D = T / gamma
_MAX_FORCE = 1.0e3  # safety cap per force component; never reached in the documented range
_INIT_HEIGHT = _WALL_SIGMA  # lowest bead of the starting chain sits at this height
_INIT_FLATTEN = np.array([1.0, 1.0, 0.15])  # anisotropy of the starting walk's bonds
_DEFAULT_MAX_PAIRS = 64


def _wall_force_z(z: np.ndarray, surface_epsilon: float) -> np.ndarray:
    """z-force from the wall, split into condition-independent core + tunable well."""
    # repulsive core, with u = sigma_w / z:
    # U = eps*(2/15 u^9 - u^3) - U(z_c) for z < z_c, else 0;
    # F = -dU/dz = (eps / sigma_w)*(18/15 u^10 - 3 u^4), zero at z_c (C1 cut)
    u = _WALL_SIGMA / np.maximum(z, _WALL_Z_FLOOR)
    u3 = u * u * u  # not u**3.0: numpy's AVX-512 power has other last bits than its AVX2 one
    f_core = (_WALL_REP_EPS / _WALL_SIGMA) * (1.2 * u3 * u3 * u3 * u - 3.0 * u3 * u)
    f = np.where(z < _WALL_ZC, f_core, 0.0)
    if surface_epsilon > 0.0:
        # U = -eps (1 - 3 s^2 + 2 s^3), s = (z - z_c)/w in [0, 1] (smoothstep: no sin,
        # whose libm variant differs by CPU); F = -dU/dz = -(6 eps / w) s (1 - s)
        s = (z - _WALL_ZC) / _WELL_WIDTH
        in_taper = (s > 0.0) & (s < 1.0)
        f_well = (-6.0 * surface_epsilon / _WELL_WIDTH) * (s * (1.0 - s))
        f = f + np.where(in_taper, f_well, 0.0)
    return f


def _norm3(v: np.ndarray) -> float:
    """Length of a 3-vector in a fixed order of IEEE operations.

    Not ``np.linalg.norm``: that is a BLAS dot product, whose kernel (and so its last bit)
    depends on the CPU OpenBLAS detects (Haswell, SkylakeX, ...). The chaotic dynamics
    amplify that bit into other trajectories, so the demo's digests would depend on the
    machine. Plain multiplies, adds and a square root are correctly rounded everywhere.
    """
    x, y, z = float(v[0]), float(v[1]), float(v[2])
    return math.sqrt(x * x + y * y + z * z)


def _exp(x: float) -> float:
    """exp(x) from + and * alone (halve, Taylor series, square back): the same bits on
    every machine, unlike libm's exp, whose FMA and SSE2 variants may differ in the last bit."""
    halvings = 0
    while abs(x) > 0.5:
        x *= 0.5
        halvings += 1
    term, total = 1.0, 1.0
    for k in range(1, 25):
        term *= x / k
        total += term
    for _ in range(halvings):
        total *= total
    return total


def _initial_chain(
    rng: np.random.Generator, n_beads: int, bond_length: float
) -> np.ndarray:
    """Flattened persistent random walk lying just above the wall.

    Persistent so the start has few overlaps; flattened (z-part of each bond
    shrunk) so every condition starts *at* the surface and the outcome --
    stay bound or leave -- is decided by ``surface_epsilon``, not by how long
    a far-away chain takes to diffuse down. The seed alone fixes the shape.
    """
    steps = rng.standard_normal((n_beads, 3))
    pos = np.zeros((n_beads, 3))
    direction = np.array([1.0, 0.0, 0.0])
    for i in range(1, n_beads):
        direction = direction + 0.9 * steps[i]
        direction /= _norm3(direction)
        bond = direction * _INIT_FLATTEN
        pos[i] = pos[i - 1] + bond_length * bond / _norm3(bond)
    pos -= pos.mean(axis=0)
    pos[:, 2] += _INIT_HEIGHT - pos[:, 2].min()
    return pos


def simulate_polymer(
    *,
    n_beads: int = 24,
    n_frames: int = 200,
    steps_per_frame: int = 20,
    dt: float = 0.005,
    temperature: float = 1.0,
    surface_epsilon: float = 1.0,
    bond_k: float = 100.0,
    bond_length: float = 1.0,
    equilibration_steps: int = 1000,
    seed: int,
) -> dict[str, np.ndarray]:
    """Langevin dynamics of a bead-spring chain above an attractive wall at z = 0.

    ``surface_epsilon`` (well depth per bead, in units of kT at T = 1) and
    ``temperature`` are the physically meaningful condition knobs; the seed
    alone fixes the starting chain and all noise, so identical arguments give
    bitwise identical output. ``equilibration_steps`` unrecorded steps first
    let the chain settle (bind or leave), so frames reflect the condition
    rather than the shared starting geometry. Frame ``f`` is the state after
    ``f + 1`` further blocks of ``steps_per_frame`` steps; ``time`` (reduced
    units) counts from the end of equilibration.
    """
    if n_beads < 2:
        raise ValueError(f"n_beads must be >= 2, got {n_beads}")
    if n_frames < 1 or steps_per_frame < 1:
        raise ValueError("n_frames and steps_per_frame must be >= 1")
    if equilibration_steps < 0:
        raise ValueError(f"equilibration_steps must be >= 0, got {equilibration_steps}")
    if not (dt > 0.0 and temperature > 0.0 and bond_k > 0.0 and bond_length > 0.0):
        raise ValueError("dt, temperature, bond_k and bond_length must be > 0")
    if not surface_epsilon >= 0.0:
        raise ValueError(f"surface_epsilon must be >= 0, got {surface_epsilon}")

    rng = np.random.default_rng(seed)
    pos = _initial_chain(rng, n_beads, bond_length)
    vel = np.sqrt(temperature) * rng.standard_normal((n_beads, 3))  # Maxwell-Boltzmann, m = 1

    idx = np.arange(n_beads)
    nonbonded = np.abs(idx[:, None] - idx[None, :]) >= 2  # excludes self and bonds
    eps = float(surface_epsilon)
    half_dt = 0.5 * dt
    c1 = _exp(-_FRICTION * dt)  # O-step: exact Ornstein-Uhlenbeck velocity update
    c2 = np.sqrt((1.0 - c1 * c1) * temperature)

    def forces(x: np.ndarray) -> np.ndarray:
        # bonds
        bvec = x[1:] - x[:-1]
        blen = np.sqrt(np.einsum("ij,ij->i", bvec, bvec))
        fb = (-bond_k * (blen - bond_length) / blen)[:, None] * bvec
        f = np.zeros_like(x)
        f[1:] += fb
        f[:-1] -= fb
        # excluded volume: all pairs, since n_beads is small
        diff = x[:, None, :] - x[None, :, :]
        r2 = np.einsum("ijk,ijk->ij", diff, diff)
        close = nonbonded & (r2 < _EV_SIGMA * _EV_SIGMA)
        if close.any():
            r = np.sqrt(np.where(close, r2, 1.0))
            coef = np.where(close, _EV_K * (_EV_SIGMA - r) / r, 0.0)
            f += np.einsum("ij,ijk->ik", coef, diff)
        # wall
        f[:, 2] += _wall_force_z(x[:, 2], eps)
        np.clip(f, -_MAX_FORCE, _MAX_FORCE, out=f)
        return f

    def reflect() -> None:
        # the wall is impenetrable: mirror position and normal velocity
        below = pos[:, 2] < 0.0
        if below.any():
            pos[below, 2] *= -1.0
            vel[below, 2] *= -1.0

    force = forces(pos)

    def advance(n_steps: int) -> None:
        nonlocal force
        noise = rng.standard_normal((n_steps, n_beads, 3))
        noise *= c2
        for step in range(n_steps):  # BAOAB (Leimkuhler & Matthews), m = 1
            vel[:] += half_dt * force  # B
            pos[:] += half_dt * vel  # A
            reflect()
            vel[:] *= c1  # O
            vel[:] += noise[step]
            pos[:] += half_dt * vel  # A
            reflect()
            force = forces(pos)
            vel[:] += half_dt * force  # B

    remaining = equilibration_steps
    while remaining > 0:  # chunked only to bound the noise buffer
        chunk = min(remaining, 1000)
        advance(chunk)
        remaining -= chunk
    out = np.empty((n_frames, n_beads, 3), dtype=np.float64)
    for frame in range(n_frames):
        advance(steps_per_frame)
        out[frame] = pos
    time = dt * steps_per_frame * np.arange(1, n_frames + 1, dtype=np.float64)
    return {"positions": out, "time": time}


def _check_positions(positions: np.ndarray) -> np.ndarray:
    arr = np.asarray(positions, dtype=np.float64)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"positions must have shape [n_frames, n_beads, 3], got {arr.shape}")
    return arr


def radius_of_gyration(positions: np.ndarray) -> np.ndarray:
    """Chain size per frame; an adsorbed chain flattens, a free one stays coil-like."""
    pos = _check_positions(positions)
    rel = pos - pos.mean(axis=1, keepdims=True)
    return np.sqrt(np.einsum("fnk,fnk->f", rel, rel) / pos.shape[1])


def center_of_mass_height(positions: np.ndarray) -> np.ndarray:
    """Height of the chain centre above the wall per frame: the cleanest adsorption readout."""
    return _check_positions(positions)[:, :, 2].mean(axis=1)


def _default_pairs(n_beads: int, max_pairs: int = _DEFAULT_MAX_PAIRS) -> np.ndarray:
    i, j = np.triu_indices(n_beads, k=3)  # |i - j| >= 3: skip trivially-bonded geometry
    pairs = np.stack([i, j], axis=1).astype(np.int64)
    if len(pairs) > max_pairs:
        keep = np.unique(np.linspace(0, len(pairs) - 1, max_pairs).round().astype(np.int64))
        pairs = pairs[keep]
    return pairs


def pair_distance_matrix(
    positions: np.ndarray, pairs: np.ndarray | None = None, stride: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Intra-chain distances over time, a compact fingerprint of conformational change.

    Default pairs: all ``i < j`` with ``j - i >= 3``, evenly subsampled (in
    lexicographic order) to at most 64 so that output size does not grow with
    chain length squared. Returns ``(distances [n_pairs, n_frames], pairs)``.
    """
    pos = _check_positions(positions)
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    n_beads = pos.shape[1]
    if pairs is None:
        pairs_arr = _default_pairs(n_beads)
    else:
        pairs_arr = np.asarray(pairs)
        if pairs_arr.ndim != 2 or pairs_arr.shape[1] != 2:
            raise ValueError(f"pairs must have shape [n_pairs, 2], got {pairs_arr.shape}")
        if pairs_arr.size and not np.issubdtype(pairs_arr.dtype, np.integer):
            raise ValueError("pairs must be integer bead indices")
        pairs_arr = pairs_arr.astype(np.int64)
        if pairs_arr.size and (pairs_arr.min() < 0 or pairs_arr.max() >= n_beads):
            raise ValueError(f"pair indices must lie in [0, {n_beads})")
    sub = pos[::stride]
    d = sub[:, pairs_arr[:, 0], :] - sub[:, pairs_arr[:, 1], :]
    dist = np.sqrt(np.einsum("fpk,fpk->pf", d, d))
    return np.ascontiguousarray(dist, dtype=np.float64), pairs_arr


def fraction_adsorbed(positions: np.ndarray, cutoff: float = 1.5) -> np.ndarray:
    """Per-frame share of beads within ``cutoff`` of the wall (the adsorption order parameter)."""
    pos = _check_positions(positions)
    return (pos[:, :, 2] < cutoff).mean(axis=1)


def contact_events(
    positions: np.ndarray, *, cutoff: float = 1.5, min_frames: int = 1
) -> list[dict]:
    """Per-bead adsorption episodes, so binding kinetics can be tabulated as events.

    An episode is a maximal run of consecutive frames with ``z < cutoff``;
    runs shorter than ``min_frames`` are dropped (flicker at the cutoff).
    Rows are sorted by ``(bead, start_frame)``; ``end_frame`` is inclusive.
    """
    pos = _check_positions(positions)
    if min_frames < 1:
        raise ValueError(f"min_frames must be >= 1, got {min_frames}")
    z = pos[:, :, 2]
    below = z < cutoff
    n_frames, n_beads = below.shape
    padded = np.zeros((n_frames + 2, n_beads), dtype=np.int8)
    padded[1:-1] = below
    edges = np.diff(padded, axis=0)  # +1 at run start, -1 one past run end
    rows: list[dict] = []
    for bead in range(n_beads):
        starts = np.flatnonzero(edges[:, bead] == 1)
        stops = np.flatnonzero(edges[:, bead] == -1)  # exclusive
        for s, e in zip(starts, stops):
            n = int(e - s)
            if n < min_frames:
                continue
            rows.append(
                {
                    "bead": bead,
                    "start_frame": int(s),
                    "end_frame": int(e - 1),
                    "n_frames": n,
                    "min_height": float(z[s:e, bead].min()),
                }
            )
    return rows
