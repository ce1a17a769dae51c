"""Fixes to snakemake-executor-plugin-slurm (2.8.0) that assay applies in the main snakemake.

1. **A status query that fails no longer loses the jobs.** When ``squeue``/``sacct`` fails on
   every attempt of a check (slurmctld down or restarting, a flaky network, a broken
   ``squeue``), the plugin yields none of the jobs it was asked about and reports none:
   Snakemake's remote executor drops them from its active list, never asks about them again,
   and waits for them forever without a word (issue 30: 7 min of silence, SIGTERM waiting for
   jobs no one watches). Here such jobs are kept and polled again with back-off (up to
   ``BACKOFF_MAX_S``); after ``ASSAY_SLURM_STATUS_PATIENCE`` seconds (default 120) of failed
   queries one warning says what fails (the query's own error) and what to check, again every
   ``5 x`` that while it lasts, and a line says when SLURM answers again. A job that the
   query answers without (slurmctld restarted without its state) is reported failed after
   ``3 x`` the patience, instead of being waited for forever; a job that pends for a
   reason waiting does not fix (a drained node, a held job) is named with SLURM's reason.
2. **A failed or cancelled SLURM job is one line that says why**: the SLURM job id, what it
   ran, its SLURM state, reason and exit code (``scontrol show job``), the log's last SLURM
   line (``*** JOB 12 ON node CANCELLED AT ... ***``) or sbatch's own error text, and the log's
   path. Snakemake 9.27 drops the executor's message for a group job and prints
   ``message: None`` for each member; here each member gets that line as its message.

3. **A job SLURM still calls RUNNING on a dead node is named**: a status check comes at least
   every patience while any job is alive, and asks ``sinfo --dead`` once while jobs run; a job
   on a node whose slurmd does not answer is named with the node (SLURM keeps it RUNNING for
   ``SlurmdTimeout``, 300 s by default, then ends it NODE_FAIL or, for a batch job by
   default, requeues it). A job seen
   RUNNING and then PENDING is named as requeued, with its state, reason and restart count.
   sbatch gets ``--open-mode=append`` (unless the user chose an open mode), so a requeued
   job's second start does not truncate the SLURM log of its first.
4. **A restart never runs beside the jobs of a killed snakemake**: before its first
   submission the main snakemake waits for SLURM jobs another snakemake left working in the
   study (`assay.pipeline.cluster_jobs.wait_for_leftovers`), then reports as done, without submitting
   them, the jobs whose outputs those made. Otherwise a new job starts beside the old one, its
   node snakemake deletes the old job's rule logs, and both work on the same runs.

(1) and (2) are upstream-ready: (1) is "yield every job whose state is unknown" in
``Executor.check_active_jobs`` (plugin issue #207 is the same hang with sacct); (2) is
``GroupJob.log_error`` passing ``msg`` on to its members. Until they land, the workflow calls
`install()` in the main snakemake (workflow/rules/common.smk); it wraps public executor
methods (and the plugin's ``get_submit_command``) only, and does nothing when the plugin is
not loaded.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from typing import Any

PATIENCE_ENV = "ASSAY_SLURM_STATUS_PATIENCE"
PATIENCE_DEFAULT_S = 120.0
BACKOFF_MAX_S = 60.0
QUERY_TIMEOUT_S = 60.0   # as the plugin's own
_STATE_ATTR = "_assay_watch_state"


def _patience() -> float:
    try:
        return max(1.0, float(os.environ.get(PATIENCE_ENV, PATIENCE_DEFAULT_S)))
    except ValueError:
        return PATIENCE_DEFAULT_S


def install() -> bool:
    """Wrap the loaded SLURM executor's status loop and error report; True if it is loaded."""
    module = sys.modules.get("snakemake_executor_plugin_slurm")
    executor = getattr(module, "Executor", None)
    if executor is None:
        return False
    if getattr(executor, "_assay_watch", False):
        return True
    check, success, error = (executor.check_active_jobs, executor.report_job_success,
                             executor.report_job_error)
    answers: list[dict[str, str]] = []
    problems: list[str] = []

    async def query_job_status(command: str, logger: Any) -> Any:
        """The plugin's query (same command, same parsing), keeping what failed and why."""
        states, problem, seconds = await _query(command)
        if problem is not None:
            problems.append(problem)
            logger.debug(f"SLURM status query failed: {problem}")
            return None, None
        answers.append(states)
        return states, seconds

    def report_job_success(self: Any, job_info: Any, *args: Any, **kwargs: Any) -> Any:
        _forget(_state(self), job_info)
        return success(self, job_info, *args, **kwargs)

    def report_job_error(self: Any, job_info: Any, msg: Any = None, **kwargs: Any) -> Any:
        _forget(_state(self), job_info)
        return error(self, job_info, msg=msg, **kwargs)

    async def check_active_jobs(self: Any, active_jobs: list[Any]) -> Any:
        state = _state(self)
        state["handled"] = set()
        kept: set[int] = set()
        began = time.monotonic()
        answers.clear()
        problems.clear()
        async for job_info in check(self, active_jobs):
            if answers and _unknown_to_slurm(self, state, job_info, answers[-1]):
                continue   # reported as failed: SLURM no longer knows it
            kept.add(id(job_info))
            yield job_info
        if answers:
            alive = [j for j in active_jobs if id(j) in kept]
            _stuck_pending(self, state, alive, answers[-1])
            _requeued(self, state, alive, answers[-1])
            _silent_nodes(self, state, alive, answers[-1])
            if alive:
                # look at least every patience (the plugin backs off to 180 s): a dead node,
                # a requeue or a hold is then named within about that
                patience = _patience()
                self.next_seconds_between_status_checks = min(
                    self.next_seconds_between_status_checks or patience, patience)
        lost = [j for j in active_jobs if id(j) not in kept and id(j) not in state["handled"]]
        if lost:
            _status_unknown(self, state, lost, problems[-1] if problems else "no answer", began)
            for job_info in lost:
                yield job_info
        elif state["failing_since"] is not None:
            if state["warned"]:
                self.logger.warning(
                    f"SLURM answers job status queries again after "
                    f"{time.monotonic() - state['failing_since']:.0f} s")
            state.update(failing_since=None, warned=False, next_warning=0.0)

    run_jobs = executor.run_jobs

    def run_jobs_after_leftovers(self: Any, jobs: list[Any]) -> Any:
        """Before the first submission, wait for SLURM jobs a killed snakemake left working
        here; then submit only what they did not finish (assay.pipeline.cluster_jobs)."""
        state = _state(self)
        if "leftovers" not in state:
            from .cluster_jobs import wait_for_leftovers

            state["leftovers"] = wait_for_leftovers(os.getcwd(), self.logger.warning)
        if state["leftovers"]:
            jobs = [job for job in jobs if not _finished_by_leftover(self, job)]
        return run_jobs(self, jobs) if jobs else None

    submit_command = module.get_submit_command

    def get_submit_command(*args: Any, **kwargs: Any) -> str:
        """sbatch appends to the job's log: a requeued job (node failure, preemption,
        ``scontrol requeue``) would otherwise truncate what its first start wrote."""
        call = submit_command(*args, **kwargs)
        return call if "--open-mode" in call else call + " --open-mode=append"

    module.get_submit_command = get_submit_command
    module.query_job_status = query_job_status
    executor.check_active_jobs = check_active_jobs
    executor.run_jobs = run_jobs_after_leftovers
    executor.report_job_success = report_job_success
    executor.report_job_error = report_job_error
    executor.print_job_error = _print_job_error
    executor._assay_watch = True
    return True


