"""A store shared by a lab (issue 16), tried with real Unix users and a real group.

A group ``lab<tag>`` with two members (alice, bob) and one outsider (mallory) is created
for this module and deleted afterwards (tests/lab_helpers.py). Assay runs as them, as the
real `snakemake` and `assay` commands or, for library-level checks, in a forked child that
has dropped to their uid, gid and groups. Nothing about permissions is mocked.

What is shown: two members run the workflow on one shared store one after the other and
at the same time, with the digests of a single-user run; the second member's changed
study writes into the store; one member's `assay gc --delete` removes exactly the garbage
the other left and nothing either of them still uses; a record planted by someone outside
the group is ignored (the job recomputes), reported by `assay verify`, and a pickle of
theirs is refused; a store someone may not write gives one clear error, never a
traceback; an existing single-user store made shared with `assay share-store` is then
used by the second member. Each test prints one ``SHARED`` line of numbers
(`pytest tests/test_shared_store.py -s | grep SHARED`), quoted in docs/reliability.md.
"""

from __future__ import annotations

import copy
import json
import os
import stat
import time
from pathlib import Path

import pytest

from lab_helpers import Lab, User, can_make_users, lab  # noqa: F401 (lab: a fixture)
from reliability_helpers import REDUCED_CONFIG, bad_objects, finished_study, flip_byte, job_logs
from workflow_helpers import digests, snakemake, write_config

needs_users = pytest.mark.skipif(can_make_users() is not None,
                                 reason=str(can_make_users()))

# One parameter changed: the "strong" condition's runs, and what depends on them, rerun.
CHANGED_CONFIG = copy.deepcopy(REDUCED_CONFIG)
CHANGED_CONFIG["conditions"][1]["params"] = {"surface_epsilon": 2.0}
TWO_HOURS = 2 * 3600


@pytest.fixture(scope="module")
def baseline() -> dict[str, str]:
    """The digests of a single-user run of the reduced study (root, private store)."""
    return digests(finished_study())


@pytest.fixture(scope="module")
def changed_baseline(tmp_path_factory) -> dict[str, str]:
    workdir = tmp_path_factory.mktemp("changed-single-user")
    write_config(workdir, CHANGED_CONFIG)
    snakemake(workdir)
    return digests(workdir)


def report(name: str, **numbers) -> None:
    print(f"\nSHARED {name}: {json.dumps(numbers, sort_keys=True)}")


def with_store(config: dict, store: Path) -> dict:
    return {**copy.deepcopy(config), "store": str(store)}


def mode_problems(store: Path, gid: int) -> list[str]:
    """Everything in the store that breaks the shared-store modes."""
    problems = []
    for dirpath, dirnames, filenames in os.walk(store):
        for name in [""] + dirnames + filenames:
            path = Path(dirpath) / name
            st = path.lstat()
            mode = stat.S_IMODE(st.st_mode)
            rel = path.relative_to(store).as_posix() or "."
            if st.st_gid != gid:
                problems.append(f"{rel}: group {st.st_gid}, not the store's {gid}")
            if stat.S_ISDIR(st.st_mode):
                if mode & 0o2070 != 0o2070:
                    problems.append(f"{rel}: directory {stat.filemode(st.st_mode)}")
            elif rel.startswith("objects/"):
                if mode != 0o444:
                    problems.append(f"{rel}: object {stat.filemode(st.st_mode)}")
            elif mode & 0o040 == 0 or mode & 0o022:
                problems.append(f"{rel}: file {stat.filemode(st.st_mode)}")
    return problems


def logs_with(workdir: Path, text: str, since: float = 0.0) -> list[str]:
    """Jobs whose log (written after ``since``) holds ``text``."""
    logs = workdir / "results" / "logs"
    return sorted(name for name, log in job_logs(workdir).items()
                  if text in log and (logs / f"{name}.log").stat().st_mtime >= since)


# --- library-level checks, run in a child that dropped to the user ----------------------
def _write_blob(store: str, data: bytes) -> tuple[str, str]:
    from assay import ArtifactStore

    with ArtifactStore(store) as s:
        ref = s.write_bytes_sidecar("blob.bin", data)
        return ref.sha256, str(s.objects.path_for(ref.sha256))


def _chmod(path: str, mode: int) -> None:
    os.chmod(path, mode)


def _read_blob(store: str, sha: str, size: int) -> bytes:
    from assay import ArtifactStore, Sidecar

    with ArtifactStore(store) as s:
        return s.validate_sidecar(Sidecar("blob.bin", sha, size)).read_bytes()


def _plant(store: str, key: str, digest: str) -> tuple[str, str]:
    """An outsider replaces a record with her own, and stores a pickle."""
    from assay import ArtifactStore

    with ArtifactStore(store) as s:
        path = s.record_action(key, digest, stage="run", plugin="polymer_langevin")
        return str(path), s.save_object({"model": "mallory's"}, "Model", "model")


