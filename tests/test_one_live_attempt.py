"""One live attempt per run: real processes, real signals, real Snakemake.

* a second attempt of an action key waits for the live one, then hits the cache, or stops
  naming the holder; a dead holder's claim is taken over (at once on the same machine,
  after its lease from elsewhere); a live holder's never is;
* nothing a shell runner's command started survives ``kill -9`` of snakemake's session;
* bytes that reach the store cannot be changed through a descriptor opened before, and a
  file that changes while it is stored is refused.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from assay import ArtifactIntegrityError, ArtifactStore, read_ref
from assay.store.claims import Claim, ClaimHeld, ClaimLost
from workflow_helpers import REPO, snakemake, write_config

KEY = "ab" * 32

HOLDER = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {src!r})
    from assay.store.claims import Claim
    claim = Claim({root!r}, {key!r}, what="run a/1", lease_seconds={lease})
    claim.acquire()
    print("held", flush=True)
    time.sleep(600)
""")


def _holder(root: Path, *, lease: float = 60.0, prefix: list[str] | None = None
            ) -> subprocess.Popen:
    code = HOLDER.format(src=str(REPO / "src"), root=str(root), key=KEY, lease=lease)
    proc = subprocess.Popen([*(prefix or []), sys.executable, "-c", code],
                            stdout=subprocess.PIPE, text=True, start_new_session=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_attempt_stops_naming_the_live_holder_and_takes_over_a_dead_one(tmp_path):
    holder = _holder(tmp_path)
    try:
        started = time.monotonic()
        with pytest.raises(ClaimHeld) as err:
            Claim(tmp_path, KEY, what="run a/1", wait_seconds=0).acquire()
        message = str(err.value)
        assert f"pid {holder.pid}" in message and "since " in message
        assert "It was not started twice" in message and "claim_wait_seconds" in message
        assert time.monotonic() - started < 60   # at once, not after the 300 s wait
    finally:
        os.killpg(holder.pid, signal.SIGKILL)   # kill -9: no release, no goodbye
        holder.wait()
    notes: list[str] = []
    started = time.monotonic()
    with Claim(tmp_path, KEY, what="run a/1", wait_seconds=60, log=notes.append) as claim:
        took = time.monotonic() - started
        claim.check()
        assert claim.holder()["pid"] == os.getpid()
    print(f"\nCLAIMS: stale same-host claim taken over in {took:.2f} s")
    assert took < 30, notes   # at once: one lock attempt (<= 2 s) and a process start
    assert any(f"pid {holder.pid}" in n and "is gone; taking it over" in n for n in notes), notes
    assert not (tmp_path / "claims" / f"{KEY}.lock").exists()   # released


def test_a_claim_that_was_taken_over_publishes_nothing(tmp_path):
    lost = []
    claim = Claim(tmp_path, KEY, what="run a/1", lease_seconds=0.4, on_lost=lambda: lost.append(1))
    claim.acquire()
    try:
        os.unlink(claim.lock_path)   # what breaking an expired lease does
        with pytest.raises(ClaimLost, match="publishes nothing"):
            claim.check()
        deadline = time.monotonic() + 10
        while not lost and time.monotonic() < deadline:   # the heartbeat notices too
            time.sleep(0.05)
        assert lost
    finally:
        claim.release()


def _unshare_works() -> bool:
    if shutil.which("unshare") is None:
        return False
    return subprocess.run(["unshare", "--pid", "--fork", "--uts", "true"],
                          capture_output=True).returncode == 0


@pytest.mark.slow
@pytest.mark.skipif(not _unshare_works(), reason="needs unshare (root) for a second 'host'")
def test_a_holder_on_another_host_keeps_its_claim_while_it_renews_it(tmp_path):
    """Another pid namespace and host name: its pid cannot be checked from here, so only
    its lease counts, and renewed, it is never taken over. (Once it stops renewing, the
    lease runs out: flufl.lock's own rule, as for any expired lock.)"""
    lease = 2.0
    prefix = ["unshare", "--pid", "--fork", "--uts", "--kill-child", "sh", "-c",
              'hostname node-b && exec "$0" "$@"']
    holder = _holder(tmp_path, lease=lease, prefix=prefix)
    try:
        with pytest.raises(ClaimHeld) as err:   # past its lease (2 s) + clock slop (10 s)
            Claim(tmp_path, KEY, what="run a/1", wait_seconds=13).acquire()
        assert "on host node-b" in str(err.value)
    finally:
        os.killpg(holder.pid, signal.SIGKILL)
        holder.wait()


# --- published bytes ----------------------------------------------------------------
def test_writes_through_an_earlier_descriptor_never_reach_a_published_object(tmp_path):
    store = ArtifactStore(tmp_path / "store")
    work = tmp_path / "work"
    work.mkdir()
    ingested = work / "trajectory.dcd"
    staged = store.resolve_sidecar("sidecars/out.txt")
    staged.parent.mkdir(parents=True, exist_ok=True)
    handles = [open(ingested, "ab"), open(staged, "ab")]   # a live twin's descriptors
    for handle in handles:
        handle.write(b"frame\n" * 100)
        handle.flush()
    refs = [store.ingest_file(ingested, "sidecars/trajectory.dcd"),
            store.register_sidecar("sidecars/out.txt")]   # the shell runner's move
    for handle in handles:
        handle.write(b"late frame\n" * 50)   # the twin keeps writing
        handle.flush()
        handle.close()
    for ref in refs:
        path = store.validate_sidecar(ref, verify="full")
        assert path.stat().st_size == 600 and not path.stat().st_mode & 0o222


def test_a_file_that_changes_while_it_is_stored_is_refused(tmp_path):
    store = ArtifactStore(tmp_path / "store")
    source = tmp_path / "growing.dcd"
    source.write_bytes(os.urandom(1 << 20) * 48)
    stop = threading.Event()

    def append() -> None:
        with open(source, "ab") as handle:
            while not stop.is_set():
                handle.write(b"x" * 4096)
                handle.flush()
                time.sleep(0.0005)

    writer = threading.Thread(target=append)
    writer.start()
    try:
        time.sleep(0.05)
        with pytest.raises(ArtifactIntegrityError, match="changed while it was being stored"):
            store.ingest_file(source, "sidecars/trajectory.dcd")
    finally:
        stop.set()
        writer.join()
    assert not any(p.is_file() for p in (tmp_path / "store" / "objects").rglob("*"))
    assert not any((tmp_path / "store" / "tmp").glob("*.part"))


# --- real jobs and real snakemake ---------------------------------------------------
SIM = textwrap.dedent('''
    import hashlib, json, os, sys, time
    STEPS = int(sys.argv[1])
    state, step = "seed-" + os.environ["ASSAY_SEED"], 0
    if os.path.exists("ckpt.json"):
        ckpt = json.load(open("ckpt.json"))
        state, step = ckpt["state"], ckpt["step"]
    TRACE = len(sys.argv) > 2   # a file every live writer appends to (not resumable)
    with open("trace.txt" if TRACE else os.devnull, "a") as trace:
        while step < STEPS:
            while os.path.exists(os.path.join(os.environ["ASSAY_STUDY_DIR"], "hold")):
                time.sleep(0.02)   # the test holds the engine while it starts a twin
            time.sleep(0.05)
            state = hashlib.sha256(f"{state}:{step}".encode()).hexdigest()
            step += 1
            trace.write(f"{step}\\n"); trace.flush()
            with open("ckpt.tmp", "w") as f:
                json.dump({"state": state, "step": step}, f)
            os.replace("ckpt.tmp", "ckpt.json")
            print(f"step {step}", flush=True)
    with open("result.txt", "w") as f:
        f.write(state + "\\n")
''')
ANALYSIS = textwrap.dedent('''
    from assay import METRICS

    class Size:
        def collect(self, ctx):
            path = ctx.artifact_store.validate_sidecar(ctx.run_sidecar("result"))
            return ctx.result(payload={METRICS: {"chars": float(len(path.read_text()))}})
''')
CONFIG = {
    "seed": 3,
    "conditions": [{"label": "a", "params": {}}, {"label": "b", "params": {}}],
    "control": "a",
    "replicates": 1,
    "runner": {"plugin": "shell", "grace_seconds": 5,
               "settings": {"command": "", "outputs": ["result.txt", "trace.txt"]}},
    "analyses": {"size": {"plugin": "size_analysis:Size"}},
    "aggregation": {"min_replicates": 1},
}


def _study(root: Path, steps: int, trace: bool = True) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "sim.py").write_text(SIM)
    (root / "size_analysis.py").write_text(ANALYSIS)
    config = copy.deepcopy(CONFIG)
    config["runner"]["settings"]["command"] = (f"{sys.executable} {{study_dir}}/sim.py {steps}"
                                               + (" trace" if trace else ""))
    if not trace:
        config["runner"]["settings"]["outputs"] = ["result.txt"]
    config["runner"]["settings"]["code_files"] = ["sim.py"]
    write_config(root, config)
    return root


