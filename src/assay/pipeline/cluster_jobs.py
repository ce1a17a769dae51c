"""SLURM jobs of a study that outlived their snakemake: `assay status`, and the restart.

A snakemake killed by SIGKILL (or a lost login session) cannot cancel its SLURM jobs: they
keep running, finish their runs and publish them. They are found by one ``squeue`` call: the
user's jobs not finished whose working directory is the study (the profile submits every
job from it) and whose name is a snakemake run id, joined with the claims in
``store/claims`` that name the run each one holds.

`assay status` lists them with the ``scancel`` line. A restarted snakemake (assay's workflow,
`assay.pipeline.slurm_watch`) submits nothing until they have ended, then takes what they finished as
done instead of submitting it again: a new job for the same runs would otherwise start beside
them, its snakemake would delete their rule logs on the node, and its run would wait on the
old job's claim, holding an allocation, for at most ``claim_wait_seconds`` before failing.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any, Callable

SQUEUE_TIMEOUT_S = 10.0
ALIVE = ("PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "SUSPENDED", "REQUEUED",
         "RESIZING", "STOPPED", "SIGNALING", "STAGE_OUT", "REQUEUE_HOLD", "REQUEUE_FED")


# the SLURM executor names each job after its run id, a UUID (with --slurm-jobname-prefix,
# "<prefix>_<uuid>"): an interactive session or a notebook job started here is none of them
SNAKEMAKE_JOB_NAME = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def run_squeue(args: list[str], timeout: float = SQUEUE_TIMEOUT_S) -> tuple[str | None, str | None]:
    """(squeue's output, or None; why not): the one way assay asks squeue. No SLURM here,
    a controller that does not answer or an error are reasons, never exceptions: a status
    must still say what it knows without the cluster."""
    exe = shutil.which("squeue")
    if exe is None:
        return None, "no squeue on PATH"
    try:
        proc = subprocess.run([exe, *args], capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL, check=False)
    except subprocess.TimeoutExpired:
        return None, f"squeue did not answer within {timeout:g} s"
    except OSError as exc:
        return None, f"squeue: {exc}"
    if proc.returncode != 0:
        return None, f"squeue exited {proc.returncode}: {' '.join(proc.stderr.split())[:200]}"
    return proc.stdout, None


def study_jobs(root: str | Path, timeout: float = SQUEUE_TIMEOUT_S
               ) -> tuple[list[dict[str, str]] | None, str | None]:
    """(this user's unfinished SLURM jobs of a snakemake working in ``root``, or None; why
    not asked)."""
    out, why = run_squeue(["-h", "--me", "-t", ",".join(ALIVE), "-o", "%i|%T|%r|%j|%Z"], timeout)
    if out is None:
        return None, why
    here = os.path.realpath(root)
    jobs = []
    mine = os.environ.get("SLURM_JOB_ID")   # a snakemake inside a SLURM job: not its own
    for line in out.splitlines():
        parts = line.split("|", 4)
        if (len(parts) == 5 and os.path.realpath(parts[4]) == here
                and parts[0].split("_")[0] != mine and SNAKEMAKE_JOB_NAME.search(parts[3])):
            jobs.append({"id": parts[0], "state": parts[1], "reason": parts[2], "name": parts[3]})
    held = claimed_runs(Path(root))
    for job in jobs:
        job["holds"] = ", ".join(sorted(held.get(job["id"].split("_")[0], [])))
    return jobs, None


def claimed_runs(root: Path, store: str = "store") -> dict[str, list[str]]:
    """SLURM job id -> what it holds a claim on ('run free/2'), from ``store/claims/*.who``."""
    from ..store.claims import CLAIMS_DIR, _read_text

    out: dict[str, list[str]] = {}
    folder = root / store / CLAIMS_DIR
    try:
        names = [n for n in os.listdir(folder) if n.endswith(".who")]
    except OSError:
        return out
    for name in names:
        text = _read_text(folder / name)
        try:
            who = json.loads(text) if text else None
        except ValueError:
            continue
        if isinstance(who, dict) and who.get("slurm_job_id"):
            out.setdefault(str(who["slurm_job_id"]), []).append(str(who.get("what") or "?"))
    return out


def _main_snakemake_alive(snakemake: dict[str, Any]) -> bool:
    """A snakemake works here that is not a SLURM job's own (a job's snakemake runs in the
    study directory too, on this host when it is the compute node)."""
    processes = snakemake.get("processes")
    if processes is None:   # cannot look: trust status
        return bool(snakemake.get("running"))
    for pid in processes:
        try:
            with open(f"/proc/{pid}/environ", "rb") as handle:
                if not any(v.startswith(b"SLURM_JOB_ID=") for v in handle.read().split(b"\0")):
                    return True
        except OSError:
            continue
    return False


def leftover_lines(status: Any, root: str | Path) -> list[str]:
    """What `assay status` prints about SLURM jobs working here while no snakemake runs here
    (it was killed): which, what they hold, that a restart waits for them, how to stop them."""
    if _main_snakemake_alive(status.snakemake):
        return []
    jobs, problem = study_jobs(root)
    if not jobs:
        return [] if problem is None or not status.snakemake.get("locked") else [
            f"\ncould not ask SLURM for jobs left by a killed snakemake ({problem})"]
    shown = [f"{j['id']} {j['state']}" + (f" ({j['holds']})" if j["holds"] else "")
             for j in jobs]
    return [f"\nSLURM JOBS STILL RUNNING HERE ({len(jobs)}), left by a snakemake that is gone:",
            "  " + ", ".join(shown),
            "  they finish what they run and publish it; a restarted snakemake submits "
            "nothing until they have ended (one live attempt per run), then takes what they "
            "finished as done.",
            "  to stop them instead: scancel " + " ".join(j["id"] for j in jobs)]


WAIT_POLL_S = 2.0       # first look after this, then 1.5 x longer each time
WAIT_POLL_MAX_S = 30.0
WAIT_NOTE_S = 600.0     # a line while waiting, this often


def wait_for_leftovers(root: str | Path, say: Callable[[str], None],
                       poll: float = WAIT_POLL_S) -> list[str] | None:
    """Wait until no SLURM job left by another (killed) snakemake works in ``root``; the ids
    it waited for ([] if none), or None when SLURM could not be asked (then it says so)."""
    jobs, problem = study_jobs(root)
    if jobs is None:
        say(f"Could not ask SLURM for jobs a killed snakemake may have left running here "
            f"({problem}). If some still run, each run's claim keeps a new job from computing "
            "beside them; `assay status` lists them")
        return None
    if not jobs:
        return []
    ids = [j["id"] for j in jobs]
    shown = ", ".join(f"{j['id']} {j['state']}" + (f" ({j['holds']})" if j["holds"] else "")
                      for j in jobs)
    say(f"{len(jobs)} SLURM job(s) of a snakemake that is gone still work here: {shown}. "
        "Nothing is submitted until they end (one live attempt per run); what they finish is "
        f"taken as done. To stop them instead: scancel {' '.join(ids)}")
    began = last_note = time.monotonic()
    delay, failing = poll, None
    while True:
        time.sleep(delay)
        delay = min(1.5 * delay, WAIT_POLL_MAX_S)
        now_jobs, problem = study_jobs(root)
        now = time.monotonic()
        if now_jobs is None:
            failing = failing or problem
        else:
            failing = None
            alive = [j["id"] for j in now_jobs if j["id"] in ids]
            if not alive:
                say(f"The SLURM job(s) {', '.join(ids)} left by the killed snakemake ended "
                    f"after {now - began:.0f} s; going on")
                return ids
        if now - last_note >= WAIT_NOTE_S:
            last_note = now
            say(f"Still waiting for SLURM job(s) {', '.join(ids)} after {now - began:.0f} s"
                + (f" (squeue fails: {failing})" if failing else "")
                + f"; to stop them: scancel {' '.join(ids)}")
