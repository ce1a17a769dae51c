"""The object index (assay.store.object_index): what `assay gc` and `assay stats` read instead of
listing (and, for stats, opening) every object of a lab's store (issue 25, item 2).

Real processes and real stores throughout: a workflow's maintained index against a
rebuild from a scan; gc with the index against gc with a scan on two copies of one store;
writers killed with SIGKILL while they append; two Unix users (tests/lab_helpers.py)
writing one shared store at the same time; a store written before the index existed.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from lab_helpers import lab  # noqa: F401  (the module's two real users)
from reliability_helpers import age_tree, assay, copy_study, finished_study
from reliability_helpers import object_files as files_under_objects

from assay import ArtifactStore, ReplicateArtifact
from assay.store import object_index
from assay.tools.gc import collect_garbage

HOUR = 3600


def object_files(store: Path) -> dict[str, Path]:
    """Every file under objects/, by its name (the digest)."""
    return {Path(name).name: path for name, path in files_under_objects(store).items()}


def comparable(entries: dict[str, object_index.Entry]) -> dict[str, tuple]:
    """An index without its times (a log line's time is when it was written, a rebuilt
    entry's the object's mtime)."""
    return {sha: (e.size, e.kind, e.artifact_type, e.sidecars) for sha, e in entries.items()}


def rebuilt(store: Path) -> dict[str, tuple]:
    from assay.store.objects import ObjectStore

    return comparable(object_index.rebuild(store, ObjectStore(store).scan)[0])


def maintained(store: Path) -> dict[str, tuple]:
    return comparable(object_index.load(store).entries)


def stats_json(store: Path, results: Path, *extra: str) -> dict:
    code, out, err = assay(store, results, "stats", "--json", *extra)
    assert code == 0, err
    return json.loads(out)


def add_garbage(store_root: Path, n: int, seed: int) -> list[str]:
    """Artifacts no ref names (what a deleted study or an abandoned run leaves)."""
    rng = np.random.default_rng(seed)
    digests = []
    with ArtifactStore(store_root) as store:
        for i in range(n):
            sidecar = store.write_npz_sidecar("sidecars/x.npz", x=rng.standard_normal(50),
                                              metadata={"kind": "x"})
            digests.append(store.write_artifact(ReplicateArtifact(
                analysis_name="gone", condition_label=f"c{seed}", replicate=i + 1,
                payload={"metrics": {"v": float(i)}}, sidecars=[sidecar])))
    return digests


# --- a real workflow's index ------------------------------------------------------------
def test_a_workflows_index_equals_a_rescan_and_stats_read_it(tmp_path):
    """Every job of a real snakemake run logged what it published: the merged logs equal a
    rebuild from objects/, and `assay stats` from the index equals `stats --rescan`."""
    workdir = copy_study(finished_study(), tmp_path / "study")
    store, results = workdir / "store", workdir / "results"
    logs = [p for p in (store / "index").iterdir() if p.name.endswith(".log")]
    assert len(logs) > 3   # one per process that published objects (jobs, not a shared file)
    assert maintained(store) == rebuilt(store)
    assert set(maintained(store)) == set(object_files(store))

    from_index = stats_json(store, results)
    assert from_index.pop("objects_from") == "index" and from_index.pop("note") is None
    from_scan = stats_json(store, results, "--rescan")
    assert from_scan.pop("objects_from") == "rescan"
    from_scan.pop("note")
    assert from_index == from_scan
    assert from_index["artifacts"] > 10 and from_index["objects"] == len(object_files(store))


def test_gc_with_the_index_deletes_exactly_what_a_scan_based_gc_deletes(tmp_path):
    """Two copies of one store with old garbage, young garbage and a removed ref: gc
    reading the index and gc scanning objects/ (the index removed: a store older than it)
    report and delete the same objects and action records, and leave the same store."""
    workdir = copy_study(finished_study(), tmp_path / "study")
    store, results = workdir / "store", workdir / "results"
    add_garbage(store, 4, seed=1)
    comparison = json.loads((results / "comparisons" / "gyration.json").read_text())["digest"]
    (results / "comparisons" / "gyration.json").unlink()   # its manifest becomes garbage
    age_tree(store, 2 * HOUR)
    young = add_garbage(store, 2, seed=2)       # inside the grace period: kept by both
    with_index = copy_study(workdir, tmp_path / "with-index")
    with_scan = copy_study(workdir, tmp_path / "with-scan")
    shutil.rmtree(with_scan / "store" / "index")

    reports = {}
    for name, top in (("index", with_index), ("scan", with_scan)):
        code, out, err = assay(top / "store", top / "results", "gc", "--json")
        dry = json.loads(out)
        code, out, err = assay(top / "store", top / "results", "gc", "--delete", "--json")
        assert code == 0, err
        done = json.loads(out)
        assert done["objects_from"] == dry["objects_from"] == name
        assert ("no object index" in err) == (name == "scan")
        assert done["swept"] == dry["swept"]
        reports[name] = done
    a, b = reports["index"], reports["scan"]
    for key in ("swept", "garbage_objects", "garbage_bytes", "young_objects", "young_bytes",
                "live_objects", "live_bytes", "actions", "deleted_objects", "deleted_bytes"):
        assert a[key] == b[key], key
    assert comparison in a["swept"] and a["deleted_objects"] >= 4 * 2 + 1 and a["young_objects"] == 2 * len(young)
    assert sorted(object_files(with_index / "store")) == sorted(object_files(with_scan / "store"))
    assert sorted(p.name for p in (with_index / "store" / "actions").rglob("*.json")) == \
        sorted(p.name for p in (with_scan / "store" / "actions").rglob("*.json"))
    # gc --delete compacted: the snapshot alone (plus gc's own log) is what is there
    assert maintained(with_index / "store") == rebuilt(with_index / "store")
    code, out, err = assay(with_index / "store", with_index / "results", "verify", "--full")
    assert code == 0, out + err


def test_a_store_without_an_index_is_scanned_says_so_and_rescan_builds_it(tmp_path):
    """A store written before the index: gc and stats scan, say so on stderr, and give the
    same numbers; `assay gc --rescan` writes the index, after which both read it silently."""
    workdir = copy_study(finished_study(), tmp_path / "study")
    store, results = workdir / "store", workdir / "results"
    expected = stats_json(store, results)
    shutil.rmtree(store / "index")

    code, out, err = assay(store, results, "stats", "--json")
    scanned = json.loads(out)
    assert scanned.pop("objects_from") == "scan" and "no object index" in scanned.pop("note")
    assert "assay stats: note: this store has no object index" in err
    assert {k: v for k, v in expected.items() if k not in ("objects_from", "note")} == scanned
    code, out, err = assay(store, results, "gc")
    assert code == 0 and "`assay gc --rescan` builds the index" in err

    code, out, err = assay(store, results, "gc", "--rescan")   # a dry run that indexes
    assert code == 0 and "would delete 0 objects" in out and err == ""
    assert object_index.has_index(store)
    assert maintained(store) == rebuilt(store)
    code, out, err = assay(store, results, "stats")
    assert code == 0 and err == ""
    again = stats_json(store, results)
    assert again == expected


# --- killed writers ---------------------------------------------------------------------
WRITER = textwrap.dedent("""
    import json, os, sys
    from assay import ArtifactStore
    store = ArtifactStore(sys.argv[1])
    seed = int(sys.argv[2])
    print("ready", flush=True)
    i = 0
    while True:
        i += 1
        if i % 5 == 0:    # a manifest, with a sidecar, as artifacts are written
            side = store.objects.put_bytes(os.urandom(64))
            store.objects.put_bytes(json.dumps({
                "schema_version": 1, "artifact_type": "run", "n": [seed, i],
                "sidecars": [{"sha256": side.sha256, "size_bytes": side.size_bytes}]}).encode())
        else:
            store.objects.put_bytes(os.urandom(100 + i % 300))
