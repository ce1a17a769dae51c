"""Cluster faults on a real SLURM cluster: snakemake never hangs in silence (issue 30).

Each test breaks one thing while the study runs through ``profiles/slurm`` and asserts that
snakemake finishes (or stops) within a bound, says what happened in a line that names the
SLURM job, and that the study ends with the numbers of a fault-free run (the pins of
tests/data/small_study_pins.json, made locally) and the same digests in every test:

* ``squeue`` failing for a while (a wrapper first on PATH): the jobs are kept, a warning
  quotes squeue's error, the run finishes (assay.pipeline.slurm_watch);
* the only node drained: the pending job is named with SLURM's reason; then squeue fails
  too, and Ctrl-C still stops snakemake and cancels the job;
* slurmctld killed and restarted: the same, against the real controller;
* slurmctld SIGKILLed and restarted from an empty state dir: the job SLURM lost is reported
  failed after 3 x the patience ("SLURM no longer knows job N"), the retry finishes;
* ``sbatch`` refusing the job: one line with sbatch's own error, no ``message: None``;
* ``scancel`` of the running job: one line with its SLURM state and SLURM's log line;
* SIGKILL of the main snakemake: ``assay status`` lists its SLURM job still running and the
  ``scancel`` line; the documented restart (``--unlock``, then ``--rerun-incomplete``)
  submits nothing while that job lives (it is suspended meanwhile, so the test does not
  depend on timing), takes what it finished as done, and leaves its rule log and SLURM log
  whole;
* slurmd SIGKILLed with the job's processes (a node that dies): a warning names the job and
  its silent node while SLURM still calls it RUNNING; SLURM requeues it (NODE_FAIL) and a
  line says so; with slurmd back, the job is held (``scontrol hold``): named as held;
  released, it runs again and the study finishes.

These kill and restart daemons, so they use a cluster of their own (tests/slurm/cluster.sh
with its own state dir, ports and node, ASSAY_SLURM_ETC_COPY=0: /etc/slurm/slurm.conf stays
the shared cluster's, and every client here gets SLURM_CONF), started once for the module
and stopped at its end. Its SlurmdTimeout is 10 s and its cred_expire (also the delay before
a requeued job may start) 10 s, instead of SLURM's 300 s and 120 s.

Not covered: a job that ends NODE_FAIL without a requeue (``--no-requeue``, JobRequeue=0:
it is reported like any failed job, with its state); ``scontrol requeue`` of a running job
(the same requeue path as after the node failure, plus a SIGTERM; its ``--open-mode=append``
SLURM log was checked by hand).
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from watch_helpers import Watched
from workflow_helpers import REPO, SMALL_CONFIG, digests, write_config

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

CLUSTER = REPO / "tests" / "slurm" / "cluster.sh"
PROFILE = REPO / "profiles" / "slurm"
BOUND_S = 240          # any run here ends within this (expected: 10-40 s)
PATIENCE_S = 3         # ASSAY_SLURM_STATUS_PATIENCE for these runs (default 120)
SLURMD_TIMEOUT_S = 10  # SlurmdTimeout of this module's cluster (SLURM's default: 300)

# 2 conditions x 2 replicates, one analysis: one SLURM job (the profile's replicate=4)
CONFIG = copy.deepcopy(SMALL_CONFIG)
CONFIG["analyses"] = {"contacts": SMALL_CONFIG["analyses"]["contacts"]}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Cluster:
    """A loopback SLURM cluster of this module's own."""

    def __init__(self, state: Path) -> None:
        self.state = state
        self.conf = state / "slurm.conf"
        ctld = _free_port()
        slurmd = next(port for port in iter(_free_port, None) if port != ctld)
        self.env = {**os.environ, "ASSAY_SLURM_STATE": str(state), "ASSAY_SLURM_ETC_COPY": "0",
                    "ASSAY_SLURM_NODE": "faults-node", "ASSAY_SLURM_CTLD_PORT": str(ctld),
                    "ASSAY_SLURMD_PORT": str(slurmd),
                    # a killed slurmd ends its jobs NODE_FAIL after this, not 300 s
                    "ASSAY_SLURMD_TIMEOUT": str(SLURMD_TIMEOUT_S),
                    # a requeued job may start again this long after (SLURM: 120 s)
                    "ASSAY_SLURM_CRED_EXPIRE": "10"}

    def run(self, command: str) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", str(CLUSTER), command], env=self.env, text=True,
                              capture_output=True, timeout=120)

    def stop_slurmctld(self, how: signal.Signals = signal.SIGTERM) -> None:
        """Stop this cluster's slurmctld (by its recorded pid) and wait until it is gone."""
        self.stop_daemon("slurmctld", how)

    def stop_daemon(self, name: str, how: signal.Signals = signal.SIGTERM) -> None:
        """Stop this cluster's daemon ``name`` (by its recorded pid); wait until it is gone."""
        pid = int((self.state / f"{name}.pid").read_text())
        assert Path(f"/proc/{pid}/comm").read_text().strip() == name
        os.kill(pid, how)
        while Path(f"/proc/{pid}").exists() and "Z" not in _proc_state(pid):
            time.sleep(0.1)

    def client_env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        """The submitting shell: python first on PATH, SLURM_CONF of this cluster (always)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
        env.update(extra or {})
        env["PATH"] = os.pathsep.join([*filter(None, [env.pop("PREPEND_PATH", None)]),
                                       str(Path(sys.executable).parent), os.environ["PATH"]])
        env["SLURM_CONF"] = str(self.conf)
        env.setdefault("ASSAY_SLURM_STATUS_PATIENCE", str(PATIENCE_S))
        return env

    def squeue(self, *args: str) -> str:
        return subprocess.run(["squeue", "-h", *args], env=self.client_env(), text=True,
                              capture_output=True, timeout=60).stdout


def job_processes(job: str) -> list[int]:
    """Pids of a SLURM job's processes on this host: its slurmstepd and what runs in it."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            environ = Path(f"/proc/{entry}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if (cmdline.startswith(f"slurmstepd: [{job}.".encode())
                or f"SLURM_JOB_ID={job}".encode() in environ):
            pids.append(int(entry))
    return pids


