"""Where a study stands, read from files alone: refs, logs, Snakemake's markers, work dirs.

`assay status` answers in well under a second for thousands of jobs, while Snakemake runs
(locally or on SLURM) and after it was killed, without Snakemake's lock and without
writing anything. It never builds the DAG: the workflow plan names every job's output and
log, and each job's state follows from what is on disk.

* **done**: its output exists (a ref that parses; a figure or the catalog that exists)
  and Snakemake would not run it again.
* **stale**: its output exists but Snakemake would run it again (assay.tools.staleness): the
  spec its artifact records differs from the current plan's (config, a plugin's or the
  statistics' code, the storage format), an input changed, or something upstream runs.
* **kept**: it differs only in what the ``--rerun-triggers`` given to status (as to
  Snakemake) leave out, e.g. a run made with older runner code under
  ``--rerun-triggers mtime params input``: Snakemake keeps it; status says what it was
  made with.
* **running**: it is alive, judged in this order: a run's work directory, written by
  this attempt, names a process on this host that still runs ``assay``; its SLURM job
  (the id in Snakemake's marker, else in the work directory) is not finished, by one
  ``squeue`` call; else Snakemake marked it started (``.snakemake/incomplete/``) and a
  Snakemake holds the directory (a lock file, and on Linux a ``snakemake`` process
  working in it). A killed Snakemake leaves its markers and its lock: its runs whose
  process died, and its other started jobs with a log, are failed.
* **failed**: its log exists, the output does not, it is not running, and the log does
  not end with the job's success line. The message is the log's last line that mentions
  an error, else what is known (a vanished process, SLURM's final state).
* **pending**: everything else.

Only Snakemake's default file persistence (``.snakemake/``) is read, not
``--persistence-backend db``.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import shlex
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..pipeline import joblog
from ..errors import AssayError
from ..pipeline.layout import STAGE_LAYOUTS, catalog_log_path, plot_log_path
from ..store.refs import read_ref
from ..store.workdirs import STATE, WORK_DIR, WorkDir, WorkDirs

STATES = ("done", "kept", "stale", "running", "failed", "pending")
STAGES = ("run", "collect", "aggregate", "compare", "plot", "catalog")
DEFAULT_CONFIGFILE = "config/config.yaml"   # the Snakefile's `configfile:`
SNAKEMAKE_DIR = ".snakemake"
SQUEUE_TIMEOUT_S = 3.0
# SLURM states (squeue -t all) of a job that will not run any more.
SLURM_FINISHED = frozenset({"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY",
                            "NODE_FAIL", "BOOT_FAIL", "DEADLINE", "PREEMPTED", "SPECIAL_EXIT",
                            "REVOKED"})
SLURM_QUEUED = frozenset({"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED"})
# What a job writes to its log (assay.jobs, the plot job, `assay catalog build`).
_HEAD, _TAIL = 4096, 8192
_CACHE_HIT = (joblog.CACHE_HIT, joblog.FIGURE_CACHE_HIT)
_SUCCESS = {"plot": joblog.prefix("plot") + joblog.FIGURES_WRITTEN,
            "catalog": joblog.CATALOG_BUILT}   # others: "[assay S] ref "
# This attempt's line, before the replays of earlier attempts' logs.
_ATTEMPT = re.compile(re.escape(joblog.prefix("run") + joblog.ATTEMPT) + r"(\d+) in ")
_REPLAYED = joblog.prefix("run") + joblog.REPLAY_END   # earlier attempts' text ends
_SECONDS = re.compile(r"\((\d+(?:\.\d+)?)s\)\s*$")


@dataclass(frozen=True)
class Marker:
    mtime: float                 # when Snakemake started (or submitted) the job
    external_jobid: str | None   # the SLURM job id on SLURM


@dataclass
class Job:
    """One job of the plan and what the files say about it."""

    stage: str
    output: str                  # as Snakemake names it (relative to the study directory)
    log: str
    names: dict[str, Any]
    state: str = "pending"
    cached: bool = False
    error: str | None = None
    seconds: float | None = None          # a finished job's time, from its log
    attempt: int | None = None
    slurm_job_id: str | None = None
    slurm_state: str | None = None
    work: dict[str, Any] | None = None    # a run's state.json (+ progress) while it matters
    marker: Marker | None = None
    why: str | None = None                # a stale or kept job: what differs from the plan
    code_only: bool = False               # only what Snakemake's code trigger sees differs
    digest: str | None = None             # a done artifact job's ref, as _done read it

    def to_dict(self) -> dict[str, Any]:
        return {"stage": self.stage, **self.names, "state": self.state, "cached": self.cached,
                "output": self.output, "log": self.log, "error": self.error, "why": self.why,
                "slurm_job_id": self.slurm_job_id, "slurm_state": self.slurm_state}


@dataclass
class StudyStatus:
    time: float
    jobs: list[Job]
    snakemake: dict[str, Any]
    slurm: dict[str, Any]
    rerun: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    # Metrics of finished conditions that are not converged (assay.pipeline.diagnostics).
    convergence: list[dict[str, Any]] = field(default_factory=list)

    @property
    def total(self) -> int:
        return len(self.jobs)

    def counts(self, stage: str | None = None) -> dict[str, int]:
        jobs = [j for j in self.jobs if stage is None or j.stage == stage]
        out = {"total": len(jobs), **{s: 0 for s in STATES}, "cached": 0, "queued": 0}
        for job in jobs:
            out[job.state] += 1
            out["cached"] += job.cached
            out["queued"] += job.state == "running" and job.slurm_state in SLURM_QUEUED
        return out

    @property
    def finished(self) -> bool:
        """Nothing running, pending or stale: the study is done or stopped at failures."""
        c = self.counts()
        return c["running"] == 0 and c["pending"] == 0 and c["stale"] == 0

    def runs(self) -> list[dict[str, Any]]:
        return [run_row(job, self.time) for job in self.jobs if job.stage == "run"]

    def to_dict(self) -> dict[str, Any]:
        return {"time": self.time, "total": self.total, "counts": self.counts(),
                "stages": {s: self.counts(s) for s in STAGES}, "runs": self.runs(),
                "running": [j.to_dict() for j in self.jobs if j.state == "running"],
                "failed": [j.to_dict() for j in self.jobs if j.state == "failed"],
                "stale": [j.to_dict() for j in self.jobs if j.state == "stale"],
                "kept": [j.to_dict() for j in self.jobs if j.state == "kept"],
                "rerun": self.rerun, "snakemake": self.snakemake, "slurm": self.slurm,
                "notes": self.notes, "convergence": self.convergence}


# --- the study's config, as Snakemake reads it -------------------------------------------
def load_study_config(configfiles: Iterable[str | Path] = (), directory: str | Path = ".",
                      *, replace: bool = False) -> dict[str, Any]:
    """The Snakefile's ``config/config.yaml``, extended by each ``--configfile`` (nested
    mappings merged, other values replaced) unless ``replace`` (Snakemake's
    ``--replace-workflow-config``), exactly as Snakemake builds ``config``."""
    import yaml

    from ..errors import ConfigError

    def load(path: Path) -> dict[str, Any]:
        try:
            value = yaml.safe_load(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist (run in the study "
                              "directory or pass --configfile)") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
        if not isinstance(value, dict):
            raise ConfigError(f"config file {path} does not hold a mapping")
        return value

    default = Path(directory) / DEFAULT_CONFIGFILE
    files = [Path(f) for f in configfiles]
    config = load(default) if (not files or (default.is_file() and not replace)) else {}
    for path in files:
        _update(config, load(path))
    return config


def _update(config: dict[str, Any], other: dict[str, Any]) -> None:
    for key, value in other.items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            _update(config[key], value)
        else:
            config[key] = value


# --- the plan's jobs -----------------------------------------------------------------------
def plan_jobs(plan: Any) -> list[Job]:
    """Every job of the study, in stage order, with its output and log path."""
    results, study = plan.results, plan.study

    def job(stage: str, output: str, **names: Any) -> Job:
        return Job(stage, output, STAGE_LAYOUTS[stage].log_path(results, **names), names)

    jobs = [job("run", plan.run_ref(c, r), condition=c, replicate=r)
            for c in study.conditions for r in study.replicates]
    for a in study.analyses:
        jobs += [job("collect", plan.replicate_ref(a, c, r), analysis=a, condition=c,
                     replicate=r) for c in study.conditions for r in study.replicates]
    for a in study.analyses:
        jobs += [job("aggregate", plan.condition_ref(a, c), analysis=a, condition=c)
                 for c in study.conditions]
    jobs += [job("compare", plan.comparison_ref(a), analysis=a) for a in study.analyses]
    for figure in plan.plots():   # results/plots/<analysis>/<name>.<fmt>, log beside logs/
        analysis, name = Path(figure).parent.name, Path(figure).stem
        log = plot_log_path(results, analysis, name)
        jobs.append(Job("plot", figure, log, {"analysis": analysis, "figure": name}))
    jobs.append(Job("catalog", plan.catalog, catalog_log_path(results), {}))
    return jobs


# --- Snakemake's files ----------------------------------------------------------------------
def marker_key(parts: list[str]) -> str | None:
    """The output path a marker file names. Snakemake 9 (persistence/file.py,
    ``_record_path``) writes ``urlsafe_b64encode(path)`` cut into chunks of NAME_MAX-1
    characters, every chunk but the last prefixed with ``@`` (one directory each)."""
    encoded = "".join(p[1:] if i < len(parts) - 1 and p.startswith("@") else p
                      for i, p in enumerate(parts))
    try:
        return os.path.normpath(base64.urlsafe_b64decode(encoded.encode()).decode())
    except (ValueError, binascii.Error):
        return None


def incomplete_markers(root: Path) -> dict[str, Marker]:
    """Outputs Snakemake marked as started and not finished, by normalized path."""
    base = root / SNAKEMAKE_DIR / "incomplete"
    found: dict[str, Marker] = {}
    for dirpath, _dirs, files in os.walk(base):
        rel = os.path.relpath(dirpath, base)
        parts = [] if rel == "." else rel.split(os.sep)
        for name in files:
            key = marker_key([*parts, name])
            if key is None:
                continue
            path = os.path.join(dirpath, name)
            try:
                with open(path, "rb") as handle:
                    mtime, raw = os.fstat(handle.fileno()).st_mtime, handle.read(4096)
                jobid = json.loads(raw).get("external_jobid") if raw.strip() else None
            except (OSError, ValueError, AttributeError):
                continue
            found[key] = Marker(mtime, str(jobid) if jobid else None)
    return found


def snakemake_lock(root: Path) -> bool:
    try:
        return any(e.name.endswith(".lock") for e in os.scandir(root / SNAKEMAKE_DIR / "locks"))
    except (FileNotFoundError, NotADirectoryError):
        return False


def snakemake_processes(root: Path) -> list[int] | None:
    """Snakemake processes working in ``root`` on this host (None: no /proc to ask)."""
    if not os.path.isdir("/proc/self"):
        return None
    target, found = os.path.realpath(root), []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/cmdline", "rb") as handle:
                argv = handle.read().split(b"\0")
            if not (any(os.path.basename(a) == b"snakemake" for a in argv[:2])
                    or argv[1:3] == [b"-m", b"snakemake"]):
                continue
            if os.readlink(f"/proc/{entry.name}/cwd") == target:
                found.append(int(entry.name))
        except OSError:   # gone, or another user's process
            continue
    return found


def squeue_states(timeout: float = SQUEUE_TIMEOUT_S) -> tuple[dict[str, str] | None, str | None]:
    """(job id -> state of this user's SLURM jobs, including recently finished ones; why
    not). One ``squeue`` call; no SLURM is not an error."""
    from ..pipeline.cluster_jobs import run_squeue

    out, why = run_squeue(["--me", "--noheader", "--states=all", "--format=%i|%T"], timeout)
    if out is None:
        return None, why
    states = {}
    for line in out.splitlines():
        jobid, _, state = line.strip().partition("|")
        if jobid and state:
            states[jobid] = state.split()[0]
    return states, None


# --- logs and work directories ------------------------------------------------------------
@dataclass
class LogFacts:
    mtime: float
    cached: bool = False
    succeeded: bool = False
    error: str | None = None
    attempt: int | None = None
    seconds: float | None = None


def read_log(path: str | Path, stage: str) -> LogFacts | None:
    """What a job's log says: its head (cache hit, attempt) and tail (success, error)."""
    try:
        with open(path, "rb") as handle:
            info = os.fstat(handle.fileno())
            head = handle.read(_HEAD)
            tail = b""
            if info.st_size > _HEAD:
                handle.seek(max(info.st_size - _TAIL, _HEAD))
                tail = handle.read(_TAIL)
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError):
        return None
    text = head.decode("utf-8", "replace")
    lines = (text + tail.decode("utf-8", "replace")).splitlines()
    facts = LogFacts(info.st_mtime, cached=any(hit in text for hit in _CACHE_HIT))
    attempt = _ATTEMPT.search(text)
    facts.attempt = int(attempt.group(1)) if attempt else None
    success = _SUCCESS.get(stage, joblog.prefix(stage) + joblog.REF_WRITTEN)
    for line in reversed(lines):
        if line.startswith(success):
            facts.succeeded = True
            seconds = _SECONDS.search(line)
            facts.seconds = float(seconds.group(1)) if seconds else None
            break
        if line.startswith(_REPLAYED):   # an earlier attempt's error is not this one's
            break
        if facts.error is None and "error" in line.lower():
            facts.error = line.strip()
    return facts