""")


def test_index_survives_writers_killed_mid_append(tmp_path):
    """Writers publishing as fast as they can are killed with SIGKILL at random moments,
    three rounds of four. The index still loads; it names no object that is not there;
    it misses at most the one object each killed writer had published but not yet
    logged; a torn last line is ignored. gc with the index deletes exactly the indexed
    garbage and keeps the unindexed objects alive; `gc --rescan` then finds the rest."""
    store = tmp_path / "store"
    ArtifactStore(store).close()
    rng = random.Random(25)
    killed = 0
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    for round_ in range(3):
        procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(store),
                                   str(round_ * 10 + k)], stdout=subprocess.PIPE, env=env)
                 for k in range(4)]
        for proc in procs:
            assert proc.stdout.readline().strip() == b"ready"
        for proc in procs:
            time.sleep(rng.uniform(0.05, 0.4))
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            killed += 1
    # What a client that crashed mid-write leaves on NFS: a line without its newline (here
    # one that would parse, naming an object that is not there, if it were read).
    log = sorted((store / "index").glob("*.log"))[0]
    with open(log, "ab") as handle:
        handle.write(f"{'ab' * 32}\t5\tblob\t{time.time_ns()}".encode())

    on_disk = object_files(store)
    index = maintained(store)
    assert len(on_disk) > 200
    assert set(index) <= set(on_disk)            # no entry without its object
    unindexed = set(on_disk) - set(index)
    assert len(unindexed) <= killed              # at most one lost line per kill
    for sha, (size, kind, *_) in index.items():
        assert size == on_disk[sha].stat().st_size
    assert {kind for _, kind, *_ in index.values()} == {"blob", "manifest"}

    results = tmp_path / "results"
    results.mkdir()
    report = collect_garbage(store, results, grace_seconds=0, delete=True)
    assert report.objects_from == "index"
    assert report.deleted_objects == len(index)
    assert set(object_files(store)) == unindexed   # a lost line kept its object alive
    assert maintained(store) == {}
    report = collect_garbage(store, results, grace_seconds=0, delete=True, rescan=True)
    assert report.deleted_objects == len(unindexed) and object_files(store) == {}
    assert maintained(store) == {}


# --- two users --------------------------------------------------------------------------
LAB_WRITER = textwrap.dedent("""
    import json, sys
    from assay import ArtifactStore
    store = ArtifactStore(sys.argv[1])
    who, n = sys.argv[2], int(sys.argv[3])
    for i in range(n):
        if i % 4 == 0:
            store.objects.put_bytes(json.dumps({"schema_version": 1, "artifact_type": who,
                                                "i": i, "sidecars": []}).encode())
        else:
            store.objects.put_bytes(f"{who} {i}\\n".encode() * (1 + i % 7))
        store.objects.put_bytes(b"shared by both members\\n")   # the same object, twice