def _plant_figure(store: str, key: str) -> str:
    """An outsider's record for a figure's key, naming bytes of her own."""
    from assay import ArtifactStore

    with ArtifactStore(store) as s:
        stored = s.objects.put_bytes(b"\x89PNG mallory's figure")
        return str(s.record_action(key, stored.digest, stage="plot",
                                   plugin="radius_of_gyration", figure="summary.png"))


def _lookup(store: str, key: str) -> str | None:
    from assay import ArtifactStore

    with ArtifactStore(store) as s:
        return s.lookup_action(key)


def _load(store: str, object_id: str) -> object:
    from assay import ArtifactStore

    with ArtifactStore(store) as s:
        return s.load_object(object_id)


def _leave_garbage(store: str) -> dict[str, str]:
    """A member's leftovers: an unreferenced artifact with its action record, a .part."""
    from assay import ArtifactStore, RunArtifact, action_key

    with ArtifactStore(store) as s:
        sidecar = s.write_bytes_sidecar("junk.bin", b"junk " * 1000)
        digest = s.write_artifact(RunArtifact(
            analysis_name="junk", condition_label="junk", replicate=1, sidecars=[sidecar]))
        key = action_key(stage="run", plugin="junk", code_digest="c", settings={})
        record = s.record_action(key, digest, stage="run", plugin="junk")
        part = s.objects.new_tmp_path()
        part.write_bytes(b"half")
        paths = {"sidecar": str(s.objects.path_for(sidecar.sha256)),
                 "manifest": str(s.objects.path_for(digest.split(":")[1])),
                 "record": str(record), "part": str(part)}
    old = time.time() - TWO_HOURS
    for path in paths.values():
        os.utime(path, (old, old))
    return paths


def age_everything(store: Path) -> None:
    """As if the store's contents were written two hours ago (root may set any mtime)."""
    old = time.time() - TWO_HOURS
    for dirpath, _, filenames in os.walk(store):
        for name in filenames:
            os.utime(Path(dirpath) / name, (old, old), follow_symlinks=False)


def object_of(digest: str, store: Path) -> Path:
    return store / "objects" / digest[7:9] / digest[7:]


def _sidecar_of(store: str, digest: str) -> str:
    from assay import ArtifactStore

    with ArtifactStore(store) as s:
        return s.read_artifact(digest).sidecars[0].sha256


def figure_records(store: Path) -> list[Path]:
    return [p for p in (store / "actions").rglob("*.json")
            if json.loads(p.read_bytes()).get("stage") == "plot"]


def run_key(workdir: Path, config: dict, condition: str, replicate: int) -> str:
    from assay.pipeline.stages import stage_action_key
    from assay.pipeline.workflow import WorkflowPlan, spec_json

    class Wildcards:
        pass

    wildcards = Wildcards()
    wildcards.condition, wildcards.replicate = condition, str(replicate)
    spec = spec_json(WorkflowPlan(config, workdir).spec("run", wildcards))
    return stage_action_key(spec, [])


