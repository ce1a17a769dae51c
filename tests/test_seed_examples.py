"""The seed documents' examples, run against assay.

The collector, CSV-registration and loader examples of seed 000 ("Store large analysis
outputs with artifact sidecars") are copied verbatim below; only their import lines changed
(``polyzymd.analyses.mda`` -> ``assay``). What polyzymd provided and assay does not (the
MDAnalysis collector context, the job result, ``frame_selection_payload``) is defined here
as a small stand-in. Seed 002's content-addressed ``save_artifact``/``load_artifact``
behaviour follows at the end.
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from assay import (
    ArtifactIntegrityError,
    ArtifactStore,
    ArtifactStoreError,
    PayloadError,
    ReplicateArtifact,
    read_ref,
)


# --- stand-ins for what polyzymd's MDAnalysis layer provided ----------------------------
@dataclass
class UniversePolicy:
    topology: str = "topology.pdb"
    in_memory: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"topology": Path(self.topology), "in_memory": self.in_memory}


@dataclass
class FrameSelection:
    start: int = 0
    stop: int | None = None
    step: int = 1


def frame_selection_payload(selection: FrameSelection) -> dict[str, Any]:
    return {"start": selection.start, "stop": selection.stop, "step": selection.step}


@dataclass
class MDACollectorContext:
    analysis_name: str
    condition_label: str
    replicate: int
    settings_fingerprint: str | None
    artifact_store: ArtifactStore
    warnings: list[str] = field(default_factory=list)
    frame_selection: FrameSelection = field(default_factory=FrameSelection)
    universe_policy: UniversePolicy = field(default_factory=UniversePolicy)


@dataclass
class MDAJobResult:
    results: dict[str, Any]


# --- seed 000: "Write an NPZ array sidecar from a collector" (verbatim) -----------------
import numpy as np  # noqa: E402,F811
from assay import (  # noqa: E402
    strict_json_payload,
)


class DistanceMatrixCollector:
    """Collect one completed distance job into a sidecar-backed artifact."""

    def __call__(
        self,
        ctx: MDACollectorContext,
        completed_jobs: list[MDAJobResult],
    ) -> ReplicateArtifact:
        if len(completed_jobs) != 1:
            raise ValueError(f"Expected one job, got {len(completed_jobs)}")
        job = completed_jobs[0]
        distances = np.asarray(job.results["distances_nm"], dtype=np.float64)
        frames = np.asarray(job.results["frames"], dtype=np.int64)

        metadata = {"result_kind": "distance_matrix_replicate"}
        if ctx.settings_fingerprint is not None:
            metadata["settings_fingerprint"] = ctx.settings_fingerprint

        sidecar = ctx.artifact_store.write_npz_sidecar(
            "sidecars/distance_matrix.npz",
            distances_nm=distances,
            frames=frames,
            metadata={
                "kind": "distance_matrix",
                "layout": "pair_x_frame",
                "shape": list(distances.shape),
            },
        )

        return ReplicateArtifact(
            analysis_name=ctx.analysis_name,
            condition_label=ctx.condition_label,
            replicate=ctx.replicate,
            payload={
                "n_pairs": int(distances.shape[0]),
                "n_frames": int(distances.shape[1]),
                "mean_distance_nm": float(np.nanmean(distances)),
                "metrics": {"mean_distance_nm": float(np.nanmean(distances))},
            },
            sidecars=[sidecar],
            provenance={
                "source": "distance_matrix_job",
                "frame_selection": frame_selection_payload(ctx.frame_selection),
                "universe_policy": strict_json_payload(
                    ctx.universe_policy.as_dict(),
                    analysis_name=ctx.analysis_name,
                ),
            },
            metadata=metadata,
            warnings=list(ctx.warnings),
        )


# --- seed 000: "Write and register a CSV table sidecar" (verbatim) ----------------------
import csv  # noqa: E402

from assay import ReplicateArtifact  # noqa: E402,F811


def write_contact_events(
    ctx: MDACollectorContext,
    rows: list[dict[str, int | str | float]],
) -> ReplicateArtifact:
    sidecar_path = "sidecars/contact_events.csv"
    csv_path = ctx.artifact_store.resolve_sidecar(sidecar_path)
    csv_path.parent.mkdir(parents=True, exist_ok=True)

    with csv_path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(
            handle,
            fieldnames=["frame", "protein_resid", "polymer_atom", "distance_nm"],
        )
        writer.writeheader()
        writer.writerows(rows)

    sidecar = ctx.artifact_store.register_sidecar(
        sidecar_path,
        media_type="text/csv",
        metadata={
            "kind": "contact_events",
            "n_rows": len(rows),
            "columns": ["frame", "protein_resid", "polymer_atom", "distance_nm"],
        },
    )

    metadata = {"result_kind": "contact_events_replicate"}
    if ctx.settings_fingerprint is not None:
        metadata["settings_fingerprint"] = ctx.settings_fingerprint

    return ReplicateArtifact(
        analysis_name=ctx.analysis_name,
        condition_label=ctx.condition_label,
        replicate=ctx.replicate,
        payload={
            "n_contact_events": len(rows),
            "event_table_sidecar": sidecar.path,
        },
        sidecars=[sidecar],
        provenance={"source": "contact_event_collector"},
        metadata=metadata,
        warnings=list(ctx.warnings),
    )


# --- seed 000: "Load sidecars through the artifact reference" (verbatim) ----------------
import csv  # noqa: E402,F811

from assay import ArtifactSidecarRef, ArtifactStore, ReplicateArtifact  # noqa: E402,F811


def sidecar_by_kind(artifact: ReplicateArtifact, kind: str) -> ArtifactSidecarRef:
    matches = [ref for ref in artifact.sidecars if ref.metadata.get("kind") == kind]
    if len(matches) != 1:
        raise ValueError(f"Expected one {kind!r} sidecar, found {len(matches)}")
    return matches[0]


def load_distance_matrix(run_dir):
    store = ArtifactStore(run_dir)
    artifact = store.read_replicate_result()
    sidecar = sidecar_by_kind(artifact, "distance_matrix")
    with store.load_npz_sidecar(sidecar) as data:
        distances_nm = data["distances_nm"].copy()
        frames = data["frames"].copy()
    return artifact, distances_nm, frames


def load_contact_events(run_dir):
    store = ArtifactStore(run_dir)
    artifact = store.read_replicate_result()
    sidecar = sidecar_by_kind(artifact, "contact_events")
    csv_path = store.validate_sidecar(sidecar)
    with csv_path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return artifact, rows


# --- the tests ----------------------------------------------------------------------------
N_PAIRS, N_FRAMES = 6, 40


def _distances() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    return rng.uniform(0.2, 2.0, size=(N_PAIRS, N_FRAMES)), np.arange(0, 2 * N_FRAMES, 2)


def _ctx(run_dir: Path, **overrides: Any) -> MDACollectorContext:
    values = dict(analysis_name="distance_matrix", condition_label="Polymer", replicate=2,
                  settings_fingerprint="sha256:" + "ab" * 32,
                  artifact_store=ArtifactStore(run_dir), warnings=["frames 0-9 skipped"],
                  frame_selection=FrameSelection(10, None, 2),
                  universe_policy=UniversePolicy("inputs/topology.pdb"))
    values.update(overrides)
    return MDACollectorContext(**values)


def _collect(run_dir: Path) -> tuple[ReplicateArtifact, str]:
    ctx = _ctx(run_dir)
    distances, frames = _distances()
    job = MDAJobResult(results={"distances_nm": distances.tolist(), "frames": frames})
    artifact = DistanceMatrixCollector()(ctx, [job])
    digest = ctx.artifact_store.write_artifact(artifact)
    ctx.artifact_store.write_ref(run_dir / "result.json", digest, artifact_type="replicate")
    return artifact, digest


CONTACT_ROWS = [
    {"frame": 0, "protein_resid": 12, "polymer_atom": "C3", "distance_nm": 0.31},
    {"frame": 0, "protein_resid": 47, "polymer_atom": "O1", "distance_nm": 0.28},
    {"frame": 4, "protein_resid": 12, "polymer_atom": "C3", "distance_nm": 0.335},
]


def test_distance_matrix_collector_writes_a_sidecar_backed_artifact(tmp_path):
    artifact, digest = _collect(tmp_path)
    distances, frames = _distances()

    assert digest.startswith("sha256:") and len(digest) == 7 + 64
    assert artifact.payload["n_pairs"] == N_PAIRS and artifact.payload["n_frames"] == N_FRAMES
    assert artifact.payload["metrics"] == {"mean_distance_nm": float(np.nanmean(distances))}
    assert artifact.metadata == {"result_kind": "distance_matrix_replicate",
                                 "settings_fingerprint": "sha256:" + "ab" * 32}
    # The relative Path in the universe policy became a portable POSIX string.
    assert artifact.provenance["universe_policy"] == {"topology": "inputs/topology.pdb",
                                                      "in_memory": False}
    assert artifact.provenance["frame_selection"] == {"start": 10, "stop": None, "step": 2}
    assert artifact.warnings == ["frames 0-9 skipped"]

    (sidecar,) = artifact.sidecars
    assert sidecar.path == "sidecars/distance_matrix.npz"
    assert sidecar.metadata["shape"] == [N_PAIRS, N_FRAMES]
    assert len(sidecar.sha256) == 64 and sidecar.sha256 == sidecar.sha256.lower()
    obj = tmp_path / "objects" / sidecar.sha256[:2] / sidecar.sha256
    assert obj.stat().st_size == sidecar.size_bytes
    assert hashlib.sha256(obj.read_bytes()).hexdigest() == sidecar.sha256
    assert read_ref(tmp_path / "result.json").digest == digest


def test_collector_refuses_several_jobs(tmp_path):
    ctx = _ctx(tmp_path)
    job = MDAJobResult(results={"distances_nm": [[1.0]], "frames": [0]})
    with pytest.raises(ValueError, match="Expected one job, got 2"):
        DistanceMatrixCollector()(ctx, [job, job])


def test_collector_without_fingerprint_omits_it(tmp_path):
    ctx = _ctx(tmp_path, settings_fingerprint=None)
    distances, frames = _distances()
    artifact = DistanceMatrixCollector()(ctx, [MDAJobResult({"distances_nm": distances,
                                                             "frames": frames})])
    assert artifact.metadata == {"result_kind": "distance_matrix_replicate"}


def test_load_distance_matrix_through_the_default_ref(tmp_path):
    artifact, digest = _collect(tmp_path)
    loaded, distances_nm, frames = load_distance_matrix(tmp_path)

    expected_distances, expected_frames = _distances()
    assert loaded == artifact
    assert loaded.manifest_bytes() == artifact.manifest_bytes()
    np.testing.assert_array_equal(distances_nm, expected_distances)
    np.testing.assert_array_equal(frames, expected_frames)
    assert distances_nm.dtype == np.float64 and frames.dtype == np.int64
    assert distances_nm.flags.writeable  # the example copies; the copies are the caller's


def test_contact_events_registration_and_loader(tmp_path):
    ctx = _ctx(tmp_path)
    artifact = write_contact_events(ctx, CONTACT_ROWS)
    digest = ctx.artifact_store.write_artifact(artifact)
    ctx.artifact_store.write_ref(tmp_path / "result.json", digest, artifact_type="replicate")

    (sidecar,) = artifact.sidecars
    assert sidecar.media_type == "text/csv"
    assert artifact.payload == {"n_contact_events": 3,
                                "event_table_sidecar": "sidecars/contact_events.csv"}
    # register_sidecar moved the staged file into the store: nothing is left to discover.
    assert not ctx.artifact_store.resolve_sidecar("sidecars/contact_events.csv").exists()

    loaded, rows = load_contact_events(tmp_path)
    assert loaded == artifact
    assert rows == [{k: str(v) for k, v in row.items()} for row in CONTACT_ROWS]


def test_loader_refuses_a_missing_sidecar(tmp_path):
    artifact, digest = _collect(tmp_path)
    obj = tmp_path / "objects" / artifact.sidecars[0].sha256[:2] / artifact.sidecars[0].sha256
    obj.unlink()
    with pytest.raises(ArtifactIntegrityError) as info:
        load_distance_matrix(tmp_path)
    assert digest in str(info.value)
    assert "sidecars/distance_matrix.npz" in str(info.value)
    assert isinstance(info.value, ArtifactStoreError)


def test_loader_refuses_a_stale_sidecar(tmp_path):
    """Same size, other bytes (a valid NPZ of other values): the digest check refuses it."""
    artifact, _ = _collect(tmp_path)
    sidecar = artifact.sidecars[0]
    distances, frames = _distances()
    other = ArtifactStore(tmp_path / "other").write_npz_sidecar(
        "x.npz", distances_nm=distances + 1.0, frames=frames)
    assert other.size_bytes == sidecar.size_bytes and other.sha256 != sidecar.sha256
    obj = tmp_path / "objects" / sidecar.sha256[:2] / sidecar.sha256
    os.chmod(obj, stat.S_IRUSR | stat.S_IWUSR)
    obj.write_bytes((tmp_path / "other" / "objects" / other.sha256[:2] / other.sha256)
                    .read_bytes())
    with pytest.raises(ArtifactIntegrityError, match="sidecars/distance_matrix.npz"):
        load_distance_matrix(tmp_path)


def test_loader_without_default_ref_says_what_to_do(tmp_path):
    with pytest.raises(ArtifactStoreError, match="result.json"):
        load_distance_matrix(tmp_path)


# --- seed 000's anti-patterns are refused -------------------------------------------------
class Results(dict):
    """Shaped like MDAnalysis' ``Results``: a dict with attribute access."""

    __getattr__ = dict.__getitem__


