"""Promise: concurrent writers never corrupt each other.

Eight processes (fresh interpreters, like cluster jobs) meet at a Barrier and then write
into one store at the same moment: artifacts every process writes (the same bytes), some
that pairs of processes share, and artifacts of their own; the same refs and action
records from several processes at once. Then two real Snakemake workflows, in two working
directories, share one store and run at the same time.

Afterwards: no process failed, every artifact verifies, every duplicate is stored once
(the store holds exactly the distinct objects, nothing more), and nothing is left in
store/tmp.
"""

from __future__ import annotations

import copy
import json
import multiprocessing as mp
import subprocess
import traceback
from pathlib import Path

import pytest
from reliability_helpers import (
    REDUCED_CONFIG,
    assay,
    bad_objects,
    broken_actions,
    broken_refs,
    object_files,
    report,
    results_temporaries,
    snakemake_command,
    store_temporaries,
    workflow_digests,
)
from workflow_helpers import write_config

N_PROCESSES = 8
ROUNDS = 3
SHARED = 3          # artifacts every process writes, per round
TIMEOUT_S = 120


def _artifact_plan(worker: int, round_: int) -> list[tuple[str, int, int]]:
    """(kind, content id, replicate) of what ``worker`` writes in ``round_``. Content ids
    decide the bytes: equal ids from different workers give identical artifacts."""
    plan = [("shared", round_ * 100 + j, j + 1) for j in range(SHARED)]
    pair = worker // 2                                    # workers 2k and 2k+1 share this
    plan.append(("pair", round_ * 100 + 10 + pair, pair + 1))
    plan.append(("own", round_ * 100 + 50 + worker, worker + 1))
    return plan


def _worker(root: str, results: str, worker: int, barrier, queue) -> None:
    try:
        import numpy as np

        from assay import ArtifactStore, ReplicateArtifact, action_key, write_ref

        store = ArtifactStore(root)
        written = []
        for round_ in range(ROUNDS):
            plan = _artifact_plan(worker, round_)
            barrier.wait(timeout=TIMEOUT_S)             # every process writes from here
            for kind, content, replicate in plan:
                rng = np.random.default_rng(content)
                values = rng.standard_normal(int(rng.integers(50_000, 200_000)))
                npz = store.write_npz_sidecar("sidecars/values.npz", values=values,
                                              compress=bool(content % 2),
                                              metadata={"kind": "values"})
                table = store.write_table_sidecar(
                    "sidecars/table.csv", {"i": np.arange(200), "v": np.round(values[:200], 6)},
                    metadata={"kind": "table"})
                staged = store.resolve_sidecar("sidecars/blob.bin")
                staged.parent.mkdir(parents=True, exist_ok=True)
                staged.write_bytes(rng.bytes(100_000))
                blob = store.register_sidecar("sidecars/blob.bin", metadata={"kind": "blob"})
                label = f"{kind}{round_}"
                digest = store.write_artifact(ReplicateArtifact(
                    analysis_name="race", condition_label=label, replicate=replicate,
                    payload={"metrics": {"mean": float(values.mean())}, "content": content},
                    sidecars=[npz, table, blob]))
                key = action_key(stage="collect", plugin="race", code_digest="0" * 64,
                                 settings={"content": content})
                store.record_action(key, digest, stage="collect", plugin="race")
                name = f"replicates/race/{label}/{replicate}.json"
                write_ref(Path(results) / name, digest, artifact_type="replicate",
                          analysis="race", condition=label, replicate=replicate)
                written.append((name, digest, kind))
        store.close()
        queue.put(("ok", worker, written))
    except BaseException:
        queue.put(("error", worker, traceback.format_exc()))


@pytest.mark.stress
def test_eight_processes_write_one_store_at_once(tmp_path):
    root, results = tmp_path / "store", tmp_path / "results"
    ctx = mp.get_context("spawn")
    barrier, queue = ctx.Barrier(N_PROCESSES), ctx.Queue()
    workers = [ctx.Process(target=_worker, args=(str(root), str(results), i, barrier, queue))
               for i in range(N_PROCESSES)]
    for process in workers:
        process.start()
    outcomes = [queue.get(timeout=TIMEOUT_S * 2) for _ in workers]
    for process in workers:
        process.join(TIMEOUT_S)
    errors = [o[2] for o in outcomes if o[0] != "ok"]
    assert not errors, errors[0]
    assert all(p.exitcode == 0 for p in workers)

    by_name: dict[str, set[str]] = {}
    writes = 0
    for _, _, written in outcomes:
        for name, digest, _ in written:
            by_name.setdefault(name, set()).add(digest)
            writes += 1
    # The same content from different processes gave the same digest ...
    assert all(len(d) == 1 for d in by_name.values()), by_name
    # ... and every artifact verifies, sidecars included, as do the action records.
    assert broken_refs(root, results) == {}
    assert broken_actions(root) == {}
    assert bad_objects(root) == []
    # Duplicates are stored once: the store holds exactly the objects the refs need.
    needed: set[str] = set()
    broken_refs(root, results, needed=needed)
    stored = {name.split("/")[1] for name in object_files(root)}
    assert stored == needed
    assert store_temporaries(root) == [] and results_temporaries(results) == []
    code, out, err = assay(root, results, "verify", "--full")
    assert code == 0, out + err
    report("concurrency-8", processes=N_PROCESSES, rounds=ROUNDS, artifact_writes=writes,
           distinct_artifacts=len(by_name), objects_stored=len(stored), errors=len(errors),
           data_lost=0)


@pytest.mark.slow
def test_two_workflows_share_one_store_at_the_same_time(tmp_path):
    store = tmp_path / "shared-store"
    workdirs = []
    for name, results in (("a", "results"), ("b", "out")):
        workdir = tmp_path / name
        workdir.mkdir()
        config = copy.deepcopy(REDUCED_CONFIG)
        config["store"], config["results"] = str(store), results
        write_config(workdir, config)
        workdirs.append((workdir, workdir / results))
    procs = [subprocess.Popen(snakemake_command(w), cwd=w, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for w, _ in workdirs]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    for proc, out in zip(procs, outputs):
        assert proc.returncode == 0, out[-4000:]

    refs = {}
    for workdir, results in workdirs:
        assert broken_refs(store, results) == {}
        code, out, err = assay(store, results, "verify", "--full")
        assert code == 0, out + err
        refs[workdir.name] = {
            str(p.relative_to(results)): p.read_bytes() for p in results.glob(
                "[rc]*/**/*.json")}
    # Same study, same digests, whichever workflow computed an artifact first.
    assert refs["a"] == refs["b"] and len(refs["a"]) == len(workflow_digests(workdirs[0][0]))
    needed: set[str] = set()
    broken_refs(store, workdirs[0][1], needed=needed)
    for record in (store / "actions").glob("??/*.json"):
        body = json.loads(record.read_bytes())
        if body.get("stage") == "plot":        # cached figures: named by the action cache
            needed.add(body["digest"].split(":", 1)[1])
    stored = {name.split("/")[1] for name in object_files(store)}
    assert stored == needed                      # each shared artifact stored once
    assert bad_objects(store) == [] and store_temporaries(store) == []
    logs = [(w / "out" if w.name == "b" else w / "results") for w, _ in workdirs]
    hits = sum("action cache hit" in p.read_text() for d in logs
               for p in (d / "logs").rglob("*.log"))
    report("concurrency-workflows", workflows=2, refs_each=len(refs["a"]),
           objects_stored=len(stored), jobs_served_from_the_other_workflows_work=hits,
           data_lost=0)