# --- the tests -------------------------------------------------------------------------
@pytest.mark.slow
def test_two_members_share_one_store_one_after_the_other(lab: Lab, baseline, changed_baseline):
    """alice runs the study into the lab's store; bob's identical study is all cache hits,
    his changed study writes into the store; every member may write what assay created;
    bob's gc removes alice's garbage and nothing either of them uses; a record planted by
    an outsider is reported and ignored."""
    store = lab.shared_store("store")
    alice_dir = lab.study(lab.alice, "alice-study", with_store(REDUCED_CONFIG, store))
    started = time.monotonic()
    lab.snakemake(lab.alice, alice_dir)
    alice_s = time.monotonic() - started
    assert digests(alice_dir) == baseline
    assert mode_problems(store, lab.gid) == []

    bob_dir = lab.study(lab.bob, "bob-study", with_store(REDUCED_CONFIG, store))
    started = time.monotonic()
    lab.snakemake(lab.bob, bob_dir)
    bob_hits_s = time.monotonic() - started
    assert digests(bob_dir) == baseline
    computed = logs_with(bob_dir, "] computed ")
    assert computed == [] and len(logs_with(bob_dir, "action cache hit")) == 11

    lab.write_config(lab.bob, bob_dir, with_store(CHANGED_CONFIG, store))
    started = time.monotonic()
    proc = lab.snakemake(lab.bob, bob_dir)
    bob_changed_s = time.monotonic() - started
    assert digests(bob_dir) == changed_baseline
    recomputed = logs_with(bob_dir, "] computed ")
    assert recomputed == ["aggregate/gyration/strong", "collect/gyration/strong/1",
                          "collect/gyration/strong/2", "compare/gyration",
                          "run/strong/1", "run/strong/2"]
    assert "Traceback" not in proc.stderr + "".join(job_logs(bob_dir).values())
    assert mode_problems(store, lab.gid) == []
    assert bad_objects(store) == []
    owners = {lab.alice.uid: 0, lab.bob.uid: 0}
    for path in (store / "objects").rglob("*"):
        if path.is_file():
            owners[path.stat().st_uid] += 1

    # A day later: everything is old; alice left an unreferenced artifact behind. The
    # figures both members' results show keep their cached bytes (no ref names them).
    age_everything(store)
    garbage = lab.call(lab.alice, _leave_garbage, str(store))
    import hashlib

    records = [json.loads(p.read_bytes())["digest"] for p in figure_records(store)]
    figures = len(records)
    shown = {"sha256:" + hashlib.sha256(p.read_bytes()).hexdigest() for d in (alice_dir, bob_dir)
             for p in (d / "results" / "plots").rglob("*.png")}
    dead_objects = len(set(records) - shown)
    dead_records = sum(1 for r in records if r not in shown)
    gc = lab.assay(lab.bob, "--store", str(store), "--results", str(bob_dir / "results"),
                   "gc", "--delete")
    assert gc.returncode == 0, gc.stderr
    assert f"kept what the refs of another member's results keep: {alice_dir / 'results'}" \
        in gc.stdout
    assert f"figures: {len(shown)} under plots/, their cached bytes kept" in gc.stdout
    assert f"deleted {2 + dead_objects} objects" in gc.stdout, gc.stdout
    assert f"1 stale tmp entries (4 B), {1 + dead_records} action records" \
        in gc.stdout, gc.stdout
    assert len(figure_records(store)) == figures - dead_records
    assert not any(os.path.exists(p) for p in garbage.values())
    for user, workdir in ((lab.alice, alice_dir), (lab.bob, bob_dir)):
        verify = lab.assay(user, "--store", str(store), "--results", str(workdir / "results"),
                           "verify", "--full")
        assert verify.returncode == 0, verify.stdout + verify.stderr
    report("one after the other", alice_first_run_s=round(alice_s, 1),
           bob_all_hits_s=round(bob_hits_s, 1), bob_changed_s=round(bob_changed_s, 1),
           recomputed=len(recomputed), objects_by_alice=owners[lab.alice.uid],
           objects_by_bob=owners[lab.bob.uid], gc_deleted_objects=2 + dead_objects,
           gc_deleted_records=1 + dead_records, gc_deleted_tmp=1, figures=figures,
           figures_kept=len(shown),
           mode_problems=0)

    # mallory, once in the lab (her processes still hold the group), is not a member now:
    # she swaps alice's record of run free/1 for strong/1's artifact and stores a pickle.
    key = run_key(alice_dir, with_store(REDUCED_CONFIG, store), "free", 1)
    poisoned = digests(alice_dir)["results/runs/strong/1.json"]
    mallory = User(lab.mallory.name, lab.mallory.uid, lab.mallory.gid,
                   (*lab.mallory.groups, lab.gid), lab.mallory.home)
    record, pickle_id = lab.call(mallory, _plant, str(store), key, poisoned)
    assert Path(record).stat().st_uid == lab.mallory.uid
    verify = lab.assay(lab.bob, "--store", str(store), "--results", str(bob_dir / "results"),
                       "verify")
    assert verify.returncode == 1
    assert (f"UNTRUSTED ACTION RECORD {key}: written by {lab.mallory.name} "
            f"(uid {lab.mallory.uid}), who is not trusted (trusted: {lab.bob.name}, root, "
            f"members of {lab.group}); jobs ignore it and recompute") in verify.stdout
    assert lab.call(lab.bob, _lookup, str(store), key) is None
    with pytest.raises(Exception) as refused:
        lab.call(lab.bob, _load, str(store), pickle_id)
    object_path = store / "objects" / pickle_id[7:9] / pickle_id[7:]
    assert str(refused.value) == (
        f"refusing to unpickle binary {pickle_id}: its object {object_path} was written by "
        f"{lab.mallory.name} (uid {lab.mallory.uid}), who is not trusted (trusted: "
        f"{lab.bob.name}, root, members of {lab.group}). Unpickling runs code: save the "
        "object again yourself (save_object), or add its writer to store_sharing.trusted in "
        "the study config")
    trusting = lab.call(lab.bob, _lookup_trusting_any, str(store), key)
    assert trusting == poisoned      # what the trust rule prevents

    trusting_verify = lab.assay(lab.bob, "--store", str(store), "--results",
                                str(bob_dir / "results"), "verify", "--trusted", "any")
    assert trusting_verify.returncode == 0, trusting_verify.stdout

    fresh = lab.study(lab.bob, "bob-fresh", with_store(REDUCED_CONFIG, store))
    lab.snakemake(lab.bob, fresh)
    assert digests(fresh) == baseline
    assert logs_with(fresh, "] computed ") == ["run/free/1"]
    assert logs_with(fresh, f"ignoring the action record {key[:12]}: it {record} was written "
                            f"by {lab.mallory.name} (uid {lab.mallory.uid}), who is not "
                            f"trusted") == ["run/free/1"]
    assert Path(record).stat().st_uid == lab.bob.uid     # bob's record replaced hers
    report("untrusted record", planted=1, reported_by_verify=1, recomputed=1,
           digests_equal=len(baseline), pickle_refused=1)

    # The figure cache applies the same rule: mallory's plain record for the key of bob's
    # summary figure, naming her own bytes, is not served by a forced plot rerun.
    import hashlib

    summary = fresh / "results" / "plots" / "gyration" / "summary.png"
    drawn = summary.read_bytes()
    figure_digest = "sha256:" + hashlib.sha256(drawn).hexdigest()
    [figure_key] = [json.loads(p.read_bytes())["key"] for p in figure_records(store)
                    if json.loads(p.read_bytes())["digest"] == figure_digest
                    and json.loads(p.read_bytes()).get("figure") == "summary.png"]
    forged = lab.call(mallory, _plant_figure, str(store), figure_key)
    lab.snakemake(lab.bob, fresh, "--forcerun", "plot_summary")
    assert summary.read_bytes() == drawn
    plot_log = (fresh / "results" / "logs" / "plot" / "gyration" / "summary.log").read_text()
    assert "figure cache hit" not in plot_log, plot_log
    verify = lab.assay(lab.bob, "--store", str(store), "--results", str(fresh / "results"),
                       "verify")
    assert f"UNTRUSTED ACTION RECORD {figure_key}" not in verify.stdout   # bob's own now
    assert Path(forged).stat().st_uid == lab.bob.uid     # his redrawn figure replaced hers

    # bob's hits named alice's day-old objects, which he may not touch (read-only, hers):
    # his verified copies replaced them, so gc sees them as just used.
    run_strong = object_of(baseline["results/runs/strong/1.json"], store)
    assert run_strong.stat().st_uid == lab.bob.uid
    assert time.time() - run_strong.stat().st_mtime < 600
    refreshed = sum(1 for p in (store / "objects").rglob("*")
                    if p.is_file() and time.time() - p.stat().st_mtime < 600
                    and p.stat().st_uid == lab.bob.uid)

    # A damaged object of bob's, under alice's refs: alice repairs, her rerun restores it.
    trajectory = object_of("sha256:" + lab.call(lab.alice, _sidecar_of, str(store),
                                                 baseline["results/runs/strong/1.json"]), store)
    assert trajectory.stat().st_uid == lab.bob.uid
    flip_byte(trajectory, 100)
    repair = lab.assay(lab.alice, "--store", str(store), "--results",
                       str(alice_dir / "results"), "verify", "--repair")
    assert repair.returncode == 0, repair.stdout + repair.stderr
    assert "removed: 1 damaged objects" in repair.stdout, repair.stdout
    rerun_started = time.time() - 1
    lab.snakemake(lab.alice, alice_dir)
    assert digests(alice_dir) == baseline
    assert logs_with(alice_dir, "] computed ", since=rerun_started) == ["run/strong/1"]
    report("refresh and repair", refreshed_by_copy=refreshed, repaired_objects=1,
           recomputed=1)


