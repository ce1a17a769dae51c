"""`assay status`: where a study stands, from its files alone, read-only.

The quick tests build a study's files through the library (refs, run work directories
written by a helper process whose pid is alive or gone, job logs in the jobs' wording,
Snakemake's incomplete markers in Snakemake's own encoding, lock files, a process named
``snakemake`` working in the study, a fake ``squeue``). The slow ones run real Snakemake in
the background with a slow ``python`` runner that reports progress, poll
``assay status --json``, kill a run's job process, kill Snakemake itself, type the rerun
commands status prints, and (marker ``slurm``) go through the loopback SLURM cluster.
"""

from __future__ import annotations

import copy
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
import types
from pathlib import Path

import pytest
from workflow_helpers import REPO, write_config

from assay.pipeline.layout import ref_identity
from assay.store.refs import write_ref
from assay.tools.status import (
    incomplete_markers,
    load_study_config,
    marker_key,
    plan_jobs,
    read_log,
)

SNAKEFILE = next((p for p in (REPO / "Snakefile", REPO / "workflow" / "Snakefile")
                  if p.is_file()), REPO / "Snakefile")
PROFILE = REPO / "profiles" / "slurm"

STUDY_MODULE = "status_study"
STUDY_SOURCE = textwrap.dedent('''
    """A slow simulation that reports progress, and the cheapest analysis."""
    import time


    def slow(ctx):
        import numpy as np

        steps = int(ctx.settings["steps"])
        for step in range(steps):
            ctx.progress(step, steps, f"step {step} of {steps}")
            time.sleep(float(ctx.settings["sleep"]))
        ctx.progress(steps, steps, "finished")
        return {"x": np.arange(3.0) + ctx.seed % 7}


    class Tiny:
        def collect(self, ctx):
            value = float(ctx.replicate + len(ctx.condition_label))
            return ctx.result(payload={"metrics": {"x": value}})
''')
CONFIG = {
    "store": "store", "results": "results", "seed": 3,
    "conditions": [{"label": "free", "params": {}}, {"label": "strong", "params": {}}],
    "control": "free", "replicates": 2,
    "runner": {"plugin": "python",
               "settings": {"callable": f"{STUDY_MODULE}:slow", "steps": 10, "sleep": 0.3}},
    "analyses": {"x": {"plugin": f"{STUDY_MODULE}:Tiny"}},
    "aggregation": {"min_replicates": 2},
    "plots": {"format": "png", "dpi": 30},
}
STAGES = ("run", "collect", "aggregate", "compare", "plot", "catalog")
# 4 runs, 4 collect, 2 aggregate, 1 compare, 1 summary plot (Tiny has no plot()), catalog
TOTAL = 13

# Writes run work directories through the library; "stay" keeps the process (whose pid
# state.json records) alive, "exit" leaves a dead pid behind.
WORKER = textwrap.dedent('''
    import json, sys, time
    from pathlib import Path
    from assay.store.workdirs import WorkDir
    for item in json.load(sys.stdin):
        work = WorkDir(Path(item["dir"]))
        work.begin_attempt(item["identity"], log_path=item["log"])
        if item.get("progress"):
            work.write_progress(*item["progress"])
    print("ready", flush=True)
    if sys.argv[1] == "stay":
        time.sleep(600)
''')


# --- helpers -------------------------------------------------------------------------------
def make_study(root: Path, **changes) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / f"{STUDY_MODULE}.py").write_text(STUDY_SOURCE)
    config = copy.deepcopy(CONFIG)
    for key, value in changes.items():
        config[key] = value
    write_config(root, config)
    return root


def status_json(root: Path, *args: str, env: dict | None = None) -> dict:
    proc = run_status(root, "--json", *args, env=env)
    assert proc.returncode in (0, 1), proc.stderr
    return json.loads(proc.stdout)