def run_workdirs(store: Path) -> dict[tuple[str, int], tuple[Path, dict[str, Any]]]:
    """Each run's newest work directory and its state.json, by (condition, replicate);
    ``written`` is state.json's mtime: the file server's clock, like Snakemake's markers."""
    newest: dict[tuple[str, int], tuple[Path, dict[str, Any]]] = {}
    for work in WorkDirs(store / WORK_DIR):
        state = work.state()
        if state.get("stage") != "run":
            continue
        try:
            state["written"] = os.stat(work.root / STATE).st_mtime
        except FileNotFoundError:
            continue
        key = (state.get("condition"), state.get("replicate"))
        if key not in newest or state["written"] > newest[key][1]["written"]:
            newest[key] = (work.root, state)
    return newest


def last_checkpoint(workdir: WorkDir, progress: dict[str, Any] | None) -> float | None:
    """The newest of the progress report and the files the run keeps at the top of its
    working directory (checkpoints usually live there; deeper trees are not walked)."""
    times = [progress["time"]] if progress and isinstance(progress.get("time"), (int, float)) \
        else []
    try:
        with os.scandir(workdir.files) as entries:
            for entry in entries:
                try:
                    times.append(entry.stat(follow_symlinks=False).st_mtime)
                except FileNotFoundError:
                    continue
    except (FileNotFoundError, NotADirectoryError):
        pass
    return max(times) if times else None


