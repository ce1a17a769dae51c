"""assay verify / verify --repair / gc on real stores, damaged on purpose."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
from study_helpers import run_cli

from assay import ReplicateArtifact, write_ref
from assay.tools.gc import collect_garbage
from assay.tools.verify import verify_store

HOUR = 3600



run = run_cli


def hexof(digest: str) -> str:
    return digest[len("sha256:"):]


def flip_byte(path: Path, offset: int = -3) -> None:
    os.chmod(path, 0o644)          # objects are read-only (0444)
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def sidecar_sha(study, digest: str) -> str:
    return study.store.read_artifact(digest).sidecars[0].sha256


def action_path(study, key: str) -> Path:
    return study.store_root / "actions" / key[:2] / f"{key}.json"


def snapshot(root: Path) -> dict[str, bytes | None]:
    out: dict[str, bytes | None] = {}
    for path in sorted(root.rglob("*")):
        out[path.relative_to(root).as_posix()] = path.read_bytes() if path.is_file() else None
    return out


def age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then), follow_symlinks=False)


# --- verify ----------------------------------------------------------------------------
def test_clean_store_verifies(study, capsys):
    code, out, _ = run(study, capsys, "verify")
    assert code == 0 and "ok: no damage found" in out
    code, out, _ = run(study, capsys, "verify", "--full", "--json", "--jobs", "4")
    report = json.loads(out)
    assert code == 0 and report["ok"] and report["objects_hashed"] == len(
        list((study.store_root / "objects").glob("??/*")))


def test_damaged_sidecar_is_named_with_dependents_then_repaired(study, capsys):
    run_digest = study.runs["ctrl", 1]
    sha = sidecar_sha(study, run_digest)
    flip_byte(study.store.objects.path_for(sha))

    code, out, _ = run(study, capsys, "verify")
    assert code == 1
    assert f"DAMAGED sidecar sha256:{sha} has different bytes" in out
    for ref in ("runs/ctrl/1.json", "replicates/rg/ctrl/1.json", "conditions/rg/ctrl.json",
                "comparisons/rg.json"):
        assert f"ref      {ref}" in out
    assert "runs/ctrl/2.json" not in out

    code, out, _ = run(study, capsys, "verify", "--json")
    report = json.loads(out)
    (damage,) = report["damaged"]
    assert damage["object"] == f"sha256:{sha}" and damage["role"] == "sidecar"
    assert damage["artifacts"][0] == run_digest          # the owner first
    assert report["repair_plan"] == {"objects": [f"sha256:{sha}"], "refs": ["runs/ctrl/1.json"],
                                     "actions": [study.actions[run_digest]], "catalog": False}

    code, out, _ = run(study, capsys, "verify", "--repair")
    assert code == 0, out
    assert "removed: 1 damaged objects, 1 refs, 1 action records" in out
    # Exactly that job's ref and cache entry are gone: snakemake reruns it and nothing else
    # (downstream refs stay; an identical recomputed ref leaves them alone).
    assert not study.ref(run_digest).exists()
    assert not action_path(study, study.actions[run_digest]).exists()
    assert not study.store.objects.path_for(sha).exists()
    assert study.ref(study.replicates["ctrl", 1]).exists()
    assert action_path(study, study.actions[study.replicates["ctrl", 1]]).exists()

    # Until the workflow reruns that job, the run is still an input downstream.
    code, out, _ = run(study, capsys, "verify")
    assert code == 1 and f"MISSING sidecar sha256:{sha}: awaiting recompute" in out
    assert "would remove: 0 damaged objects, 0 refs, 0 action records" in out
    assert run(study, capsys, "verify", "--repair")[0] == 0      # nothing cascades
    assert study.ref(study.replicates["ctrl", 1]).exists()
    # What the rerun job does: the same arrays give the same sidecar, the same ref bytes.
    study.store.write_npz_sidecar("sidecars/trajectory.npz", x=np.arange(16.0) * 1 + 0.0)
    write_ref(study.ref(run_digest), run_digest, artifact_type="run", condition="ctrl",
              replicate=1)
    assert run(study, capsys, "verify", "--full")[0] == 0


def test_damaged_manifest_repair_removes_its_ref_and_action(study, capsys):
    from assay.tools.catalog import build_catalog

    catalog = build_catalog(study.store, study.results).path
    digest = study.replicates["ctrl", 2]
    flip_byte(study.store.objects.path_for(hexof(digest)), offset=5)
    report = verify_store(study.store_root, study.results)
    (damage,) = report.damaged
    assert damage.role == "manifest" and damage.sha256 == hexof(digest)
    assert damage.refs == ["comparisons/rg.json", "conditions/rg/ctrl.json",
                           "replicates/rg/ctrl/2.json"]
    assert report.plan.refs == ["replicates/rg/ctrl/2.json"]
    code, out, _ = run(study, capsys, "verify", "--repair")
    assert code == 0
    # The stale catalog goes too: the workflow's catalog rule needs every ref, so a plain
    # `snakemake` notices the missing one. The printed command recomputes just that job.
    assert not catalog.exists() and "the catalog" in out
    assert f"snakemake {study.results / 'replicates' / 'rg' / 'ctrl' / '2.json'}" in out
    assert not study.ref(digest).exists()
    assert not action_path(study, study.actions[digest]).exists()
    assert not study.store.objects.path_for(hexof(digest)).exists()
    assert study.ref(study.conditions["ctrl"]).exists()


def test_missing_manifest_reached_through_inputs(study, capsys):
    """An input deleted together with its ref: only its action record is left to remove;
    then it awaits recompute and repeated repairs change nothing."""
    run_digest = study.runs["treat", 1]
    study.ref(run_digest).unlink()
    study.store.objects.path_for(hexof(run_digest)).unlink()
    report = verify_store(study.store_root, study.results)
    (damage,) = report.damaged
    assert damage.problem == "is missing" and not damage.awaiting_recompute
    assert damage.refs == ["comparisons/rg.json", "conditions/rg/treat.json",
                           "replicates/rg/treat/1.json"]
    assert report.plan.objects == [] and report.plan.refs == []
    assert report.plan.actions == [study.actions[run_digest]]
    assert run(study, capsys, "verify", "--repair")[0] == 0
    before = snapshot(study.root)
    report = verify_store(study.store_root, study.results)
    assert report.damaged[0].awaiting_recompute and not report.ok
    assert run(study, capsys, "verify", "--repair")[0] == 0
    assert snapshot(study.root) == before


def test_full_finds_damage_nothing_depends_on(study, capsys):
    stray = study.store.write_bytes_sidecar("x.bin", b"unreferenced bytes")
    flip_byte(study.store.objects.path_for(stray.sha256))
    assert run(study, capsys, "verify")[0] == 0            # not reachable: not checked
    code, out, _ = run(study, capsys, "verify", "--full")
    assert code == 1 and f"DAMAGED object sha256:{stray.sha256}" in out
    assert "(nothing depends on it)" in out
    assert run(study, capsys, "verify", "--full", "--repair")[0] == 0
    assert not study.store.objects.path_for(stray.sha256).exists()
    assert all(p.exists() for p in study.refs.values())


def test_unreadable_ref_is_reported_and_repaired(study, capsys):
    bad = study.results / "runs" / "ctrl" / "9.json"
    bad.write_text("{not json")
    code, out, _ = run(study, capsys, "verify")
    assert code == 1 and "BAD REF runs/ctrl/9.json" in out
    assert run(study, capsys, "verify", "--repair")[0] == 0
    assert not bad.exists()


# --- gc --------------------------------------------------------------------------------
def _orphans(study):
    """An old unreferenced artifact with its own sidecar and action record, a young one,
    stale and fresh staging leftovers."""
    store = study.store
    side = store.write_npz_sidecar("sidecars/old.npz", a=np.arange(5.0))
    old = store.write_artifact(ReplicateArtifact(
        analysis_name="rg", condition_label="gone", replicate=1, sidecars=[side],
        payload={"metrics": {"rg": 1.0}}, provenance={"stage": "collect"}))
    store.record_action("a" * 64, old, stage="collect")
    young = store.write_bytes_sidecar("young.bin", b"written by a job still running")
    for sha in (hexof(old), side.sha256):
        age(store.objects.path_for(sha), 2 * HOUR)
    tmp = study.store_root / "tmp"
    stale_part, fresh_part = tmp / "stale.part", tmp / "fresh.part"
    stale_part.write_bytes(b"x" * 10)
    fresh_part.write_bytes(b"y" * 10)
    age(stale_part, 2 * HOUR)
    staging = tmp / "staging-dead"
    (staging / "sidecars").mkdir(parents=True)
    (staging / "sidecars" / "a.npz").write_bytes(b"z")
    for path in (staging / "sidecars" / "a.npz", staging / "sidecars", staging):
        age(path, 2 * HOUR)
    return old, side.sha256, young.sha256, stale_part, fresh_part, staging


def test_gc_dry_run_reports_and_deletes_nothing(study, capsys):
    _orphans(study)
    before = snapshot(study.root)
    code, out, _ = run(study, capsys, "gc")
    assert code == 0
    assert "dry run: would delete 2 objects" in out
    assert "1 stale tmp entries" not in out and "2 stale tmp entries" in out
    assert "1 action records" in out and "kept 1 unreferenced objects" in out
    code, out, _ = run(study, capsys, "gc", "--dry-run", "--json")
    report = json.loads(out)
    assert report["garbage_objects"] == 2 and report["young_objects"] == 1
    assert report["deleted_objects"] == 0 and not report["delete"]
    assert snapshot(study.root) == before


def test_gc_delete_removes_only_old_unreferenced_objects(study, capsys):
    old, old_side, young, stale_part, fresh_part, staging = _orphans(study)
    live = {p for p in (study.store_root / "objects").glob("??/*")
            if p.name not in (hexof(old), old_side, young)}
    code, out, _ = run(study, capsys, "gc", "--delete")
    assert code == 0 and "deleted 2 objects" in out
    objects = study.store.objects
    assert not objects.path_for(hexof(old)).exists() and not objects.path_for(old_side).exists()
    assert objects.path_for(young).exists()                     # within the grace period
    assert all(p.exists() for p in live)
    assert not action_path(study, "a" * 64).exists()            # pointed at a swept artifact
    assert all(action_path(study, k).exists() for k in study.actions.values())
    assert not stale_part.exists() and fresh_part.exists() and not staging.exists()
    assert run(study, capsys, "verify", "--full")[0] == 0


def test_gc_follows_refs_and_extra_roots(study, capsys, tmp_path):
    """Dropping the comparison's ref frees only the comparison; --root keeps it."""
    comparison = study.comparison
    keep = tmp_path / "keep.json"
    write_ref(keep, comparison, artifact_type="comparison", analysis="rg")
    study.ref(comparison).unlink()
    age(study.store.objects.path_for(hexof(comparison)), 2 * HOUR)
    report = collect_garbage(study.store_root, study.results, roots=[str(keep)],
                             grace_seconds=HOUR, delete=True)
    assert report.deleted_objects == 0
    report = collect_garbage(study.store_root, study.results, grace_seconds=HOUR, delete=True)
    assert report.swept == [comparison] and report.deleted_objects == 1
    assert not action_path(study, study.actions[comparison]).exists()
    assert study.store.objects.exists(hexof(study.conditions["ctrl"]))


