"""Promise: gc running while jobs write never deletes an object that a ref written after
the gc began points to.

The race: a job publishes its sidecars, then its manifest, then (last) its ref. A gc that
marks from the refs in between sees those objects unreferenced. Two things protect them:

* the grace period: gc never deletes an unreferenced object younger than ``--grace``
  (default 3600 s), and re-checks the mtime just before it deletes;
* refreshing the mtime of old objects a job reuses (a deduplicated write, an action-cache
  hit), so they count as young again. Without it a job that reuses objects left
  unreferenced by an earlier run loses them to a gc with any grace period (found by these
  tests, fixed in objects.py / store.py).

``--grace 0`` while jobs run is unsafe by construction; the first test shows it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from reliability_helpers import (
    age_tree,
    assay,
    bad_objects,
    broken_refs,
    copy_study,
    finished_study,
    job_logs,
    kill_writer,
    report,
    snakemake_command,
    workflow_digests,
)

from assay import ArtifactStore, ReplicateArtifact, action_key, write_ref
from assay.tools.gc import collect_garbage

HOUR = 3600
TESTS = Path(__file__).resolve().parent


def _write_artifact(store: ArtifactStore, value: float = 1.0) -> str:
    sidecar = store.write_npz_sidecar("sidecars/series.npz", series=np.arange(100.0) * value,
                                      metadata={"kind": "series"})
    return store.write_artifact(ReplicateArtifact(
        analysis_name="gc", condition_label="c", replicate=1,
        payload={"metrics": {"v": value}}, sidecars=[sidecar]))


# --- the race, step by step (in-process, deterministic) ----------------------------------
def test_grace_zero_while_a_job_writes_loses_its_objects(tmp_path):
    """Why the grace period exists: a gc between a job's manifest and its ref, with
    --grace 0, sweeps the job's fresh objects and the ref then points at nothing."""
    root, results = tmp_path / "store", tmp_path / "results"
    store = ArtifactStore(root)
    digest = _write_artifact(store)                           # the job: objects ...
    time.sleep(0.01)
    swept = collect_garbage(root, results, grace_seconds=0, delete=True)    # ... gc ...
    write_ref(results / "replicates/gc/c/1.json", digest)    # ... then the ref
    assert swept.deleted_objects == 2
    assert list(broken_refs(root, results)) == ["replicates/gc/c/1.json"]
    code, out, _ = assay(root, results, "verify")
    assert code == 1 and ("MISSING" in out or "DAMAGED" in out)


def test_default_grace_keeps_a_running_jobs_fresh_objects(tmp_path):
    root, results = tmp_path / "store", tmp_path / "results"
    digest = _write_artifact(ArtifactStore(root))
    code, out, err = assay(root, results, "gc", "--delete")           # default grace
    assert code == 0, err
    write_ref(results / "replicates/gc/c/1.json", digest)
    assert broken_refs(root, results) == {}


def test_reusing_old_unreferenced_objects_survives_gc(tmp_path):
    """A job writes bytes an earlier run already stored (its ref since deleted, objects
    hours old): deduplication finds them, gc runs, the job writes its ref. Before the fix
    the deduplicated write left the old mtime and gc (default grace) deleted the objects."""
    root, results = tmp_path / "store", tmp_path / "results"
    _write_artifact(ArtifactStore(root))       # an earlier run; no ref names it any more
    age_tree(root / "objects", 2 * HOUR)
    digest = _write_artifact(ArtifactStore(root))   # the job: every write deduplicates
    swept = collect_garbage(root, results, grace_seconds=HOUR, delete=True)
    write_ref(results / "replicates/gc/c/1.json", digest)
    assert swept.deleted_objects == 0
    assert broken_refs(root, results) == {}


def test_action_cache_hit_on_old_artifact_survives_gc(tmp_path):
    """A job's action-cache hit on an artifact whose ref was deleted hours ago (say a
    fresh results/ against an old store), then gc, then the job's ref."""
    root, results = tmp_path / "store", tmp_path / "results"
    store = ArtifactStore(root)
    key = action_key(stage="collect", plugin="gc", code_digest="0" * 64, settings={})
    store.record_action(key, _write_artifact(store))
    age_tree(root / "objects", 2 * HOUR)
    digest = ArtifactStore(root).lookup_action(key)       # the job: a cache hit
    assert digest is not None
    swept = collect_garbage(root, results, grace_seconds=HOUR, delete=True)
    write_ref(results / "replicates/gc/c/1.json", digest)
    assert swept.deleted_objects == 0
    assert broken_refs(root, results) == {}


# --- gc in a loop, in other processes, while real writers run ---------------------------
class GcLoop:
    """`assay gc --delete --grace G` run again and again in subprocesses, until stopped."""

    def __init__(self, store: Path, results: Path, grace: float) -> None:
        self.command = [sys.executable, "-m", "assay.cli", "--store", str(store),
                        "--results", str(results), "--no-progress", "gc", "--delete",
                        "--grace", str(grace), "--json"]
        self.passes: list[dict] = []      # {started, finished, report}
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.time()
            proc = subprocess.run(self.command, capture_output=True, text=True, timeout=120)
            if proc.returncode != 0:
                self.errors.append(proc.stderr[-2000:])
                continue
            self.passes.append({"started": started, "finished": time.time(),
                                "report": json.loads(proc.stdout)})

    def start(self) -> "GcLoop":
        self._thread.start()
        deadline = time.monotonic() + 60
        while not self.passes and not self.errors and time.monotonic() < deadline:
            time.sleep(0.02)       # the first pass has finished: the loop is running
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(180)

    @property
    def deleted(self) -> int:
        return sum(p["report"]["deleted_objects"] for p in self.passes)