def _env(root: Path) -> dict[str, str]:
    return {**os.environ,
            "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}


def _run_refs(root: Path) -> dict[str, str]:
    return {f"{p.parent.name}/{p.stem}": read_ref(p).digest
            for p in (root / "results" / "runs").rglob("*.json")}


def _processes_under(root: Path) -> list[str]:
    """Live processes working under ``root`` (their cwd), found by scanning /proc."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            cwd = os.readlink(f"/proc/{name}/cwd")
            with open(f"/proc/{name}/stat", "rb") as handle:
                state = handle.read().rsplit(b")", 1)[1].split()[0]
        except OSError:
            continue
        if state != b"Z" and cwd.startswith(str(root)):
            found.append(f"{name} ({cwd})")
    return found


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> dict[str, str]:
    root = _study(tmp_path_factory.mktemp("uninterrupted"), steps=40)
    snakemake(root, env=_env(root))
    return _run_refs(root)


def _job(root: Path, spec: str, n: int, wait: float) -> subprocess.Popen:
    log = root / f"job{n}.log"
    return subprocess.Popen(
        [sys.executable, "-m", "assay.jobs", "run", "--store", "store", "--spec", spec,
         "--output", f"out{n}/a/1.json", "--log", str(log), "--claim-wait", str(wait)],
        cwd=root, env=_env(root), stdout=open(log, "w"), stderr=subprocess.STDOUT)


def _run_spec(root: Path) -> str:
    """The spec the workflow gives run a/1 of the study at ``root``."""
    import shlex

    import yaml

    from assay.pipeline.workflow import WorkflowPlan

    cwd = os.getcwd()
    os.chdir(root)
    sys.path.insert(0, str(root))   # the study's own analysis module, as snakemake finds it
    try:
        plan = WorkflowPlan(yaml.safe_load((root / "config" / "config.yaml").read_text()))
        return shlex.split(plan.spec("run", SimpleNamespace(condition="a", replicate="1")))[0]
    finally:
        os.chdir(cwd)
        sys.path.remove(str(root))


def _wait_for_claim(root: Path, proc_alive) -> None:
    claims = root / "store" / "claims"
    deadline = time.monotonic() + 240   # only a hang fails this
    while not list(claims.glob("*.who")):   # the first attempt holds its claim
        assert time.monotonic() < deadline and proc_alive(), "the first attempt never claimed"
        time.sleep(0.02)


def _until(what: str, ready, alive=lambda: True) -> None:
    """Wait for a state the test drives; only a hang (or a dead process) fails."""
    deadline = time.monotonic() + 600
    while not ready():
        assert alive() and time.monotonic() < deadline, f"never saw: {what}"
        time.sleep(0.02)


def _waiters(root: Path) -> list[str]:
    """Claim files of attempts that wait for a key another attempt holds (flufl.lock's
    ``<key>.lock|host|pid|random``, beside the holders' ``.who``)."""
    claims = root / "store" / "claims"
    holders = {json.loads(p.read_text())["claim"] for p in claims.glob("*.who")}
    return [p.name for p in claims.glob("*.lock|*") if str(p) not in holders]


def _one_trace(root: Path, digest: str, steps: int) -> None:
    store = ArtifactStore(root / "store")
    [trace] = [s for s in store.read_run_result(digest).sidecars
               if s.path == "sidecars/trace.txt"]
    written = store.validate_sidecar(trace, verify="full").read_text().split()
    assert written == [str(i) for i in range(1, steps + 1)], "one writer, each step once"


@pytest.mark.slow
def test_two_attempts_of_one_run_one_computes_the_other_waits_or_stops(tmp_path):
    root = _study(tmp_path / "study", steps=40)
    spec = _run_spec(root)
    (root / "hold").touch()   # the first attempt's engine waits until the twins are seen
    first = _job(root, spec, 1, 600)
    _wait_for_claim(root, lambda: first.poll() is None)
    refused = _job(root, spec, 3, 0)
    second = _job(root, spec, 2, 600)
    assert refused.wait() == 1
    _until("the second attempt waiting", lambda: "waiting for" in
           (root / "job2.log").read_text(), lambda: second.poll() is None)
    (root / "hold").unlink()
    assert first.wait() == 0 and second.wait() == 0
    logs = {n: (root / f"job{n}.log").read_text() for n in (1, 2, 3)}
    assert f"pid {first.pid}" in logs[3] and "It was not started twice" in logs[3], logs[3]
    assert "waiting for run a/1 by" in logs[2] and f"pid {first.pid}" in logs[2], logs[2]
    assert "action-cache hit" in logs[2] or "cache hit" in logs[2].lower(), logs[2]
    assert "step 1\n" in logs[1] and "step 1\n" not in logs[2] + logs[3]
    digests = {n: read_ref(root / f"out{n}" / "a" / "1.json").digest for n in (1, 2)}
    assert digests[1] == digests[2]
    _one_trace(root, digests[1], 40)


@pytest.mark.slow
def test_two_snakemakes_on_one_study_publish_the_uninterrupted_results(tmp_path,
                                                                        uninterrupted):
    root = _study(tmp_path / "study", steps=40)
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "workflow" / "Snakefile"),
               "--directory", str(root), "--cores", "2", "--workflow-profile", "none",
               "--nolock"]
    (root / "hold").touch()   # the engines wait until the second snakemake waits too
    first = subprocess.Popen(command, cwd=root, env=_env(root), stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    _wait_for_claim(root, lambda: first.poll() is None)
    second = subprocess.Popen(command, cwd=root, env=_env(root), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    _until("the second snakemake's job waiting for a claim", lambda: _waiters(root),
           lambda: second.poll() is None)
    (root / "hold").unlink()
    out = [p.communicate()[0] for p in (first, second)]
    # Snakemake deletes a job's outputs before it runs it, so a downstream job of one
    # snakemake may find a ref the other just deleted and stop (its log, shared with the
    # other's job, is overwritten); a plain rerun finishes. Either may so end non-zero:
    # the runs themselves never race (claims), which is what this checks.
    assert first.returncode == 0 or second.returncode == 0, out
    snakemake(root, env=_env(root))
    assert _run_refs(root) == uninterrupted
    store = ArtifactStore(root / "store")
    for ref in (root / "results" / "runs").rglob("*.json"):
        run = store.read_run_result(ref)
        [trace] = [s for s in run.sidecars if s.path == "sidecars/trace.txt"]
        steps = store.validate_sidecar(trace, verify="full").read_text().split()
        assert steps == [str(i) for i in range(1, 41)], "one writer, 40 steps, in order"
    verify = subprocess.run([sys.executable, "-m", "assay.cli", "verify", "--full"], cwd=root,
                            capture_output=True, text=True)
    assert verify.returncode == 0, verify.stdout + verify.stderr


@pytest.mark.slow
def test_kill_9_of_snakemakes_session_leaves_no_process_and_resumes(tmp_path):
    root = _study(tmp_path / "study", steps=60, trace=False)
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "workflow" / "Snakefile"),
               "--directory", str(root), "--cores", "2", "--workflow-profile", "none"]
    output = open(tmp_path / "snakemake.out", "w")
    proc = subprocess.Popen(command, cwd=root, env=_env(root), stdout=output,
                            stderr=subprocess.STDOUT, start_new_session=True)
    work = root / "store" / "work"
    deadline = time.monotonic() + 240   # only a hang fails this: the runs make progress
    while time.monotonic() < deadline and proc.poll() is None:
        checkpoints = list(work.glob("*/files/ckpt.json")) if work.exists() else []
        if len(checkpoints) == 2:
            break
        time.sleep(0.1)
    assert proc.poll() is None, ("the study ended before both runs were under way:\n"
                                 + (tmp_path / "snakemake.out").read_text()[-3000:])
    os.killpg(proc.pid, signal.SIGKILL)   # the whole session: snakemake and its jobs
    proc.wait()
    killed = time.monotonic()
    left = _processes_under(root)
    while left and time.monotonic() - killed < 30:
        time.sleep(0.05)
        left = _processes_under(root)
    gone_after = time.monotonic() - killed
    print(f"\nORPHANS: none left {gone_after:.2f} s after kill -9 of the session")
    assert not left, f"still alive {gone_after:.1f} s after the kill: {left}"
    assert gone_after < 15   # "within a few seconds": the reaper's SIGTERM, no grace used
    snakemake(root, "--unlock", env=_env(root))
    snakemake(root, "--rerun-incomplete", env=_env(root))
    refs = _run_refs(root)
    assert len(refs) == 2
    reference = _study(tmp_path / "reference", steps=60, trace=False)
    snakemake(reference, env=_env(reference))
    assert refs == _run_refs(reference)