def kill_job_processes(job: str) -> int:
    """SIGKILL every process of SLURM job ``job`` here, as a node that dies would; how many."""
    killed: set[int] = set()
    for _ in range(50):
        pids = [pid for pid in job_processes(job) if "Z" not in _proc_state(pid)]
        if not pids:
            return len(killed)
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
                killed.add(pid)
            except ProcessLookupError:
                pass
        time.sleep(0.1)
    raise AssertionError(f"processes of SLURM job {job} survive SIGKILL: {job_processes(job)}")


def _proc_state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "X"


@pytest.fixture(scope="module")
def cluster():
    required = os.environ.get("ASSAY_REQUIRE_SLURM") == "1"
    if (shutil.which("slurmctld") is None or os.geteuid() != 0) and not required:
        pytest.skip("needs root and the SLURM daemons (`bash tests/slurm/cluster.sh up` once)")
    state = Path(tempfile.mkdtemp(prefix="assay-slurm-faults-"))
    state.chmod(0o755)   # munged (user munge) keeps its socket in there
    own = Cluster(state)
    up = own.run("up")
    if up.returncode != 0:
        own.run("down")
        shutil.rmtree(state, ignore_errors=True)
        pytest.fail(f"could not start a second loopback cluster:\n{up.stderr[-3000:]}")
    yield own
    own.run("down")
    shutil.rmtree(own.state, ignore_errors=True)


@pytest.fixture(scope="module")
def baseline() -> dict[str, str]:
    """Digests of the first study here that finished; every later one must equal them."""
    return {}


def check_numbers(workdir: Path, reference: dict[str, str]) -> None:
    """The study's numbers are the pinned fault-free ones (tests/data/small_study_pins.json,
    from a local run), and its digests those of every other finished study here."""
    import json

    from test_workflow_e2e import data_pins

    pins = json.loads((REPO / "tests" / "data" / "small_study_pins.json").read_text())
    have = data_pins(workdir)
    assert len(have) in (4 + 4, 4 + 4 + 2 + 1)   # the SLURM part, or the whole study
    assert have == {ref: pins[ref] for ref in have}
    refs = digests(workdir)
    if not reference:
        reference.update(refs)
    assert refs.items() <= reference.items() or reference.items() <= refs.items()
    reference.update(refs)


