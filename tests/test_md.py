"""MD analyses on real trajectories: our numbers against MDAnalysis run directly.

Every analysis runs the way a workflow job runs it: the files are imported by the real
``import`` runner into a real ArtifactStore, and the collect stage is executed through
``assay.pipeline.stages.execute`` (action key, provenance, manifest). The reference numbers come
from MDAnalysis on the original files, following MDAnalysis' own recipes.
"""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

mda = pytest.importorskip("MDAnalysis")
pytest.importorskip("MDAnalysisTests")

from MDAnalysis import transformations  # noqa: E402
from MDAnalysis.analysis import align, rms  # noqa: E402
from MDAnalysis.lib.distances import distance_array, self_distance_array  # noqa: E402

from assay import ArtifactStore, ConfigError, canonical_json, read_ref  # noqa: E402
from assay.analyses import md  # noqa: E402
from assay.pipeline.context import RunContext  # noqa: E402
from assay.pipeline.plugins import code_digest, resolve_analysis  # noqa: E402
from assay.pipeline.runners import ImportRunner  # noqa: E402
from assay.pipeline.stages import execute, settings_fingerprint  # noqa: E402

pytestmark = [pytest.mark.md,
              pytest.mark.filterwarnings("ignore::DeprecationWarning"),
              pytest.mark.filterwarnings("ignore::UserWarning")]

REPO = Path(__file__).resolve().parents[1]
EXAMPLE_CONFIG = REPO / "config" / "examples" / "md.yaml"
FILES = {
    "oplsaa_md": {"topology": "data/md/oplsaa_md/adk_oplsaa.tpr",
                  "trajectory": "data/md/oplsaa_md/adk_oplsaa.xtc"},
    "charmm_dims": {"topology": "data/md/charmm_dims/adk.psf",
                    "trajectory": "data/md/charmm_dims/adk_dims.dcd"},
}
CONDITIONS = list(FILES)
# A short window keeps the suite fast: every 2nd frame after dropping frame 0.
WINDOW = {"step": 2, "equilibration": 1}
LID = "name CA and resid 122:159"
NMP = "name CA and resid 30:59"


@dataclass
class Example:
    root: Path
    store: ArtifactStore
    runs: dict = field(default_factory=dict)

    def path(self, condition: str, kind: str) -> str:
        return str(self.root / FILES[condition][kind])

    def run(self, condition: str, replicate: int = 1) -> str:
        """Digest of the import runner's run artifact (built with a real RunContext)."""
        key = (condition, replicate)
        if key not in self.runs:
            ctx = RunContext(condition_label=condition, replicate=replicate,
                             params={"files": FILES[condition]}, settings={}, seed=0,
                             artifact_store=self.store, runner_name="import",
                             study_dir=self.root)
            self.runs[key] = self.store.write_artifact(ImportRunner().run(ctx))
        return self.runs[key]

    def collect(self, plugin: str, settings: dict, condition: str, replicate: int = 1,
                analysis: str = "md"):
        """Run the collect stage exactly as a workflow job does; returns the artifact."""
        cls = resolve_analysis(plugin)
        spec = {"stage": "collect", "analysis": analysis, "plugin": plugin,
                "settings": settings,
                "settings_fingerprint": settings_fingerprint(plugin, settings),
                "condition": condition, "replicate": replicate,
                "params": {"files": FILES[condition]}, "code_digest": code_digest(cls)}
        digest = execute(self.store, spec, [self.run(condition, replicate)])
        return self.store.read_replicate_result(digest)

    def arrays(self, artifact, kind: str) -> dict[str, np.ndarray]:
        with self.store.load_npz_sidecar(artifact.sidecar(kind=kind)) as data:
            return {name: np.array(data[name]) for name in data}


@pytest.fixture(scope="module")
def example(tmp_path_factory) -> Example:
    root = tmp_path_factory.mktemp("md")
    md.fetch_example(root / "data" / "md")
    return Example(root=root, store=ArtifactStore(root / "store"))