def test_gc_never_removes_the_work_directory_of_a_live_attempt(tmp_path):
    from assay.tools.gc import collect_garbage
    from assay.store.workdirs import WorkDirs

    store_root = tmp_path / "store"
    ArtifactStore(store_root).close()
    (tmp_path / "results").mkdir()
    work = WorkDirs(store_root / "work").for_key(KEY)
    work.begin_attempt({"stage": "run", "condition": "a", "replicate": 1})
    (work.files / "checkpoint.chk").write_bytes(b"state")
    old = time.time() - 3600
    for path in (work.files / "checkpoint.chk", work.files, work.root / "state.json"):
        os.utime(path, (old, old))
    holder = _holder(store_root)
    try:
        report = collect_garbage(store_root, tmp_path / "results", work_grace_seconds=0,
                                 delete=True)
        assert report.deleted_work_dirs == 0 and work.files.exists()
    finally:
        os.killpg(holder.pid, signal.SIGKILL)
        holder.wait()
    with Claim(store_root, KEY):   # the holder is dead: its claim is taken over and released
        pass
    report = collect_garbage(store_root, tmp_path / "results", work_grace_seconds=0,
                             delete=True)
    assert report.deleted_work_dirs == 1 and not work.root.exists()


@pytest.mark.openmm
def test_verify_finds_a_trajectory_that_disagrees_with_its_payload(tmp_path):
    """Bytes that hash right can still be wrong: a DCD two attempts appended to."""
    pytest.importorskip("openmm")
    pytest.importorskip("MDAnalysisTests")
    import dataclasses

    from assay import write_ref
    from assay.pipeline.openmm_runner import OpenMMRunner
    from assay.tools.verify import repair_store, verify_store
    from test_openmm_runner import SETTINGS, make_ctx

    ctx = make_ctx(tmp_path, settings={**SETTINGS, "steps": 1000})
    run = OpenMMRunner().run(ctx)
    store = ctx.artifact_store
    run = dataclasses.replace(run, provenance={**run.provenance, "plugin": "openmm"})
    results = tmp_path / "results"
    ref = results / "runs" / "T300" / "1.json"
    write_ref(ref, store.write_artifact(run), artifact_type="run", condition="T300",
              replicate=1)
    assert verify_store(store.root, results).ok

    # what a twin attempt left: the frames of a second writer appended to the DCD
    [dcd] = [s for s in run.sidecars if s.path == "sidecars/trajectory.dcd"]
    data = store.validate_sidecar(dcd, verify="full").read_bytes()
    forged = tmp_path / "forged.dcd"
    frame_bytes = (len(data) - _dcd_header_len(data)) // run.payload["n_frames"]
    frames_at = len(data) - 3 * frame_bytes
    forged.write_bytes(data + data[frames_at:])   # three more frames, header unchanged
    bad = store.ingest_file(forged, "sidecars/trajectory.dcd", metadata=dcd.metadata)
    twin = dataclasses.replace(run, sidecars=[bad if s.path == dcd.path else s
                                              for s in run.sidecars])
    write_ref(ref, store.write_artifact(twin), artifact_type="run", condition="T300",
              replicate=1)
    report = verify_store(store.root, results)
    assert not report.ok
    [damage] = report.damaged
    n = run.payload["n_frames"]
    assert damage.role == "consistency" and damage.refs == ["runs/T300/1.json"]
    assert f"trajectory.dcd holds {n + 3} frames (its size), the payload says n_frames={n}" \
        in damage.problem, damage.problem
    cli = subprocess.run([sys.executable, "-m", "assay.cli", "--store", str(store.root),
                          "--results", str(results), "verify"], capture_output=True, text=True)
    assert cli.returncode == 1 and "payload and sidecars disagree" in cli.stdout, cli.stdout
    repair_store(store.root, results, report)
    assert not ref.exists()   # so the workflow recomputes the run