def study(tmp_path: Path) -> Path:
    workdir = tmp_path / "study"
    write_config(workdir, CONFIG)
    return workdir


def command(workdir: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "workflow" / "Snakefile"),
            "--directory", str(workdir), "--profile", str(PROFILE), "--workflow-profile", "none",
            "--slurm-init-seconds-before-status-checks", "2", *args]


# The SLURM part of the study: its collect refs (and so its runs); the local rules after them
# (matplotlib, DuckDB) add nothing to what the status-query tests look at.
SLURM_PART = [f"results/replicates/contacts/{c}/{r}.json" for c in ("free", "strong")
              for r in (1, 2)]


def start(cluster: Cluster, workdir: Path, *args: str,
          env: dict[str, str] | None = None) -> Watched:
    return Watched(command(workdir, *args), cwd=workdir, watch=[workdir],
                   env=cluster.client_env(env))


def finish(run: Watched, within: float = BOUND_S) -> subprocess.CompletedProcess:
    """Wait for the end of ``run``; fail if it takes longer than ``within`` seconds."""
    deadline = run.started + within

    def ended() -> bool:
        if run.proc.poll() is not None:
            return True
        if time.monotonic() > deadline:
            run.fail(f"snakemake did not end within {within:g} s")
        return False

    run.wait_until(ended, "the end of snakemake") if run.proc.poll() is None else None
    return run.wait()


def wait_within(run: Watched, seen: str, within: float, *also: str) -> float:
    """Wait until the run's stderr holds ``seen`` (and each of ``also``) on one line; fail
    if that takes over ``within`` s (a run that keeps printing never counts as stalled)."""
    deadline = time.monotonic() + within

    def there() -> bool:
        if any(seen in line and all(a in line for a in also) for line in run.stderr.splitlines()):
            return True
        if time.monotonic() > deadline:
            run.fail(f"no line with {seen!r} within {within:g} s")
        return False

    run.wait_until(there, repr(seen))
    return time.monotonic()


def output(proc: subprocess.CompletedProcess) -> str:
    return proc.stdout + proc.stderr


def wrapper(folder: Path, name: str, body: str) -> Path:
    """An executable ``name`` in ``folder`` (put first on PATH) that runs ``body`` (sh)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return folder


def running_job_id(run: Watched) -> str:
    """The id of this run's SLURM job, once submitted."""
    def job() -> str | None:
        match = re.search(r"has been submitted with SLURM jobid (\d+)", run.stderr)
        return match.group(1) if match else None

    return run.wait_until(job, "its submission")


def running_job(cluster: Cluster, run: Watched) -> str:
    """The id of this run's SLURM job, once SLURM runs it."""
    def job() -> str | None:
        match = re.search(r"has been submitted with SLURM jobid (\d+)", run.stderr)
        if match and cluster.squeue("-j", match.group(1), "-o", "%T").strip() == "RUNNING":
            return match.group(1)
        return None

    return run.wait_until(job, "its SLURM job to run")