def direct_universe(example: Example, condition: str, unwrap_selection: str | None = None):
    """MDAnalysis on the original files; molecules made whole the documented way."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        universe = mda.Universe(example.path(condition, "topology"),
                                example.path(condition, "trajectory"))
    if unwrap_selection is not None and universe.dimensions is not None:
        atoms = universe.select_atoms(unwrap_selection)
        whole = sum(atoms.fragments[1:], atoms.fragments[0])
        universe.trajectory.add_transformations(transformations.unwrap(whole))
    return universe


def window(universe, step=2, equilibration=1) -> np.ndarray:
    frames = np.arange(len(universe.trajectory))[::step]
    return frames[frames >= equilibration]


# --- numbers against MDAnalysis ---------------------------------------------------------
@pytest.mark.parametrize("condition", CONDITIONS)
def test_rmsd_matches_mdanalysis(example, condition):
    settings = {**WINDOW, "select": "name CA", "groupselections": {"lid": LID},
                "reference_frame": 0, "superposition": True}
    artifact = example.collect("md_rmsd", settings, condition)
    ours = example.arrays(artifact, "rmsd")

    universe = direct_universe(example, condition, "name CA")
    frames = window(universe)
    direct = rms.RMSD(universe, universe, select="name CA", groupselections=[LID],
                      ref_frame=0).run(frames=frames).results.rmsd
    np.testing.assert_array_equal(ours["frames"], frames)
    np.testing.assert_allclose(ours["rmsd"], direct[:, 2], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ours["group_rmsd"][0], direct[:, 3], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ours["time"], direct[:, 1])
    metrics = artifact.payload["metrics"]
    assert metrics["mean_rmsd"] == pytest.approx(direct[:, 2].mean(), rel=1e-12)
    assert metrics["mean_rmsd_lid"] == pytest.approx(direct[:, 3].mean(), rel=1e-12)
    assert artifact.payload["unwrapped"] is (condition == "oplsaa_md")


@pytest.mark.parametrize("condition", CONDITIONS)
def test_rmsd_without_superposition_matches_mdanalysis(example, condition):
    settings = {**WINDOW, "select": "name CA", "reference_frame": 3, "superposition": False}
    ours = example.arrays(example.collect("md_rmsd", settings, condition), "rmsd")

    universe = direct_universe(example, condition, "name CA")
    atoms = universe.select_atoms("name CA")
    universe.trajectory[3]
    reference = atoms.positions.copy()
    direct = [rms.rmsd(atoms.positions, reference, center=False, superposition=False)
              for _ in universe.trajectory[window(universe)]]
    np.testing.assert_allclose(ours["rmsd"], direct, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("condition", CONDITIONS)
def test_radius_of_gyration_matches_mdanalysis(example, condition):
    artifact = example.collect("md_rgyr", {**WINDOW, "select": "protein"}, condition)
    ours = example.arrays(artifact, "radius_of_gyration")

    universe = direct_universe(example, condition, "protein")
    protein = universe.select_atoms("protein")
    direct = [protein.radius_of_gyration() for _ in universe.trajectory[window(universe)]]
    np.testing.assert_allclose(ours["radius_of_gyration"], direct, rtol=1e-12, atol=1e-12)
    assert artifact.payload["metrics"]["mean_rg"] == pytest.approx(np.mean(direct), rel=1e-12)
    # Unwrapping matters: the OPLS-AA protein is split across the box in the XTC file.
    assert 15.0 < artifact.payload["metrics"]["mean_rg"] < 21.0


@pytest.mark.parametrize("condition", CONDITIONS)
def test_rmsf_matches_mdanalysis_recipe(example, condition):
    """MDAnalysis' documented RMSF recipe: average structure, AlignTraj, RMSF."""
    artifact = example.collect("md_rmsf", {**WINDOW, "select": "name CA"}, condition)
    ours = example.arrays(artifact, "rmsf")

    universe = direct_universe(example, condition, "name CA")
    frames = window(universe)
    average = align.AverageStructure(universe, universe, select="name CA",
                                     ref_frame=int(frames[0])).run(frames=frames)
    align.AlignTraj(universe, average.results.universe, select="name CA",
                    in_memory=True).run(frames=frames)
    calphas = universe.select_atoms("name CA")
    direct = rms.RMSF(calphas).run(frames=frames).results.rmsf
    # Aligned coordinates are float32 (~4e-6 Å resolution at 30 Å from the origin); we
    # align only the CA atoms, MDAnalysis' recipe the whole system, so the last float32
    # bit may round differently: equal to 1e-5 Å.
    np.testing.assert_allclose(ours["rmsf"], direct, rtol=0, atol=1e-5)
    np.testing.assert_array_equal(ours["resids"], calphas.resids)
    assert artifact.payload["metrics"]["mean_rmsf"] == pytest.approx(direct.mean(), abs=1e-5)
    assert artifact.payload["reference"] == "average"