def _process_alive(pid: Any) -> bool:
    """A job process of this host still runs (a reused pid not running assay is dead)."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)   # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return b"assay" in handle.read()   # a zombie's cmdline is empty
    except OSError:
        return True


# --- putting it together -------------------------------------------------------------------
def study_status(plan: Any, root: str | Path = ".", *, slurm: bool = True,
                 configfiles: Iterable[str] = (), replace_config: bool = False,
                 rerun_triggers: tuple[str, ...] | None = None) -> StudyStatus:
    """The state of every job of ``plan`` in the study directory ``root``; read-only.
    ``rerun_triggers``: Snakemake's (default: all), to tell stale from kept."""
    root, now, host = Path(root), time.time(), socket.gethostname()
    jobs = plan_jobs(plan)
    markers = incomplete_markers(root)
    locked = snakemake_lock(root)
    processes = snakemake_processes(root) if locked else []
    alive = locked and processes != []   # None (cannot look): trust the lock
    works = run_workdirs(root / plan.store)

    undone = [job for job in jobs if not _done(job, str(root))]
    stale_done = 0 if alive else sum(os.path.normpath(j.output) in markers
                                     for j in jobs if j.state == "done")
    for job in undone:
        _attach(job, markers, works, root)
    on_slurm = any(j.slurm_job_id for j in undone)
    slurm_states, slurm_problem = None, "not asked: no job has a SLURM id"
    if not slurm:
        slurm_problem = "not asked (--no-slurm)"
    elif on_slurm:
        slurm_states, slurm_problem = squeue_states()
    for job in undone:
        _judge(job, root, slurm_states, host, alive)
    from .staleness import TRIGGERS, mark_stale

    unchecked = mark_stale(plan, jobs, root, rerun_triggers or TRIGGERS)

    stale_lock = locked and processes == []
    status = StudyStatus(
        now, jobs,
        snakemake={"locked": locked, "processes": processes, "running": alive,
                   "stale_lock": stale_lock, "incomplete_markers": len(markers)},
        slurm={"available": slurm_states is not None, "problem": slurm_problem},
        rerun=rerun_commands([j for j in jobs if j.state == "failed"], root=root,
                             configfiles=configfiles, replace_config=replace_config,
                             on_slurm=on_slurm, unlock=stale_lock,
                             rerun_incomplete=bool(stale_done)))
    status.notes.extend(unchecked)
    from ..pipeline.diagnostics import status_warnings

    status.convergence = status_warnings(root, plan.store, jobs)
    if plan.study.adaptive:   # the look jobs are not listed: where they stand
        from ..pipeline.adaptive import status_note

        status.notes.append(status_note(plan.study.adaptive, root / plan.results))
    if stale_lock:
        status.notes.append("Snakemake's lock is held but no snakemake process on this host "
                            "works here: if none runs elsewhere, it was killed; "
                            "`snakemake --unlock` before running it again")
    if stale_done:
        status.notes.append(f"{stale_done} finished outputs still carry Snakemake's "
                            "incomplete marker (it was killed before recording them): "
                            "add --rerun-incomplete (they come from the action cache)")
    return status


