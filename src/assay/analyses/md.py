"""Molecular-dynamics analyses with MDAnalysis: RMSD, Rg, RMSF, distance matrix, contacts.

The run artifact of each condition x replicate comes from the ``import`` runner: its
sidecars of kind ``topology`` and ``trajectory`` are the simulation files, stored once
(hard-linked when possible) and verified before they are opened. Every analysis here

* opens an MDAnalysis ``Universe`` on those verified objects (through suffixed symlinks in
  a private temp directory under the store's ``tmp/``, so MDAnalysis picks its readers by
  extension and the offsets files some readers write never land beside the objects);
* analyses the frames chosen by the shared frame-selection settings (``start``, ``stop``,
  ``step``, ``equilibration``, ``blocks``), which are part of the settings fingerprint and
  are recorded in the payload as ``frame_selection``;
* maps MDAnalysis ``Results`` to finite float metrics, NPZ arrays and event tables; no
  ``Results`` object (or anything else from MDAnalysis) is ever stored.

MDAnalysis is imported inside the methods only, so building the workflow plan and starting
a job stay fast, and ``pip install 'assay-workflow[md]'`` is needed only to run these analyses.

``python -m assay.analyses.md fetch-example data/md`` copies the trajectories of the
example study (``config/examples/md.yaml``) out of the installed MDAnalysisTests package.
"""

from __future__ import annotations

import contextlib
import logging
import re
import sys
import warnings
from pathlib import Path, PurePosixPath
from typing import Any, Iterator

import numpy as np

from assay import METRICS, ConfigError, Metric, Setting, Settings

_GROUP_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
LENGTH_UNIT = "angstrom"


# --- settings and frame selection -----------------------------------------------------
def _selection(value: str) -> str | None:
    return None if value.strip() else "an empty selection selects nothing"


def _group_names(groups: dict[str, str]) -> str | None:
    bad = [name for name in groups if not _GROUP_NAME.match(name)]
    return (f"group name {bad[0]!r} is not letters, digits and '_' (starting with a letter)"
            if bad else None)


def select_setting(default: str | None, what: str) -> Setting:
    return Setting(str, default, check=_selection,
                   help=f"MDAnalysis selection of {what}")


# Settings shared by every MD analysis (all part of the settings fingerprint).
FRAME_SETTINGS: dict[str, Setting] = {
    "start": Setting(int, 0, nullable=True, unit="frames",
                     help="first trajectory frame considered (Python slice semantics)"),
    "stop": Setting(int, None, unit="frames",
                    help="one past the last trajectory frame considered (null: the end)"),
    "step": Setting(int, 1, ge=1, unit="frames", help="stride between analysed frames"),
    "equilibration": Setting(int, 0, ge=0, unit="frames",
                             help="trajectory frames 0..equilibration-1 are never analysed"),
    "blocks": Setting(int, 1, ge=1,
                      help=">1: replicate r analyses the r-th of this many blocks"),
}
COMMON_SETTINGS: dict[str, Setting] = {
    **FRAME_SETTINGS,
    "unwrap": Setting(bool, True,
                      help="make the selected molecules whole across periodic boundaries"),
    "topology_kind": Setting(str, "topology", help="sidecar kind of the run's topology"),
    "trajectory_kind": Setting(str, "trajectory", help="sidecar kind of the run's trajectory"),
}
PBC = Setting(bool, False, help="minimum-image distances (for pairs across molecules)")


def md_settings(ctx: Any, declared: Settings) -> Any:
    """The analysis settings, checked against its declaration, defaults filled in."""
    return declared.read(ctx)


def frame_window(settings: dict[str, Any], n_trajectory_frames: int,
                 replicate: int) -> tuple[np.ndarray, dict[str, Any]]:
    """Trajectory frame indices this replicate analyses, and their ``frame_selection``.

    The frames are ``range(n)[start:stop:step]`` without the first ``equilibration``
    trajectory frames. With ``blocks: B > 1`` these frames are cut into B consecutive,
    non-overlapping blocks of (almost) equal length and replicate r analyses block r:
    block averaging of one trajectory, not independent replicates.
    """
    start, stop, step = settings["start"], settings["stop"], settings["step"]
    equilibration, blocks = settings["equilibration"], settings["blocks"]
    selected = np.arange(n_trajectory_frames, dtype=np.int64)[slice(start, stop, step)]
    selected = selected[selected >= equilibration]
    block = None
    if blocks > 1:
        if replicate > blocks:
            raise ConfigError(
                f"replicate {replicate} would analyse block {replicate} of the trajectory, "
                f"but settings.blocks is {blocks}: set blocks to the study's number of "
                "replicates, or to 1 when every replicate is its own trajectory")
        indices = np.array_split(selected, blocks)[replicate - 1]
        block = replicate
    else:
        indices = selected
    if indices.size == 0:
        raise ConfigError(
            f"frame selection start={start} stop={stop} step={step} "
            f"equilibration={equilibration} blocks={blocks} leaves no frame of "
            f"{n_trajectory_frames} for replicate {replicate}")
    payload = {
        "start": start, "stop": stop, "step": step, "equilibration": equilibration,
        "blocks": blocks, "block": block,
        "replicate_kind": "block" if blocks > 1 else "trajectory",
        "n_trajectory_frames": int(n_trajectory_frames), "n_frames": int(indices.size),
        "frame_indices": {"first": int(indices[0]), "last": int(indices[-1])},
    }
    return indices, payload


