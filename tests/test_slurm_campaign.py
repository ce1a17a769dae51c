"""A simulation campaign on the real loopback SLURM cluster: walltime, retries, resources.

Needs the cluster of ``tests/slurm/cluster.sh`` (the skip/fail logic, the helpers that run
``snakemake --profile profiles/slurm`` and read the jobcomp log come from test_slurm.py).

1. A shell-runner "simulation" that needs ~95 s runs with ``runtime: 1`` (one minute):
   SLURM ends it in state TIMEOUT, the profile's ``retries`` resubmits it, the next
   attempt resumes from the checkpoint the first left in ``store/work/<key>/files`` and
   the published run artifact has the digest of the same run done uninterrupted. (The
   run is a group job of one replicate, as profiles/slurm makes every run.)
2. Submitted jobs carry the study's threads, memory, walltime and partition (read back
   from SLURM: ``scontrol show job`` and the jobcomp log); a group job the most CPUs and
   memory of its members and the sum of their runtimes.
3. A GPU request becomes ``--gpus=1`` on the sbatch command line (the loopback node has
   no GPU and no GRES: sbatch rejects the job, which is the point where we stop looking);
   sbatch's reason shows in snakemake's output only for a run outside a group.
4. Changing resources (or the grace period) reruns nothing (local, cheap).

SLURM timing on this cluster (22.05, ``scontrol show config``): slurmctld tests time limits
every 30 s (PERIODIC_TIMEOUT, not configurable), OverTimeLimit=0, KillWait=30 s. A job with
``-t 1`` therefore gets SIGTERM between 60 and 90 s after it started (measured: 66 and 79 s), and
SIGKILL 30 s later. The runner's grace period (10 s here) must stay below KillWait.

Why 95 steps of 1 s. Let s1, s2 be the start-up of each attempt (the job's own snakemake
on the node, imports, DAG: ~1.5-3 s). Attempt 1 must not finish before its SIGTERM, which may
come 90 s after it started: 95 > 90 - s1. Attempt 2 must finish within its own 60 s:
it has 95 - (60 - s1) = 35 + s1 steps left, plus s2 to start: 35 + s1 + s2 < 60. That
leaves ~5 + s1 s of margin on the first side and ~25 - s1 - s2 s on the second, so the
profile's ``retries: 1`` (two attempts) is enough and the test uses exactly that value.

Time: attempt 1 ends at its limit (60-90 s); the executor plugin then notices it at its
next status check (checks back off 2, 14, 36, 68, 110 s after a submission), resubmits,
and attempt 2 (~40 s) is noticed at the 68 s check: ~3 minutes for test 1, during which
the uninterrupted local run (95 s) runs alongside. The whole file takes ~4 minutes.
"""

from __future__ import annotations

import concurrent.futures
import copy
import json
import os
import re
import shlex
import subprocess
import sys
import textwrap
import time
from datetime import datetime
from pathlib import Path

import pytest
import yaml

from assay import ArtifactStore, read_ref
from test_slurm import (  # noqa: F401  (slurm_cluster: the module's autouse skip/fail fixture)
    PROFILE,
    check_ok,
    rule_jobs_in_slurm_logs,
    slurm_cluster,
    slurm_env,
    snakemake_slurm,
    wait_for_jobcomp,
)
from workflow_helpers import SMALL_CONFIG, digests, jobs_run, snakemake, write_config

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

TIMES: dict[str, float] = {}  # wall times, printed at the end of the module (-s)


@pytest.fixture(scope="module", autouse=True)
def print_times():
    yield
    if TIMES:
        print("\n[slurm campaign] " + ", ".join(f"{k} {v:.1f} s" for k, v in TIMES.items()))

_SUBMISSION = re.compile(r"^Job (\S+) has been submitted with SLURM jobid (\d+) "
                         r"\(log: (\S+)\)\.", re.M)


def submissions(output: str) -> list[tuple[int, str]]:
    """(SLURM job id, slurm log path) of every submission, in order (retries included)."""
    return [(int(m.group(2)), m.group(3)) for m in _SUBMISSION.finditer(output)]


def slurm_time(value: str) -> datetime:
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S")