def _finished_by_leftover(executor: Any, job: Any) -> bool:
    """Every output of ``job`` (each member of a group) exists and none is marked incomplete:
    a SLURM job of the killed snakemake made them. Reported done, not submitted again (its
    new job would delete the old job's rule logs and redo the work as cache hits)."""
    workflow = executor.workflow
    for member in (job.jobs if job.is_group() else [job]):
        if not all(os.path.exists(str(f)) for f in member.output):
            return False
        if workflow.async_run(workflow.persistence.incomplete(member)):
            return False
    from snakemake_interface_executor_plugins.executors.base import SubmittedJobInfo

    executor.logger.info(f"{what_ran(job)}: made by a SLURM job of the killed snakemake; "
                         "not submitted again")
    executor.report_job_success(SubmittedJobInfo(job=job))
    return True


def _forget(state: dict[str, Any], job_info: Any) -> None:
    """A reported job is done with; what was kept under its SLURM id goes (a slurmctld that
    lost its state hands the same ids out again)."""
    state["handled"].add(id(job_info))
    job_id = str(job_info.external_jobid or "")
    for key in ("seen", "silent", "pending", "unlisted"):
        state.get(key, {}).pop(job_id, None)


def _state(executor: Any) -> dict[str, Any]:
    state = executor.__dict__.get(_STATE_ATTR)
    if state is None:
        state = {"handled": set(), "failing_since": None, "warned": False, "next_warning": 0.0,
                 "unlisted": {}, "pending": {}}
        setattr(executor, _STATE_ATTR, state)
    return state