def _done(job: Job, base: str) -> bool:
    """Done if its output is there (a ref must parse); then its log says cached or not.
    Plain strings, not pathlib: here pathlib would cost more than the reads."""
    try:
        if job.stage in STAGE_LAYOUTS:
            job.digest = read_ref(os.path.join(base, job.output)).digest
        elif not os.path.isfile(os.path.join(base, job.output)):
            return False
    except (OSError, AssayError):   # missing, or not a ref
        return False
    job.state = "done"
    facts = read_log(os.path.join(base, job.log), job.stage)
    if facts is not None:
        job.cached, job.seconds, job.attempt = facts.cached, facts.seconds, facts.attempt
    return True


def _attach(job: Job, markers: dict[str, Marker], works: dict, root: Path) -> None:
    """Snakemake's marker, the run's work directory of this attempt, the SLURM job id."""
    job.marker = markers.get(os.path.normpath(job.output))
    found = works.get((job.names["condition"], job.names["replicate"])) \
        if job.stage == "run" else None
    # A work dir older than the marker is an earlier attempt's (1 s: mtime granularity).
    if found is not None and not (job.marker and found[1]["written"] < job.marker.mtime - 1):
        job.work = {**found[1], "dir": os.path.relpath(found[0], root)}
    jobid = (job.marker and job.marker.external_jobid) or (job.work or {}).get("slurm_job_id")
    job.slurm_job_id = str(jobid) if jobid else None


