"""Analyses of the demo polymer runs: a time series, a distance matrix and an event table.

Each plugin is what a user would write: it imports only from ``assay`` (and numpy),
reads the run's registered trajectory sidecar through the store, and returns a
ReplicateArtifact with finite scalar metrics plus sidecars for the bulky data.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from assay import METRICS, Metric, Setting, Settings

_PHYSICS = ("assay.demo.physics",)
# Every polymer analysis takes this one; the demo's config comments say the same.
EQUILIBRATION = Setting(int, 0, ge=0, unit="frames",
                        help="frames skipped at the start of each trajectory")


def _trajectory(ctx: Any, skip: int) -> np.ndarray:
    """Positions after the ``skip`` equilibration frames."""
    with ctx.artifact_store.load_npz_sidecar(ctx.run_sidecar("trajectory")) as data:
        positions = data["positions"]
    if skip >= len(positions):
        raise ValueError(f"equilibration_frames={skip} leaves no frames of {len(positions)}")
    return positions[skip:]


def _sidecar_arrays(ctx: Any, kind: str, *names: str) -> dict[int, dict[str, np.ndarray]]:
    """For every condition: the named arrays of each replicate's sidecar of this kind."""
    out: dict[str, list[dict[str, np.ndarray]]] = {}
    for condition, replicates in ctx.replicates.items():
        out[condition] = []
        for _, artifact in sorted(replicates.items()):
            with ctx.artifact_store.load_npz_sidecar(artifact.sidecar(kind=kind)) as data:
                out[condition].append({name: data[name] for name in names})
    return out


class RadiusOfGyration:
    """Per-frame radius of gyration and centre-of-mass height; scalar means as metrics."""

    code_dependencies = _PHYSICS
    SETTINGS = Settings({"equilibration_frames": EQUILIBRATION})
    METRIC_INFO = {
        "mean_rg": Metric("radius of gyration", "σ", bounds="non-negative"),
        "std_rg": Metric("SD of Rg over frames", "σ", bounds="non-negative"),
        "mean_com_height": Metric("centre-of-mass height", "σ", bounds="non-negative"),
    }
    # metric -> its per-frame series in the NPZ sidecar: assay stores t0, g, N_eff, R-hat
    SERIES = {"mean_rg": "radius_of_gyration", "mean_com_height": "com_height"}

    def collect(self, ctx: Any) -> Any:
        from assay.demo.physics import center_of_mass_height, radius_of_gyration

        positions = _trajectory(ctx, self.SETTINGS.read(ctx).equilibration_frames)
        rg = radius_of_gyration(positions)
        height = center_of_mass_height(positions)
        sidecar = ctx.artifact_store.write_npz_sidecar(
            "sidecars/timeseries.npz", radius_of_gyration=rg, com_height=height,
            frames=np.arange(len(rg), dtype=np.int64),
            metadata={"kind": "timeseries", "layout": "frame", "n_frames": int(len(rg))})
        return ctx.result(
            payload={"n_frames": int(len(rg)),
                     METRICS: {"mean_rg": float(rg.mean()), "std_rg": float(rg.std()),
                               "mean_com_height": float(height.mean())}},
            sidecars=[sidecar])

    # No plot method: the detail figure is assay's series figure (replicate series, t0,
    # running mean with its MCSE band), drawn from SERIES.