def scontrol_job(job_id: int) -> dict[str, str]:
    """``scontrol -o show job``: known while the job is queued, running or finished for
    less than MinJobAge (300 s on the loopback cluster)."""
    proc = subprocess.run(["scontrol", "-o", "show", "job", str(job_id)], capture_output=True,
                          text=True, timeout=30, env=slurm_env())
    assert proc.returncode == 0, f"scontrol show job {job_id}: {proc.stderr}"
    return dict(re.findall(r"(?:^|\s)([\w/:]+)=(\S*)", proc.stdout))


def code_env(*paths: Path) -> dict[str, str]:
    """PYTHONPATH for snakemake and (sbatch --export=ALL) its jobs: user code by name."""
    return {"PYTHONPATH": os.pathsep.join(
        [*(str(p) for p in paths), *filter(None, [os.environ.get("PYTHONPATH")])])}


# === 1. walltime TIMEOUT, retry, resume, same digest =====================================
ENGINE = textwrap.dedent('''
    """A deterministic checkpointing toy engine (run by assay's shell runner).

    usage: engine.py STEPS SECONDS_PER_STEP. Works in the current directory (the run's
    persistent work directory): after every step it writes checkpoint.json atomically
    (step, state, and which attempt ran which steps), on start it resumes from it. On
    SIGTERM it finishes the current step, checkpoints and exits 143. The result depends
    only on the seed and STEPS, never on where it was interrupted.
    """
    import hashlib
    import json
    import os
    import signal
    import sys
    import time

    steps, dt = int(sys.argv[1]), float(sys.argv[2])
    attempt = int(os.environ["ASSAY_ATTEMPT"])
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(time.time()))

    def save(step, state, history):
        with open("checkpoint.json.tmp", "w") as handle:
            json.dump({"step": step, "state": state, "history": history}, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace("checkpoint.json.tmp", "checkpoint.json")

    if os.path.exists("checkpoint.json"):
        with open("checkpoint.json") as handle:
            checkpoint = json.load(handle)
        step, state, history = checkpoint["step"], checkpoint["state"], checkpoint["history"]
        print(f"resuming from step {step} (ASSAY_ATTEMPT={attempt}, "
              f"ASSAY_RESUME={os.environ.get('ASSAY_RESUME')})", flush=True)
    else:
        step, history = 0, []
        state = hashlib.sha256(f"seed {os.environ['ASSAY_SEED']}".encode()).hexdigest()
        print(f"starting at step 0 (ASSAY_ATTEMPT={attempt}, "
              f"ASSAY_RESUME={os.environ.get('ASSAY_RESUME')})", flush=True)
    history.append({"attempt": attempt, "from": step, "to": step})
    while step < steps:
        time.sleep(dt)
        state = hashlib.sha256(f"{state} {step}".encode()).hexdigest()
        step += 1
        history[-1]["to"] = step
        save(step, state, history)
        if step % 10 == 0:
            print(f"step {step}/{steps}", flush=True)
        if stop:
            history[-1]["stopped_by"] = "SIGTERM"   # bookkeeping only, not in the result
            save(step, state, history)
            print(f"SIGTERM: checkpoint at step {step} written, exiting", flush=True)
            sys.exit(143)
    print("history " + json.dumps(history), flush=True)
    with open("result.txt", "w") as handle:
        handle.write(f"steps {steps}\\nstate {state}\\n")
''')

ANALYSIS = textwrap.dedent('''
    from assay import METRICS


    class FinalState:
        """x = the engine's final state as a number in [0, 1)."""

        def collect(self, ctx):
            path = ctx.artifact_store.validate_sidecar(ctx.run_sidecar("result"))
            state = path.read_text().split()[-1]
            return ctx.result(payload={METRICS: {"x": int(state[:12], 16) / 16 ** 12}})
''')

STEPS = 95
CONDITION = "long"
RUN_REF = f"results/runs/{CONDITION}/1.json"
RUN_LOG = f"results/logs/run/{CONDITION}/1.log"
COLLECT_REF = f"results/replicates/final/{CONDITION}/1.json"
CAMPAIGN_TIMEOUT = 480   # the SLURM run (measured ~170 s)
GRACE = 10               # < KillWait (30 s)