# --- status queries ---------------------------------------------------------------------------
def test_failing_squeue_is_survived_and_reported(cluster, baseline, tmp_path):
    """squeue fails (first on PATH) from the start: snakemake keeps the job, warns with
    squeue's own error after the patience, and finishes once squeue answers again."""
    workdir = study(tmp_path)
    flag = tmp_path / "squeue-fails"
    flag.touch()
    real = shutil.which("squeue")
    bin_dir = wrapper(tmp_path / "bin", "squeue", (
        f'if [ -e "{flag}" ]; then echo "squeue: error: slurm_load_jobs error: Socket timed '
        f'out on send/recv operation (test wrapper)" >&2; exit 1; fi\nexec "{real}" "$@"'))
    with start(cluster, workdir, *SLURM_PART, env={"PREPEND_PATH": str(bin_dir)}) as run:
        run.wait_until(lambda: "SLURM has not answered job status queries" in run.stderr,
                       "the warning about failing status queries")
        flag.unlink()
        proc = finish(run)
    text = output(proc)
    assert proc.returncode == 0, text[-6000:]
    warning = next(line for line in text.splitlines() if "has not answered" in line)
    assert "`squeue` exited 1: squeue: error: slurm_load_jobs error: Socket timed out on " \
        "send/recv operation (test wrapper)" in warning, warning
    assert re.search(r"scontrol ping: Slurmctld\(primary\) at \S+ is UP", warning), warning
    assert "scontrol ping" in warning and "Ctrl-C" in warning, warning
    assert "SLURM answers job status queries again" in text
    check_numbers(workdir, baseline)


def test_drained_node_then_failing_squeue_then_ctrl_c(cluster, tmp_path):
    """The only node is drained: the pending job is named with SLURM's reason instead of a
    silent wait. Then squeue starts failing, and Ctrl-C still stops snakemake within a
    bound and cancels its job."""
    workdir = study(tmp_path)
    flag = tmp_path / "squeue-fails"
    real = shutil.which("squeue")
    bin_dir = wrapper(tmp_path / "bin", "squeue", (
        f'if [ -e "{flag}" ]; then echo "squeue: error: slurm_load_jobs error: Socket timed '
        f'out (test wrapper)" >&2; exit 1; fi\nexec "{real}" "$@"'))

    def scontrol(*args: str, check: bool = True) -> None:
        subprocess.run(["scontrol", "update", "NodeName=faults-node", *args], check=check,
                       env=cluster.client_env(), capture_output=True, timeout=60)

    # SIGINT as a terminal gives it, even when this test runs where SIGINT is ignored
    # (a background shell): the child restores the default before it becomes snakemake
    argv = command(workdir, SLURM_PART[0])
    restore = ("import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
               "os.execv(sys.argv[1], sys.argv[1:])")
    scontrol("State=DRAIN", "Reason=assay_fault_test")
    try:
        with Watched([sys.executable, "-c", restore, *argv], cwd=workdir, watch=[workdir],
                     env=cluster.client_env({"PREPEND_PATH": str(bin_dir)})) as run:
            job = running_job_id(run)
            run.wait_until(lambda: "has been PENDING" in run.stderr, "the pending warning")
            flag.touch()
            run.wait_until(lambda: "SLURM has not answered job status queries" in run.stderr,
                           "the warning about failing status queries")
            run.proc.send_signal(signal.SIGINT)
            proc = finish(run, within=60)
    finally:
        scontrol("State=RESUME", check=False)
    text = output(proc)
    warning = next(line for line in text.splitlines() if "has been PENDING" in line)
    assert re.search(rf"SLURM job {job} \(group replicate \(run free/1, collect "
                     r"contacts/free/1\)\) has been PENDING for \d+ s: .*(ReqNodeNotAvail|"
                     r"DRAIN).* It will not start by itself: check `sinfo -R`", warning), warning
    assert proc.returncode != 0
    assert "Terminating processes on user request" in text
    state = subprocess.run([real, "-h", "-j", job, "-t", "all", "-o", "%T"], text=True,
                           capture_output=True, env=cluster.client_env(), timeout=60).stdout
    assert state.strip() == "CANCELLED", state