def _judge(job: Job, root: Path, slurm_states: dict[str, str] | None, host: str,
           snakemake_alive: bool) -> None:
    """Running, failed or pending; progress and attempt of a run that is not pending."""
    if slurm_states is not None and job.slurm_job_id:
        job.slurm_state = slurm_states.get(job.slurm_job_id)
    facts = read_log(root / job.log, job.stage)
    if _running(job, slurm_states, host, snakemake_alive):
        job.state = "running"
    elif facts is not None and facts.succeeded and (root / job.output).exists():
        job.state, job.cached, job.seconds = "done", facts.cached, facts.seconds  # just now
    elif facts is not None and not facts.succeeded:
        job.state = "failed"
        job.error = facts.error or _silent_failure(job, host)
    job.attempt = facts.attempt if facts else None
    if job.work is not None and job.state in ("running", "failed"):
        workdir = WorkDir(root / job.work["dir"])
        job.work["progress"] = workdir.progress()
        job.work["checkpoint"] = last_checkpoint(workdir, job.work["progress"])
        job.work["log_mtime"] = facts.mtime if facts else None
        job.attempt = job.work.get("attempt")


def _running(job: Job, slurm_states: dict[str, str] | None, host: str,
             snakemake_alive: bool) -> bool:
    work = job.work
    if work is not None and work.get("host") == host:
        # This attempt (or one started without Snakemake) recorded its process here.
        return _process_alive(work.get("pid"))
    if job.slurm_job_id and slurm_states is not None:
        state = slurm_states.get(job.slurm_job_id)
        return state is not None and state not in SLURM_FINISHED
    # Marked as started; its attempt has not recorded itself yet, or cannot be asked.
    return job.marker is not None and snakemake_alive