def replicate_kind(settings: dict[str, Any]) -> str:
    """'block' when the replicates are blocks of one trajectory (settings.blocks > 1): the
    figures and report captions say so."""
    return "block" if int(settings.get("blocks", 1) or 1) > 1 else "trajectory"


def _unit_word(settings: dict[str, Any]) -> str:
    """'blocks' or 'replicates', for the figures' n."""
    return "blocks" if replicate_kind(settings) == "block" else "replicates"


# --- opening the run's files ------------------------------------------------------------
def _run_file(ctx: Any, kind: str) -> Any:
    matches = [ref for ref in ctx.run.sidecars if ref.kind == kind]
    if len(matches) != 1:
        kinds = sorted({str(ref.kind) for ref in ctx.run.sidecars})
        raise ConfigError(
            f"analysis {ctx.analysis_name!r}: the run of {ctx.condition_label}/"
            f"{ctx.replicate} has {len(matches)} sidecar(s) of kind {kind!r} (it has "
            f"{kinds}); import the simulation with runner: {{plugin: import, settings: "
            f"{{files: {{topology: ..., trajectory: ...}}}}}}")
    return matches[0]


@contextlib.contextmanager
def open_universe(ctx: Any, settings: dict[str, Any]) -> Iterator[Any]:
    """An MDAnalysis Universe on the run's verified topology and trajectory objects.

    Objects in the store have no file extension; MDAnalysis picks readers by extension,
    so each object is symlinked under its sidecar name (``topology.psf``) in a private
    temp directory. Readers that cache offsets (XTC, TRR) write them there too, never
    beside the immutable objects; the directory is removed when the block ends.
    """
    import MDAnalysis as mda

    store = ctx.artifact_store
    refs = [_run_file(ctx, settings["topology_kind"]),
            _run_file(ctx, settings["trajectory_kind"])]
    with store.scratch_dir("md-") as tmp:
        links = []
        for ref in refs:
            link = Path(tmp) / PurePosixPath(ref.path).name
            link.symlink_to(store.validate_sidecar(ref).absolute())
            links.append(str(link))
        with warnings.catch_warnings():
            # DCDReader's notice about copied timesteps is about MDAnalysis 3.0, not us.
            warnings.filterwarnings("ignore", category=DeprecationWarning,
                                    module=r"MDAnalysis\.")
            try:
                universe = mda.Universe(*links)
            except Exception as exc:
                raise ConfigError(
                    f"MDAnalysis cannot open the run of {ctx.condition_label}/"
                    f"{ctx.replicate} ({', '.join(PurePosixPath(r.path).name for r in refs)}"
                    f"): {exc}") from exc
            try:
                yield universe
            finally:
                universe.trajectory.close()


def select(universe: Any, selection: str, what: str, ctx: Any) -> Any:
    """``universe.select_atoms`` with errors that name the setting and the condition."""
    if not isinstance(selection, str) or not selection.strip():
        raise ConfigError(f"analyses.{ctx.analysis_name}.settings.{what} must be a "
                          f"non-empty MDAnalysis selection string, got {selection!r}")
    try:
        atoms = universe.select_atoms(selection)
    except Exception as exc:  # SelectionError and friends
        raise ConfigError(f"analyses.{ctx.analysis_name}.settings.{what}: invalid "
                          f"selection {selection!r}: {exc}") from exc
    if atoms.n_atoms == 0:
        raise ConfigError(f"analyses.{ctx.analysis_name}.settings.{what}: selection "
                          f"{selection!r} matches no atom in condition "
                          f"{ctx.condition_label!r}; conditions of one study share their "
                          "analysis settings, so use a selection valid for every system")
    return atoms


def make_whole(universe: Any, groups: list[Any], settings: dict[str, Any]) -> bool:
    """Unwrap the molecules of ``groups`` across periodic boundaries, frame by frame.

    Trajectories written with periodic boundaries often split molecules across the box
    (the OPLS-AA AdK XTC does: its radius of gyration is 24 Å instead of 19.6 Å). With
    ``unwrap: true`` and a periodic box, MDAnalysis' ``transformations.unwrap`` makes the
    fragments (bonded molecules) holding the selected atoms whole. A trajectory without a
    box has no boundaries to cross, so nothing is done. Returns whether it unwrapped.
    """
    dimensions = universe.dimensions
    if not settings["unwrap"] or dimensions is None or not np.all(dimensions[:3] > 0):
        return False
    from MDAnalysis import transformations
    from MDAnalysis.exceptions import NoDataError

    atoms = groups[0]
    for group in groups[1:]:
        atoms = atoms | group
    try:
        fragments = atoms.fragments
    except NoDataError:
        raise ConfigError(
            "unwrap: the trajectory is periodic but the topology has no bonds, so "
            "molecules cannot be made whole; use a topology with bonds (TPR, PSF, PRMTOP) "
            "or set unwrap: false if the molecules are already whole") from None
    whole = universe.atoms[np.unique(np.concatenate([f.indices for f in fragments]))]
    universe.trajectory.add_transformations(transformations.unwrap(whole))
    return True


def frame_times(universe: Any, indices: np.ndarray) -> np.ndarray:
    return np.array([ts.time for ts in universe.trajectory[indices]], dtype=np.float64)