@pytest.mark.stress   # a long trial (writers and gc in a loop): not in the quick loop
def test_gc_loop_while_writers_rewrite_loses_nothing(tmp_path):
    """Two writer processes rerun 20 earlier writes (each: sidecars of every kind, manifests,
    action records, refs) while `assay gc --delete --grace 30` runs in a loop. Like
    Snakemake rerunning a job, each writer first deletes the refs it is about to rewrite, so
    everything it writes deduplicates onto objects that are two hours old and, for that
    moment, unreferenced. Older objects no ref names are real garbage and must go."""
    root, results = tmp_path / "store", tmp_path / "results"
    seeds, garbage_seeds = range(20), range(100, 104)
    for seed in garbage_seeds:
        kill_writer(str(root), str(tmp_path / "old-results"), seed)
    shutil.rmtree(tmp_path / "old-results")
    for seed in seeds:
        kill_writer(str(root), str(results), seed)
    garbage = {p.name for p in (root / "objects").rglob("*") if p.is_file()} - _live(
        root, results)
    age_tree(root, 2 * HOUR)

    loop = GcLoop(root, results, grace=30).start()
    gc_began = loop.passes[0]["started"] if loop.passes else time.time()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get(
        "PYTHONPATH", "")])}
    writers = [subprocess.Popen(
        [sys.executable, str(TESTS / "reliability_helpers.py"), "write", "--rerun",
         str(root), str(results), *[str(s) for s in seeds if s % 2 == first]],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        for first in (0, 1)]
    outputs = [w.communicate(timeout=180) for w in writers]
    writes_ended = time.time()
    loop.stop()
    for writer, (out, err) in zip(writers, outputs):
        assert writer.returncode == 0, err[-3000:]
    assert not loop.errors, loop.errors[0]

    finished = [json.loads(line) for out, _ in outputs for line in out.splitlines()]
    refs = {name: digest for item in finished for name, digest in item["refs"].items()}
    lost = broken_refs(root, results)
    assert lost == {}
    assert bad_objects(root) == []
    code, out, err = assay(root, results, "verify", "--full")
    assert code == 0, out + err
    live = {p.name for p in (root / "objects").rglob("*") if p.is_file()}
    report("gc-writers", gc_passes=len(loop.passes),
           gc_passes_during_writes=sum(p["started"] < writes_ended for p in loop.passes),
           objects_deleted_by_gc=loop.deleted, refs_rewritten=len(refs),
           writers_finished_after_gc_began=sum(i["finished_at"] > gc_began for i in finished),
           old_garbage_swept=len(garbage - live), data_lost=len(lost))
    assert len(finished) == len(seeds) and len(refs) == 4 * len(seeds)
    assert sum(p["started"] < writes_ended for p in loop.passes) >= 2
    assert garbage and not garbage & live, "gc must really have deleted the old garbage"


def _live(root: Path, results: Path) -> set[str]:
    needed: set[str] = set()
    broken_refs(root, results, needed=needed)
    return needed


@pytest.mark.slow
def test_gc_loop_while_snakemake_forceall_reuses_old_objects(tmp_path):
    """The README's `snakemake --forceall` (every job an action-cache hit) on a store whose
    objects are two hours old, while a cron job runs `assay gc --delete --grace 30` in a
    loop. Snakemake deletes each job's ref before the job runs, so for that moment the
    job's old artifact is unreferenced. Every ref must verify and keep its digest."""
    workdir = copy_study(finished_study(), tmp_path / "study")
    expected = workflow_digests(workdir)
    store, results = workdir / "store", workdir / "results"
    age_tree(store, 2 * HOUR)

    loop = GcLoop(store, results, grace=30).start()
    proc = subprocess.run(snakemake_command(workdir, "--forceall"), cwd=workdir,
                          capture_output=True, text=True, timeout=300)
    loop.stop()
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert not loop.errors, loop.errors[0]

    assert workflow_digests(workdir) == expected
    lost = broken_refs(store, results)
    assert lost == {}
    code, text, err = assay(store, results, "verify", "--full")
    assert code == 0, text + err
    logs = job_logs(workdir)
    hits = sum("action cache hit" in log for log in logs.values())
    computed = sum("computed" in log for log in logs.values())
    report("gc-workflow", gc_passes=len(loop.passes), objects_deleted_by_gc=loop.deleted,
           jobs_cache_hit=hits, jobs_recomputed=computed, refs=len(expected),
           data_lost=len(lost))
    assert len(loop.passes) >= 2 and hits + computed == len(expected)


# --- what a crash leaves, and --grace 0 --------------------------------------------------
def test_gc_sweeps_ref_and_action_temporaries_left_by_a_killed_job(tmp_path):
    import tempfile

    root, results = tmp_path / "store", tmp_path / "results"
    ArtifactStore(root)
    leftovers = []
    for directory, name in ((results / "replicates" / "gc" / "c", "1.json"),
                            (root / "actions" / "ab", "ab" * 32 + ".json")):
        directory.mkdir(parents=True)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{name}.", suffix=".tmp")
        os.write(fd, b'{"digest":"sha256:')   # what atomic_write_bytes leaves when killed
        os.close(fd)
        leftovers.append(Path(tmp))
    age_tree(tmp_path, 2 * HOUR)
    code, _, err = assay(root, results, "gc", "--delete")
    assert code == 0, err
    assert not any(p.exists() for p in leftovers)


def test_gc_grace_zero_warns(tmp_path):
    """`--grace 0` deletes running jobs' fresh objects (the first test above): the command
    says so."""
    root, results = tmp_path / "store", tmp_path / "results"
    ArtifactStore(root)
    code, _, err = assay(root, results, "gc", "--delete", "--grace", "0")
    assert code == 0
    assert "grace" in err.lower() and "warn" in err.lower()
