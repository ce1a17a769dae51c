"""A stand-in for your simulation: a 3-D random-walk chain, as an NPZ trajectory.

Replace it with your engine. The `python` template calls `run(ctx)` in the job's process;
the `shell` template runs this file as a command. Either way the trajectory ends up as the
run's sidecar of kind "trajectory" (an NPZ with `positions`, frames x beads x 3), which
the polymer analyses read.
"""

from __future__ import annotations

import argparse

import numpy as np


def simulate(seed: int, n_beads: int, n_frames: int, step: float) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    start = np.cumsum(rng.normal(size=(n_beads, 3)), axis=0)
    moves = rng.normal(scale=step, size=(n_frames, n_beads, 3))
    positions = start + np.cumsum(moves, axis=0)
    positions[..., 2] = np.abs(positions[..., 2])       # a wall at z = 0
    return {"positions": positions, "time": np.arange(n_frames, dtype=float)}


def run(ctx):
    """The `python` runner's entry point: a RunContext in, a RunArtifact out."""
    settings = ctx.merged_settings
    traj = simulate(ctx.seed, int(settings["n_beads"]), int(settings["n_frames"]),
                    float(settings["step"]))
    ctx.progress(1, 1, "simulated")
    sidecar = ctx.artifact_store.write_npz_sidecar(
        "sidecars/trajectory.npz", metadata={"kind": "trajectory"}, **traj)
    return ctx.result(payload={"n_frames": int(settings["n_frames"])}, sidecars=[sidecar])


if __name__ == "__main__":   # the `shell` template's command
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--beads", type=int, default=16)
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--step", type=float, default=0.1)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    np.savez(args.out, **simulate(args.seed, args.beads, args.frames, args.step))
