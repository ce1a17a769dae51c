"""Two fixes to snakemake-executor-plugin-slurm (2.8.0) that assay applies in the main snakemake.

1. **A status query that fails no longer loses the jobs.** When ``squeue``/``sacct`` fails on
   every attempt of a check (slurmctld down or restarting, a flaky network, a broken
   ``squeue``), the plugin yields none of the jobs it was asked about and reports none:
   Snakemake's remote executor drops them from its active list, never asks about them again,
   and waits for them forever without a word (issue 30: 7 min of silence, SIGTERM waiting for
   jobs no one watches). Here such jobs are kept and polled again with back-off (up to
   ``BACKOFF_MAX_S``); after ``ASSAY_SLURM_STATUS_PATIENCE`` seconds (default 120) of failed
   queries one warning says what fails (the query's own error) and what to check, again every
   ``5 x`` that while it lasts, and a line says when SLURM answers again.
2. **A failed or cancelled SLURM job is one line that says why**: the SLURM job id, what it
   ran, its SLURM state, reason and exit code (``scontrol show job``), the log's last SLURM
   line (``*** JOB 12 ON node CANCELLED AT ... ***``) or sbatch's own error text, and the log's
   path. Snakemake 9.27 drops the executor's message for a group job and prints
   ``message: None`` for each member; here each member gets that line as its message.

Both are upstream-ready: (1) is "yield every job whose state is unknown" in
``Executor.check_active_jobs`` (plugin issue #207 is the same hang with sacct); (2) is
``GroupJob.log_error`` passing ``msg`` on to its members. Until they land, the workflow calls
`install()` in the main snakemake (workflow/rules/common.smk); it wraps public executor
methods only, and does nothing when the plugin is not loaded.
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
QUERY_TIMEOUT_S = 30.0
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

    def report_job_success(self: Any, job_info: Any, *args: Any, **kwargs: Any) -> Any:
        _state(self)["handled"].add(id(job_info))
        return success(self, job_info, *args, **kwargs)

    def report_job_error(self: Any, job_info: Any, msg: Any = None, **kwargs: Any) -> Any:
        _state(self)["handled"].add(id(job_info))
        return error(self, job_info, msg=msg, **kwargs)

    async def check_active_jobs(self: Any, active_jobs: list[Any]) -> Any:
        state = _state(self)
        state["handled"] = set()
        kept: set[int] = set()
        async for job_info in check(self, active_jobs):
            kept.add(id(job_info))
            yield job_info
        lost = [j for j in active_jobs if id(j) not in kept and id(j) not in state["handled"]]
        if lost:
            await _status_unknown(self, state, lost)
            for job_info in lost:
                yield job_info
        elif state["failing_since"] is not None:
            if state["warned"]:
                self.logger.warning(
                    f"SLURM answers job status queries again after "
                    f"{time.monotonic() - state['failing_since']:.0f} s")
            state.update(failing_since=None, warned=False, next_warning=0.0)

    executor.check_active_jobs = check_active_jobs
    executor.report_job_success = report_job_success
    executor.report_job_error = report_job_error
    executor.print_job_error = _print_job_error
    executor._assay_watch = True
    return True


def _state(executor: Any) -> dict[str, Any]:
    state = executor.__dict__.get(_STATE_ATTR)
    if state is None:
        state = {"handled": set(), "failing_since": None, "warned": False, "next_warning": 0.0}
        setattr(executor, _STATE_ATTR, state)
    return state


async def _status_unknown(executor: Any, state: dict[str, Any], lost: list[Any]) -> None:
    """The status query failed for ``lost``: back off, and after the patience say so."""
    now = time.monotonic()
    if state["failing_since"] is None:
        state["failing_since"] = now
    current = executor.next_seconds_between_status_checks or 10
    patience = _patience()
    # never slower than the warning's patience: a short patience also polls more often
    executor.next_seconds_between_status_checks = min(max(2 * current, 10), BACKOFF_MAX_S,
                                                      patience)
    failing = now - state["failing_since"]
    if failing < patience or now < state["next_warning"]:
        return
    state["warned"], state["next_warning"] = True, now + 5 * patience
    problem = await _query_problem(executor)
    ids = sorted({str(j.external_jobid) for j in lost if j.external_jobid})
    executor.logger.warning(
        f"SLURM has not answered job status queries for {failing:.0f} s ({problem}). "
        f"{len(ids)} SLURM job(s) of this run ({', '.join(ids)}) are kept and asked about "
        f"again every {executor.next_seconds_between_status_checks:g} s. Check that slurmctld "
        f"is up (`scontrol ping`, `squeue -j {','.join(ids[:5])}`) or ask your admins; "
        "Ctrl-C stops snakemake and cancels them (restart later: docs/hpc.md, 'Restarting').")


async def _query_problem(executor: Any) -> str:
    """The failing query's own words: run the plugin's status command once more."""
    import asyncio
    import shlex

    module = sys.modules["snakemake_executor_plugin_slurm"]
    name = executor.get_status_command()
    builder = getattr(module, f"query_job_status_{name}", None)
    if builder is None:
        return f"status command {name!r}"
    command = builder(executor.run_uuid)
    try:
        proc = await asyncio.create_subprocess_exec(
            *shlex.split(command), stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE)
        _, err = await asyncio.wait_for(proc.communicate(), timeout=QUERY_TIMEOUT_S)
    except asyncio.TimeoutError:
        return f"`{name}` did not answer within {QUERY_TIMEOUT_S:g} s"
    except OSError as exc:
        return f"`{name}`: {exc}"
    text = " ".join(err.decode(errors="replace").split())[:300]
    if proc.returncode == 0:
        return f"`{name}` answers now"
    return f"`{name}` exited {proc.returncode}: {text or 'no message'}"


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
    """JobState, Reason, ExitCode of a SLURM job (``scontrol -o show job``); {} if unknown."""
    try:
        proc = subprocess.run(["scontrol", "-o", "show", "job", str(job_id)], text=True,
                              capture_output=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired):
        return {}
    if proc.returncode != 0:
        return {}
    fields = dict(re.findall(r"(?:^|\s)(\w+)=(\S*)", proc.stdout))
    return {k: fields[k] for k in ("JobState", "Reason", "ExitCode") if k in fields}


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
        line += f": {' '.join(msg.split())[:300]}"
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
