"""The demo study on a real SLURM cluster through ``profiles/slurm``.

Needs the loopback cluster of ``tests/slurm/cluster.sh`` (``bash tests/slurm/cluster.sh up``).
Without it these tests skip -- unless ``ASSAY_REQUIRE_SLURM=1`` (set by ``.ci/run``), then
they fail. Every SLURM job of a Snakemake run is named after the run's id (printed as
``SLURM run ID: <uuid>``), and slurmctld appends one line per finished job to
``$ASSAY_SLURM_STATE/jobcomp.log`` (jobcomp/filetxt; the cluster has no accounting, so no
sacct): that log is the record that a job really went through SLURM.

Where jobs run (profiles/slurm/README.md): a replicate's `run` and `collect` jobs form one
group job, and the profile bundles up to `replicate=N` replicates per SLURM job; inside it
the rules run directly in the allocation. aggregate, compare and the plots are local rules
on the submit host, catalog too. So this study (4 replicates) is one SLURM job.

Time: the plugin checks job states INIT_SECONDS (2) after a check that saw a job finish,
then backs off by +10 s per check without news (2, 14, 36, ... s). The SLURM job (snakemake
start on the node, 4 runs and 4 collects one after another) takes ~6-10 s and is noticed at
the 14 s check: the study run takes ~20-40 s, the failing run ~15-20 s, the local run
~10 s; the file takes about a minute.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from assay import ArtifactStore, read_ref
from assay.store.hashing import hash_file, parse_digest
from workflow_helpers import REPO, SMALL_CONFIG, digests, snakemake, write_config

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

CLUSTER = REPO / "tests" / "slurm" / "cluster.sh"
PROFILE = REPO / "profiles" / "slurm"
STATE = Path(os.environ.get("ASSAY_SLURM_STATE", "/tmp/assay-slurm"))
JOBCOMP = STATE / "jobcomp.log"
STUDY_TIMEOUT = 420   # seconds for one snakemake run on SLURM (expected: ~70 s)
FAIL_TIMEOUT = 240    # the failing run (expected: ~16 s)
# First status check this long after a submission (the plugin's default is 40 s). Given here
# so that the test's speed does not hang on the profile's value, which is meant for users.
INIT_SECONDS = 2

# 2 conditions x 2 replicates x 1 analysis: 4 run + 4 collect jobs in replicate groups
# (ceil(4 / replicate components) SLURM jobs); 2 aggregate + 1 compare + 2 plots + catalog
# are local rules.
CONFIG = copy.deepcopy(SMALL_CONFIG)
CONFIG["analyses"] = {"contacts": SMALL_CONFIG["analyses"]["contacts"]}
REMOTE_RULES = {"run", "collect"}
LOCAL_RULES = {"catalog", "all", "aggregate", "compare", "plot_summary", "plot_detail"}


def profile_group_components(group: str) -> int:
    """Connected components per group job, from the profile (Snakemake's default: 1)."""
    import yaml

    profile = yaml.safe_load((PROFILE / "config.yaml").read_text())
    for item in profile.get("group-components", []):
        name, _, value = item.partition("=")
        if name == group:
            return int(value)
    return 1


def expected_slurm_jobs(replicates: int) -> dict[str, int]:
    return {"group replicate": -(-replicates // profile_group_components("replicate"))}


TIMES: dict[str, float] = {}  # wall times, printed at the end of the module (-s)


# --- the cluster ---------------------------------------------------------------------
@pytest.fixture(scope="module", autouse=True)
def slurm_cluster():
    required = os.environ.get("ASSAY_REQUIRE_SLURM") == "1"
    if shutil.which("sbatch") is None and not required:
        pytest.skip("no SLURM client (sbatch) installed; `bash tests/slurm/cluster.sh up`")
    proc = subprocess.run(["bash", str(CLUSTER), "status"], capture_output=True, text=True,
                          timeout=60)
    if proc.returncode != 0:
        message = (f"the loopback SLURM cluster is not up (`bash {CLUSTER.relative_to(REPO)} "
                   f"status` exited {proc.returncode}):\n{proc.stdout}{proc.stderr}\n"
                   f"start it with `bash tests/slurm/cluster.sh up`")
        if required:
            pytest.fail("ASSAY_REQUIRE_SLURM=1 but " + message, pytrace=False)
        pytest.skip(message)
    yield STATE
    if TIMES:  # shown with `pytest -s`
        print("\n[slurm] wall times: " + ", ".join(f"{k} {v:.1f} s" for k, v in TIMES.items()))


def slurm_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The submitting shell's environment, which sbatch (--export=ALL) gives every job.

    The jobs run ``python -m assay.jobs`` and ``assay``: the interpreter that has assay
    installed comes first on PATH. SLURM_CONF points at the cluster's config in case
    /etc/slurm/slurm.conf belongs to someone else (cluster.sh then leaves it alone).
    """
    env = {**os.environ, **(extra or {})}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    # A status check at least every 10 s while jobs live (assay.pipeline.slurm_watch; the
    # plugin alone backs off to 180 s between checks): the tests wait for SLURM, not for
    # the back-off. A user setting too (docs/hpc.md); test_slurm_faults sets its own.
    env.setdefault("ASSAY_SLURM_STATUS_PATIENCE", "10")
    if "SLURM_CONF" not in env and (STATE / "slurm.conf").is_file():
        env["SLURM_CONF"] = str(STATE / "slurm.conf")
    return env


# --- running snakemake on SLURM ------------------------------------------------------
@dataclass
class SlurmRun:
    returncode: int
    output: str            # stdout and stderr, interleaved
    seconds: float
    run_id: str | None     # the plugin's run id = the name of every SLURM job it submits
    submitted: dict[str, int]   # snakemake job id (group jobs: a uuid) -> SLURM job id


_RUN_ID = re.compile(r"SLURM run ID: ([0-9a-f-]{36})")
_SUBMITTED = re.compile(r"^Job (\S+) has been submitted with SLURM jobid (\d+)", re.M)


def snakemake_slurm(workdir: Path, *args: str, env: dict[str, str] | None = None,
                    timeout: float = STUDY_TIMEOUT) -> SlurmRun:
    """``snakemake --profile profiles/slurm`` on the project's Snakefile inside ``workdir``.

    ``--retries 0``: the profile retries a failed job once, which would double-count jobs.
    On a timeout the snakemake process group is killed (SIGTERM does not stop it while it
    waits on SLURM) and its SLURM jobs are cancelled by name.
    """
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "workflow" / "Snakefile"),
               "--directory", str(workdir), "--profile", str(PROFILE),
               "--workflow-profile", "none", "--retries", "0",
               "--slurm-init-seconds-before-status-checks", str(INIT_SECONDS),
               # the nodes' own logs: where each rule job ran (rule_jobs_in_slurm_logs)
               "--slurm-keep-successful-logs", *args]
    started = time.monotonic()
    proc = subprocess.Popen(command, cwd=workdir, env=slurm_env(env), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the session started above, by its id
        except ProcessLookupError:
            pass
        output, _ = proc.communicate()
        run_id = _RUN_ID.search(output or "")
        if run_id:
            subprocess.run(["scancel", "--name", run_id.group(1)], capture_output=True,
                           timeout=30, env=slurm_env())
        queue = subprocess.run(["squeue", "--states=all", "-o", "%i %j %T %r"],
                               capture_output=True, text=True, timeout=30, env=slurm_env())
        raise AssertionError(f"snakemake on SLURM did not finish within {timeout} s "
                             f"(killed):\n{(output or '')[-6000:]}\nsqueue:\n{queue.stdout}")
    seconds = time.monotonic() - started
    run_id = _RUN_ID.search(output)
    submitted = {m.group(1): int(m.group(2)) for m in _SUBMITTED.finditer(output)}
    return SlurmRun(proc.returncode, output, seconds, run_id.group(1) if run_id else None,
                    submitted)


def check_ok(run: SlurmRun) -> SlurmRun:
    if run.returncode != 0:
        raise AssertionError(f"snakemake on SLURM failed ({run.returncode}):\n"
                             f"{run.output[-8000:]}")
    return run


def jobcomp_records(run_id: str | None = None) -> list[dict[str, str]]:
    """Finished SLURM jobs from jobcomp/filetxt, optionally only those named ``run_id``."""
    if not JOBCOMP.exists():
        return []
    records = []
    for line in JOBCOMP.read_text(errors="replace").splitlines():
        fields = dict(re.findall(r"(\w+)=(\S*)", line))
        if fields and (run_id is None or fields.get("Name") == run_id):
            records.append(fields)
    return records


def wait_for_jobcomp(run_id: str, expected: int, timeout: float = 15) -> list[dict[str, str]]:
    """slurmctld writes the record when it completes the job; give it a moment."""
    deadline = time.monotonic() + timeout
    while True:
        records = jobcomp_records(run_id)
        if len(records) >= expected or time.monotonic() > deadline:
            return records
        time.sleep(0.5)


_JOB_HEADER = re.compile(r"^(?P<indent>[ \t]*)(?:\[[^\]]*\] )?(?P<kind>localrule|rule|Group job) "
                         r"(?P<name>\w+)", re.M)


def executed_jobs(output: str) -> tuple[dict[str, int], dict[str, int]]:
    """(SLURM submissions a run should have made per rule/group, local jobs per rule).

    A rule job inside a group is printed indented under ``Group job <group>``; the group is
    one SLURM job, its members are not.
    """
    slurm: dict[str, int] = {}
    local: dict[str, int] = {}
    for match in _JOB_HEADER.finditer(output):
        name, kind = match.group("name"), match.group("kind")
        if kind == "localrule":
            local[name] = local.get(name, 0) + 1
        elif kind == "Group job":
            slurm[f"group {name}"] = slurm.get(f"group {name}", 0) + 1
        elif not match.group("indent"):
            slurm[name] = slurm.get(name, 0) + 1
    return slurm, local


_SUBMISSION_LOG = re.compile(r"^Job \S+ has been submitted with SLURM jobid (\d+) \(log: (\S+)\)\.",
                             re.M)
_RULE_JOB = re.compile(r"^(local)?rule (\w+):\n((?:    .*\n)+)", re.M)


def rule_jobs_in_slurm_logs(run: SlurmRun) -> dict[int, list[tuple[str, str, bool]]]:
    """SLURM job id -> (rule, first output, run as a local job) of every rule job that
    snakemake ran on the node inside that SLURM job, from the job's SLURM log (kept:
    --slurm-keep-successful-logs). "Local" there means: run directly in the job's
    allocation, not through a nested `srun` and second snakemake (IN_CLUSTER_JOB)."""
    return {int(match.group(1)): rule_jobs_in_slurm_log(Path(match.group(2)))
            for match in _SUBMISSION_LOG.finditer(run.output)}


def rule_jobs_in_slurm_log(log: Path) -> list[tuple[str, str, bool]]:
    """(rule, first output, run as a local job) of each rule job in one SLURM job's log."""
    jobs = []
    for job in _RULE_JOB.finditer(log.read_text(errors="replace")):
        output = re.search(r"^    output: ([^,\n]+)", job.group(3), re.M)
        jobs.append((job.group(2), output.group(1).strip() if output else "",
                     bool(job.group(1))))
    return jobs


# --- the study on SLURM --------------------------------------------------------------
@pytest.fixture(scope="module")
def slurm_study(tmp_path_factory) -> tuple[Path, SlurmRun]:
    workdir = tmp_path_factory.mktemp("slurm-study")
    write_config(workdir, CONFIG)
    run = check_ok(snakemake_slurm(workdir))
    TIMES["slurm"] = run.seconds
    return workdir, run


def test_every_job_of_the_study_goes_through_slurm(slurm_study):
    workdir, run = slurm_study
    assert run.run_id, f"no 'SLURM run ID' in snakemake's output:\n{run.output[-4000:]}"
    expected, local = executed_jobs(run.output)
    assert expected == expected_slurm_jobs(len(CONFIG["conditions"]) * CONFIG["replicates"]), \
        run.output[-6000:]
    assert set(local) == LOCAL_RULES, local
    assert len(run.submitted) == sum(expected.values()), run.submitted

    records = wait_for_jobcomp(run.run_id, len(run.submitted))
    by_id = {int(r["JobId"]): r for r in records}
    assert len(records) == len(run.submitted), (
        f"jobcomp.log has {len(records)} jobs named {run.run_id}, snakemake submitted "
        f"{len(run.submitted)}: {sorted(run.submitted.values())}")
    assert set(by_id) == set(run.submitted.values())
    assert {r["JobState"] for r in records} == {"COMPLETED"}, records
    assert {r["Partition"] for r in records} == {"main"}
    assert {r["WorkDir"] for r in records} == {str(workdir)}

    # and every run and collect job ran inside one of those SLURM jobs, exactly once: the
    # nodes' logs name each rule job snakemake ran there
    on_nodes = rule_jobs_in_slurm_logs(run)
    assert set(on_nodes) == set(by_id), on_nodes
    ran = sorted(job for jobs in on_nodes.values() for job in jobs)
    refs = sorted(p.relative_to(workdir).as_posix() for sub in ("runs", "replicates")
                  for p in (workdir / "results" / sub).rglob("*.json"))
    assert len(refs) == 4 + 4
    assert ran == sorted(zip(["run"] * 4 + ["collect"] * 4,
                             sorted(r for r in refs if "/runs/" in r)
                             + sorted(r for r in refs if "/replicates/" in r),
                             [True] * 8)), ran
    assert {rule for rule, _, _ in ran} == REMOTE_RULES

    assert (workdir / "results" / "catalog.duckdb").is_file()
    for analysis in CONFIG["analyses"]:
        for name in ("summary", "detail"):
            figure = workdir / "results" / "plots" / analysis / f"{name}.png"
            assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


CATALOG_TABLES = ("artifacts", "sidecars", "edges", "metrics", "refs")


def catalog_rows(workdir: Path) -> dict[str, list[tuple]]:
    import duckdb

    con = duckdb.connect(str(workdir / "results" / "catalog.duckdb"), read_only=True)
    try:
        return {table: con.execute(f"SELECT * FROM {table} ORDER BY ALL").fetchall()
                for table in CATALOG_TABLES}
    finally:
        con.close()


def test_slurm_run_matches_local_run_digest_for_digest(slurm_study, tmp_path):
    slurm_dir, slurm_run = slurm_study
    local_dir = tmp_path / "local"
    local_dir.mkdir()
    write_config(local_dir, CONFIG)  # its own store: store/ inside its own workdir
    started = time.monotonic()
    snakemake(local_dir, env={"PATH": slurm_env()["PATH"]}, timeout=STUDY_TIMEOUT)
    TIMES["local"] = time.monotonic() - started

    slurm_refs, local_refs = digests(slurm_dir), digests(local_dir)
    assert len(slurm_refs) == 4 + 4 + 2 + 1
    assert slurm_refs == local_refs

    slurm_catalog, local_catalog = catalog_rows(slurm_dir), catalog_rows(local_dir)
    assert len(slurm_catalog["artifacts"]) == len(slurm_refs)
    for table in CATALOG_TABLES:
        assert slurm_catalog[table] == local_catalog[table], table

    print(f"\n[slurm] same study ({len(slurm_run.submitted)} SLURM jobs): "
          f"SLURM {TIMES['slurm']:.1f} s, local --cores 2 {TIMES['local']:.1f} s")


def test_second_invocation_submits_nothing(slurm_study):
    workdir, _ = slurm_study
    before = len(jobcomp_records())
    again = check_ok(snakemake_slurm(workdir))
    TIMES["slurm_noop"] = again.seconds
    assert "Nothing to be done" in again.output, again.output[-4000:]
    assert again.submitted == {}
    time.sleep(1)  # a job that had been submitted would have left a record by now
    # (other runs may share the cluster: only records from this workdir or run count)
    new = [r for r in jobcomp_records()[before:]
           if r.get("WorkDir") == str(workdir) or r.get("Name") == again.run_id]
    assert new == []


# --- job arrays (profiles/slurm/README.md: a user may choose them over group jobs) -----
_ARRAY_SUBMITTED = re.compile(r"^Submitted array job with Snakemake IDs (\S+) and SLURM job "
                              r"ID (\d+)\. The individual task IDs are 1-(\d+)\.", re.M)


def test_array_tasks_each_run_their_own_job(slurm_study, tmp_path):
    """Each task of a SLURM array runs its own rule job. (The workflow makes rules local
    inside a cluster job; in an array task that would skip the job-step executor that picks
    the task's job, and every task would run the first one: NOTES.md, pitfall 19.)"""
    study_dir, _ = slurm_study
    write_config(tmp_path, CONFIG)
    run_refs = sorted(ref for ref in digests(study_dir) if ref.startswith("results/runs/"))
    assert len(run_refs) == 4
    run = check_ok(snakemake_slurm(tmp_path, *run_refs, "--groups", "nosuchrule=none",
                                   "--slurm-array-jobs", "run"))
    arrays = _ARRAY_SUBMITTED.findall(run.output)
    assert [(len(ids.split(",")), int(tasks)) for ids, _, tasks in arrays] == [(4, 4)], \
        run.output[-6000:]
    # every task ran on the node, each a different run job, and produced that run's bytes
    assert {k: v for k, v in digests(tmp_path).items() if k in run_refs} == \
        {k: v for k, v in digests(study_dir).items() if k in run_refs}
    array_id = arrays[0][1]
    ran = sorted(job for log in (tmp_path / ".snakemake" / "slurm_logs" / "rule_run").glob(
        f"{array_id}_*.log") for job in rule_jobs_in_slurm_log(log))
    assert sorted({(rule, out) for rule, out, _ in ran}) == [("run", ref) for ref in run_refs], \
        ran


# --- a failing job on SLURM ----------------------------------------------------------
FAILING_RUNNER = textwrap.dedent('''
    """A python runner that fails for condition "bad" after leaving things in the store."""
    import numpy as np


    def run(ctx):
        if ctx.condition_label == "bad":
            store = ctx.artifact_store
            # a complete sidecar written before the failure (an orphan object: allowed)
            store.write_npz_sidecar("sidecars/before_failure.npz", values=np.arange(5.0))

            # a streamed object whose writer dies half way
            def produce(handle):
                handle.write(b"half an object " * 4096)
                raise OSError("failing_runner: stream broke mid-write")

            try:
                store.objects.put_stream(produce)
            except OSError:
                pass
            # a sidecar staged but never registered, half written
            staged = store.resolve_sidecar("sidecars/staged.bin")
            staged.parent.mkdir(parents=True, exist_ok=True)
            staged.write_bytes(b"half a sidecar")
            raise RuntimeError(f"failing_runner: condition {ctx.condition_label!r} "
                               f"replicate {ctx.replicate} refuses to run")
        rng = np.random.default_rng(ctx.seed)
        return {"values": rng.normal(size=32)}
''')
FAILED_REF = "results/runs/bad/1.json"
GOOD_REF = "results/runs/good/1.json"
FAILED_LOG = "results/logs/run/bad/1.log"


@pytest.fixture(scope="module")
def failed_study(tmp_path_factory) -> tuple[Path, SlurmRun]:
    """Two run jobs on SLURM (one layer, two submissions); condition "bad" raises."""
    workdir = tmp_path_factory.mktemp("slurm-failing")
    (workdir / "failing_runner.py").write_text(FAILING_RUNNER)
    config = copy.deepcopy(CONFIG)
    config["conditions"] = [{"label": "good", "params": {}}, {"label": "bad", "params": {}}]
    config["control"] = "good"
    config["replicates"] = 1
    config["aggregation"] = {**config["aggregation"], "min_replicates": 1}
    config["runner"] = {"plugin": "python", "settings": {"callable": "failing_runner:run"}}
    write_config(workdir, config)
    # exported to the jobs through sbatch --export=ALL
    env = {"PYTHONPATH": os.pathsep.join(
        p for p in (str(workdir), os.environ.get("PYTHONPATH", "")) if p)}
    # one replicate per SLURM job, so that the good run's job does not depend on the bad
    # one: bundled replicates (the profile's replicate=4) stop with the first failure
    run = snakemake_slurm(workdir, GOOD_REF, FAILED_REF, "--group-components", "replicate=1",
                          env=env, timeout=FAIL_TIMEOUT)
    TIMES["slurm_failing"] = run.seconds
    return workdir, run


def test_failing_job_surfaces_as_failed_rule_with_its_log(failed_study):
    workdir, run = failed_study
    assert run.returncode != 0, run.output[-4000:]
    # the failed SLURM job is a group job (of one replicate): snakemake reports the group
    # with its SLURM log, then each member as a failed rule with its own log
    error = re.search(r"^    message: Error in group replicate\n((?:    .*\n)+)", run.output,
                      re.M)
    assert error, run.output[-6000:]
    block = error.group(1)
    slurm_log = re.search(r"^    log: (\S+/\.snakemake/slurm_logs/group_replicate_run/\d+\.log)",
                          block, re.M)
    assert slurm_log, block
    member = re.search(r"^    Error in rule run:\n((?:        .*\n)+)", block, re.M)
    assert member, block
    assert "output: " + FAILED_REF in member.group(1) and FAILED_LOG in member.group(1), block
    assert GOOD_REF not in block, "the good run was its own SLURM job and finished"
    assert "Exiting because a job execution failed" in run.output
    # Snakemake 9.27 leaves the executor's "SLURM status is: ..." out of a group's error;
    # the job's SLURM log has the node's own report of the failing rule
    node_report = Path(slurm_log.group(1)).read_text(errors="replace")
    assert re.search(r"^Error in rule run:\n(?:    .*\n)*    output: " + re.escape(FAILED_REF),
                     node_report, re.M), node_report[-4000:]

    log = (workdir / FAILED_LOG).read_text()
    assert "RuntimeError: failing_runner: condition 'bad' replicate 1 refuses to run" in log

    assert run.run_id
    states = {int(r["JobId"]): r["JobState"] for r in wait_for_jobcomp(run.run_id, 2)}
    assert sorted(states) == sorted(run.submitted.values()), (states, run.submitted)
    assert sorted(states.values()) == ["COMPLETED", "FAILED"], states


def _live_objects(store: ArtifactStore, refs: list[Path]) -> set[str]:
    """Every object reachable from the refs: manifests, sidecars, inputs (recursively)."""
    live: set[str] = set()
    pending = [read_ref(path).digest for path in refs]
    while pending:
        digest = pending.pop()
        sha = parse_digest(digest)
        if sha in live:
            continue
        live.add(sha)
        artifact = store.verify_artifact(digest, verify="full")
        live.update(sidecar.sha256 for sidecar in artifact.sidecars)
        pending.extend(entry["digest"] for entry in artifact.inputs)
    return live


def test_failed_job_leaves_nothing_partial_in_the_store(failed_study):
    workdir, run = failed_study
    assert run.returncode != 0
    assert not (workdir / FAILED_REF).exists(), "a failed job must not leave its ref"
    assert (workdir / GOOD_REF).is_file(), "the other job of the run finished"

    store = ArtifactStore(workdir / "store")
    refs = sorted((workdir / "results").rglob("*.json"))
    assert [p.relative_to(workdir).as_posix() for p in refs] == [GOOD_REF]
    live = _live_objects(store, refs)

    objects = dict(store.objects.iter_objects())
    assert live <= set(objects)
    for sha, path in objects.items():
        # referenced or not, every object is complete: its bytes hash to its name
        assert hash_file(path)[0] == sha, f"{path} is not a complete object"
        assert not stat.S_IMODE(path.stat().st_mode) & 0o222, f"{path} is writable"
    orphans = set(objects) - live
    assert len(orphans) <= 1, orphans  # at most the sidecar written before the failure

    # the action cache records the good job only, and it points at a live artifact
    records = [json.loads(p.read_bytes()) for p in (workdir / "store" / "actions").rglob("*.json")]
    assert [parse_digest(r["digest"]) for r in records] == [parse_digest(read_ref(refs[0]).digest)]

    parts = list((workdir / "store").rglob("*.part"))
    assert parts == [], f"partial objects left in store/tmp: {parts}"
    torn = [p for p in workdir.rglob(".*.tmp") if ".snakemake" not in p.parts]
    assert torn == [], f"atomic-write temporaries left behind: {torn}"


def test_failed_job_removes_its_staging_dir(failed_study):
    """A sidecar staged by a job that then fails must not stay in store/tmp."""
    workdir, run = failed_study
    assert run.returncode != 0
    leftovers = sorted(p.relative_to(workdir).as_posix()
                       for p in (workdir / "store" / "tmp").rglob("*"))
    assert leftovers == [], (
        "the failed job left its staging directory (half-written staged sidecars) in "
        f"store/tmp: {leftovers}. assay.jobs.main closes the store (which removes "
        "store/tmp/staging-<uuid>) only on success; it should close it in a `finally`.")