def campaign_config(engine: Path, runtime: int, grace: int) -> dict:
    return {
        "seed": 2026,
        "conditions": [{"label": CONDITION, "params": {}}],
        "control": CONDITION,
        "replicates": 1,
        "runner": {"plugin": "shell", "grace_seconds": grace,
                   "settings": {
                       "command": f"{shlex.quote(sys.executable)} {{settings[engine]}} "
                                  f"{{settings[steps]}} {{settings[dt]}}",
                       # the same path in both studies: settings are part of the digest
                       "engine": str(engine), "steps": STEPS, "dt": 1.0,
                       "outputs": ["result.txt"]}},
        "analyses": {"final": {"plugin": "campaign_analysis:FinalState"}},
        "aggregation": {"min_replicates": 1},
        "resources": {"run": {"runtime": runtime}},
    }


def profile_retries() -> int:
    return int(yaml.safe_load((PROFILE / "config.yaml").read_text())["retries"])


@pytest.fixture(scope="module")
def campaign(tmp_path_factory):
    """The study on SLURM with a 1-minute walltime, and uninterrupted locally (in parallel)."""
    code = tmp_path_factory.mktemp("campaign-code")
    engine = code / "engine.py"
    engine.write_text(ENGINE)
    (code / "campaign_analysis.py").write_text(ANALYSIS)
    env = code_env(code)

    local = tmp_path_factory.mktemp("campaign-local")
    # a walltime that never bites and another grace period: neither may change a digest
    write_config(local, campaign_config(engine, runtime=600, grace=30))
    on_slurm = tmp_path_factory.mktemp("campaign-slurm")
    write_config(on_slurm, campaign_config(engine, runtime=1, grace=GRACE))

    retries = profile_retries()
    assert retries >= 1, "profiles/slurm must resubmit a job that hit its walltime"
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        started = time.monotonic()
        local_run = pool.submit(snakemake, local, RUN_REF, COLLECT_REF,
                                env={**env, "PATH": slurm_env()["PATH"]},
                                timeout=CAMPAIGN_TIMEOUT)
        # test_slurm's helper passes --retries 0; the profile's value comes after it
        run = snakemake_slurm(on_slurm, RUN_REF, "--retries", str(retries), env=env,
                              timeout=CAMPAIGN_TIMEOUT)
        TIMES["campaign on SLURM"] = run.seconds
        local_run.result()
        TIMES["campaign local"] = time.monotonic() - started
    check_ok(run)
    return on_slurm, local, run


def test_walltime_timeout_is_retried_by_the_profile(campaign):
    _, _, run = campaign
    submitted = submissions(run.output)
    assert len(submitted) == 2, (f"expected the run job submitted twice (TIMEOUT, then its "
                                 f"retry): {submitted}\n{run.output[-6000:]}")
    records = {int(r["JobId"]): r for r in wait_for_jobcomp(run.run_id, 2)}
    first, second = (records[job_id] for job_id, _ in submitted)
    assert first["JobState"] == "TIMEOUT", first
    assert second["JobState"] == "COMPLETED", second
    assert first["TimeLimit"] == second["TimeLimit"] == "1", (first, second)
    ran = (slurm_time(first["EndTime"]) - slurm_time(first["StartTime"])).total_seconds()
    assert 60 <= ran <= 100, f"attempt 1 ran {ran} s under a 1-minute limit: {first}"
    # the run is a group job (of one replicate, profiles/slurm): snakemake reports the
    # failed attempt as the group's error with the SLURM log, whose slurmstepd line says
    # why (Snakemake 9.27 leaves the executor's "SLURM status is: 'TIMEOUT'" out of a
    # group's error)
    error = re.search(r"^    message: Error in group replicate\n((?:    .*\n)+)", run.output,
                      re.M)
    assert error and submitted[0][1] in error.group(1), run.output[-6000:]
    first_log = Path(submitted[0][1])
    assert "DUE TO TIME LIMIT" in first_log.read_text(errors="replace"), first_log
    TIMES["attempt 1 (until TIMEOUT)"] = ran
    TIMES["attempt 2"] = (slurm_time(second["EndTime"])
                          - slurm_time(second["StartTime"])).total_seconds()