def _dcd_header_len(data: bytes) -> int:
    import struct

    title = struct.unpack_from("<i", data, 92)[0]
    return 92 + 4 + title + 4 + 12


def test_gc_sweeps_what_dead_claimants_left_and_keeps_a_live_claim(tmp_path):
    from assay.tools.gc import collect_garbage

    store_root = tmp_path / "store"
    ArtifactStore(store_root).close()
    (tmp_path / "results").mkdir()
    claims = store_root / "claims"
    claims.mkdir()
    dead = "cd" * 32
    leftovers = [claims / f"{dead}.lock|node7|4242|99", claims / f"{dead}.who",
                 claims / f".{dead}.who.4242.tmp"]
    old = time.time() - 7200
    for path in leftovers:
        path.write_text("left by a killed attempt")
        os.utime(path, (old, old))
    holder = _holder(store_root)
    try:
        report = collect_garbage(store_root, tmp_path / "results", delete=True)
        assert report.tmp_entries == 3
        assert not any(p.exists() for p in leftovers)
        live = sorted(p.name for p in claims.iterdir())
        assert f"{KEY}.lock" in live and f"{KEY}.who" in live, live
    finally:
        os.killpg(holder.pid, signal.SIGKILL)
        holder.wait()


def test_a_link_another_user_planted_in_a_kept_work_directory_is_removed(tmp_path):
    from assay.store.workdirs import WorkDirs

    if os.getuid() != 0:
        pytest.skip("making a link owned by another uid needs root")
    victim = tmp_path / "home" / ".bashrc"
    victim.parent.mkdir()
    victim.write_text("alias ll='ls -l'\n")
    work = WorkDirs(tmp_path / "store" / "work").for_key(KEY)
    work.begin_attempt({"stage": "run", "condition": "a", "replicate": 1})
    planted = work.files / "out.txt"
    planted.symlink_to(victim)
    os.lchown(planted, 4242, 4242)   # a member of the lab's group, not the job's user
    own = work.files / "input.pdb"
    own.symlink_to(tmp_path / "home")   # the runner's own link stays
    removed = work.remove_foreign_links()
    assert removed == [f"out.txt -> {victim} (made by uid 4242)"]
    assert not planted.is_symlink() and own.is_symlink()
    (work.files / "out.txt").write_text("the retry's output\n")
    assert victim.read_text() == "alias ll='ls -l'\n"