""")


def _gc_as_member(store: str, results: str) -> dict:
    report = collect_garbage(store, results, grace_seconds=0, delete=True)
    return {"deleted": report.deleted_objects, "from": report.objects_from,
            "logs_removed": report.index_logs_removed, "note": report.index_note}


def _index_as_member(store: str) -> dict:
    return maintained(Path(store))


def test_two_members_write_one_index_at_the_same_time(lab):
    """alice and bob publish into one shared store at the same time, each process into
    its own log: bob reads every object of both from the index, group-readable files
    owned by their writers; bob's gc deletes alice's garbage and compacts her old logs;
    what alice writes next is indexed again."""
    store = lab.shared_store("store-index")
    script = lab.top / "index_writer.py"
    script.write_text(LAB_WRITER)
    script.chmod(0o644)
    n = 200
    procs = [subprocess.Popen(**lab.popen_args(user, [sys.executable, str(script), str(store),
                                                      user.name, str(n)], lab.top, None))
             for user in (lab.alice, lab.bob)]
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err

    index = lab.call(lab.bob, _index_as_member, str(store))
    assert index == rebuilt(store) and len(index) == 2 * n + 1
    types = [kind for _, kind, artifact_type, _ in index.values() if kind == "manifest"]
    assert len(types) == 2 * (n // 4)
    owners = {}
    for path in (store / "index").iterdir():
        st = path.lstat()
        assert st.st_gid == lab.gid and st.st_mode & stat.S_IRGRP, path
        owners.setdefault(st.st_uid, []).append(path.name)
    assert {lab.alice.uid, lab.bob.uid} <= set(owners)

    age_tree(store, 2 * 24 * HOUR)              # old objects and old, finished logs
    bob_results = lab.own_dir(lab.bob, "bob-index") / "results"
    done = lab.call(lab.bob, _gc_as_member, str(store), str(bob_results))
    assert done == {"deleted": 2 * n + 1, "from": "index", "logs_removed": 2, "note": None}
    assert object_files(store) == {} and maintained(store) == {}

    procs = [subprocess.Popen(**lab.popen_args(lab.alice, [
        sys.executable, str(script), str(store), "alice", "8"], lab.top, None))]
    procs[0].communicate(timeout=300)
    assert lab.call(lab.bob, _index_as_member, str(store)) == rebuilt(store)
    assert len(rebuilt(store)) == 9


def _write_and_forge(store: str, alice_sha: str) -> str:
    """An outsider's log: a line saying alice's object is gone (to keep it from gc), a
    manifest that does not exist (to skew stats), and a real object of her own."""
    from assay import ArtifactStore

    with ArtifactStore(store) as s:
        own = s.objects.put_bytes(b"the outsider's own garbage\n").sha256
    object_index.note_gone(Path(store), [alice_sha])
    object_index.note_published(Path(store), "f" * 64, 10**12, "manifest", "run", [])
    return own


def _put_as_member(store: str, data: bytes) -> str:
    from assay import ArtifactStore

    with ArtifactStore(store) as s:
        return s.objects.put_bytes(data).sha256


def _stats_as_member(store: str, results: str) -> dict:
    from assay.tools.inventory import store_stats

    return store_stats(Path(store), Path(results))


def test_an_outsiders_log_neither_hides_garbage_nor_counts(lab):
    """A user the store does not trust (holding its group) writes a log: her `gone` line
    does not keep a member's garbage from gc, her forged manifest is not counted by
    stats (which says it left her log out), and her own garbage is swept as a scan
    would sweep it."""
    from lab_helpers import User

    store = lab.shared_store("store-index-outsider")
    garbage = lab.call(lab.alice, _put_as_member, str(store), b"alice's garbage\n")
    mallory = User(lab.mallory.name, lab.mallory.uid, lab.mallory.gid,
                   (*lab.mallory.groups, lab.gid), lab.mallory.home)
    hers = lab.call(mallory, _write_and_forge, str(store), garbage)
    bob_results = lab.own_dir(lab.bob, "bob-index-outsider") / "results"
    stats = lab.call(lab.bob, _stats_as_member, str(store), str(bob_results))
    assert stats["objects"] == 1 and stats["artifacts"] == 0
    assert "1 index log(s) written by users the store does not trust" in stats["note"]
    age_tree(store, 2 * HOUR)
    done = lab.call(lab.bob, _gc_as_member, str(store), str(bob_results))
    assert done["deleted"] == 2 and done["from"] == "index"
    assert object_files(store) == {}, hers