def _silent_failure(job: Job, host: str) -> str:
    """Why a job failed whose log names no error."""
    if job.slurm_state in SLURM_FINISHED:
        return f"SLURM job {job.slurm_job_id} ended {job.slurm_state}; no error in the log"
    work = job.work
    if work and work.get("pid") and work.get("host") == host:
        return (f"the job process (pid {work['pid']} on {host}) is gone without an error in "
                "its log: killed?")
    return "the log ends without an error or a success line: killed?"


def run_row(job: Job, now: float) -> dict[str, Any]:
    """A run's line: state, progress, last checkpoint, elapsed time, attempt, SLURM."""
    work = job.work if job.state != "done" else None
    progress = (work or {}).get("progress") or {}
    done, total = progress.get("done"), progress.get("total")
    percent = (100.0 * done / total if isinstance(done, (int, float))
               and isinstance(total, (int, float)) and total > 0 else None)
    started = (work or {}).get("started")
    elapsed = job.seconds
    if started and job.state == "running":
        elapsed = now - started
    elif started and job.state == "failed":   # until it last wrote its log or progress
        last = max(work.get("checkpoint") or 0, work.get("log_mtime") or 0, started)
        elapsed = last - started
    return {"condition": job.names["condition"], "replicate": job.names["replicate"],
            "state": job.state, "cached": job.cached, "percent": percent,
            "message": progress.get("message"), "checkpoint": (work or {}).get("checkpoint"),
            "elapsed_s": elapsed, "attempt": job.attempt,
            "first_started": (work or {}).get("first_started"),
            "host": (work or {}).get("host"), "pid": (work or {}).get("pid"),
            "slurm_job_id": job.slurm_job_id, "slurm_state": job.slurm_state,
            "workdir": (work or {}).get("dir"), "log": job.log, "output": job.output,
            "error": job.error}


def rerun_commands(failed: list[Job], *, root: Path, configfiles: Iterable[str] = (),
                   replace_config: bool = False, on_slurm: bool = False, unlock: bool = False,
                   rerun_incomplete: bool = False) -> dict[str, Any]:
    """What to type in the study directory: ``commands`` rerun exactly the failed jobs
    (runs resume from their work directories), ``study`` finishes everything."""
    targets = [j.output for j in failed]
    if on_slurm:
        where = (["--profile", "profiles/slurm"] if (root / "profiles" / "slurm").is_dir()
                 else ["--executor", "slurm"])
    else:
        where = ["--cores", "all"]
    config = [arg for f in configfiles for arg in ("--configfile", str(f))]
    config += ["--replace-workflow-config"] if config and replace_config else []
    # --unlock parses the workflow, whose rules need the cores (or the profile) too.
    first = [shlex.join(["snakemake", "--unlock", *where, *config])] if unlock else []
    run = ["snakemake", *where, *config, *(["--rerun-incomplete"] if rerun_incomplete else [])]
    return {"targets": targets,
            "commands": first + [shlex.join(run + targets)] if targets else [],
            "study": first + [shlex.join(run)]}