def test_second_attempt_resumes_from_the_checkpoint(campaign):
    on_slurm, _, _ = campaign
    log = (on_slurm / RUN_LOG).read_text()
    resumed = re.search(r"^resuming from step (\d+) \(ASSAY_ATTEMPT=(\d+), "
                        r"ASSAY_RESUME=(\S+)\)$", log, re.M)
    assert resumed, log
    k = int(resumed.group(1))
    assert 0 < k < STEPS, log
    assert resumed.group(2) == "2" and resumed.group(3) == "1", resumed.group(0)
    # attempt 1's log is replayed at the top of attempt 2's (Snakemake deletes a rule's log
    # before a retry): after it, attempt 2 resumed and did not start over
    replayed, _, own = log.partition("[assay run] ---- end of the log of attempt 1 ----")
    assert "starting at step 0 (ASSAY_ATTEMPT=1, ASSAY_RESUME=None)" in replayed, log
    assert own and "starting at step 0" not in own, "attempt 2 started over"
    # the checkpoint's own record: who ran which steps
    history = json.loads(re.search(r"^history (.*)$", log, re.M).group(1))
    # attempt 1 was stopped by SIGTERM (time to checkpoint), not SIGKILLed mid-step
    assert history == [{"attempt": 1, "from": 0, "to": k, "stopped_by": "SIGTERM"},
                       {"attempt": 2, "from": k, "to": STEPS}], history
    # attempt 1 ran ~55-87 steps before its SIGTERM (60-90 s minus its start-up)
    assert k >= 40, history
    assert re.search(r"^\[assay run\] attempt 2 in .*\(resuming", log, re.M), log


def test_resumed_run_has_the_uninterrupted_digest(campaign):
    on_slurm, local, _ = campaign
    slurm_digest = read_ref(on_slurm / RUN_REF).digest
    local_digest = read_ref(local / RUN_REF).digest
    assert slurm_digest == local_digest
    # and the locally collected result was made from that very artifact
    store = ArtifactStore(local / "store")
    replicate = store.read_replicate_result(local / COLLECT_REF)
    assert [entry["digest"] for entry in replicate.inputs] == [local_digest]
    run = ArtifactStore(on_slurm / "store").read_run_result(on_slurm / RUN_REF)
    path = ArtifactStore(on_slurm / "store").validate_sidecar(run.sidecar(kind="result"))
    assert path.read_text().startswith(f"steps {STEPS}\n")
    # the uninterrupted run really was one attempt from step 0
    local_log = (local / RUN_LOG).read_text()
    assert "starting at step 0 (ASSAY_ATTEMPT=1, ASSAY_RESUME=None)" in local_log
    assert "resuming" not in local_log


def test_work_directory_is_removed_once_published(campaign):
    for root in campaign[:2]:
        work = root / "store" / "work"
        left = sorted(p.relative_to(root).as_posix() for p in work.rglob("*")) \
            if work.exists() else []
        assert left == [], f"{root.name}: store/work not empty after publishing: {left}"


# === 2. submitted jobs carry the study's resources ========================================
def resources_config() -> dict:
    config = copy.deepcopy(SMALL_CONFIG)
    config["conditions"] = [
        {"label": "free", "params": {"surface_epsilon": 0.0}},
        # a condition's own resources override resources.run for its run jobs
        {"label": "strong", "params": {"surface_epsilon": 3.0},
         "resources": {"mem_mb": 900, "runtime": 5}},
    ]
    config["replicates"] = 1
    config["analyses"] = {"gyration": SMALL_CONFIG["analyses"]["gyration"]}
    config["aggregation"] = {**config["aggregation"], "min_replicates": 1}
    config["resources"] = {
        "run": {"threads": 2, "mem_mb": 700, "runtime": 7, "slurm_partition": "main"},
        "collect": {"mem_mb": 300, "runtime": 3},
    }
    return config


