"""Several processes writing to one store at the same moment (as cluster jobs do).

Workers are started with the "spawn" method: each is a fresh interpreter, like a job, and
they meet at a multiprocessing.Barrier so the writes really overlap.
"""

from __future__ import annotations

import hashlib
import multiprocessing as mp
import stat
import traceback
from pathlib import Path

import numpy as np
from assay import ArtifactSidecarRef, ArtifactStore, ConditionArtifact, ReplicateArtifact, read_ref

N_PROCESSES = 8
LARGE_ITEMS = 20 * 1024 * 1024 // 8  # a 20 MB float64 array
TIMEOUT_S = 120


def large_array() -> np.ndarray:
    return np.random.default_rng(2024).standard_normal(LARGE_ITEMS)


def _same_bytes_worker(root: str, barrier, results) -> None:
    try:
        values = large_array()
        store = ArtifactStore(root)
        barrier.wait(timeout=TIMEOUT_S)
        ref = store.write_npz_sidecar("sidecars/large.npz", values=values,
                                      metadata={"kind": "large"})
        with store.load_npz_sidecar(ref, verify="full") as data:
            ok = bool(np.array_equal(data["values"], values))
        results.put(("ok", ref.sha256, ref.size_bytes, ok))
    except BaseException:
        results.put(("error", traceback.format_exc(), 0, False))


def _mixed_worker(root: str, index: int, barrier, results) -> None:
    try:
        store = ArtifactStore(root)
        shared_values = np.arange(200_000, dtype=np.float64)  # the same in every worker
        own_values = np.full(50_000, float(index))             # different in every worker
        barrier.wait(timeout=TIMEOUT_S)
        shared = store.write_npz_sidecar("sidecars/shared.npz", values=shared_values,
                                         metadata={"kind": "shared"})
        own = store.write_npz_sidecar("sidecars/own.npz", values=own_values,
                                      metadata={"kind": "own"})
        model_id = store.save_artifact({"coef": [1.0, 2.0, 3.0]}, "PLS", "model")
        replicate = ReplicateArtifact(
            analysis_name="race", condition_label="Polymer", replicate=index + 1,
            payload={"metrics": {"mean": float(own_values.mean())}}, sidecars=[shared, own],
            provenance={"model": model_id})
        replicate_digest = store.write_artifact(replicate)
        condition = ConditionArtifact(analysis_name="race", condition_label="Polymer",
                                      replicates=list(range(1, N_PROCESSES + 1)),
                                      payload={"metrics": {"mean": 3.5}}, sidecars=[shared])
        condition_digest = store.write_artifact(condition)
        store.write_ref(Path(root).parent / "results" / f"{index}.json", replicate_digest,
                        artifact_type="replicate", replicate=index + 1)
        store.write_ref(Path(root).parent / "results" / "condition.json", condition_digest,
                        artifact_type="condition")
        results.put(("ok", index, replicate_digest, condition_digest, model_id))
    except BaseException:
        results.put(("error", traceback.format_exc(), None, None, None))


def _run(target, args_for) -> list[tuple]:
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(N_PROCESSES)
    results = ctx.Queue()
    processes = [ctx.Process(target=target, args=(*args_for(i), barrier, results))
                 for i in range(N_PROCESSES)]
    for process in processes:
        process.start()
    try:
        out = [results.get(timeout=TIMEOUT_S) for _ in processes]
    finally:
        for process in processes:
            process.join(timeout=TIMEOUT_S)
            if process.is_alive():
                process.kill()
    errors = [item[1] for item in out if item[0] == "error"]
    assert not errors, "\n".join(errors)
    assert all(process.exitcode == 0 for process in processes)
    return out


def object_files(root: Path) -> list[Path]:
    return sorted(p for p in (root / "objects").rglob("*") if p.is_file())


def assert_intact(root: Path) -> None:
    for path in object_files(root):
        assert path.parent.name == path.name[:2]
        assert hashlib.sha256(path.read_bytes()).hexdigest() == path.name, path
        assert stat.S_IMODE(path.stat().st_mode) == 0o444, path
    leftovers = [p for p in (root / "tmp").rglob("*") if not p.is_dir()]
    assert leftovers == []


def test_processes_writing_the_same_large_npz_leave_one_intact_object(tmp_path):
    root = tmp_path / "store"
    ArtifactStore(root)
    out = _run(_same_bytes_worker, lambda i: (str(root),))

    digests = {item[1] for item in out}
    assert len(digests) == 1, digests
    assert all(item[3] for item in out), "a worker read back different values"
    (only,) = object_files(root)
    (sha,) = digests
    assert only.name == sha and only.stat().st_size == out[0][2]
    assert only.stat().st_size > 20 * 1024 * 1024
    assert_intact(root)
    ref = ArtifactSidecarRef(path="sidecars/large.npz", sha256=sha, size_bytes=out[0][2])
    with ArtifactStore(root).load_npz_sidecar(ref, verify="full") as data:
        np.testing.assert_array_equal(data["values"], large_array())


def test_processes_writing_distinct_and_overlapping_artifacts(tmp_path):
    root = tmp_path / "store"
    ArtifactStore(root)
    out = _run(_mixed_worker, lambda i: (str(root), i))

    replicate_digests = {item[1]: item[2] for item in out}
    condition_digests = {item[3] for item in out}
    model_ids = {item[4] for item in out}
    assert sorted(replicate_digests) == list(range(N_PROCESSES))
    assert len(set(replicate_digests.values())) == N_PROCESSES
    assert len(condition_digests) == 1 and len(model_ids) == 1

    # shared npz + 8 own npz + 1 model + 8 replicate manifests + 1 condition manifest
    assert len(object_files(root)) == 1 + N_PROCESSES + 1 + N_PROCESSES + 1
    assert_intact(root)

    store = ArtifactStore(root)
    for index, digest in replicate_digests.items():
        artifact = store.verify_artifact(digest, verify="full")
        assert artifact.replicate == index + 1
        with store.load_npz_sidecar(artifact.sidecar(kind="own"), verify="full") as data:
            assert np.all(data["values"] == float(index))
        assert read_ref(tmp_path / "results" / f"{index}.json").digest == digest
    (condition_digest,) = condition_digests
    assert store.verify_artifact(condition_digest).replicates == list(range(1, 9))
    assert read_ref(tmp_path / "results" / "condition.json").digest == condition_digest
    assert store.load_artifact(next(iter(model_ids))) == {"coef": [1.0, 2.0, 3.0]}
    assert not [p for p in (tmp_path / "results").iterdir() if p.suffix != ".json"]