def _lookup_trusting_any(store: str, key: str) -> str | None:
    from assay import ArtifactStore
    from assay.store.sharing import SharingSettings

    with ArtifactStore(store, sharing=SharingSettings(trusted=("any",))) as s:
        return s.lookup_action(key)


@pytest.mark.slow
def test_two_members_run_at_the_same_time(lab: Lab, baseline):
    import subprocess

    store = lab.shared_store("store-concurrent")
    dirs = {user.name: (user, lab.study(user, f"{user.name}-together",
                                       with_store(REDUCED_CONFIG, store)))
            for user in (lab.alice, lab.bob)}
    started = time.monotonic()
    procs = {name: subprocess.Popen(**lab.popen_args(user, lab.snakemake_argv(workdir),
                                                     workdir, None))
             for name, (user, workdir) in dirs.items()}
    outputs = {name: proc.communicate(timeout=600) for name, proc in procs.items()}
    elapsed = time.monotonic() - started
    for name, proc in procs.items():
        assert proc.returncode == 0, outputs[name][1][-4000:]
    for _, workdir in dirs.values():
        assert digests(workdir) == baseline
    assert mode_problems(store, lab.gid) == []
    assert bad_objects(store) == []
    objects = [p for p in (store / "objects").rglob("*") if p.is_file()]
    assert len(objects) == len({p.name for p in objects})
    computed = {name: len(logs_with(workdir, "] computed ")) for name, (_, workdir) in
                dirs.items()}
    for user, workdir in dirs.values():
        verify = lab.assay(user, "--store", str(store), "--results", str(workdir / "results"),
                           "verify", "--full")
        assert verify.returncode == 0, verify.stdout + verify.stderr
    report("at the same time", seconds=round(elapsed, 1), jobs_each=11,
           computed_by=sorted(computed.values()), objects=len(objects), mode_problems=0)