def _unknown_to_slurm(executor: Any, state: dict[str, Any], job_info: Any,
                      answer: dict[str, str]) -> bool:
    """A job the status query answered without it: SLURM lost it (slurmctld restarted
    without its state) or forgot it (ended over MinJobAge ago). The plugin would wait for it
    forever; after ``3 x`` the patience it is reported failed (a retry, if any left, is then
    safe: the run's claim keeps a twin from starting beside a job that still runs)."""
    job_id = str(job_info.external_jobid or "")
    unlisted = state["unlisted"]
    if not job_id or any(key == job_id or key.startswith(job_id + "_") for key in answer):
        unlisted.pop(job_id, None)
        return False
    now = time.monotonic()
    since = unlisted.setdefault(job_id, now)
    if now - since < 3 * _patience():
        return False
    unlisted.pop(job_id, None)
    log = (job_info.aux or {}).get("slurm_logfile")
    executor.report_job_error(job_info, msg=(
        f"SLURM no longer knows job {job_id}: `{executor.get_status_command()}` has not "
        f"listed it for {now - since:.0f} s (slurmctld restarted without its state, or the "
        f"job ended more than MinJobAge ago). Check `scontrol show job {job_id}`"
        + (f" and its log {log}" if log else "") + "; whatever it computed is in the store"))
    return True


# Reasons a pending job waits for other jobs or its turn: it starts by itself.
WAITING_REASONS = ("None", "Priority", "Resources", "BeginTime", "Dependency")


def _stuck_pending(executor: Any, state: dict[str, Any], jobs: list[Any],
                   answer: dict[str, str]) -> None:
    """Say so when a job pends for a reason that waiting does not fix (a drained or down
    node, a job held by an admin): once after the patience, then every ``5 x`` that."""
    pending, now, patience = state["pending"], time.monotonic(), _patience()
    due = []
    for job_info in jobs:
        job_id = str(job_info.external_jobid or "")
        if answer.get(job_id) != "PENDING":
            pending.pop(job_id, None)
            continue
        since, next_note = pending.setdefault(job_id, (now, now + patience))
        if now >= next_note:
            pending[job_id] = (since, now + 5 * patience)
            due.append((job_info, now - since))
    stuck = state.setdefault("stuck", set())
    stuck &= {str(j.external_jobid) for j in jobs}
    reasons = pending_reasons([str(j.external_jobid) for j, _ in due]) if due else {}
    for job_info, waited in due:
        reason = reasons.get(str(job_info.external_jobid), "")
        if not reason or reason.split(",")[0] in WAITING_REASONS:
            # look again after the patience: it may be held or its node drained later
            pending[str(job_info.external_jobid)] = (now - waited, now + patience)
            continue
        stuck.add(str(job_info.external_jobid))
        executor.logger.warning(
            f"SLURM job {job_info.external_jobid} ({what_ran(job_info.job)}) has been PENDING "
            f"for {waited:.0f} s: {reason}. It will not start by itself: check `sinfo -R` and "
            f"`scontrol show job {job_info.external_jobid}` (a drained or down node, a held "
            "job: your admins may need to resume or release it; `scontrol release "
            f"{job_info.external_jobid}` if you held it)")
    if stuck:
        # until a job that was stuck ends, look at least every patience: it may have waited
        # long already, so tell promptly when it moves
        executor.next_seconds_between_status_checks = min(
            executor.next_seconds_between_status_checks or patience, patience)


RUNS = ("RUNNING", "COMPLETING", "SUSPENDED", "STOPPED")