def test_submitted_jobs_carry_the_study_resources(tmp_path):
    """Each SLURM job asks for its members' resources from the study. A replicate's run
    and collect jobs are one group job (profiles/slurm); Snakemake asks for the most CPUs
    and memory of any member and the sum of their runtimes. One replicate per SLURM job
    here (replicate=1), and --cores 2: the runs ask for 2 threads."""
    write_config(tmp_path, resources_config())
    args = ("--verbose", "--cores", "2", "--group-components", "replicate=1")
    # free: run + collect (one group job); strong: its run alone (a group of one member)
    first = check_ok(snakemake_slurm(tmp_path, "results/replicates/gyration/free/1.json",
                                     "results/runs/strong/1.json", *args, timeout=300))
    # strong's collect once its run exists: a group of that one collect job
    second = check_ok(snakemake_slurm(tmp_path, "results/replicates/gyration/strong/1.json",
                                      *args, timeout=300))
    TIMES["resources study on SLURM"] = first.seconds + second.seconds

    checked = set()
    for run in (first, second):
        # which SLURM job is which: the rule jobs the node's log says it ran
        members = {job_id: frozenset((rule, out) for rule, out, _ in jobs)
                   for job_id, jobs in rule_jobs_in_slurm_logs(run).items()}
        records = {int(r["JobId"]): r for r in wait_for_jobcomp(run.run_id, len(members))}
        for job_id, jobs in members.items():
            assert jobs in EXPECTED_RESOURCES, (jobs, run.output[-6000:])
            cpus, mem, minutes = EXPECTED_RESOURCES[jobs]
            comment = "rule_replicate_" + "_".join(sorted({rule for rule, _ in jobs}))
            # what the controller granted (known for MinJobAge = 300 s after the end)
            granted = scontrol_job(job_id)
            got = {key: granted.get(key) for key in ("Comment", "NumCPUs", "CPUs/Task",
                                                     "MinMemoryNode", "TimeLimit", "Partition")}
            assert got == {"Comment": comment, "NumCPUs": str(cpus), "CPUs/Task": str(cpus),
                           "MinMemoryNode": f"{mem}M", "TimeLimit": f"00:{minutes:02d}:00",
                           "Partition": "main"}, (jobs, granted)
            # and the durable record slurmctld wrote when the job ended
            record = records[job_id]
            assert record["JobState"] == "COMPLETED", record
            assert (record["TimeLimit"], record["Partition"], record["ProcCnt"]) == (
                str(minutes), "main", str(cpus)), record
            assert f"cpu={cpus},mem={mem}M," in record["Tres"] + ",", record
            checked.add(jobs)
        # the sbatch calls themselves (logged by the executor plugin with --verbose); the
        # study's default gpu: 0 asks for no GPU
        calls = re.findall(r"^sbatch call: (.*)$", run.output, re.M)
        assert len(calls) == len(members), calls
        assert not any("--gpus" in call or "--gres" in call for call in calls), calls
    assert checked == set(EXPECTED_RESOURCES)


# the rule jobs of one SLURM job -> (cpus, mem MB, minutes). "strong" has its own memory and
# runtime over resources.run (and inherits threads and partition); free's group asks for
# the run's 2 CPUs and 700 MB and 7 + 3 minutes; a collect alone for exactly its own
EXPECTED_RESOURCES = {
    frozenset({("run", "results/runs/free/1.json"),
               ("collect", "results/replicates/gyration/free/1.json")}): (2, 700, 10),
    frozenset({("run", "results/runs/strong/1.json")}): (2, 900, 5),
    frozenset({("collect", "results/replicates/gyration/strong/1.json")}): (1, 300, 3),
}


# === 3. a GPU request reaches sbatch =====================================================
GPU_TIMEOUT = 120   # expected: ~5 s (sbatch rejects the job at once)