@pytest.mark.slow
def test_single_user_store_is_refused_clearly_then_shared_by_the_command(
        lab: Lab, changed_baseline):
    area = lab.own_dir(lab.alice, "alice-area")
    store = area / "store"
    alice_dir = lab.study(lab.alice, "alice-private", with_store(REDUCED_CONFIG, store))
    lab.snakemake(lab.alice, alice_dir)
    assert stat.filemode(store.stat().st_mode) == "drwxr-xr-x"

    bob_dir = lab.study(lab.bob, "bob-private", with_store(REDUCED_CONFIG, store))
    lab.snakemake(lab.bob, bob_dir)                     # only reads: every job a cache hit
    assert len(logs_with(bob_dir, "action cache hit")) == 11

    lab.write_config(lab.bob, bob_dir, with_store(CHANGED_CONFIG, store))
    failed = lab.snakemake(lab.bob, bob_dir, check=False)
    assert failed.returncode != 0
    logs = job_logs(bob_dir)
    alice = lab.alice.name
    expected = (f"[assay run] error: cannot write to the store at {store}: {lab.bob.name} may "
                f"not write {store}/claims (owner {alice}:{alice}, mode drwxr-xr-x). To share the "
                f"store with a group, {alice} (or root) runs: assay --store {store} "
                "share-store --group GROUP")
    failing = [name for name, log in logs.items() if expected in log.splitlines()]
    assert failing and all(name.startswith("run/strong/") for name in failing), logs
    assert "Traceback" not in "".join(logs.values())
    with pytest.raises(Exception) as refused:
        lab.call(lab.bob, _write_blob, str(store), b"bob's bytes")
    assert str(refused.value) == (
        f"cannot write to the store at {store}: {lab.bob.name} may not write {store}/tmp "
        f"(owner {alice}:{alice}, mode drwxr-xr-x). To share the store with a group, "
        f"{alice} (or root) runs: assay --store {store} share-store --group GROUP")

    shared = lab.assay(lab.alice, "--store", str(store), "share-store", "--group", lab.group)
    assert shared.returncode == 0, shared.stderr
    lines = shared.stdout.splitlines()
    assert lines[0] == (f"store {store}: shared with group {lab.group} (members: "
                        f"{', '.join(sorted([alice, lab.bob.name]))})")
    assert lines[1] == (f"  root: drwxr-xr-x {alice}:{alice} -> drwxrwsr-x "
                        f"{alice}:{lab.group}")
    assert "NOT CHANGED" not in shared.stdout
    assert mode_problems(store, lab.gid) == []

    lab.snakemake(lab.bob, bob_dir)
    assert digests(bob_dir) == changed_baseline
    assert mode_problems(store, lab.gid) == []
    report("made shared", share_store_output=len(lines), refused_jobs=len(failing),
           then_recomputed=len(logs_with(bob_dir, "] computed ")))


def test_unreadable_object_names_its_owner(lab: Lab):
    store = lab.shared_store("store-unreadable")
    sha, path = lab.call(lab.alice, _write_blob, str(store), b"alice's bytes")
    assert lab.call(lab.bob, _read_blob, str(store), sha, 13) == b"alice's bytes"
    lab.call(lab.alice, _chmod, path, 0o400)
    with pytest.raises(Exception) as refused:
        lab.call(lab.bob, _read_blob, str(store), sha, 13)
    assert str(refused.value) == (
        f"cannot read sidecar 'blob.bin': object sha256:{sha}: {lab.bob.name} may not read "
        f"{path} (owner {lab.alice.name}:{lab.group}, mode -r--------). To share the store "
        f"with a group, {lab.alice.name} (or root) runs: assay --store {store} share-store "
        f"--group {lab.group}")


def _start_attempt(store: str, key: str) -> int:
    from assay import ArtifactStore

    with ArtifactStore(store) as s:
        work = s.work.for_key(key)
        attempt = work.begin_attempt({"stage": "run", "condition": "c", "replicate": 1})
        (work.files / "checkpoint").write_bytes(b"state")
        return attempt


def _resumes(store: str, key: str) -> tuple[bool, int]:
    from assay import ArtifactStore

    with ArtifactStore(store) as s:
        work = s.work.for_key(key)
        return work.has_files(), work.begin_attempt({"stage": "run", "condition": "c",
                                                     "replicate": 1})