def test_slurmctld_killed_and_restarted(cluster, baseline, tmp_path):
    """slurmctld stops (as for an upgrade or a restart) while the job runs and comes back
    later: the run says so and finishes with the fault-free digests."""
    workdir = study(tmp_path)
    with start(cluster, workdir, *SLURM_PART) as run:
        running_job(cluster, run)
        cluster.stop_slurmctld()
        stopped = time.monotonic()
        try:
            run.wait_until(lambda: "SLURM has not answered job status queries" in run.stderr,
                           "the warning about failing status queries")
        finally:
            up = cluster.run("up")
            back = time.monotonic()
            assert up.returncode == 0, up.stderr[-3000:]
        proc = finish(run)
    text = output(proc)
    assert proc.returncode == 0, text[-6000:]
    warning = next(line for line in text.splitlines() if "has not answered" in line)
    # what failed (squeue, or sacct: the plugin falls back to it when it cannot read
    # MinJobAge from the controller) and what slurmctld's state is
    assert re.search(r"`(squeue|sacct)` exited 1: ", warning), warning
    assert re.search(r"scontrol ping: Slurmctld\(primary\) at \S+ is DOWN", warning), warning
    assert "SLURM answers job status queries again" in text
    check_numbers(workdir, baseline)
    print(f"\nslurmctld down {back - stopped:.0f} s; snakemake ended "
          f"{time.monotonic() - back:.0f} s after it was back")


def test_slurmctld_sigkilled_and_restarted_without_its_state(cluster, baseline, tmp_path):
    """slurmctld is SIGKILLed and comes back from an empty StateSaveLocation (a lost disk):
    SLURM no longer knows the running job (and its slurmd kills it as an orphan). After 3 x
    the patience it is reported failed in a line saying so, not waited for forever; the
    profile's retry submits it again and the study ends with the fault-free numbers."""
    workdir = study(tmp_path)
    with start(cluster, workdir, *SLURM_PART) as run:
        job = running_job(cluster, run)
        cluster.stop_slurmctld(signal.SIGKILL)
        saved = cluster.state / "ctld"
        shutil.rmtree(saved)
        saved.mkdir()
        up = cluster.run("up")
        assert up.returncode == 0, up.stderr[-3000:]
        back = time.monotonic()
        noticed = wait_within(run, "SLURM no longer knows job", 60 + 3 * PATIENCE_S,
                              f"SLURM job {job} (")
        proc = finish(run)
    text = output(proc)
    assert proc.returncode == 0, text[-6000:]
    line = next(line for line in text.splitlines() if "SLURM no longer knows job" in line)
    assert re.match(rf"SLURM job {job} \(group replicate \(run free/1, .*\)\): SLURM no longer "
                    rf"knows job {job}: `squeue` has not listed it for \d+ s \(slurmctld "
                    r"restarted without its state", line), line
    assert "message: None" not in text
    # the retry may get the lost job's id again (SLURM counts from 1 anew): not a "requeue"
    assert "was requeued" not in text, text[-6000:]
    check_numbers(workdir, baseline)
    print(f"\nslurmctld back without its state: the lost job named {noticed - back:.0f} s "
          f"later (3 x patience {PATIENCE_S} s); snakemake ended {time.monotonic() - back:.0f} s "
          "after slurmctld was back")


# --- failed jobs in one line ------------------------------------------------------------------
def test_sbatch_refusal_is_one_line_with_its_error(cluster, tmp_path):
    workdir = study(tmp_path)
    bin_dir = wrapper(tmp_path / "bin", "sbatch", (
        'echo "sbatch: error: Batch job submission failed: Invalid account or '
        'account/partition combination specified (test wrapper)" >&2; exit 1'))
    with start(cluster, workdir, "--retries", "0", env={"PREPEND_PATH": str(bin_dir)}) as run:
        proc = finish(run)
    text = output(proc)
    assert proc.returncode != 0
    lines = [line for line in text.splitlines() if line.startswith("SLURM refused")]
    assert lines == [
        "SLURM refused group replicate (run free/1, run free/2, run strong/1, run strong/2, "
        "collect contacts/free/1, collect contacts/free/2, collect contacts/strong/1, collect "
        "contacts/strong/2): sbatch: error: Batch job submission failed: Invalid account or "
        "account/partition combination specified (test wrapper)"], text[-6000:]
    assert "message: None" not in text
    assert text.count("message: SLURM refused group replicate") == 8   # each member