def _requeued(executor: Any, state: dict[str, Any], jobs: list[Any],
              answer: dict[str, str]) -> None:
    """Say so when a job SLURM ran is pending again: SLURM requeued it (its node failed, a
    preemption, ``scontrol requeue``) and will start it again from the beginning."""
    seen = state.setdefault("seen", {})
    silent = state.setdefault("silent", {})
    for job_info in jobs:
        job_id = str(job_info.external_jobid or "")
        now, before = answer.get(job_id), seen.get(job_id)
        if now is None:
            continue
        seen[job_id] = now
        if before not in RUNS or now in RUNS:
            continue
        facts = slurm_job_facts(job_id)
        node = silent.pop(job_id, (None, None, None))[2]
        why = (f"its node {node} stopped answering (NODE_FAIL)" if node
               else "a node failure, a preemption or `scontrol requeue`")
        restarts = facts.get("Restarts")
        executor.logger.warning(
            f"SLURM job {job_id} ({what_ran(job_info.job)}) was requeued after {why}: "
            f"{before} before, {facts.get('JobState') or now} now"
            + (f", reason {facts['Reason']}" if facts.get("Reason") not in (None, "None") else "")
            + (f", restart {restarts}" if restarts else "")
            + ". SLURM starts it again from the beginning: what it finished comes from the "
            f"cache, an interrupted run resumes from its work directory. Check `scontrol show "
            f"job {job_id}`")


def _silent_nodes(executor: Any, state: dict[str, Any], jobs: list[Any],
                  answer: dict[str, str]) -> None:
    """Say so when a job SLURM calls RUNNING sits on a node whose slurmd does not answer
    (slurmd or the node died): SLURM keeps the job RUNNING until ``SlurmdTimeout`` (300 s by
    default), then ends it NODE_FAIL or requeues it (a batch job, by default). While jobs run,
    each check (at least one every patience) costs one ``sinfo`` call more; a job is named
    once, then every ``5 x`` the patience while it lasts."""
    running = [j for j in jobs if answer.get(str(j.external_jobid or "")) == "RUNNING"]
    silent = state.setdefault("silent", {})
    live = {str(j.external_jobid) for j in jobs}
    for job_id in [k for k in silent if k not in live]:
        del silent[job_id]   # ended
    dead = dead_nodes() if running else {}
    if not dead:
        return   # a node seen silent stays on record while its job lives: a requeue that
        #          follows names it, even when slurmd answers again before SLURM requeues
    on_dead = jobs_on_nodes([str(j.external_jobid) for j in running], sorted(dead))
    now = time.monotonic()
    for job_info in running:
        job_id = str(job_info.external_jobid)
        nodes = on_dead.get(job_id)
        if not nodes:
            continue
        since, next_note, _node = silent.setdefault(job_id, (now, now, nodes[0]))
        if now < next_note:
            continue
        silent[job_id] = (since, now + 5 * _patience(), nodes[0])
        said = "; ".join(f"{node}: {dead.get(node, '?')}" for node in nodes)
        executor.logger.warning(
            f"SLURM job {job_id} ({what_ran(job_info.job)}) is RUNNING on {','.join(nodes)}, "
            f"whose slurmd does not answer slurmctld ({said}; for {now - since:.0f} s here): "
            "its processes may be gone. After SlurmdTimeout (`scontrol show config | grep "
            "SlurmdTimeout`; 300 s by default) SLURM ends it NODE_FAIL or requeues it, and this "
            f"run says which; check `sinfo -R` and `scontrol show node {nodes[0]}`, or ask your "
            "admins")


def dead_nodes(timeout: float = 30.0) -> dict[str, str]:
    """Nodes whose slurmd does not answer: node -> 'state, reason' (``sinfo --dead``)."""
    try:
        proc = subprocess.run(["sinfo", "-h", "--dead", "-N", "-o", "%N|%T|%E"],
                              capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired):
        return {}
    out = {}
    for line in proc.stdout.splitlines() if proc.returncode == 0 else []:
        node, _, rest = line.strip().partition("|")
        node_state, _, reason = rest.partition("|")
        if node:
            out[node] = node_state + (f", reason {reason}" if reason not in ("", "none") else "")
    return out