def test_runs_resume_from_members_work_dirs_never_an_outsiders(lab: Lab):
    """A run's work directory is keyed by its action key, so a member's retry resumes
    from the checkpoint another member's killed attempt left; an outsider's is removed."""
    store = lab.shared_store("store-work")
    member_key, outsider_key = "a" * 64, "b" * 64
    mallory = User(lab.mallory.name, lab.mallory.uid, lab.mallory.gid,
                   (*lab.mallory.groups, lab.gid), lab.mallory.home)
    assert lab.call(lab.alice, _start_attempt, str(store), member_key) == 1
    assert lab.call(mallory, _start_attempt, str(store), outsider_key) == 1
    assert lab.call(lab.bob, _resumes, str(store), member_key) == (True, 2)
    assert lab.call(lab.bob, _resumes, str(store), outsider_key) == (False, 1)
    assert mode_problems(store, lab.gid) == []


def _results_with_a_ref(store: str, results: str, condition: str = "c") -> str:
    """A member's results directory: one ref to a fresh artifact, registered in the store."""
    from assay import ArtifactStore, RunArtifact, write_ref

    with ArtifactStore(store) as s:
        digest = s.write_artifact(RunArtifact(analysis_name="r", condition_label=condition,
                                              replicate=1))
        write_ref(Path(results) / "runs" / condition / "1.json", digest, artifact_type="run")
        from assay.store.member_roots import register_results

        register_results(s.sharing, results)
        return digest


def _gc(store: str, results: str) -> str:
    from assay.tools.gc import collect_garbage

    report = collect_garbage(store, results, grace_seconds=0, delete=True)
    return f"{report.deleted_objects} deleted, kept by {report.member_results}"


def test_gc_never_deletes_what_a_members_unreadable_results_keep(lab: Lab):
    store = lab.shared_store("store-gc")
    alice_results = lab.own_dir(lab.alice, "alice-gc") / "results"
    digest = lab.call(lab.alice, _results_with_a_ref, str(store), str(alice_results))
    bob_results = lab.own_dir(lab.bob, "bob-gc") / "results"
    assert lab.call(lab.bob, _gc, str(store), str(bob_results)) == (
        f"0 deleted, kept by {[str(alice_results)]}")
    lab.call(lab.alice, _chmod, str(alice_results / "runs"), 0o700)
    with pytest.raises(Exception) as refused:
        lab.call(lab.bob, _gc, str(store), str(bob_results))
    assert str(refused.value) == (
        f"gc refuses to delete: the refs of another member's results directory "
        f"{alice_results} cannot be read ({alice_results}/runs: Permission denied), so what "
        "they keep alive is unknown. Its owner runs `assay gc` instead, or makes it readable "
        f"to the store's group (chmod -R g+rX {alice_results})")
    assert object_of(digest, store).exists()


def _untrusted_roots(store: str, results: str) -> dict[str, str]:
    from assay.tools.gc import collect_garbage

    return collect_garbage(store, results, grace_seconds=0, delete=True).untrusted_roots


def test_a_roots_record_planted_by_an_outsider_neither_blocks_nor_steers_gc(lab: Lab):
    """An outsider (still holding the group) registers an unreadable results directory:
    the members' gc ignores her record, says so, and deletes the garbage as usual."""
    store = lab.shared_store("store-gc-outsider")
    alice_results = lab.own_dir(lab.alice, "alice-gc-outsider") / "results"
    lab.call(lab.alice, _results_with_a_ref, str(store), str(alice_results))  # the folders
    mallory = User(lab.mallory.name, lab.mallory.uid, lab.mallory.gid,
                   (*lab.mallory.groups, lab.gid), lab.mallory.home)
    hidden = lab.own_dir(mallory, "mallory-gc") / "results"
    kept_by_her = lab.call(mallory, _results_with_a_ref, str(store), str(hidden), "m")
    lab.call(mallory, _chmod, str(hidden.parent), 0o700)
    bob_results = lab.own_dir(lab.bob, "bob-gc-outsider") / "results"
    assert lab.call(lab.bob, _untrusted_roots, str(store), str(bob_results)) == {
        str(hidden): f"{mallory.name} (uid {mallory.uid})"}
    assert not object_of(kept_by_her, store).exists()   # her refs keep nothing alive


def _record(store: str, key: str, digest: str) -> str:
    from assay import ArtifactStore

    with ArtifactStore(store) as s:
        return str(s.record_action(key, digest, stage="run", plugin="polymer_langevin"))


def _replace_or_delete(store: str, key: str) -> list[str]:
    """Everything an outsider tries against another's record: what refused it."""
    from assay import ArtifactStore
    from assay.store.actions import RecordKeptError

    refused = []
    with ArtifactStore(store) as s:
        path = s.actions.path_for(key)
        try:
            s.record_action(key, "sha256:" + "e" * 64, stage="run", plugin="polymer_langevin")
        except RecordKeptError as exc:
            refused.append(str(exc))
        for attempt in (lambda: os.unlink(path), lambda: os.rename(path, f"{path}.gone")):
            try:
                attempt()
            except PermissionError as exc:
                refused.append(exc.strerror)
    return refused