def run_status(root: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """`assay status ARGS` in the study; Python may write bytecode (status must not)."""
    full = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    return subprocess.run([sys.executable, "-m", "assay.cli", "status", *args], cwd=root,
                          check=False, capture_output=True, text=True, timeout=60,
                          env={**full, **(env or {})})


def check_counts(status: dict, total: int = TOTAL) -> None:
    """Every job is in exactly one state, per stage and in all."""
    assert status["total"] == total
    for counts in [status["counts"], *status["stages"].values()]:
        assert sum(counts[s] for s in ("done", "running", "failed", "pending")) == counts["total"]
        assert counts["cached"] <= counts["done"]
    assert sum(status["stages"][s]["total"] for s in STAGES) == status["total"]


def runs_by_name(status: dict) -> dict[str, dict]:
    return {f"{r['condition']}/{r['replicate']}": r for r in status["runs"]}


def snapshot(root: Path) -> dict[str, tuple]:
    """Every path under root with its type, size, mode, inode and mtime (ns)."""
    found = {}
    for base, dirs, files in os.walk(root):
        for name in [".", *dirs, *files]:
            path = os.path.normpath(os.path.join(base, name))
            info = os.lstat(path)
            found[path] = (info.st_mode, info.st_size, info.st_ino, info.st_mtime_ns)
    return found


def write_marker(root: Path, output: str, external_jobid: str | None = None) -> None:
    """Snakemake's incomplete marker for ``output``, named by Snakemake's own code."""
    from snakemake.persistence.file import FilePersistence

    encoder = types.SimpleNamespace(_fetch_max_len=lambda _subject: 255)
    base = root / ".snakemake" / "incomplete"
    path = Path(FilePersistence._record_path(encoder, str(base), output))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"external_jobid": external_jobid}))