def test_raw_results_objects_are_refused():
    job = MDAJobResult(results=Results(distances_nm=[[0.5]]))
    with pytest.raises(PayloadError, match=r"\['results'\].*Results"):
        ReplicateArtifact(analysis_name="my_analysis", condition_label="Polymer",
                          replicate=1, payload={"results": job.results})


def test_large_arrays_in_payloads_are_refused():
    distances = np.zeros((4, 5000))
    with pytest.raises(PayloadError, match=r"\['all_frame_distances'\]\[0\].*sidecar"):
        ReplicateArtifact(analysis_name="my_analysis", condition_label="Polymer",
                          replicate=1, payload={"all_frame_distances": distances.tolist()})


def test_absolute_paths_are_refused_in_payloads():
    with pytest.raises(PayloadError, match=r"\['trajectory'\].*absolute"):
        ReplicateArtifact(analysis_name="my_analysis", condition_label="Polymer",
                          replicate=1, payload={"trajectory": Path("/scratch/run1/traj.xtc")})


# --- seed 002: content-addressed binary artifacts ----------------------------------------
class FittedScaler:
    """A stand-in for a fitted sklearn transformer (picklable, holds arrays)."""

    def __init__(self, mean: np.ndarray, scale: np.ndarray) -> None:
        self.mean_ = mean
        self.scale_ = scale

    def transform(self, x: np.ndarray) -> np.ndarray:
        return (x - self.mean_) / self.scale_