def test_gc_refuses_to_delete_when_a_reachable_manifest_is_unreadable(study, capsys):
    _orphans(study)
    victim = study.store.objects.path_for(hexof(study.conditions["treat"]))
    os.chmod(victim, 0o644)
    victim.write_bytes(b"\x00garbage")
    before = snapshot(study.root)
    code, _, err = run(study, capsys, "gc", "--delete")
    assert code == 1 and "gc refuses to delete" in err and "verify --repair" in err
    assert snapshot(study.root) == before
    code, _, _ = run(study, capsys, "gc")        # a dry run still reports
    assert code == 0


def test_gc_grace_must_not_be_negative(study, capsys):
    code, _, err = run(study, capsys, "gc", "--grace", "-1")
    assert code == 1 and "grace period" in err


def test_gc_sweeps_temporaries_of_killed_atomic_writes(study, capsys):
    """A job killed inside write_ref / record_action leaves `.NAME.XXXX.tmp` beside them."""
    ref_tmp = study.results / "runs" / "ctrl" / ".1.json.k1ll3d.tmp"
    action_tmp = next((study.store_root / "actions").glob("??")) / ".x.json.k1ll3d.tmp"
    fresh_tmp = study.results / "runs" / "ctrl" / ".2.json.runn1n.tmp"
    for path in (ref_tmp, action_tmp, fresh_tmp):
        path.write_bytes(b'{"digest":"sha256:')
    age(ref_tmp, 2 * HOUR)
    age(action_tmp, 2 * HOUR)
    code, out, _ = run(study, capsys, "gc", "--delete")
    assert code == 0 and "2 stale tmp entries" in out
    assert not ref_tmp.exists() and not action_tmp.exists() and fresh_tmp.exists()


def test_gc_warns_about_a_short_grace_period(study, capsys):
    code, _, err = run(study, capsys, "gc", "--delete", "--grace", "0")
    assert code == 0 and "warning" in err and "running" in err
    code, _, err = run(study, capsys, "gc", "--grace", "0")       # a dry run risks nothing
    assert code == 0 and "warning" not in err