def write_work(root: Path, runs: list[tuple[str, int, list | None]], stay: bool,
               slurm_job_id: str | None = None) -> subprocess.Popen:
    """Work directories for (condition, replicate, progress) written by a helper process."""
    import hashlib

    items = []
    for condition, replicate, progress in runs:
        key = hashlib.sha256(f"{condition}/{replicate}".encode()).hexdigest()
        items.append({"dir": str(root / "store" / "work" / key), "progress": progress,
                      "log": f"results/logs/run/{condition}/{replicate}.log",
                      "identity": {"stage": "run", "condition": condition,
                                   "replicate": replicate, "plugin": "python"}})
    env = {k: v for k, v in os.environ.items() if k != "SLURM_JOB_ID"}
    if slurm_job_id:
        env["SLURM_JOB_ID"] = slurm_job_id
    proc = subprocess.Popen([sys.executable, "-c", WORKER, "stay" if stay else "exit"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    proc.stdin.write(json.dumps(items))
    proc.stdin.close()
    assert proc.stdout.readline().strip() == "ready"
    if not stay:
        proc.wait(timeout=30)
    return proc


def write_done(root: Path, output: str, log: str, stage: str, names: dict,
               cached: bool = False) -> None:
    digest = "sha256:" + "ab" * 32
    write_ref(root / output, digest, **ref_identity({"stage": stage, **names}))
    tag = f"[assay {stage}]"
    text = (f"{tag} action cache hit abababababab: {digest}\n" if cached
            else f"{tag} attempt 1 in store/work/x/files\n{tag} computed {stage} {digest} in 2.0s\n")
    (root / log).parent.mkdir(parents=True, exist_ok=True)
    (root / log).write_text(text + f"{tag} ref {output} -> {digest} (2.50s)\n")


def plan_of(root: Path):
    from assay.pipeline.workflow import WorkflowPlan

    sys.path.insert(0, str(root))
    writes, sys.dont_write_bytecode = sys.dont_write_bytecode, True
    try:
        return WorkflowPlan(load_study_config((), root), workdir=root)
    finally:
        sys.path.remove(str(root))
        sys.dont_write_bytecode = writes


@pytest.fixture
def helpers():
    """Processes a test starts; stopped by their own handles afterwards."""
    started: list[subprocess.Popen] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)


def fake_snakemake(root: Path, bin_dir: Path) -> subprocess.Popen:
    """A process whose argv[0] is `snakemake`, working in the study, as a live workflow."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    link = bin_dir / "snakemake"
    link.symlink_to(sys.executable)
    return subprocess.Popen([str(link), "-c", "import time; time.sleep(600)"], cwd=root)


# --- reading Snakemake's files ---------------------------------------------------------------
@pytest.mark.parametrize("max_len", [255, 12])
def test_marker_names_decode_as_snakemake_writes_them(tmp_path, max_len):
    from snakemake.persistence.file import FilePersistence

    encoder = types.SimpleNamespace(_fetch_max_len=lambda _subject: max_len)
    base = tmp_path / ".snakemake" / "incomplete"
    outputs = ["results/runs/free/1.json", ("results/replicates/a-very-long-analysis-name/"
               "condition_with_a_long_label/12.json")]
    for output in outputs:
        path = Path(FilePersistence._record_path(encoder, str(base), output))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"external_jobid": "77" if "runs" in output else None}))
        parts = path.relative_to(base).parts
        assert marker_key(list(parts)) == output
    (base / "migration_underway").write_text("")
    markers = incomplete_markers(tmp_path)
    assert set(markers) == set(outputs)
    assert markers[outputs[0]].external_jobid == "77"
    assert markers[outputs[1]].external_jobid is None


def test_a_log_with_an_earlier_attempt_replayed_speaks_for_this_attempt(tmp_path):
    """The run job copies a failed attempt's log into the next one's; its error is old."""
    log = tmp_path / "1.log"
    log.write_text("[assay run] ---- job started 2026-01-01 00:00:00 UTC on n1, pid 9\n"
                   "[assay run] attempt 2 in store/work/k/files (resuming)\n"
                   "[assay run] ---- the log of attempt 1 (failed or stopped) ----\n"
                   "[assay run] attempt 1 in store/work/k/files\n"
                   "[assay run] error: run stopped by SIGTERM\n"
                   "[assay run] ---- end of the log of attempt 1 ----\n"
                   "step 7\n")
    facts = read_log(log, "run")
    assert (facts.attempt, facts.error, facts.succeeded) == (2, None, False)
    with log.open("a") as handle:
        handle.write("[assay run] error: runner 'python' failed: ValueError: nan\n")
    assert read_log(log, "run").error.endswith("ValueError: nan")


def test_config_is_built_as_snakemake_builds_it(tmp_path):
    make_study(tmp_path)
    extra = tmp_path / "more.yaml"
    extra.write_text("replicates: 3\nrunner:\n  settings:\n    steps: 5\n")
    merged = load_study_config([extra], tmp_path)
    assert merged["replicates"] == 3 and merged["runner"]["settings"]["steps"] == 5
    assert merged["runner"]["settings"]["sleep"] == 0.3      # nested mappings extended
    replaced = load_study_config([extra], tmp_path, replace=True)
    assert "conditions" not in replaced


# --- states from files ---------------------------------------------------------------------
def synthetic(root: Path, helpers: list) -> None:
    """free/1 done, free/2 done from the cache (and their collect jobs), strong/1 failed
    (an error in its log, its process gone), strong/2 running at 50 % (live process)."""
    make_study(root)
    plan = plan_of(root)
    for job in plan_jobs(plan):
        if job.stage in ("run", "collect") and job.names["condition"] == "free":
            write_done(root, job.output, job.log, job.stage, job.names,
                       cached=job.names["replicate"] == 2)
    failed_log = root / "results/logs/run/strong/1.log"
    failed_log.parent.mkdir(parents=True)
    failed_log.write_text("[assay run] attempt 1 in store/work/x/files\nstep 3\n[assay run] "
                          "error: runner 'python' failed: ValueError: diverged at step 3\n")
    helpers.append(write_work(root, [("strong", 1, [3, 12, "step 3 of 12"])], stay=False))
    write_marker(root, "results/runs/strong/2.json")
    (root / "results/logs/run/strong/2.log").write_text("[assay run] attempt 1 in x\n")
    helpers.append(write_work(root, [("strong", 2, [6, 12, "step 6 of 12"])], stay=True))


def test_each_job_state_follows_from_the_files(tmp_path, helpers):
    synthetic(tmp_path, helpers)
    status = status_json(tmp_path)
    check_counts(status)
    stages = status["stages"]
    assert {k: stages["run"][k] for k in ("done", "cached", "running", "failed", "pending")} \
        == {"done": 2, "cached": 1, "running": 1, "failed": 1, "pending": 0}
    assert (stages["collect"]["done"], stages["collect"]["cached"]) == (2, 1)
    assert stages["collect"]["pending"] == 2 and stages["catalog"]["pending"] == 1
    runs = runs_by_name(status)
    assert runs["free/1"]["state"] == "done" and runs["free/1"]["elapsed_s"] == 2.5
    assert runs["free/2"]["cached"] is True
    running = runs["strong/2"]
    assert running["state"] == "running" and running["percent"] == 50.0
    assert running["message"] == "step 6 of 12" and running["attempt"] == 1
    assert 0 <= running["elapsed_s"] < 60 and running["checkpoint"] <= time.time()
    [failed] = status["failed"]
    assert failed["output"] == "results/runs/strong/1.json"
    assert failed["log"] == "results/logs/run/strong/1.log"
    assert "ValueError: diverged at step 3" in failed["error"]
    assert status["rerun"]["commands"] == ["snakemake --cores all results/runs/strong/1.json"]
    assert status["rerun"]["study"] == ["snakemake --cores all"]
    assert status["slurm"]["available"] is False   # no job has a SLURM id: squeue not asked

    text = run_status(tmp_path)
    assert text.returncode == 1, text.stderr       # failed jobs: exit 1
    out = text.stdout
    assert f"{TOTAL} jobs; no Snakemake is running here" in out
    assert "]  31%  4 done (2 from cache), 1 running, 1 failed, 7 pending" in out
    assert re.search(r"strong/2 +running +50% +step 6 of 12", out)
    assert "results/logs/run/strong/1.log" in out
    assert "  snakemake --cores all results/runs/strong/1.json" in out


def test_status_writes_nothing_and_takes_no_lock(tmp_path, helpers):
    synthetic(tmp_path, helpers)
    (tmp_path / ".snakemake" / "locks").mkdir(parents=True)
    (tmp_path / ".snakemake" / "locks" / "0.input.lock").write_text("results/runs\n")
    before = snapshot(tmp_path)
    time.sleep(0.05)   # any write would show in an mtime
    for args in ([], ["--json"], ["--all"]):
        proc = run_status(tmp_path, *args)
        assert proc.returncode == 1, proc.stderr   # stale lock + failed run: stops at once
    assert snapshot(tmp_path) == before
    assert not (tmp_path / "__pycache__").exists()   # the study's plugin module was imported


def test_a_killed_snakemake_leaves_markers_and_a_lock_that_status_sees_through(tmp_path,
                                                                              helpers):
    """Markers and locks of a dead Snakemake: a run whose process is gone failed, a collect
    job that had started (its log begun) failed, an output written but not recorded is
    done and asks for --rerun-incomplete, and the lock asks for --unlock first."""
    make_study(tmp_path)
    (tmp_path / ".snakemake" / "locks").mkdir(parents=True)
    (tmp_path / ".snakemake" / "locks" / "0.output.lock").write_text("results/runs\n")
    write_done(tmp_path, "results/runs/free/1.json", "results/logs/run/free/1.log", "run",
               {"condition": "free", "replicate": 1})
    write_marker(tmp_path, "results/runs/free/1.json")
    write_done(tmp_path, "results/runs/free/2.json", "results/logs/run/free/2.log", "run",
               {"condition": "free", "replicate": 2})
    write_marker(tmp_path, "results/replicates/x/free/2.json")
    (tmp_path / "results/logs/collect/x/free").mkdir(parents=True)
    (tmp_path / "results/logs/collect/x/free/2.log").write_text("")
    write_marker(tmp_path, "results/runs/strong/1.json")
    (tmp_path / "results/logs/run/strong").mkdir(parents=True)
    (tmp_path / "results/logs/run/strong/1.log").write_text("[assay run] attempt 1 in x\n")
    helpers.append(write_work(tmp_path, [("strong", 1, [2, 12, "step 2"])], stay=False))

    status = status_json(tmp_path)
    check_counts(status)
    assert status["snakemake"] | {"processes": None} == {
        "locked": True, "running": False, "stale_lock": True, "incomplete_markers": 3,
        "processes": None}
    failed = {j["output"]: j for j in status["failed"]}
    assert set(failed) == {"results/runs/strong/1.json", "results/replicates/x/free/2.json"}
    assert "is gone without an error in its log: killed?" in \
        failed["results/runs/strong/1.json"]["error"]
    assert status["stages"]["run"]["done"] == 2
    assert status["rerun"]["commands"] == [
        "snakemake --unlock --cores all",
        ("snakemake --cores all --rerun-incomplete results/runs/strong/1.json "
        "results/replicates/x/free/2.json")]
    assert any("--rerun-incomplete" in note for note in status["notes"])
    assert any("--unlock" in note for note in status["notes"])

    # The same files while Snakemake lives: a started job is running, nothing is stale.
    helpers.append(fake_snakemake(tmp_path, tmp_path.parent / f"{tmp_path.name}-bin"))
    time.sleep(0.2)
    status = status_json(tmp_path)
    assert status["snakemake"]["running"] is True and status["snakemake"]["processes"]
    assert [j["output"] for j in status["failed"]] == ["results/runs/strong/1.json"]
    assert [j["output"] for j in status["running"]] == ["results/replicates/x/free/2.json"]
    assert status["notes"] == [   # these refs were written by hand: no store to check them
        "no store at store: finished results were not checked against their manifests (run "
        "status in the study directory, or pass --store)"]


def test_slurm_ids_and_states_come_from_one_squeue_call(tmp_path, helpers):
    make_study(tmp_path)
    bin_dir = tmp_path.parent / f"{tmp_path.name}-bin"
    bin_dir.mkdir()
    calls = bin_dir / "calls"
    squeue = bin_dir / "squeue"
    squeue.write_text(f"#!/bin/sh\necho \"$@\" >> {calls}\n"
                      "printf '101|RUNNING\\n102|PENDING\\n103|TIMEOUT\\n'\n")
    squeue.chmod(0o755)
    write_marker(tmp_path, "results/runs/free/1.json", "101")
    write_marker(tmp_path, "results/runs/free/2.json", "102")
    (tmp_path / "results/logs/run/strong").mkdir(parents=True)
    (tmp_path / "results/logs/run/strong/1.log").write_text("[assay run] attempt 1 in x\n")
    helpers.append(write_work(tmp_path, [("strong", 1, [4, 12, "step 4"])], stay=False,
                              slurm_job_id="103"))
    helpers.append(write_work(tmp_path, [("free", 1, [5, 10, "step 5"])], stay=True,
                              slurm_job_id="101"))
    env = {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}

    status = status_json(tmp_path, env=env)
    check_counts(status)
    runs = runs_by_name(status)
    assert (runs["free/1"]["state"], runs["free/1"]["slurm_job_id"],
            runs["free/1"]["slurm_state"], runs["free/1"]["percent"]) == \
        ("running", "101", "RUNNING", 50.0)
    assert (runs["free/2"]["state"], runs["free/2"]["slurm_state"]) == ("running", "PENDING")
    assert status["counts"]["queued"] == 1
    assert runs["strong/1"]["state"] == "failed"
    assert runs["strong/1"]["error"] == "SLURM job 103 ended TIMEOUT; no error in the log"
    assert status["rerun"]["commands"] == [
        "snakemake --executor slurm results/runs/strong/1.json"]
    (tmp_path / "profiles" / "slurm").mkdir(parents=True)
    assert status_json(tmp_path, env=env)["rerun"]["commands"] == [
        "snakemake --profile profiles/slurm results/runs/strong/1.json"]
    assert calls.read_text().splitlines() == ["--me --noheader --states=all --format=%i|%T"] * 2

    # No SLURM here at all: the same study, states from the files, no error.
    env = {"PATH": os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep)
                                   if not (Path(p) / "squeue").exists())}
    status = status_json(tmp_path, env=env)
    assert status["slurm"] == {"available": False, "problem": "no squeue on PATH"}
    check_counts(status)


# --- real Snakemake ------------------------------------------------------------------------
def start_snakemake(root: Path, *args: str, env: dict | None = None) -> subprocess.Popen:
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(SNAKEFILE),
               "--directory", str(root), "--workflow-profile", "none", *args]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(root), os.environ.get("PYTHONPATH", "")]), **(env or {})}
    return subprocess.Popen(command, cwd=root, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def type_in(root: Path, command: str, *harness: str, env: dict | None = None,
            timeout: float = 180) -> None:
    """Run a command status printed, as a user types it in the study directory (plus what
    the test harness needs: this repository's Snakefile, no workflow profile)."""
    proc = start_snakemake(root, *command.split()[1:], *harness, env=env)
    output, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, output[-4000:]


def poll(root: Path, until, timeout: float, env: dict | None = None,
         seen: list | None = None, total: int = TOTAL) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        status = status_json(root, env=env)
        check_counts(status, total)
        if seen is not None:
            seen.append(status)
        if until(status):
            return status
        if time.monotonic() > deadline:
            raise AssertionError(f"status never got there:\n{json.dumps(status)[:3000]}")
        time.sleep(0.2)


def stop(proc: subprocess.Popen) -> str:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)   # the session this test started
    return proc.communicate(timeout=30)[0] or ""


@pytest.mark.slow
def test_a_running_study_moves_from_pending_to_done_and_a_killed_run_fails(tmp_path,
                                                                          helpers):
    root = make_study(tmp_path / "study")
    proc = start_snakemake(root, "--cores", "2", "--keep-going")
    watch = subprocess.Popen([sys.executable, "-m", "assay.cli", "status", "--watch", "1"],
                             cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True)
    helpers.append(watch)
    seen: list[dict] = []
    try:
        status = poll(root, lambda s: any(r["state"] == "running" and (r["percent"] or 0) > 0
                                          for r in s["runs"]), 60, seen=seen)
        victim = next(r for r in status["runs"] if r["state"] == "running"
                      and r["percent"] > 0)
        assert victim["message"].startswith("step ") and victim["attempt"] == 1
        assert status["snakemake"]["running"] is True
        state = json.loads((root / victim["workdir"] / "state.json").read_text())
        assert state["pid"] == victim["pid"]
        os.kill(state["pid"], signal.SIGKILL)   # the run's `python -m assay.jobs` process
        name = f"{victim['condition']}/{victim['replicate']}"
        poll(root, lambda s: runs_by_name(s)[name]["state"] == "failed", 30, seen=seen)
        poll(root, lambda s: proc.poll() is not None, 120, seen=seen)   # --keep-going
    finally:
        output = stop(proc)
    assert proc.returncode != 0, output
    # --watch redrew until Snakemake stopped at the failure, then exited 1 by itself.
    frames = watch.communicate(timeout=30)[0]
    assert watch.returncode == 1, frames
    assert frames.count("--- next look in 1 s") >= 5
    assert re.search(r"\[#+\.*\] +\d+%  \d+ done", frames)
    assert frames.rstrip().endswith("snakemake --cores all")

    status = status_json(root)
    check_counts(status)
    assert status["snakemake"]["running"] is False
    assert status["stages"]["run"]["done"] == 3 and status["stages"]["aggregate"]["done"] == 1
    [failed] = status["failed"]
    assert failed["log"] == f"results/logs/run/{name}.log"
    assert "is gone without an error in its log: killed?" in failed["error"]
    target = f"results/runs/{name}.json"
    assert status["rerun"]["commands"] == [f"snakemake --cores all {target}"]
    # Every run was seen pending or running before it was done.
    for run in ("free/1", "free/2", "strong/1", "strong/2"):
        states = [runs_by_name(s)[run]["state"] for s in seen]
        assert states[0] in ("pending", "running") and "running" in states, (run, states)
        assert states[-1] == ("failed" if run == name else "done"), (run, states)
        progress = [runs_by_name(s)[run]["percent"] for s in seen
                    if runs_by_name(s)[run]["state"] == "running"]
        assert any(p and p > 0 for p in progress), (run, progress)

    type_in(root, status["rerun"]["commands"][0], env={})   # the run resumes, attempt 2
    status = status_json(root)
    check_counts(status)
    assert runs_by_name(status)[name]["state"] == "done"
    assert runs_by_name(status)[name]["attempt"] == 2
    assert status["failed"] == [] and status["stages"]["catalog"]["pending"] == 1
    type_in(root, status["rerun"]["study"][0])
    status = status_json(root)
    assert status["counts"]["done"] == TOTAL


@pytest.mark.slow
def test_after_snakemake_was_killed_status_says_what_to_type(tmp_path):
    root = make_study(tmp_path / "study", replicates=1, aggregation={"min_replicates": 1})
    proc = start_snakemake(root, "--cores", "2")
    try:
        poll(root, lambda s: sum(r["state"] == "running" and (r["percent"] or 0) > 0
                                 for r in s["runs"]) == 2, 60, total=9)
    finally:
        stop(proc)   # SIGKILL: Snakemake and its jobs, no cleanup

    status = json.loads(run_status(root, "--json").stdout)
    assert status["snakemake"]["stale_lock"] is True and status["snakemake"]["running"] is False
    assert status["counts"]["failed"] == 2 and status["stages"]["run"]["failed"] == 2
    assert status["counts"]["done"] + status["counts"]["failed"] + status["counts"]["pending"] \
        == status["total"] == 9
    assert status["rerun"]["commands"] == [
        "snakemake --unlock --cores all",
        "snakemake --cores all results/runs/free/1.json results/runs/strong/1.json"]
    before = snapshot(root)
    time.sleep(0.05)
    assert run_status(root).returncode == 1 and run_status(root, "--watch", "0").returncode == 1
    assert snapshot(root) == before   # markers, lock and work dirs left as they were

    for command in status["rerun"]["commands"]:
        type_in(root, command)
    status = status_json(root)
    assert status["stages"]["run"]["done"] == 2 and status["failed"] == []
    assert [r["attempt"] for r in status["runs"]] == [2, 2]   # resumed in their work dirs
    assert status["snakemake"]["locked"] is False


# --- SLURM ---------------------------------------------------------------------------------
@pytest.fixture
def slurm_env():
    """The loopback cluster's environment, or a skip (a failure with ASSAY_REQUIRE_SLURM=1)."""
    import shutil

    required = os.environ.get("ASSAY_REQUIRE_SLURM") == "1"
    state = Path(os.environ.get("ASSAY_SLURM_STATE", "/tmp/assay-slurm"))
    if shutil.which("sbatch") is None and not required:
        pytest.skip("no SLURM client (sbatch) installed; `bash tests/slurm/cluster.sh up`")
    proc = subprocess.run(["bash", str(REPO / "tests" / "slurm" / "cluster.sh"), "status"],
                          check=False, capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        message = f"the loopback SLURM cluster is not up:\n{proc.stdout}{proc.stderr}"
        if required:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    env = {"PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]])}
    if "SLURM_CONF" not in os.environ and (state / "slurm.conf").is_file():
        env["SLURM_CONF"] = str(state / "slurm.conf")
    return env


@pytest.mark.slow
@pytest.mark.slurm
def test_status_shows_slurm_job_ids_and_states_while_runs_go_through_slurm(tmp_path,
                                                                            slurm_env):
    """Four runs on the 2-CPU node: two RUNNING (with progress from the compute node),
    two PENDING in the queue; then all done. Only the run jobs are targeted, so the
    rest of the study stays pending."""
    root = make_study(tmp_path / "study")
    targets = [f"results/runs/{c}/{r}.json" for c in ("free", "strong") for r in (1, 2)]
    # one run per SLURM job (the profile bundles up to 4 replicates in one)
    proc = start_snakemake(root, "--profile", str(PROFILE), "--retries", "0",
                           "--slurm-init-seconds-before-status-checks", "2", *targets,
                           "--group-components", "replicate=1", env=slurm_env)
    seen: list[dict] = []
    try:
        poll(root, lambda s: any(r["slurm_state"] == "RUNNING" and (r["percent"] or 0) > 0
                                 for r in s["runs"])
             and any(r["slurm_state"] == "PENDING" for r in s["runs"]), 120, env=slurm_env,
             seen=seen)
        status = poll(root, lambda s: s["stages"]["run"]["done"] == 4, 180, env=slurm_env,
                      seen=seen)
        output, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0, output[-4000:]
    finally:
        stop(proc)
    submitted = set(re.findall(r"submitted with SLURM jobid (\d+)", output))
    ids = {r["slurm_job_id"] for s in seen for r in s["runs"] if r["slurm_job_id"]}
    assert ids and ids <= submitted and len(ids) == 4, (ids, submitted)
    assert any(s["counts"]["queued"] for s in seen)
    running = [r for s in seen for r in s["runs"] if r["slurm_state"] == "RUNNING"]
    assert all(r["state"] == "running" for r in running), running
    assert any(r["message"] and r["message"].startswith("step ") for r in running)
    # squeue is asked once any unfinished job has a SLURM id (the marker's, then state.json's)
    assert all(s["slurm"]["available"] for s in seen
               if any(r["slurm_job_id"] for r in s["runs"]))
    check_counts(status)
    assert status["stages"]["collect"]["pending"] == 4 and status["counts"]["failed"] == 0