def _labels(atoms: Any) -> dict[str, np.ndarray]:
    """Residue labels of each atom, as plain NPZ arrays (no pickles)."""
    return {"resids": np.asarray(atoms.resids, dtype=np.int64),
            "resnames": np.asarray(atoms.resnames).astype(str),
            "segids": np.asarray(atoms.segids).astype(str),
            "atom_names": np.asarray(atoms.names).astype(str)}


def _finite(metrics: dict[str, Any], who: str) -> dict[str, float]:
    out = {}
    for name, value in metrics.items():
        value = float(value)
        if not np.isfinite(value):
            raise ValueError(f"{who}: metric {name!r} is {value}; check the selection and "
                             "frame window")
        out[name] = value
    return out


def _provenance() -> dict[str, Any]:
    import MDAnalysis as mda

    return {"mdanalysis": mda.__version__}


def _base_payload(frame_selection: dict[str, Any], unwrapped: bool,
                  selections: dict[str, Any]) -> dict[str, Any]:
    return {"frame_selection": frame_selection, "unwrapped": unwrapped,
            "selections": selections, "length_unit": LENGTH_UNIT}


@contextlib.contextmanager
def _quiet_mdanalysis_logging() -> Iterator[None]:
    """AlignTraj/AverageStructure call ``logging.disable(WARN)``; restore the old level."""
    previous = logging.root.manager.disable
    try:
        yield
    finally:
        logging.disable(previous)


# --- plotting helpers (artifacts and registered sidecars only) ---------------------------
def _replicate_arrays(ctx: Any, kind: str, *names: str) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for condition, replicates in ctx.replicates.items():
        out[condition] = []
        for number, artifact in sorted(replicates.items()):
            with ctx.artifact_store.load_npz_sidecar(artifact.sidecar(kind=kind)) as data:
                arrays = {name: np.array(data[name]) for name in names}
            arrays["replicate"] = number
            arrays["frame_selection"] = artifact.payload.get("frame_selection", {})
            out[condition].append(arrays)
    return out


# --- the analyses -------------------------------------------------------------------------
class RMSD:
    """RMSD of ``select`` to a reference frame of the same trajectory.

    ``superposition: true`` uses ``MDAnalysis.analysis.rms.RMSD``: each frame is
    optimally superimposed on the reference on ``select`` (translation and rotation), and
    the RMSD of ``select`` and of each named ``groupselections`` entry is reported after
    that fit. ``superposition: false`` reports the raw RMSD without moving the frame
    (``rms.rmsd(..., center=False, superposition=False)``), e.g. for a system already
    fitted. ``mass_weighted`` weights the fit and RMSD of ``select`` by mass.
    """

    code_dependencies = ()
    version_dependencies = ("MDAnalysis",)
    replicate_kind = staticmethod(replicate_kind)   # "block" with settings.blocks > 1
    SERIES = {"mean_rmsd": "rmsd"}   # convergence diagnostics of the per-frame RMSD
    SETTINGS = Settings({
        **COMMON_SETTINGS, "select": select_setting("name CA", "the atoms fitted and measured"),
        "groupselections": Setting(dict, {}, items=str, check=_group_names,
                                   help="name -> selection measured after the fit, e.g. "
                                        "{lid: 'name CA and resid 122:159'}"),
        "reference_frame": Setting(int, 0, unit="frames",
                                   help="trajectory frame of the reference (negative: from "
                                        "the end)"),
        "superposition": Setting(bool, True, help="fit each frame on select first"),
        "mass_weighted": Setting(bool, False, help="weight the fit and RMSD by mass"),
    })
    METRIC_INFO = {
        "mean_rmsd": Metric("mean RMSD", "Å", bounds="non-negative"),
        "std_rmsd": Metric("SD of RMSD over frames", "Å", bounds="non-negative"),
        "max_rmsd": Metric("maximum RMSD", "Å", bounds="non-negative"),
        "mean_rmsd_*": Metric("mean RMSD of {}", "Å", bounds="non-negative"),
    }

    def collect(self, ctx: Any) -> Any:
        settings = md_settings(ctx, self.SETTINGS)
        where = f"analyses.{ctx.analysis_name}.settings"
        groups = settings["groupselections"]
        names = sorted(groups)
        with open_universe(ctx, settings) as universe:
            atoms = select(universe, settings["select"], "select", ctx)
            group_atoms = [select(universe, groups[n], f"groupselections.{n}", ctx)
                           for n in names]
            unwrapped = make_whole(universe, [atoms, *group_atoms], settings)
            n_total = len(universe.trajectory)
            indices, frame_selection = frame_window(settings, n_total, ctx.replicate)
            reference = _reference_index(settings["reference_frame"], n_total, where)
            weights = "mass" if settings["mass_weighted"] else None
            if settings["superposition"]:
                from MDAnalysis.analysis.rms import RMSD as MDA_RMSD

                analysis = MDA_RMSD(universe, universe, select=settings["select"],
                                    groupselections=[groups[n] for n in names] or None,
                                    ref_frame=reference, weights=weights)
                analysis.run(frames=indices)
                table = np.array(analysis.results.rmsd, dtype=np.float64)
                rmsd, times = table[:, 2], table[:, 1]
                group_rmsd = table[:, 3:].T
            else:
                rmsd, group_rmsd, times = _raw_rmsd(universe, atoms, group_atoms, indices,
                                                    reference, weights)
        group_rmsd = np.asarray(group_rmsd, dtype=np.float64).reshape(len(names), len(indices))
        sidecar = ctx.artifact_store.write_npz_sidecar(
            "sidecars/rmsd.npz", frames=indices, time=times, rmsd=rmsd,
            group_rmsd=group_rmsd, group_names=np.array(names, dtype=str),
            metadata={"kind": "rmsd", "layout": "frame", "group_layout": "group_x_frame",
                      "unit": LENGTH_UNIT, "n_frames": int(len(indices))})
        metrics = {"mean_rmsd": rmsd.mean(), "std_rmsd": rmsd.std(), "max_rmsd": rmsd.max()}
        for name, values in zip(names, group_rmsd):
            metrics[f"mean_rmsd_{name}"] = values.mean()
        payload = _base_payload(frame_selection, unwrapped,
                                {"select": settings["select"], "groupselections": groups})
        payload.update({"reference_frame": reference,
                        "superposition": settings["superposition"],
                        "n_atoms": int(atoms.n_atoms),
                        METRICS: _finite(metrics, ctx.analysis_name)})
        return ctx.result(payload=payload, sidecars=[sidecar], provenance=_provenance())

    # No plot method: the detail figure is assay's series figure (SERIES).