def test_sticky_records_keep_each_members_records_their_own(lab: Lab):
    """share-store --sticky-records: nobody but a record's owner (or root) replaces or
    deletes it; a member's gc leaves the others' dead records and says whose they are."""
    store = lab.shared_store("store-sticky")
    key, dead_key = "c" * 64, "d" * 64
    alice_record = lab.call(lab.alice, _record, str(store), key, "sha256:" + "a" * 64)
    shared = lab.assay(lab.alice, "--store", str(store), "share-store", "--group", lab.group,
                       "--sticky-records")
    assert shared.returncode == 0, shared.stdout + shared.stderr
    assert "records folders (actions/, roots/) sticky" in shared.stdout
    assert os.stat(store / "actions").st_mode & stat.S_ISVTX
    assert os.stat(Path(alice_record).parent).st_mode & stat.S_ISVTX
    lab.call(lab.alice, _record, str(store), dead_key, "sha256:" + "b" * 64)
    assert os.stat(store / "actions" / "dd").st_mode & stat.S_ISVTX   # a new shard: sticky too

    mallory = User(lab.mallory.name, lab.mallory.uid, lab.mallory.gid,
                   (*lab.mallory.groups, lab.gid), lab.mallory.home)
    assert lab.call(mallory, _replace_or_delete, str(store), key) == [
        f"kept {lab.alice.name}'s action record {key[:12]}: the records folder is sticky "
        "(share-store --sticky-records), so only its owner (or root) replaces it; this result "
        "is not cached for the next run", "Operation not permitted", "Operation not permitted"]
    assert Path(alice_record).stat().st_uid == lab.alice.uid
    assert json.loads(Path(alice_record).read_bytes())["digest"] == "sha256:" + "a" * 64

    bob_results = lab.own_dir(lab.bob, "bob-sticky") / "results"
    gc = lab.assay(lab.bob, "--store", str(store), "--results", str(bob_results), "gc",
                   "--delete", "--grace", "0")
    assert gc.returncode == 0, gc.stdout + gc.stderr
    assert (f"left 2 record(s) of {lab.alice.name}: the records folders are sticky, so only "
            f"{lab.alice.name} (or root) can delete them; {lab.alice.name}'s own `assay gc "
            "--delete` does") in gc.stdout
    alice_results = lab.own_dir(lab.alice, "alice-sticky") / "results"
    gc = lab.assay(lab.alice, "--store", str(store), "--results", str(alice_results), "gc",
                   "--delete", "--grace", "0")
    assert gc.returncode == 0 and "left" not in gc.stdout, gc.stdout + gc.stderr
    assert not Path(alice_record).exists()


def _make_folder(path: str) -> None:
    os.mkdir(path)


def _open_store(store: str) -> str:
    from assay import ArtifactStore

    ArtifactStore(store).close()
    return "opened"


def test_a_store_folder_made_by_an_outsider_is_refused(lab: Lab):
    """Whoever owns a store folder can swap what is in it: an outsider's is refused."""
    store = lab.shared_store("store-foreign-folder")
    assert lab.call(lab.alice, _open_store, str(store)) == "opened"
    mallory = User(lab.mallory.name, lab.mallory.uid, lab.mallory.gid,
                   (*lab.mallory.groups, lab.gid), lab.mallory.home)
    lab.call(mallory, _make_folder, str(store / "claims"))
    with pytest.raises(Exception) as refused:
        lab.call(lab.alice, _open_store, str(store))
    assert str(refused.value) == (
        f"store folder {store / 'claims'} belongs to {lab.mallory.name} (uid "
        f"{lab.mallory.uid}), whom this store does not trust ({lab.alice.name}, root, members "
        f"of {lab.group}): whoever owns a folder can swap what is in it. Its owner or root "
        f"moves it aside (`mv {store / 'claims'} {store / 'claims'}.untrusted`); assay makes "
        "the folder again")
    os.rename(store / "claims", store / "claims.untrusted")
    assert lab.call(lab.bob, _open_store, str(store)) == "opened"   # bob's own folders


def test_world_writable_store_is_refused_unless_allowed(tmp_path):
    from assay import ArtifactStore
    from assay.store.sharing import SharingSettings, StorePermissionError, user_name, group_name

    store = tmp_path / "store"
    store.mkdir()
    os.chmod(store, 0o777)
    with pytest.raises(StorePermissionError) as refused:
        ArtifactStore(store)
    assert str(refused.value) == (
        f"store {store} is world-writable (drwxrwxrwx, owner {user_name(os.getuid())}:"
        f"{group_name(os.getgid())}): any user of this "
        f"machine could plant action records in it. Remove the write bit for others "
        f"(`chmod o-w {store}`, or share it with a group: `assay --store {store} share-store "
        "--group GROUP`), or allow it in the study config: store_sharing: "
        "{allow_world_writable: true}")
    ArtifactStore(store, sharing=SharingSettings(allow_world_writable=True)).close()