def test_rmsf_to_reference_frame_matches_mdanalysis(example):
    condition = "charmm_dims"
    settings = {**WINDOW, "select": "name CA", "reference": "frame", "reference_frame": 0}
    ours = example.arrays(example.collect("md_rmsf", settings, condition), "rmsf")

    universe = direct_universe(example, condition)
    frames = window(universe)
    reference = direct_universe(example, condition)
    align.AlignTraj(universe, reference, select="name CA", in_memory=True).run(frames=frames)
    direct = rms.RMSF(universe.select_atoms("name CA")).run(frames=frames).results.rmsf
    np.testing.assert_allclose(ours["rmsf"], direct, rtol=0, atol=1e-5)


@pytest.mark.parametrize("condition", CONDITIONS)
def test_distance_matrix_is_pair_by_frame(example, condition):
    selection = f"({NMP}) or ({LID})"
    artifact = example.collect("md_distance_matrix", {**WINDOW, "select": selection},
                               condition)
    ref = artifact.sidecar(kind="distance_matrix")
    assert ref.path == "sidecars/distance_matrix.npz"
    assert ref.metadata["layout"] == "pair_x_frame"
    ours = example.arrays(artifact, "distance_matrix")

    universe = direct_universe(example, condition, selection)
    atoms = universe.select_atoms(selection)
    frames = window(universe)
    direct = np.stack([self_distance_array(atoms.positions)
                       for _ in universe.trajectory[frames]], axis=1)
    n = atoms.n_atoms
    assert ours["distances"].shape == (n * (n - 1) // 2, frames.size)
    np.testing.assert_allclose(ours["distances"], direct, rtol=1e-6)
    i, j = ours["pair_i"], ours["pair_j"]
    assert np.all(i < j) and np.array_equal(ours["resids"], atoms.resids)
    assert artifact.payload["n_pairs"] == n * (n - 1) // 2


def brute_force_events(distances: np.ndarray, frames: np.ndarray, cutoff: float):
    """Episodes by walking each pair's frames one by one."""
    events = set()
    for pair, row in enumerate(distances):
        start = None
        for k, close in enumerate(list(row < cutoff) + [False]):
            if close and start is None:
                start = k
            elif not close and start is not None:
                events.add((pair, int(frames[start]), int(frames[k - 1]), k - start))
                start = None
    return events


def test_contact_events_are_continuous_episodes(example):
    condition = "charmm_dims"
    settings = {"step": 1, "equilibration": 0, "select": NMP, "select_b": LID,
                "cutoff": 8.0}
    artifact = example.collect("md_contacts", settings, condition)
    table = example.store.load_table_sidecar(artifact.sidecar(kind="contact_events"))
    assert list(table.columns) == md.ContactEvents.COLUMNS

    universe = direct_universe(example, condition)
    a, b = universe.select_atoms(NMP), universe.select_atoms(LID)
    frames = np.arange(len(universe.trajectory))
    distances = np.stack([distance_array(a.positions, b.positions).ravel()
                          for _ in universe.trajectory], axis=1)
    expected = {(int(a.resids[p // b.n_atoms]), int(b.resids[p % b.n_atoms]), s, e, n)
                for p, s, e, n in brute_force_events(distances, frames, 8.0)}
    ours = {(int(r.resid_a), int(r.resid_b), int(r.start_frame), int(r.end_frame),
             int(r.n_frames)) for r in table.itertuples()}
    assert ours == expected and len(ours) > 0
    # Contacts between the NMP and LID domains exist in the closed state only: they
    # break along the closed -> open transition.
    assert table["start_frame"].min() == 0 and table["end_frame"].max() < frames[-1]
    assert table["censored"].tolist() == [s == 0 or e == frames[-1] for s, e in
                                          zip(table["start_frame"], table["end_frame"])]
    metrics = artifact.payload["metrics"]
    assert metrics["n_events"] == len(table)
    assert metrics["mean_contacts_per_frame"] == pytest.approx(
        (distances < 8.0).sum() / frames.size)


def test_contacts_within_one_group_skip_sequence_neighbours(example):
    settings = {**WINDOW, "select": LID, "cutoff": 6.0, "min_separation": 3,
                "min_frames": 2, "table_format": "parquet"}
    artifact = example.collect("md_contacts", settings, "charmm_dims")
    ref = artifact.sidecar(kind="contact_events")
    assert ref.path == "sidecars/contact_events.parquet"
    table = example.store.load_table_sidecar(ref)
    assert len(table) > 0
    assert ((table["resid_b"] - table["resid_a"]).abs() >= 3).all()
    assert (table["n_frames"] >= 2).all()


# --- frame selection, payload, store hygiene --------------------------------------------
def test_frame_selection_is_recorded_and_fingerprinted(example):
    settings = {"start": 2, "stop": 60, "step": 3, "equilibration": 10}
    artifact = example.collect("md_rgyr", settings, "charmm_dims")
    expected = np.arange(98)[2:60:3]
    expected = expected[expected >= 10]
    assert artifact.payload["frame_selection"] == {
        "start": 2, "stop": 60, "step": 3, "equilibration": 10, "blocks": 1, "block": None,
        "replicate_kind": "trajectory", "n_trajectory_frames": 98,
        "n_frames": int(expected.size),
        "frame_indices": {"first": int(expected[0]), "last": int(expected[-1])}}
    assert np.array_equal(example.arrays(artifact, "radius_of_gyration")["frames"], expected)
    fingerprints = {settings_fingerprint("md_rgyr", {**settings, key: value})
                    for key, value in [("start", 2), ("stop", 61), ("step", 4),
                                       ("equilibration", 11), ("blocks", 2)]}
    assert len(fingerprints) == 5
    assert artifact.metadata["settings_fingerprint"] == settings_fingerprint("md_rgyr", settings)


def test_blocks_are_consecutive_non_overlapping_windows(example):
    settings = {"equilibration": 1, "blocks": 3}
    windows = []
    for replicate in (1, 2, 3):
        artifact = example.collect("md_rgyr", settings, "charmm_dims", replicate)
        selection = artifact.payload["frame_selection"]
        assert selection["replicate_kind"] == "block" and selection["block"] == replicate
        windows.append(example.arrays(artifact, "radius_of_gyration")["frames"])
    assert np.array_equal(np.concatenate(windows), np.arange(1, 98))
    with pytest.raises(ConfigError, match="block 4"):
        example.collect("md_rgyr", settings, "charmm_dims", 4)


def test_manifests_hold_finite_metrics_and_no_results_or_paths(example):
    artifact = example.collect("md_rmsd", {**WINDOW, "groupselections": {"nmp": NMP}},
                               "oplsaa_md")
    for name, value in artifact.payload["metrics"].items():
        assert type(value) is float and np.isfinite(value), name
    manifest = canonical_json(artifact.to_manifest()).decode()
    assert "Results" not in manifest
    assert str(example.root) not in manifest and "/tmp" not in manifest
    assert artifact.provenance["mdanalysis"] == mda.__version__
    run = example.store.read_run_result(example.run("oplsaa_md"))
    assert {ref.kind for ref in run.sidecars} == {"topology", "trajectory"}
    assert {ref.path for ref in run.sidecars} == {"sidecars/topology.tpr",
                                                  "sidecars/trajectory.xtc"}


def test_import_copies_files_and_records_digests(example):
    import hashlib

    run = example.store.read_run_result(example.run("charmm_dims"))
    for ref in run.sidecars:
        source = Path(example.path("charmm_dims", ref.kind))
        assert ref.sha256 == hashlib.sha256(source.read_bytes()).hexdigest()
        assert ref.size_bytes == source.stat().st_size
        assert ref.metadata["source_name"] == source.name
        stored = example.store.validate_sidecar(ref, verify="full")
        # an inode of its own: whoever still holds the original cannot change the object
        assert stored.stat().st_ino != source.stat().st_ino
        assert source.stat().st_mode & 0o200, "the original is left as it was (writable)"


def test_universe_leaves_nothing_behind(example):
    example.collect("md_rmsd", {**WINDOW, "select": "backbone"}, "oplsaa_md")
    store = example.store.root
    assert not [p for p in (store / "tmp").iterdir() if p.name.startswith("md-")]
    assert not [p for p in (store / "objects").rglob(".*")], "reader offsets in objects/"


@pytest.mark.parametrize("plugin, settings, message", [
    ("md_rgyr", {"equilibriation": 5}, "unknown setting"),
    ("md_rgyr", {"select": "resname NOPE"}, "matches no atom"),
    ("md_rgyr", {"step": 0}, "step"),
    ("md_rmsf", {"select": "backbone"}, "one atom per residue"),
    ("md_rmsd", {"groupselections": ["name CA"]}, "groupselections"),
    ("md_contacts", {"select": NMP, "select_b": "name CA"}, "overlap"),
    ("md_rgyr", {"start": 500}, "leaves no frame"),
])
def test_bad_settings_say_what_to_fix(example, plugin, settings, message):
    with pytest.raises(ConfigError, match=message):
        example.collect(plugin, settings, "charmm_dims")


def test_plan_time_import_stays_light():
    code = ("import sys, assay.analyses.md, assay.pipeline.plugins as p; "
            "p.resolve_analysis('md_rmsf'); assert 'MDAnalysis' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_fetch_example_command(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "assay.analyses.md", "fetch-example",
                           str(tmp_path / "md")], check=True, capture_output=True, text=True)
    listed = {Path(line).relative_to(tmp_path / "md").as_posix()
              for line in proc.stdout.split()}
    assert listed == {f.removeprefix("data/md/") for files in FILES.values()
                      for f in files.values()}


def test_fetch_example_without_the_extra_says_so_in_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "MDAnalysisTests", None)   # as if not installed
    assert md.main(["fetch-example", str(tmp_path / "md")]) == 1
    assert capsys.readouterr().err == ("fetch-example: the MD example needs MDAnalysisTests, "
                                       "not installed here: pip install "
                                       "'assay-workflow[md]'\n")


# --- the example study, end to end through Snakemake --------------------------------------
@pytest.mark.slow
def test_example_study_end_to_end(tmp_path):
    from workflow_helpers import snakemake

    import yaml

    from assay.pipeline.workflow import WorkflowPlan

    config = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    # Every figure and ref of the study; the catalog (one more local job at the end) is
    # the catalog's own business and is covered by the demo's end-to-end tests.
    plan = WorkflowPlan(config, workdir=tmp_path)
    md.fetch_example(tmp_path / "data" / "md")
    snakemake(tmp_path, "--configfile", str(EXAMPLE_CONFIG), "--replace-workflow-config",
              *plan.plots(), *plan.all_refs())
    results = tmp_path / config["results"]
    store = ArtifactStore(tmp_path / config["store"])
    n_replicates = config["replicates"]
    for analysis in config["analyses"]:
        for name in ("summary", "detail"):
            figure = results / "plots" / analysis / f"{name}.png"
            assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", figure
        for condition in CONDITIONS:
            artifact = store.read_condition_result(
                results / "conditions" / analysis / f"{condition}.json")
            assert artifact.replicates == list(range(1, n_replicates + 1))
            for metric, stats in artifact.payload["metrics"].items():
                assert stats["n"] == n_replicates, (analysis, condition, metric)
                assert stats["ci_low"] is not None and stats["ci_high"] is not None
                assert stats["ci_low"] <= stats["mean"] <= stats["ci_high"]
        comparison = store.read_comparison_result(results / "comparisons" / f"{analysis}.json")
        assert set(comparison.payload["comparisons"]) == {"charmm_dims"}
    block = store.read_replicate_result(results / "replicates" / "rmsd" / "oplsaa_md" / "2.json")
    assert block.payload["frame_selection"]["block"] == 2
    assert block.payload["frame_selection"]["frame_indices"] == {"first": 4, "last": 6}
    for ref in results.rglob("*.json"):
        if ref.parent.name == "logs" or "logs" in ref.parts:
            continue
        manifest = store.manifest_bytes(read_ref(ref).digest)[1].decode()
        assert str(tmp_path) not in manifest, ref
    rmsd = json.loads(store.manifest_bytes(read_ref(
        results / "conditions" / "rmsd" / "charmm_dims.json").digest)[1])
    assert rmsd["payload"]["metrics"]["mean_rmsd"]["mean"] > 1.0
    # The figures, through what they are drawn from: blocks named as blocks, titles with
    # units, intervals that never go below zero, each block's series (too short for t0 in
    # the 10-frame OPLS-AA trajectory: drawn without it).
    from assay.pipeline.plotting import load_plot_context, replicate_word, series_panels, summary_panels
    from assay.pipeline.stages import plot_spec

    ctx = load_plot_context(store, plot_spec(plan.study, "rmsd"),
                            read_ref(results / "comparisons" / "rmsd.json").digest)
    assert replicate_word(ctx.plugin, ctx.settings) == "block"
    panels = summary_panels(ctx)
    assert [p["title"] for p in panels] == ["mean RMSD (Å)", "SD of RMSD over frames (Å)",
                                           "maximum RMSD (Å)", "mean RMSD of lid (Å)",
                                           "mean RMSD of nmp (Å)"]
    for panel in panels:
        assert panel["bounds"] == "non-negative"
        for row in panel["conditions"]:
            assert row["n"] == n_replicates
            assert 0 < row["low"] <= row["mean"] <= row["high"], (panel["metric"], row)
    series = {p["condition"]: p["runs"] for p in series_panels(ctx)}
    assert [r["t0"] for r in series["oplsaa_md"]] == [None, None, None]
    assert all(isinstance(r["t0"], int) and r["n_eff"] > 0 for r in series["charmm_dims"])