def _object_files(root: Path) -> list[Path]:
    return sorted(p for p in (root / "objects").rglob("*") if p.is_file())


def test_same_object_saved_twice_gives_the_same_id(tmp_path):
    store = ArtifactStore(tmp_path)
    scaler = FittedScaler(np.array([1.0, 2.0, 3.0]), np.array([0.5, 0.5, 2.0]))

    id1 = store.save_artifact(scaler, "StandardScaler", "transformer", "joblib")
    id2 = store.save_artifact(scaler, "StandardScaler", "transformer", "joblib")
    assert id1 == id2  # Content-addressed deduplication

    assert id1.startswith("sha256:") and len(id1) == 7 + 64
    (only,) = _object_files(tmp_path)
    assert only.name == id1.removeprefix("sha256:") and only.parent.name == only.name[:2]
    assert hashlib.sha256(only.read_bytes()).hexdigest() == only.name
    assert stat.S_IMODE(only.stat().st_mode) == 0o444
    assert store.get_artifact_path(id1) == only
    assert not [p for p in (tmp_path / "tmp").rglob("*") if p.is_file()]


def test_load_artifact_round_trip(tmp_path):
    store = ArtifactStore(tmp_path)
    scaler = FittedScaler(np.array([1.0, 2.0]), np.array([4.0, 8.0]))
    artifact_id = store.save_artifact(obj=scaler, operator_class="StandardScaler",
                                      artifact_type="transformer", format="joblib")
    for reader in (store, ArtifactStore(tmp_path)):  # cached, then fresh (hashed) read
        model = reader.load_artifact(artifact_id)
        assert isinstance(model, FittedScaler)
        np.testing.assert_array_equal(model.transform(np.array([5.0, 16.0])), [1.0, 1.75])


