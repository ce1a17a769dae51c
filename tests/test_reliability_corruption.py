"""Promise: every damaged byte is detected before it is used.

One object is damaged at a time (a flipped byte, a truncation, a deletion), chosen at
seeded random among everything the refs reach: manifests, NPZ/CSV sidecars, staged blobs,
joblib objects. Then:

* reading any artifact that depends on it (its manifest, every sidecar through the store's
  loaders, its inputs recursively) raises ArtifactIntegrityError naming the object, with a
  fresh store and with one that had already read (and cached) everything; artifacts that
  do not depend on it still read;
* `assay verify` exits 1 and names it;
* `assay verify --repair` and a rerun restore the original digests. On the real workflow
  the rerun recomputes exactly the jobs whose artifacts were damaged (the rest of what
  Snakemake reruns downstream are action-cache hits).
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest

from assay.pipeline.layout import BY_REF_DIR
from reliability_helpers import (
    assay,
    bad_objects,
    broken_refs,
    copy_study,
    finished_study,
    flip_byte,
    job_logs,
    kill_writer,
    ref_files,
    report,
    truncate,
    workflow_digests,
)
from workflow_helpers import jobs_run, snakemake

from assay import ArtifactIntegrityError, ArtifactStore, read_ref

SEED = 4242
MODES = ("flip", "truncate", "delete")
LIBRARY_TRIALS = 36        # 12 per mode


def damage(path: Path, mode: str, rng: random.Random) -> str:
    size = path.stat().st_size
    if mode == "flip":
        offset = rng.randrange(size)
        flip_byte(path, offset)
        return f"flipped byte {offset} of {size}"
    if mode == "truncate":
        keep = rng.randrange(size)
        truncate(path, keep)
        return f"truncated {size} -> {keep} bytes"
    path.chmod(0o644)
    path.unlink()
    return "deleted"


def read_closure(store: ArtifactStore, digest: str) -> None:
    """Use an artifact the way a plugin would: manifest, every sidecar, every input."""
    artifact = store.read_artifact(digest)
    for sidecar in artifact.sidecars:
        if sidecar.path.endswith(".npz"):
            with store.load_npz_sidecar(sidecar) as data:
                for name in data:
                    data[name]
        elif sidecar.path.endswith(".csv"):
            store.load_table_sidecar(sidecar)
        elif sidecar.path.endswith(".joblib"):
            store.load_artifact("sha256:" + sidecar.sha256)
        else:
            store.validate_sidecar(sidecar)
    for item in artifact.inputs:
        read_closure(store, item["digest"])


def closure_objects(store: ArtifactStore, digest: str) -> set[str]:
    artifact = store.read_artifact(digest)
    out = {digest[len("sha256:"):]} | {s.sha256 for s in artifact.sidecars}
    for item in artifact.inputs:
        out |= closure_objects(store, item["digest"])
    return out


def artifacts_by_ref(results: Path) -> dict[str, str]:
    return {p.relative_to(results).as_posix(): read_ref(p).digest for p in ref_files(results)}


def check_detection(root: Path, results: Path, sha: str, warm: ArtifactStore) -> tuple[int, int]:
    """Dependents raise naming ``sha`` (fresh and warm store); others read. Returns
    (dependent artifacts, independent artifacts)."""
    pristine_refs = artifacts_by_ref(results)
    dependents = independents = 0
    for name, digest in pristine_refs.items():
        needs = sha in _closures[digest]
        for store in (ArtifactStore(root), warm):
            if needs:
                with pytest.raises(ArtifactIntegrityError, match=sha):
                    read_closure(store, digest)
            else:
                read_closure(store, digest)
        dependents += needs
        independents += not needs
    return dependents, independents


_closures: dict[str, set[str]] = {}


def _remember_closures(root: Path, results: Path) -> list[str]:
    """Every object the refs reach (sorted); fills ``_closures`` for check_detection."""
    store = ArtifactStore(root)
    reachable: set[str] = set()
    for digest in artifacts_by_ref(results).values():
        _closures[digest] = closure_objects(store, digest)
        reachable |= _closures[digest]
    return sorted(reachable)


# --- the library: many damaged objects, each detected, repaired, rewritten --------------
@pytest.mark.slow   # several seconds: not in the quick loop
def test_damaged_objects_are_detected_named_and_repaired(tmp_path):
    pristine = tmp_path / "pristine"
    seeds = (0,)
    for seed in seeds:
        kill_writer(str(pristine / "store"), str(pristine / "results"), seed)
    original = artifacts_by_ref(pristine / "results")
    reachable = _remember_closures(pristine / "store", pristine / "results")
    rng = random.Random(SEED)
    tally = {"trials": 0, "detected_on_read": 0, "found_by_verify": 0, "repaired": 0,
             "dependent_reads_refused": 0, "independent_reads_ok": 0, "data_lost": 0}
    for trial in range(LIBRARY_TRIALS):
        mode = MODES[trial % len(MODES)]
        work = tmp_path / f"trial{trial}"
        shutil.copytree(pristine, work)
        root, results = work / "store", work / "results"
        warm = ArtifactStore(root)
        for digest in original.values():
            read_closure(warm, digest)           # everything verified and cached in memory
        sha = rng.choice(reachable)
        what = damage(root / "objects" / sha[:2] / sha, mode, rng)
        where = f"trial {trial}: {what} sha256:{sha}"

        dependents, independents = check_detection(root, results, sha, warm)
        assert dependents >= 1, where
        tally["dependent_reads_refused"] += 2 * dependents
        tally["independent_reads_ok"] += 2 * independents
        tally["detected_on_read"] += 1

        code, out, err = assay(root, results, "verify")
        assert code == 1 and sha in out, (where, out, err)
        tally["found_by_verify"] += 1
        code, out, err = assay(root, results, "verify", "--repair", "--json")
        assert code == 0, (where, out, err)
        repaired = json.loads(out)["repaired"]
        assert repaired["refs"], where
        # The rerun (the "workflow" here: the writers) restores every digest.
        for seed in seeds:
            kill_writer(str(root), str(results), seed)
        assert artifacts_by_ref(results) == original, where
        assert bad_objects(root) == [] and broken_refs(root, results) == {}, where
        code, out, err = assay(root, results, "verify", "--full")
        assert code == 0, (where, out, err)
        tally["repaired"] += 1
        tally["trials"] += 1
        shutil.rmtree(work)
    report("corruption-library", modes=list(MODES), reachable_objects=len(reachable), **tally)


# --- the workflow: verify --repair, then snakemake recomputes only what was damaged -----


def _job_of(ref_name: str) -> str:
    top, _, rest = ref_name.partition("/")
    return f"{BY_REF_DIR[top].stage}/{rest[:-len('.json')]}"


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
def test_workflow_repair_recomputes_only_the_damaged_jobs(mode, tmp_path):
    finished = finished_study()
    workdir = copy_study(finished, tmp_path / "study")
    root, results = workdir / "store", workdir / "results"
    original = workflow_digests(workdir)
    reachable = _remember_closures(root, results)
    manifests = {digest[len("sha256:"):] for digest in _closures}
    # Seeded, but so that the three modes cover both kinds: a sidecar, a manifest, either.
    pool = {"flip": [s for s in reachable if s not in manifests],
            "truncate": [s for s in reachable if s in manifests], "delete": reachable}[mode]
    rng = random.Random(f"{SEED}/{mode}")
    sha = rng.choice(sorted(pool))
    what = damage(root / "objects" / sha[:2] / sha, mode, rng)
    what += " (manifest)" if sha in manifests else " (sidecar)"

    warm = ArtifactStore(root)
    dependents, _ = check_detection(root, results, sha, warm)
    assert dependents >= 1
    code, out, err = assay(root, results, "verify")
    assert code == 1 and sha in out, out + err
    code, out, err = assay(root, results, "verify", "--repair", "--json")
    assert code == 0, out + err
    repaired = {_job_of(name) for name in json.loads(out)["repaired"]["refs"]}
    assert repaired

    proc = snakemake(workdir)
    ran = jobs_run(proc)
    logs = job_logs(workdir)
    ran_jobs = {_job_of(out[len("results/"):]) for rule, out in ran
                if rule in ("run", "collect", "aggregate", "compare")}
    computed = {job for job in ran_jobs if "computed" in logs[job]}
    cache_hits = {job for job in ran_jobs if "action cache hit" in logs[job]}
    assert computed == repaired, (what, sha, computed, repaired)
    assert computed | cache_hits == ran_jobs
    assert workflow_digests(workdir) == original
    assert bad_objects(root) == [] and broken_refs(root, results) == {}
    code, out, err = assay(root, results, "verify", "--full")
    assert code == 0, out + err
    # And nothing is left to do.
    assert jobs_run(snakemake(workdir)) == set()
    report(f"corruption-workflow-{mode}", damaged=what, object=sha,
           dependent_artifacts=dependents, recomputed=sorted(computed),
           cache_hits=len(cache_hits), other_jobs=sorted(r for r, _ in ran if r not in (
               "run", "collect", "aggregate", "compare")), data_lost=0)