def test_cancelled_job_is_one_line_with_slurms_words(cluster, tmp_path):
    workdir = study(tmp_path)
    with start(cluster, workdir, "--retries", "0") as run:
        job = running_job(cluster, run)
        subprocess.run(["scancel", job], env=cluster.client_env(), check=True, timeout=60)
        proc = finish(run)
    text = output(proc)
    assert proc.returncode != 0
    lines = [line for line in text.splitlines() if line.startswith(f"SLURM job {job} ")]
    assert len(lines) == 1, text[-6000:]
    assert re.fullmatch(
        rf"SLURM job {job} \(group replicate \(run free/1, .*\)\) ended CANCELLED(, .*?)?: "
        rf".*\*\*\* JOB {job} ON faults-node CANCELLED AT \S+ \*\*\*; log: \S+/{job}\.log",
        lines[0]), lines[0]
    assert "message: None" not in text


# --- the main snakemake killed ----------------------------------------------------------------
def test_restart_after_sigkill_waits_for_the_old_job_and_keeps_its_logs(cluster, baseline,
                                                                         tmp_path):
    """SIGKILL of the main snakemake while its SLURM job runs: `assay status` names the job
    and the scancel line. The restart recipe of docs/hpc.md (``--unlock``, then
    ``--rerun-incomplete``) submits nothing while the old job lives (one live attempt), takes
    what it finished as done, and leaves its logs (the rule logs, its SLURM log) whole."""
    workdir = study(tmp_path)
    run_log = workdir / "results" / "logs" / "run" / "free" / "1.log"
    with start(cluster, workdir, "--slurm-keep-successful-logs") as run:
        job = running_job(cluster, run)
        run.wait_until(lambda: run_log.exists() and "job started" in run_log.read_text(),
                       "the old job's first run")
        os.kill(run.proc.pid, signal.SIGKILL)   # the main snakemake only, not its group
        run.proc.wait()
    # keep the old job alive however fast the restart is (SIGSTOP to its processes)
    subprocess.run(["scontrol", "suspend", job], env=cluster.client_env(), check=True,
                   capture_output=True, timeout=60)
    status = subprocess.run([str(Path(sys.executable).parent / "assay"), "status"],
                            cwd=workdir, text=True, capture_output=True,
                            env=cluster.client_env(), timeout=120)
    assert "SLURM JOBS STILL RUNNING HERE (1)" in status.stdout, status.stdout + status.stderr
    assert f"scancel {job}" in status.stdout
    old_log = run_log.read_text()
    old_inode = run_log.stat().st_ino
    [slurm_log] = (workdir / ".snakemake" / "slurm_logs").rglob(f"{job}.log")
    old_slurm_log = slurm_log.read_text()
    with start(cluster, workdir, "--unlock") as unlock:
        assert finish(unlock).returncode == 0
    with start(cluster, workdir, "--rerun-incomplete") as rerun:
        wait_within(rerun, "of a snakemake that is gone still work here", 120, f"{job} SUSPENDED",
                    f"scancel {job}")
        time.sleep(PATIENCE_S)   # what it would have submitted by now, it has
        assert "has been submitted with SLURM jobid" not in rerun.stderr, rerun.stderr[-3000:]
        assert cluster.squeue("-o", "%i").split() == [job]
        assert run_log.stat().st_ino == old_inode and run_log.read_text() == old_log
        subprocess.run(["scontrol", "resume", job], env=cluster.client_env(), check=True,
                       capture_output=True, timeout=60)
        proc = finish(rerun)
    text = output(proc)
    assert proc.returncode == 0, text[-6000:]
    assert f"The SLURM job(s) {job} left by the killed snakemake ended after" in text
    # what the old job had not finished when the restart built its DAG (run free/1, at least)
    assert re.search(r"\ngroup replicate \(run free/1.*\): made by a SLURM job of the killed "
                     r"snakemake; not submitted again\n", text), text[-6000:]
    assert "has been submitted with SLURM jobid" not in text   # nothing ran a second time
    # the old job's logs are whole: its rule log went on where it was, its SLURM log too
    assert run_log.stat().st_ino == old_inode
    assert run_log.read_text().startswith(old_log)
    assert "[assay run] ref results/runs/free/1.json -> " in run_log.read_text()
    assert slurm_log.read_text().startswith(old_slurm_log)
    check_numbers(workdir, baseline)