def test_different_objects_give_different_ids(tmp_path):
    store = ArtifactStore(tmp_path)
    id1 = store.save_artifact(FittedScaler(np.zeros(3), np.ones(3)), "StandardScaler",
                              "transformer", "joblib")
    id2 = store.save_artifact(FittedScaler(np.zeros(3), np.full(3, 2.0)), "StandardScaler",
                              "transformer", "joblib")
    id3 = store.save_artifact({"coef": [1.0, 2.0]}, "PLSRegression", "model", "joblib")
    assert len({id1, id2, id3}) == 3
    assert len(_object_files(tmp_path)) == 3


def test_a_tampered_binary_is_never_unpickled(tmp_path):
    store = ArtifactStore(tmp_path)
    artifact_id = store.save_artifact({"coef": list(range(50))}, "PLSRegression", "model")
    path = store.get_artifact_path(artifact_id)
    os.chmod(path, 0o644)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(ArtifactIntegrityError, match=artifact_id.removeprefix("sha256:")):
        ArtifactStore(tmp_path).load_artifact(artifact_id)
    with pytest.raises(ArtifactIntegrityError):
        store.load_artifact(artifact_id, verify="full")


def test_save_artifact_refuses_unknown_formats(tmp_path):
    with pytest.raises(ArtifactStoreError, match="format"):
        ArtifactStore(tmp_path).save_artifact({}, "X", "model", format="pickle-ish")