def _reference_index(reference: int, n_total: int, where: str) -> int:
    if not -n_total <= reference < n_total:
        raise ConfigError(f"{where}.reference_frame={reference} is outside the trajectory "
                          f"of {n_total} frames")
    return reference % n_total


def _raw_rmsd(universe: Any, atoms: Any, group_atoms: list[Any], indices: np.ndarray,
              reference: int, weights: str | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from MDAnalysis.analysis.rms import rmsd

    universe.trajectory[reference]
    ref = atoms.positions.copy()
    group_refs = [g.positions.copy() for g in group_atoms]
    mass = atoms.masses if weights == "mass" else None
    values, groups, times = [], [], []
    for ts in universe.trajectory[indices]:
        values.append(rmsd(atoms.positions, ref, weights=mass, center=False,
                           superposition=False))
        groups.append([rmsd(g.positions, r, center=False, superposition=False)
                       for g, r in zip(group_atoms, group_refs)])
        times.append(ts.time)
    group_array = np.array(groups, dtype=np.float64).reshape(len(indices), len(group_atoms))
    return (np.array(values, dtype=np.float64), group_array.T,
            np.array(times, dtype=np.float64))


class RadiusOfGyration:
    """Mass-weighted radius of gyration of ``select`` per frame.

    ``AtomGroup.radius_of_gyration()`` of MDAnalysis, after ``unwrap`` made molecules whole.
    """

    code_dependencies = ()
    version_dependencies = ("MDAnalysis",)
    replicate_kind = staticmethod(replicate_kind)   # "block" with settings.blocks > 1
    SERIES = {"mean_rg": "radius_of_gyration"}   # convergence diagnostics of the per-frame Rg
    SETTINGS = Settings({**COMMON_SETTINGS,
                         "select": select_setting("protein", "the atoms measured")})
    METRIC_INFO = {
        "mean_rg": Metric("radius of gyration", "Å", bounds="non-negative"),
        "std_rg": Metric("SD of Rg over frames", "Å", bounds="non-negative"),
    }

    def collect(self, ctx: Any) -> Any:
        settings = md_settings(ctx, self.SETTINGS)
        with open_universe(ctx, settings) as universe:
            atoms = select(universe, settings["select"], "select", ctx)
            unwrapped = make_whole(universe, [atoms], settings)
            indices, frame_selection = frame_window(settings, len(universe.trajectory),
                                                    ctx.replicate)
            rg, times = [], []
            for ts in universe.trajectory[indices]:
                rg.append(atoms.radius_of_gyration())
                times.append(ts.time)
        rg_array = np.array(rg, dtype=np.float64)
        sidecar = ctx.artifact_store.write_npz_sidecar(
            "sidecars/radius_of_gyration.npz", frames=indices,
            time=np.array(times, dtype=np.float64), radius_of_gyration=rg_array,
            metadata={"kind": "radius_of_gyration", "layout": "frame", "unit": LENGTH_UNIT,
                      "n_frames": int(len(indices))})
        payload = _base_payload(frame_selection, unwrapped, {"select": settings["select"]})
        payload.update({"n_atoms": int(atoms.n_atoms),
                        METRICS: _finite({"mean_rg": rg_array.mean(), "std_rg": rg_array.std()},
                                         ctx.analysis_name)})
        return ctx.result(payload=payload, sidecars=[sidecar], provenance=_provenance())

    # No plot method: the detail figure is assay's series figure (SERIES).


def _index_selection(positions: np.ndarray) -> str:
    """A compact ``index a:b c ...`` selection string (ranges inclusive) for positions."""
    parts, run_start = [], None
    values = [int(p) for p in positions]
    for i, value in enumerate(values):
        if run_start is None:
            run_start = value
        if i + 1 == len(values) or values[i + 1] != value + 1:
            parts.append(f"{run_start}:{value}" if value != run_start else str(value))
            run_start = None
    return "index " + " ".join(parts)


class RMSF:
    """Per-residue RMSF of ``select`` (one atom per residue, e.g. ``name CA``).

    Follows MDAnalysis' recommended practice: ``align.AverageStructure`` (frames fitted to
    the first analysed frame, then averaged), ``align.AlignTraj(..., in_memory=True)`` to
    fit every analysed frame to that average on ``fit_select`` (default: ``select``), then
    ``rms.RMSF``. ``reference: frame`` fits to ``reference_frame`` instead of the average.
    Only the atoms of ``select`` and ``fit_select`` of the analysed frames are loaded into
    memory, so large solvated systems do not need their whole trajectory in RAM.
    """

    code_dependencies = ()
    version_dependencies = ("MDAnalysis",)
    replicate_kind = staticmethod(replicate_kind)   # "block" with settings.blocks > 1
    SETTINGS = Settings({
        **COMMON_SETTINGS,
        "select": select_setting("name CA", "the atoms measured (one per residue)"),
        "fit_select": select_setting(None, "the atoms fitted (null: select)"),
        "reference": Setting(str, "average", choices=("average", "frame"),
                             help="fit to the average structure or to reference_frame"),
        "reference_frame": Setting(int, 0, unit="frames",
                                   help="with reference: frame, the trajectory frame fitted "
                                        "to (negative: from the end)"),
    })
    METRIC_INFO = {
        "mean_rmsf": Metric("mean RMSF", "Å", bounds="non-negative"),
        "max_rmsf": Metric("maximum RMSF", "Å", bounds="non-negative"),
    }

    def collect(self, ctx: Any) -> Any:
        import MDAnalysis as mda
        from MDAnalysis.analysis import align, rms
        from MDAnalysis.coordinates.memory import MemoryReader

        settings = md_settings(ctx, self.SETTINGS)
        where = f"analyses.{ctx.analysis_name}.settings"
        fit_text = settings["fit_select"] or settings["select"]
        with open_universe(ctx, settings) as universe:
            atoms = select(universe, settings["select"], "select", ctx)
            if atoms.residues.n_residues != atoms.n_atoms:
                raise ConfigError(
                    f"{where}.select {settings['select']!r} has {atoms.n_atoms} atoms in "
                    f"{atoms.residues.n_residues} residues; per-residue RMSF needs one atom "
                    "per residue: add e.g. 'and name CA'")
            fit = select(universe, fit_text, "fit_select", ctx)
            unwrapped = make_whole(universe, [atoms, fit], settings)
            n_total = len(universe.trajectory)
            indices, frame_selection = frame_window(settings, n_total, ctx.replicate)
            if indices.size < 2:
                raise ConfigError(f"{where}: RMSF needs at least 2 frames, the window of "
                                  f"replicate {ctx.replicate} has {indices.size}")
            union = atoms | fit  # sorted, unique
            coordinates = np.empty((indices.size, union.n_atoms, 3), dtype=np.float32)
            for k, _ in enumerate(universe.trajectory[indices]):
                coordinates[k] = union.positions
            fit_positions = np.searchsorted(union.indices, fit.indices)
            fit_selection = _index_selection(fit_positions)
            with _quiet_mdanalysis_logging():
                small = mda.Merge(union).load_new(coordinates, format=MemoryReader)
                if settings["reference"] == "average":
                    average = align.AverageStructure(small, small, select=fit_selection,
                                                     ref_frame=0).run()
                    reference = average.results.universe  # holds the fit atoms only
                    reference_frame = None
                else:
                    reference_frame = _reference_index(settings["reference_frame"], n_total,
                                                       where)
                    universe.trajectory[reference_frame]
                    reference = mda.Merge(fit)
                align.AlignTraj(small, reference,
                                select={"mobile": fit_selection, "reference": "all"},
                                in_memory=True).run()
                mobile = small.atoms[np.searchsorted(union.indices, atoms.indices)]
                values = np.array(rms.RMSF(mobile).run().results.rmsf, dtype=np.float64)
            labels = _labels(atoms)
        sidecar = ctx.artifact_store.write_npz_sidecar(
            "sidecars/rmsf.npz", rmsf=values, frames=indices, **labels,
            metadata={"kind": "rmsf", "layout": "residue", "unit": LENGTH_UNIT,
                      "n_residues": int(values.size), "reference": settings["reference"]})
        payload = _base_payload(frame_selection, unwrapped,
                                {"select": settings["select"], "fit_select": fit_text})
        payload.update({"reference": settings["reference"], "reference_frame": reference_frame,
                        "n_residues": int(values.size),
                        METRICS: _finite({"mean_rmsf": values.mean(), "max_rmsf": values.max()},
                                         ctx.analysis_name)})
        return ctx.result(payload=payload, sidecars=[sidecar], provenance=_provenance())

    def plot(self, ctx: Any, figure: Any) -> None:
        data = _replicate_arrays(ctx, "rmsf", "rmsf", "resids")
        ax = figure.subplots()
        for index, (condition, runs) in enumerate(data.items()):
            resids = runs[0]["resids"]
            if not all(np.array_equal(run["resids"], resids) for run in runs):
                for run in runs:
                    ax.plot(run["resids"], run["rmsf"], color=f"C{index}", linewidth=0.8)
                continue
            stack = np.stack([run["rmsf"] for run in runs])
            mean, spread = stack.mean(axis=0), stack.std(axis=0)
            word = _unit_word(ctx.settings)
            ax.plot(resids, mean, color=f"C{index}", label=f"{condition} (n = {len(runs)} "
                                                           f"{word})")
            ax.fill_between(resids, np.maximum(mean - spread, 0.0), mean + spread,
                            color=f"C{index}", alpha=0.2)   # an RMSF is never negative
        ax.set_xlabel("residue id")
        ax.set_ylabel("RMSF (Å)")
        ax.legend(fontsize="small")
        figure.suptitle("Per-residue RMSF: mean ± SD over "
                        + ("blocks of one trajectory (not independent runs)"
                           if replicate_kind(ctx.settings) == "block" else "replicates")
                        + " (band cut at 0)", fontsize=10)


def _frame_distances(universe: Any, first: Any, second: Any | None, indices: np.ndarray,
                     pbc: bool) -> tuple[np.ndarray, np.ndarray]:
    """(pairs x frames) float32 distances and frame times.

    With one group: all pairs i < j in ``self_distance_array`` order (``np.triu_indices``).
    With two groups: all (a, b) pairs in ``distance_array`` row-major order.
    """
    from MDAnalysis.lib.distances import distance_array, self_distance_array

    columns, times = [], []
    for ts in universe.trajectory[indices]:
        box = ts.dimensions if pbc else None
        if second is None:
            columns.append(self_distance_array(first.positions, box=box))
        else:
            columns.append(distance_array(first.positions, second.positions, box=box).ravel())
        times.append(ts.time)
    return (np.stack(columns, axis=1).astype(np.float32), np.array(times, dtype=np.float64))


class DistanceMatrix:
    """Distances between all pairs of ``select`` atoms (CA: residue-residue), per frame.

    The pair x frame matrix goes to an NPZ sidecar (float32: coordinates are float32, so
    float64 would store no extra information) with the pair indices and residue labels.
    ``pbc: true`` uses minimum-image distances (for pairs across molecules).
    """

    code_dependencies = ()
    version_dependencies = ("MDAnalysis",)
    replicate_kind = staticmethod(replicate_kind)   # "block" with settings.blocks > 1
    SETTINGS = Settings({**COMMON_SETTINGS,
                         "select": select_setting("name CA", "the atoms paired"),
                         "pbc": PBC})
    METRIC_INFO = {
        "mean_distance": Metric("mean pair distance", "Å", bounds="non-negative"),
        "mean_pair_fluctuation": Metric("pair-distance fluctuation (SD)", "Å",
                                        bounds="non-negative"),
    }

    def collect(self, ctx: Any) -> Any:
        settings = md_settings(ctx, self.SETTINGS)
        where = f"analyses.{ctx.analysis_name}.settings"
        with open_universe(ctx, settings) as universe:
            atoms = select(universe, settings["select"], "select", ctx)
            if atoms.n_atoms < 2:
                raise ConfigError(f"{where}.select needs at least 2 atoms for pairs")
            unwrapped = make_whole(universe, [atoms], settings)
            indices, frame_selection = frame_window(settings, len(universe.trajectory),
                                                    ctx.replicate)
            distances, times = _frame_distances(universe, atoms, None, indices,
                                                settings["pbc"])
            labels = _labels(atoms)
        pair_i, pair_j = np.triu_indices(atoms.n_atoms, k=1)
        sidecar = ctx.artifact_store.write_npz_sidecar(
            "sidecars/distance_matrix.npz", distances=distances,
            pair_i=pair_i.astype(np.int64), pair_j=pair_j.astype(np.int64), frames=indices,
            time=times, **labels,
            metadata={"kind": "distance_matrix", "layout": "pair_x_frame",
                      "shape": list(distances.shape), "unit": LENGTH_UNIT,
                      "pairs": "triu_indices(n_atoms, k=1) of the selection"})
        payload = _base_payload(frame_selection, unwrapped, {"select": settings["select"]})
        payload.update({
            "n_atoms": int(atoms.n_atoms), "n_pairs": int(distances.shape[0]),
            "n_frames": int(distances.shape[1]),
            METRICS: _finite({"mean_distance": distances.mean(dtype=np.float64),
                              "mean_pair_fluctuation": distances.std(axis=1, dtype=np.float64)
                              .mean()}, ctx.analysis_name)})
        return ctx.result(payload=payload, sidecars=[sidecar], provenance=_provenance())

    def plot(self, ctx: Any, figure: Any) -> None:
        data = _replicate_arrays(ctx, "distance_matrix", "distances", "pair_i", "pair_j",
                                 "resids")
        conditions = list(data)
        axes = np.atleast_1d(figure.subplots(1, len(conditions)))
        matrices = {}
        for condition, runs in data.items():
            n = runs[0]["resids"].size
            mean = np.mean([run["distances"].mean(axis=1, dtype=np.float64) for run in runs],
                           axis=0)
            matrix = np.zeros((n, n))
            matrix[runs[0]["pair_i"], runs[0]["pair_j"]] = mean
            matrix[runs[0]["pair_j"], runs[0]["pair_i"]] = mean
            matrices[condition] = (matrix, runs[0]["resids"], len(runs))
        vmax = max(float(m.max()) for m, _, _ in matrices.values()) or 1.0
        image = None
        for ax, condition in zip(axes, conditions):
            matrix, resids, n_runs = matrices[condition]
            image = ax.imshow(matrix, vmin=0, vmax=vmax, cmap="viridis", origin="lower")
            ticks = np.linspace(0, resids.size - 1, min(6, resids.size)).astype(int)
            ax.set_xticks(ticks, resids[ticks])
            ax.set_yticks(ticks, resids[ticks])
            ax.set_title(f"{condition} (n = {n_runs} {_unit_word(ctx.settings)})", fontsize=10)
            ax.set_xlabel("residue id")
        axes[0].set_ylabel("residue id")
        if image is not None:
            figure.colorbar(image, ax=list(axes), label="mean distance (Å)")
        figure.suptitle(f"Mean pair distance over frames and {_unit_word(ctx.settings)}",
                        fontsize=10)


def contact_episodes(contact: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Runs of consecutive True along axis 1: (row, first column, last column) arrays."""
    n_rows = contact.shape[0]
    padded = np.zeros((n_rows, contact.shape[1] + 2), dtype=np.int8)
    padded[:, 1:-1] = contact
    change = np.diff(padded, axis=1)
    start_rows, start_cols = np.nonzero(change == 1)
    end_rows, end_cols = np.nonzero(change == -1)
    # np.nonzero is row-major, so starts and ends pair up in order.
    assert np.array_equal(start_rows, end_rows)
    return start_rows, start_cols, end_cols - 1


class ContactEvents:
    """Residue pairs closer than ``cutoff`` as an event table of continuous episodes.

    Pairs are all pairs within ``select`` or, with ``select_b``, all (select, select_b)
    pairs. Pairs in the same segment closer than ``min_separation`` in sequence are left
    out (neighbouring CA atoms are always ~3.8 Å apart). An event is a run of consecutive
    *analysed* frames in contact (with ``step > 1``, gaps between analysed frames are not
    seen); events shorter than ``min_frames`` analysed frames are dropped. ``censored``
    marks events that touch the first or last analysed frame: their true duration may be
    longer than the window shows.
    """

    code_dependencies = ()
    version_dependencies = ("MDAnalysis",)
    replicate_kind = staticmethod(replicate_kind)   # "block" with settings.blocks > 1
    SETTINGS = Settings({
        **COMMON_SETTINGS, "select": select_setting("name CA", "the atoms paired"),
        "select_b": select_setting(None, "the partners of select (null: pairs within "
                                         "select)"),
        "cutoff": Setting(float, 8.0, gt=0, unit="Å", help="a pair closer than this is in "
                                                           "contact"),
        "min_separation": Setting(int, 3, ge=0, unit="residues",
                                  help="pairs in one segment closer in sequence are left out"),
        "min_frames": Setting(int, 1, ge=1, unit="analysed frames",
                              help="shorter events are dropped"),
        "pbc": PBC,
        "table_format": Setting(str, "csv", choices=("csv", "parquet"),
                                help="format of the event table sidecar"),
    })
    METRIC_INFO = {
        "n_events": Metric("contact events per replicate", bounds="non-negative"),
        "mean_event_frames": Metric("mean event duration", "analysed frames",
                                    bounds="non-negative"),
        "mean_contacts_per_frame": Metric("contacts per frame", bounds="non-negative"),
    }
    COLUMNS = ["segid_a", "resid_a", "resname_a", "segid_b", "resid_b", "resname_b",
               "start_frame", "end_frame", "n_frames", "min_distance", "censored"]

    def collect(self, ctx: Any) -> Any:
        settings = md_settings(ctx, self.SETTINGS)
        where = f"analyses.{ctx.analysis_name}.settings"
        cutoff = settings["cutoff"]
        with open_universe(ctx, settings) as universe:
            first = select(universe, settings["select"], "select", ctx)
            second = (select(universe, settings["select_b"], "select_b", ctx)
                      if settings["select_b"] is not None else None)
            if second is not None and (first & second).n_atoms:
                raise ConfigError(f"{where}: select and select_b overlap; give disjoint "
                                  "groups, or leave select_b out for pairs within select")
            unwrapped = make_whole(universe, [first] + ([second] if second else []), settings)
            indices, frame_selection = frame_window(settings, len(universe.trajectory),
                                                    ctx.replicate)
            distances, _ = _frame_distances(universe, first, second, indices, settings["pbc"])
            a_labels = _labels(first)
            b_labels = _labels(second) if second is not None else a_labels
        if second is None:
            pair_a, pair_b = np.triu_indices(first.n_atoms, k=1)
        else:
            pair_a, pair_b = np.divmod(np.arange(distances.shape[0]), second.n_atoms)
        same_segment = a_labels["segids"][pair_a] == b_labels["segids"][pair_b]
        separation = np.abs(a_labels["resids"][pair_a] - b_labels["resids"][pair_b])
        keep = ~(same_segment & (separation < settings["min_separation"]))
        pair_a, pair_b, distances = pair_a[keep], pair_b[keep], distances[keep]
        contact = distances < cutoff
        rows, starts, ends = contact_episodes(contact)
        lengths = ends - starts + 1
        long_enough = lengths >= settings["min_frames"]
        rows, starts, ends, lengths = (rows[long_enough], starts[long_enough],
                                       ends[long_enough], lengths[long_enough])
        min_distance = np.array([distances[r, s:e + 1].min() for r, s, e in
                                 zip(rows, starts, ends)], dtype=np.float64)
        a, b = pair_a[rows], pair_b[rows]
        table = {
            "segid_a": a_labels["segids"][a].tolist(), "resid_a": a_labels["resids"][a].tolist(),
            "resname_a": a_labels["resnames"][a].tolist(),
            "segid_b": b_labels["segids"][b].tolist(), "resid_b": b_labels["resids"][b].tolist(),
            "resname_b": b_labels["resnames"][b].tolist(),
            "start_frame": indices[starts].tolist(), "end_frame": indices[ends].tolist(),
            "n_frames": lengths.tolist(), "min_distance": np.round(min_distance, 4).tolist(),
            "censored": ((starts == 0) | (ends == indices.size - 1)).tolist(),
        }
        path = f"sidecars/contact_events.{settings['table_format']}"
        sidecar = ctx.artifact_store.write_table_sidecar(
            path, table, metadata={"kind": "contact_events", "columns": self.COLUMNS,
                                   "cutoff": float(cutoff), "unit": LENGTH_UNIT,
                                   "frame_columns": "trajectory frame indices, inclusive"})
        n_events = int(rows.size)
        metrics = {"n_events": float(n_events),
                   "mean_event_frames": float(lengths.mean()) if n_events else 0.0,
                   "mean_contacts_per_frame": float(contact.sum(axis=0).mean())}
        payload = _base_payload(frame_selection, unwrapped,
                                {"select": settings["select"], "select_b": settings["select_b"]})
        payload.update({"n_pairs": int(contact.shape[0]), "n_contact_events": n_events,
                        "cutoff": float(cutoff), "event_table_sidecar": sidecar.path,
                        METRICS: _finite(metrics, ctx.analysis_name)})
        return ctx.result(payload=payload, sidecars=[sidecar], provenance=_provenance())

    def plot(self, ctx: Any, figure: Any) -> None:
        ax = figure.subplots()
        any_events = False
        for index, (condition, replicates) in enumerate(ctx.replicates.items()):
            durations = []
            for _, artifact in sorted(replicates.items()):
                table = ctx.artifact_store.load_table_sidecar(
                    artifact.sidecar(kind="contact_events"))
                durations.extend(table["n_frames"].tolist())
            values = np.asarray(durations, dtype=float)
            if values.size:
                any_events = True
                bins = np.arange(0.5, values.max() + 1.5)
                ax.hist(values, bins=bins, histtype="step", linewidth=1.5, color=f"C{index}",
                        label=f"{condition} ({values.size} events, n = {len(replicates)} "
                              f"{_unit_word(ctx.settings)})")
            else:
                ax.plot([], [], color=f"C{index}", label=f"{condition} (no events, n = "
                                                         f"{len(replicates)} {_unit_word(ctx.settings)})")
        ax.set_xlabel("event duration (analysed frames)")
        ax.set_ylabel(f"events (all {_unit_word(ctx.settings)})")
        if any_events:
            from matplotlib.ticker import MaxNLocator

            ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(fontsize="small")
        figure.suptitle("Contact-event durations (events at a window edge are censored)",
                        fontsize=10)


# --- the example data -----------------------------------------------------------------------
# condition -> MDAnalysisTests.datafiles names of (topology, trajectory)
EXAMPLE_SYSTEMS = {
    "oplsaa_md": ("TPR", "XTC"),    # AdK (open), OPLS-AA, explicit water, equilibrium MD
    "charmm_dims": ("PSF", "DCD"),  # AdK, CHARMM22 + ACE implicit solvent, DIMS closed->open
}


def fetch_example(destination: str | Path = "data/md") -> list[Path]:
    """Copy the example trajectories out of MDAnalysisTests into ``destination/<condition>/``.

    Files are copied, not hard-linked: the import runner hard-links them into the store and
    makes the object read-only, which must not change the installed package's files.
    An identical file already in place is left alone.
    """
    import filecmp
    import shutil

    try:
        from MDAnalysisTests import datafiles
    except ImportError:
        from ..pipeline.preflight import install_command

        raise ConfigError("the MD example needs MDAnalysisTests, not installed here: "
                          + install_command(["MDAnalysisTests"])) from None
    written = []
    for condition, names in EXAMPLE_SYSTEMS.items():
        folder = Path(destination) / condition
        folder.mkdir(parents=True, exist_ok=True)
        for name in names:
            source = Path(getattr(datafiles, name))
            target = folder / source.name
            if not (target.exists() and filecmp.cmp(source, target, shallow=False)):
                if target.exists():
                    target.unlink()
                shutil.copyfile(source, target)
            written.append(target)
    return written


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m assay.analyses.md",
                                     description="Helpers for the MD analyses.")
    commands = parser.add_subparsers(dest="command", required=True)
    fetch = commands.add_parser("fetch-example", help="copy the example trajectories from "
                                "MDAnalysisTests into DEST/<condition>/")
    fetch.add_argument("destination", nargs="?", default="data/md")
    args = parser.parse_args(argv)
    if args.command == "fetch-example":
        try:
            written = fetch_example(args.destination)
        except ConfigError as exc:   # a missing extra: one line, not a traceback
            print(f"fetch-example: {exc}", file=sys.stderr)
            return 1
        for path in written:
            print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