# --- the study's store_sharing reaches the jobs, never a spec ----------------------------
def test_store_sharing_reaches_jobs_through_the_environment_not_the_specs(tmp_path):
    from assay.store.sharing import ENV_VAR, SharingSettings
    from assay.pipeline.workflow import WorkflowPlan

    plain = WorkflowPlan(REDUCED_CONFIG, tmp_path)
    config = {**copy.deepcopy(REDUCED_CONFIG),
              "store_sharing": {"trusted": ["root"], "allow_world_writable": True}}
    plan = WorkflowPlan(config, tmp_path)

    class Wildcards:
        condition, replicate, analysis = "free", "1", "gyration"

    for stage in ("run", "collect", "aggregate", "compare", "plot"):
        assert plan.spec(stage, Wildcards) == plain.spec(stage, Wildcards)   # reruns nothing
    environ: dict[str, str] = {}
    plan.export_sharing(environ)
    assert json.loads(environ[ENV_VAR]) == {"allow_world_writable": True, "shared": "auto",
                                            "trusted": ["root"]}
    assert SharingSettings.from_env(environ) == SharingSettings(
        shared=None, trusted=("root",), allow_world_writable=True)
    plain.export_sharing(environ)
    assert SharingSettings.from_env(environ) == SharingSettings()


def test_refused_store_or_unknown_trusted_name_stops_before_any_job(tmp_path):
    from assay.errors import ConfigError
    from assay.store.sharing import StorePermissionError
    from assay.pipeline.workflow import WorkflowPlan

    store = tmp_path / "store"
    store.mkdir()
    os.chmod(store, 0o757)
    with pytest.raises(StorePermissionError, match="is world-writable"):
        WorkflowPlan({**REDUCED_CONFIG, "store": str(store)}, tmp_path).export_sharing({})
    config = {**REDUCED_CONFIG, "store": str(store),
              "store_sharing": {"trusted": ["no-such-name-xyz"], "allow_world_writable": True}}
    with pytest.raises(ConfigError) as refused:
        WorkflowPlan(config, tmp_path).export_sharing({})
    assert str(refused.value) == (
        "store_sharing.trusted: 'no-such-name-xyz' is neither a user nor a group on this "
        "machine; list users and groups that exist, or 'any'")
    with pytest.raises(ConfigError) as refused:
        WorkflowPlan({**REDUCED_CONFIG, "store_sharing": {"trusted": "every"}}, tmp_path)
    assert str(refused.value) == ("config key store_sharing.trusted: 'every' is not 'any' or "
                                  "of type 'array'")


def test_private_store_keeps_its_modes(tmp_path):
    """The single-user path: nothing assay creates changes mode."""
    from assay import ArtifactStore

    store = ArtifactStore(tmp_path / "store")
    assert not store.sharing.shared
    ref = store.write_bytes_sidecar("x.bin", b"x")
    store.record_action("a" * 64, store.write_artifact(
        __import__("assay").RunArtifact(analysis_name="r", condition_label="c", replicate=1,
                                        sidecars=[ref])))
    modes = {p.relative_to(tmp_path / "store").as_posix().split("/")[0]:
             stat.filemode(p.stat().st_mode) for p in (tmp_path / "store").rglob("*")
             if p.parent.parent == tmp_path / "store"}
    assert modes == {"objects": "drwxr-xr-x", "actions": "drwxr-xr-x",
                     "index": "-rw-r--r--"}   # the object index's snapshot and log
    assert stat.S_IMODE(store.objects.path_for(ref.sha256).stat().st_mode) == 0o444
    assert not (tmp_path / "store" / "roots").exists()


def test_a_finished_twin_leaves_a_live_attempts_work_dir_alone(tmp_path):
    """Two workflows (two members) run the same run job at once: the one that publishes
    first must not remove the work directory the other is still working in."""
    import subprocess
    import sys

    from assay import ArtifactStore

    store = ArtifactStore(tmp_path / "store")
    work = store.work.for_key("c" * 64)
    work.begin_attempt({"stage": "run", "condition": "c", "replicate": 1})
    assert work.is_ours()
    twin = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        state = json.loads((work.root / "state.json").read_bytes())
        (work.root / "state.json").write_text(json.dumps({**state, "pid": twin.pid}))
        assert not work.remove_if_ours() and work.root.is_dir()   # the twin's attempt
        work.write_progress(1, 2)
    finally:
        twin.kill()
        twin.wait()
    assert work.remove_if_ours() and not work.root.exists()       # its process is gone
    work.write_progress(2, 2)          # a late progress report recreates what it needs
    assert (work.root / "progress.json").is_file()