class DistanceMatrix:
    """Pair x frame distance matrix in an NPZ sidecar; mean distance as the metric."""

    code_dependencies = _PHYSICS
    SETTINGS = Settings({
        "equilibration_frames": EQUILIBRATION,
        "stride": Setting(int, 1, ge=1, unit="frames", help="use every stride-th frame"),
    })
    METRIC_INFO = {
        "mean_distance": Metric("mean bead-pair distance", "σ", bounds="non-negative"),
        "mean_end_to_end": Metric("end-to-end distance", "σ", bounds="non-negative"),
    }

    def collect(self, ctx: Any) -> Any:
        from assay.demo.physics import pair_distance_matrix

        s = self.SETTINGS.read(ctx)
        positions = _trajectory(ctx, s.equilibration_frames)
        distances, pairs = pair_distance_matrix(positions, stride=s.stride)
        sidecar = ctx.artifact_store.write_npz_sidecar(
            "sidecars/distance_matrix.npz", distances=distances, pairs=pairs,
            metadata={"kind": "distance_matrix", "layout": "pair_x_frame",
                      "shape": list(distances.shape), "unit": "sigma"})
        end_to_end = np.linalg.norm(positions[:, -1] - positions[:, 0], axis=1)
        return ctx.result(
            payload={"n_pairs": int(distances.shape[0]), "n_frames": int(distances.shape[1]),
                     METRICS: {"mean_distance": float(distances.mean()),
                               "mean_end_to_end": float(end_to_end.mean())}},
            sidecars=[sidecar])

    def plot(self, ctx: Any, figure: Any) -> None:
        data = _sidecar_arrays(ctx, "distance_matrix", "distances", "pairs")
        conditions = list(data)
        axes = np.atleast_1d(figure.subplots(1, len(conditions), sharey=True))
        means = {c: np.mean([run["distances"].mean(axis=1) for run in runs], axis=0)
                 for c, runs in data.items()}
        vmax = max(float(m.max()) for m in means.values())
        for ax, condition in zip(axes, conditions):
            pairs = data[condition][0]["pairs"]
            separation = pairs[:, 1] - pairs[:, 0]
            order = np.argsort(separation, kind="stable")
            ax.scatter(separation[order], means[condition][order], s=12)
            ax.set_title(f"{condition} (n = {len(data[condition])})")
            ax.set_xlabel("chain separation |i - j|")
            ax.set_ylim(0, vmax * 1.05)
        axes[0].set_ylabel("mean pair distance (σ)")
        figure.suptitle("Mean distance per bead pair, averaged over frames and replicates")


class ContactEvents:
    """Surface-contact episodes per bead as a CSV event table; counts and durations."""

    code_dependencies = _PHYSICS
    SETTINGS = Settings({
        "equilibration_frames": EQUILIBRATION,
        "cutoff": Setting(float, 1.5, gt=0, unit="σ",
                          help="a bead below this height touches the surface"),
        "min_frames": Setting(int, 1, ge=1, unit="frames",
                              help="shorter contact episodes are not counted"),
    })
    METRIC_INFO = {
        "n_events": Metric("surface-contact events per replicate", bounds="non-negative"),
        "mean_event_frames": Metric("mean contact duration", "frames", bounds="non-negative"),
        "fraction_adsorbed": Metric("fraction of beads adsorbed", bounds="fraction"),
    }

    def collect(self, ctx: Any) -> Any:
        from assay.demo.physics import contact_events, fraction_adsorbed

        s = self.SETTINGS.read(ctx)
        positions = _trajectory(ctx, s.equilibration_frames)
        cutoff = float(s.cutoff)
        rows = contact_events(positions, cutoff=cutoff, min_frames=s.min_frames)
        columns = ["bead", "start_frame", "end_frame", "n_frames", "min_height"]
        table = {name: [row[name] for row in rows] for name in columns}
        sidecar = ctx.artifact_store.write_table_sidecar(
            "sidecars/contact_events.csv", table,
            metadata={"kind": "contact_events", "columns": columns, "cutoff": cutoff})
        durations = np.array(table["n_frames"], dtype=np.float64)
        adsorbed = fraction_adsorbed(positions, cutoff)
        return ctx.result(
            payload={"n_contact_events": len(rows), "event_table_sidecar": sidecar.path,
                     METRICS: {"n_events": float(len(rows)),
                               "mean_event_frames": float(durations.mean()) if len(rows) else 0.0,
                               "fraction_adsorbed": float(adsorbed.mean())}},
            sidecars=[sidecar])

    def plot(self, ctx: Any, figure: Any) -> None:
        ax = figure.subplots()
        all_durations = {}
        for condition, replicates in ctx.replicates.items():
            durations = []
            for _, artifact in sorted(replicates.items()):
                table = ctx.artifact_store.load_table_sidecar(artifact.sidecar(kind="contact_events"))
                durations.extend(table["n_frames"].tolist())
            all_durations[condition] = np.asarray(durations, dtype=float)
        top = max([d.max() for d in all_durations.values() if d.size] or [1.0])
        bins = np.unique(np.geomspace(1, top + 1, 25).astype(int))
        for condition, durations in all_durations.items():
            if durations.size:
                ax.hist(durations, bins=bins, histtype="step", linewidth=1.5,
                        label=f"{condition} (n = {len(ctx.replicates[condition])}, "
                              f"{durations.size} events)")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("contact duration (frames)")
        ax.set_ylabel("events (all replicates)")
        ax.legend(fontsize="small")
        figure.suptitle("Distribution of surface-contact durations")