# --- a node that dies, a requeued and a held job ----------------------------------------------
def test_slurmd_killed_then_requeued_job_held_and_released(cluster, baseline, tmp_path):
    """slurmd and every process of the running job are SIGKILLed (a node that dies). While
    SLURM still calls the job RUNNING a warning names it and its silent node; after
    SlurmdTimeout SLURM requeues it (NODE_FAIL) and a line says so. With slurmd back, the
    requeued job is held (``scontrol hold``): a line names it as held; released, it runs again
    from the start and the study ends with the fault-free numbers."""
    workdir = study(tmp_path)

    def scontrol(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["scontrol", *args], env=cluster.client_env(), text=True,
                              capture_output=True, timeout=60)

    with start(cluster, workdir, *SLURM_PART, "--slurm-keep-successful-logs") as run:
        job = running_job(cluster, run)
        # the job's script runs (the node's snakemake), not only its slurmstepd
        run.wait_until(lambda: len(job_processes(job)) >= 2, "the job's processes")
        try:
            cluster.stop_daemon("slurmd", signal.SIGKILL)
            assert kill_job_processes(job) >= 2   # slurmstepd, the node's snakemake, ...
            killed = time.monotonic()
            warned = wait_within(run, "whose slurmd does not answer", 60 + SLURMD_TIMEOUT_S)
            requeued = wait_within(run, "was requeued", 60 + 3 * SLURMD_TIMEOUT_S,
                                   f"SLURM job {job} (")
        finally:
            up = cluster.run("up")   # slurmd back (the node returns by itself: ReturnToService)
            assert up.returncode == 0, up.stderr[-3000:]
        back = time.monotonic()
        # the requeued job waits cred_expire (10 s here) before it may start: hold it now
        hold = scontrol("hold", job)
        assert hold.returncode == 0, hold.stderr
        noted = wait_within(run, "JobHeld", 60, f"SLURM job {job} (",
                            "It will not start by itself")
        # released once it may start (a release then starts it at once; before, it would wait
        # for SLURM's next periodic scheduling pass, up to 30-60 s later)
        eligible = re.search(r"EligibleTime=(\S+)", scontrol("-o", "show", "job", job).stdout)
        if eligible and eligible.group(1)[:1].isdigit():
            from datetime import datetime

            wait = datetime.fromisoformat(eligible.group(1)).timestamp() + 1 - time.time()
            time.sleep(min(max(wait, 0.0), 30.0))
        release = scontrol("release", job)
        assert release.returncode == 0, release.stderr
        proc = finish(run)
    text = output(proc)
    assert proc.returncode == 0, text[-6000:]
    what = r"\(group replicate \(run free/1, .*\)\)"
    warning = next(line for line in text.splitlines() if "whose slurmd does not answer" in line)
    assert re.search(rf"SLURM job {job} {what} is RUNNING on faults-node, whose slurmd does not "
                     r"answer slurmctld \(faults-node: \S+\*", warning), warning
    assert "SlurmdTimeout" in warning and "sinfo -R" in warning, warning
    [line] = [line for line in text.splitlines() if "was requeued" in line]
    assert re.search(rf"SLURM job {job} {what} was requeued after its node faults-node stopped "
                     r"answering \(NODE_FAIL\): RUNNING before, PENDING now.*, restart 1\. ",
                     line), line
    held = next(line for line in text.splitlines() if "JobHeld" in line)
    assert re.search(rf"SLURM job {job} {what} has been PENDING for \d+ s: JobHeld", held), held
    assert "message: None" not in text
    check_numbers(workdir, baseline)
    print(f"\nslurmd killed: warned after {warned - killed:.0f} s, requeue noticed after "
          f"{requeued - killed:.0f} s (SlurmdTimeout {SLURMD_TIMEOUT_S} s); slurmd back after "
          f"{back - killed:.0f} s, hold noted {noted - back:.0f} s later; snakemake ended "
          f"{time.monotonic() - killed:.0f} s after the kill, {killed - run.started:.0f} s "
          "after it started")