def test_gpu_request_reaches_sbatch(tmp_path):
    """``resources.run.gpu: 1`` -> ``sbatch ... --gpus=1``. The loopback node has no GPU
    (and slurm.conf no GresTypes), so sbatch refuses the job and snakemake fails it at
    once. Should a job ever be queued instead, the helper's timeout kills snakemake and
    cancels the run's jobs by name; the ``finally`` below cancels whatever is left."""
    config = resources_config()
    config["conditions"] = config["conditions"][:1]
    config["resources"] = {"run": {"gpu": 1}}
    write_config(tmp_path, config)
    run = None
    try:
        run = snakemake_slurm(tmp_path, "results/runs/free/1.json", "--verbose",
                              timeout=GPU_TIMEOUT)
    finally:
        name = run.run_id if run is not None else None
        if name:
            subprocess.run(["scancel", "--name", name], capture_output=True, timeout=30,
                           env=slurm_env())
    TIMES["GPU submission"] = run.seconds
    assert run.run_id, run.output[-6000:]

    calls = re.findall(r"^sbatch call: (.*)$", run.output, re.M)
    assert len(calls) == 1, run.output[-6000:]
    options = shlex.split(calls[0].split(" --wrap=", 1)[0])
    assert "--gpus=1" in options, calls[0]
    assert "--cpus-per-task=1" in options, calls[0]
    assert options[options.index("-t") + 1] == "60", calls[0]   # the default runtime
    # the loopback cluster has no GPU: sbatch said no and snakemake failed the job
    assert run.returncode != 0, run.output[-6000:]
    assert run.submitted == {}, run.submitted
    assert "Error in group replicate" in run.output, run.output[-6000:]
    assert not (tmp_path / "results" / "runs" / "free" / "1.json").exists()
    nothing_queued(run.run_id)
    # Snakemake 9.27 leaves sbatch's own message out of a group job's error; assay's
    # watch (assay.pipeline.slurm_watch) puts it back, as one line, in the group's report too:
    assert "Invalid generic resource (gres) specification" in run.output, run.output[-6000:]
    alone = snakemake_slurm(tmp_path, "results/runs/free/1.json", "--groups",
                            "collect=replicate", timeout=GPU_TIMEOUT)
    nothing_queued(alone.run_id)
    assert alone.returncode != 0 and alone.submitted == {}, alone.output[-6000:]
    assert ("SLURM refused rule run free/1: sbatch: error: Invalid generic resource (gres) "
            "specification") in alone.output, alone.output[-6000:]


def nothing_queued(run_id: str | None) -> None:
    if not run_id:
        return
    subprocess.run(["scancel", "--name", run_id], capture_output=True, timeout=30,
                   env=slurm_env())
    queue = subprocess.run(["squeue", "-h", "--name", run_id, "-t", "PD,R,CG",
                            "-o", "%i %T"], capture_output=True, text=True, timeout=30,
                           env=slurm_env())
    assert queue.stdout.strip() == "", f"jobs of the GPU run still queued: {queue.stdout}"


# === 4. changing resources reruns nothing ================================================
def test_changing_resources_reruns_nothing(tmp_path):
    config = copy.deepcopy(SMALL_CONFIG)
    config["analyses"] = {"gyration": SMALL_CONFIG["analyses"]["gyration"]}
    write_config(tmp_path, config)
    first = jobs_run(snakemake(tmp_path))
    assert {rule for rule, _ in first} >= {"run", "collect", "aggregate", "compare"}
    before = digests(tmp_path)
    assert len(before) == 4 + 4 + 2 + 1

    changed = copy.deepcopy(config)
    changed["runner"]["grace_seconds"] = 5
    changed["conditions"][1]["resources"] = {"mem_mb": 2500, "threads": 1, "runtime": 2}
    changed["resources"] = {
        "run": {"threads": 2, "mem_mb": 1500, "runtime": 240, "slurm_partition": "main",
                "slurm_extra": "--qos=normal"},
        "collect": {"threads": 2, "mem_mb": 200, "runtime": 2},
        "aggregate": {"mem_mb": 100}, "compare": {"runtime": 3}, "plot": {"threads": 2},
    }
    write_config(tmp_path, changed)
    again = snakemake(tmp_path)
    assert jobs_run(again) == set(), again.stderr[-4000:]
    assert "Nothing to be done" in again.stdout + again.stderr
    assert digests(tmp_path) == before
    # the check is not blind: a change to what a run computes does rerun the runs
    changed["runner"]["settings"]["n_frames"] = 41
    write_config(tmp_path, changed)
    dry = snakemake(tmp_path, "--dry-run")
    assert {out for rule, out in jobs_run(dry) if rule == "run"} == {
        f"results/runs/{c}/{r}.json" for c in ("free", "strong") for r in (1, 2)}