def jobs_on_nodes(job_ids: list[str], nodes: list[str],
                  timeout: float = 30.0) -> dict[str, list[str]]:
    """job id -> those of ``nodes`` it runs on (``squeue -w``); {} if squeue fails."""
    try:
        proc = subprocess.run(["squeue", "-h", "-j", ",".join(job_ids), "-w", ",".join(nodes),
                               "-o", "%i|%N"], capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired):
        return {}
    out: dict[str, list[str]] = {}
    for line in proc.stdout.splitlines() if proc.returncode == 0 else []:
        job_id, _, listed = line.strip().partition("|")
        if job_id:
            out[job_id] = [n for n in nodes if n in listed.split(",")] or nodes
    return out


def pending_reasons(job_ids: list[str], timeout: float = 30.0) -> dict[str, str]:
    """job id -> SLURM's reason it pends (``squeue -o %i|%r``); {} if squeue fails."""
    try:
        proc = subprocess.run(["squeue", "-h", "-j", ",".join(job_ids), "-o", "%i|%r"],
                              capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired):
        return {}
    out = {}
    for line in proc.stdout.splitlines():
        job_id, _, reason = line.strip().partition("|")
        if job_id:
            out[job_id] = reason
    return out


def _status_unknown(executor: Any, state: dict[str, Any], lost: list[Any], problem: str,
                    began: float) -> None:
    """The status query (begun at ``began``) failed for ``lost``: back off, and after the
    patience say so."""
    now = time.monotonic()
    if state["failing_since"] is None:
        state["failing_since"] = began
    current = executor.next_seconds_between_status_checks or 10
    patience = _patience()
    # never slower than the warning's patience: a short patience also polls more often
    executor.next_seconds_between_status_checks = min(max(2 * current, 10), BACKOFF_MAX_S,
                                                      patience)
    failing = now - state["failing_since"]
    if failing < patience or now < state["next_warning"]:
        return
    state["warned"], state["next_warning"] = True, now + 5 * patience
    ids = sorted({str(j.external_jobid) for j in lost if j.external_jobid})
    executor.logger.warning(
        f"SLURM has not answered job status queries for {failing:.0f} s ({problem}; "
        f"{controller_state()}). "
        f"{len(ids)} SLURM job(s) of this run ({', '.join(ids)}) are kept and asked about "
        f"again every {executor.next_seconds_between_status_checks:g} s. Check that slurmctld "
        f"is up (`scontrol ping`, `squeue -j {','.join(ids[:5])}`) or ask your admins; "
        "Ctrl-C stops snakemake and cancels them (restart later: docs/hpc.md, 'Restarting').")


def controller_state(timeout: float = 10.0) -> str:
    """What ``scontrol ping`` says of slurmctld, in a few words (it answers at once)."""
    try:
        proc = subprocess.run(["scontrol", "ping"], capture_output=True, text=True,
                              timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"scontrol ping: {exc}"
    said = [line.strip() for line in (proc.stdout + proc.stderr).splitlines()
            if line.strip() and not line.startswith("*")]
    return "scontrol ping: " + ("; ".join(said)[:200] or f"exit {proc.returncode}")


async def _query(command: str) -> tuple[dict[str, str], str | None, float]:
    """Run a status command printing ``<job id>|<state>`` lines: (states, problem, seconds)."""
    import asyncio
    import csv
    import io
    import shlex

    argv = shlex.split(command)
    started = time.monotonic()
    try:
        proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.PIPE)
    except OSError as exc:
        return {}, f"`{argv[0]}`: {exc}", 0.0
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout=QUERY_TIMEOUT_S)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()
        return {}, f"`{argv[0]}` did not answer within {QUERY_TIMEOUT_S:g} s", 0.0
    if proc.returncode != 0:
        text = " ".join(err.decode(errors="replace").split())[:300] or "no message"
        return {}, f"`{argv[0]}` exited {proc.returncode}: {text}", 0.0
    states = {row[0].strip(): row[1].strip()
              for row in csv.reader(io.StringIO(out.decode(errors="replace")), delimiter="|")
              if len(row) >= 2 and row[0].strip()}
    return states, None, time.monotonic() - started


# --- failed jobs in one line -----------------------------------------------------------------
_STATUS = re.compile(r"SLURM status is: '(\w+)'")
_SBATCH = re.compile(r"SLURM sbatch failed\. The error message was '(.*?)'\.\s*\n", re.S)
_LOG_LINE = re.compile(r"\*\*\*.*\*\*\*|\berror:.*", re.I)   # SLURM's own, else an error


def what_ran(job: Any) -> str:
    """'group replicate (run free/2, collect contacts/free/2)' or 'rule run (free/2)'."""
    def one(member: Any) -> str:
        values = "/".join(str(v) for v in dict(getattr(member, "wildcards", {}) or {}).values())
        return f"{member.rule.name} {values}".strip()

    if job.is_group():
        members = sorted(job.jobs, key=lambda m: (m.rule.name != "run", m.rule.name, one(m)))
        return f"group {job.groupid} ({', '.join(one(m) for m in members)})"
    return f"rule {one(job)}"


def slurm_job_facts(job_id: str, timeout: float = 10.0) -> dict[str, str]:
    """JobState, Reason, ExitCode, Restarts of a SLURM job (``scontrol -o show job``); {} if
    unknown."""
    try:
        proc = subprocess.run(["scontrol", "-o", "show", "job", str(job_id)], text=True,
                              capture_output=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired):
        return {}
    if proc.returncode != 0:
        return {}
    fields = dict(re.findall(r"(?:^|\s)(\w+)=(\S*)", proc.stdout))
    return {k: fields[k] for k in ("JobState", "Reason", "ExitCode", "Restarts") if k in fields}


def last_slurm_line(log: Any, limit: int = 1 << 16) -> str | None:
    """The log's last line from SLURM itself (a cancellation, a time limit) or an error."""
    try:
        with open(log, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - limit))
            text = handle.read().decode("utf-8", "replace")
    except (OSError, TypeError):
        return None
    said = [line.strip() for line in text.splitlines() if "***" in line]
    if not said:
        said = [m.group(0).strip() for m in _LOG_LINE.finditer(text)]
    return said[-1][:300] if said else None


def failure_line(job_info: Any, msg: str | None) -> str:
    """One line for a failed cluster job: what, its SLURM state and reason, why, the log."""
    msg = msg or ""
    what = what_ran(job_info.job)
    log = (job_info.aux or {}).get("slurm_logfile")
    sbatch = _SBATCH.search(msg)
    if sbatch:
        error = " ".join(sbatch.group(1).split())
        return f"SLURM refused {what}: {error or 'sbatch failed without a message'}"
    job_id = job_info.external_jobid
    if msg.startswith("SLURM no longer knows"):
        return f"SLURM job {job_id} ({what}): {' '.join(msg.split())}"
    facts = slurm_job_facts(job_id) if job_id else {}
    state = _STATUS.search(msg)
    parts = [facts.get("JobState") or (state.group(1) if state else "failed")]
    if facts.get("Reason") not in (None, "None"):
        parts.append(f"reason {facts['Reason']}")
    if facts.get("ExitCode") not in (None, "0:0"):
        parts.append(f"exit {facts['ExitCode']}")
    line = f"SLURM job {job_id} ({what}) ended {', '.join(parts)}"
    said = last_slurm_line(log) if log else None
    if said:
        line += f": {said}"
    elif not state and msg:
        line += f": {' '.join(msg.split())[:400]}"
    return line + (f"; log: {log}" if log else "")


def _print_job_error(self: Any, job_info: Any, msg: Any = None, **kwargs: Any) -> None:
    """The one line first, then Snakemake's report with that line as every member's message."""
    line = failure_line(job_info, msg)
    self.logger.error(line)
    job = job_info.job
    if job_info.external_jobid is not None:
        kwargs["external_jobid"] = job_info.external_jobid
    if not job.is_group():
        job.log_error(line, **kwargs)
        return
    from snakemake.logging import logger
    from snakemake_interface_logger_plugins.common import LogEvent

    aux_logs = kwargs.pop("aux_logs", None) or []
    logger.error(f"Error in group {job.groupid}",
                 extra=dict(event=LogEvent.GROUP_ERROR, groupid=job.groupid, aux_logs=aux_logs,
                            job_error_info=[m.get_log_error_info(indent=True, **kwargs)
                                            for m in job.jobs], **kwargs))
    for member in sorted(job.jobs, key=lambda m: m.rule.name):
        member.log_error(line, indent=True)
