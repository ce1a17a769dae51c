"""Cluster throughput: a study through `profiles/slurm` against the same study run locally.

    python benchmarks/cluster_throughput.py                 # both studies, writes RESULTS.md
    python benchmarks/cluster_throughput.py --only demo     # one study
    python benchmarks/cluster_throughput.py --repo DIR      # another checkout (e.g. before a change)
    python benchmarks/cluster_throughput.py --slurm-args "--group-components replicate=2"

Brings the loopback SLURM cluster up (`tests/slurm/cluster.sh up`, a no-op when it runs),
then for each study runs, in one go, `snakemake --cores 2` in one directory and
`snakemake --profile profiles/slurm --workflow-profile none` in another, both from scratch,
and checks that every ref has the same digest in both. Studies:

* demo: `config/config.yaml` (3 conditions x 4 replicates x 3 analyses, real simulation);
* analysis: an analysis-only study, `import` runner over trajectories that already exist
  (written here, untimed), 5 analyses x 10 conditions x 10 replicates = 500 collect jobs.

For the SLURM run it reports where the time goes: snakemake's start before the first
submission, each SLURM job's queue wait (submit -> start) and node time (start -> end, from
slurmctld's jobcomp log), the rules' own work inside them (their benchmark files), the
delay until the executor's status check notices a finished job, and the local rules on the
submit host. Load is reported next to every number (other processes on the 2 shared
cores, and SLURM jobs of other runs). Writes the "Cluster throughput" section of
benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
from common import (
    RESULTS_MD,
    OtherLoad,
    machine_description,
    machine_markdown,
    markdown_table,
    process_stats,
    replace_section,
    wait_until_quiet,
)

GOAL = 3.0
CORES = 2
CLUSTER = REPO / "tests" / "slurm" / "cluster.sh"
STATE = Path(os.environ.get("ASSAY_SLURM_STATE", "/tmp/assay-slurm"))
SNAPSHOT_PARTS = ("workflow", "src", "config", "profiles")
STAGES_WITH_BENCHMARKS = ("run", "collect", "aggregate", "compare")


def log(message: str) -> None:
    print(f"[cluster_throughput] {message}", file=sys.stderr, flush=True)


# --- the checkout under test ---------------------------------------------------------------
def snapshot_repo(source: Path, dest: Path) -> Path:
    """Copy the workflow, library, configs and profiles as they are now, so edits others
    make during a run of several minutes do not leak in; jobs import this copy's library
    (the Snakefile puts its own src/ first on their PYTHONPATH)."""
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc")
    dest.mkdir(parents=True)
    for part in SNAPSHOT_PARTS:
        path = source / part
        if path.is_symlink():   # workflow/, profiles/: relative links into src/
            os.symlink(os.readlink(path), dest / part)
        elif path.is_dir():
            shutil.copytree(path, dest / part, ignore=ignore)
    return dest


def job_env(repo: Path) -> dict[str, str]:
    """snakemake's environment, which sbatch (--export=ALL) hands to every job too."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(repo / "src"),
                                                      env.get("PYTHONPATH")]))
    if "SLURM_CONF" not in env and (STATE / "slurm.conf").is_file():
        env["SLURM_CONF"] = str(STATE / "slurm.conf")
    return env


# --- studies -------------------------------------------------------------------------------
def write_config(workdir: Path, config: dict) -> None:
    import yaml

    path = workdir / "config" / "config.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False))


def demo_study(workdir: Path, repo: Path) -> None:
    (workdir / "config").mkdir(parents=True)
    shutil.copy2(repo / "config" / "config.yaml", workdir / "config" / "config.yaml")


ANALYSES = {   # five analyses of the demo's plugins, over imported trajectories
    "gyration": {"plugin": "radius_of_gyration", "settings": {"equilibration_frames": 20}},
    "gyration_late": {"plugin": "radius_of_gyration",
                      "settings": {"equilibration_frames": 100}},
    "distances": {"plugin": "distance_matrix", "settings": {"equilibration_frames": 20}},
    "contacts": {"plugin": "contact_events", "settings": {"cutoff": 1.5, "min_frames": 2}},
    "contacts_wide": {"plugin": "contact_events", "settings": {"cutoff": 2.5,
                                                               "min_frames": 2}},
}
FIXED_MTIME_NS = 1_700_000_000 * 10**9   # the import runner keys on size and mtime


def analysis_study(workdir: Path, conditions: int, replicates: int, analyses: int) -> None:
    """Trajectories that already exist (a chain near a wall, 24 beads x 200 frames) and a
    config that imports them; identical bytes and mtimes in every directory, so the local
    and the SLURM run have the same action keys."""
    import numpy as np

    labels = [f"c{i:02d}" for i in range(conditions)]
    for i, label in enumerate(labels):
        folder = workdir / "sims" / label
        folder.mkdir(parents=True)
        for r in range(1, replicates + 1):
            rng = np.random.default_rng([i, r])
            steps = rng.normal(scale=0.35, size=(200, 24, 3))
            positions = np.cumsum(steps, axis=1) + rng.normal(scale=0.2, size=(200, 1, 3))
            positions[..., 2] = np.abs(positions[..., 2]) + 0.8 + 0.1 * i
            path = folder / f"rep{r}.npz"
            np.savez(path, positions=positions)
            os.utime(path, ns=(FIXED_MTIME_NS, FIXED_MTIME_NS))
    names = list(ANALYSES)[:analyses]
    write_config(workdir, {
        "store": "store", "results": "results", "seed": 11,
        "conditions": [{"label": label} for label in labels],
        "control": labels[0],
        "replicates": replicates,
        "runner": {"plugin": "import",
                   "settings": {"files": {"trajectory": "sims/{condition}/rep{replicate}.npz"}}},
        "analyses": {name: ANALYSES[name] for name in names},
        "plots": {"format": "png", "dpi": 40},
    })


# --- running snakemake ---------------------------------------------------------------------
@dataclass
class Run:
    name: str
    seconds: float
    returncode: int
    lines: list[tuple[float, str]]        # (wall clock, line) of snakemake's output
    started: float                        # wall clock
    others_before: float | None           # cores busy just before (nothing of ours running)
    others_during: float | None           # see Sampler
    foreign_slurm_jobs: int = 0
    cpu_seconds: float = 0.0              # snakemake and its children (local jobs, sbatch)

    @property
    def output(self) -> str:
        return "\n".join(line for _, line in self.lines)


class Sampler(threading.Thread):
    """Every 0.5 s: CPU of processes that are not ours (neither below this script nor
    working in the scratch folder, where our SLURM jobs run) and SLURM jobs of other runs.
    Sampled, so processes shorter than a sample are missed: a lower bound."""

    def __init__(self, scratch: Path, run_name_pattern: str | None) -> None:
        super().__init__(daemon=True)
        self.scratch, self.pattern = str(scratch), run_name_pattern
        self.stop_event = threading.Event()
        self.ticks: dict[int, tuple[int, int]] = {}   # pid -> (first, last) utime+stime
        self.foreign: set[str] = set()
        self.t0 = time.monotonic()

    def _ours(self, pid: int, parents: dict[int, int]) -> bool:
        me, seen = os.getpid(), 0
        p = pid
        while p > 1 and seen < 64:
            if p == me:
                return True
            p, seen = parents.get(p, 0), seen + 1
        try:
            return os.readlink(f"/proc/{pid}/cwd").startswith(self.scratch)
        except OSError:
            return True   # gone: cannot tell, do not count

    def sample(self) -> None:
        stats = {pid: s for pid, s in process_stats().items() if not s[2]}  # no kthreads
        parents = {pid: s[0] for pid, s in stats.items()}
        for pid, (_, ticks, _) in stats.items():
            if pid in self.ticks:
                self.ticks[pid] = (self.ticks[pid][0], ticks)
            elif not self._ours(pid, parents):
                self.ticks[pid] = (ticks, ticks)

    def poll_queue(self) -> None:
        try:
            out = subprocess.run(["squeue", "-h", "-o", "%i %j"], capture_output=True,
                                 text=True, timeout=10).stdout
        except (OSError, subprocess.SubprocessError):
            return
        for line in out.splitlines():
            job, _, name = line.partition(" ")
            if self.pattern and name != self.pattern:
                self.foreign.add(job)

    def run(self) -> None:
        n = 0
        while not self.stop_event.wait(0.5):
            self.sample()
            if self.pattern is not None and n % 4 == 0:
                self.poll_queue()
            n += 1

    def cores(self) -> float:
        hz = os.sysconf("SC_CLK_TCK")
        used = sum(last - first for first, last in self.ticks.values()) / hz
        return used / max(time.monotonic() - self.t0, 1e-9)


def run_snakemake(name: str, workdir: Path, repo: Path, args: list[str],
                  scratch: Path, quiet_wait: float, slurm: bool) -> Run:
    command = [sys.executable, "-m", "snakemake", "--snakefile",
               str(repo / "workflow" / "Snakefile"), "--directory", str(workdir),
               "--workflow-profile", "none", *args]
    before = wait_until_quiet(quiet_wait, threshold=0.5, log=log)
    log(f"{name}: {shlex.join(command[2:])}  (busy cores before: {before:.2f})")
    lines: list[tuple[float, str]] = []
    sampler = Sampler(scratch, "" if slurm else None)
    t0_times = os.times()
    started, t0 = time.time(), time.monotonic()
    with OtherLoad() as load:
        sampler.start()
        proc = subprocess.Popen(command, cwd=workdir, env=job_env(repo), text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, bufsize=1)
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append((time.time(), line.rstrip("\n")))
            if slurm and sampler.pattern == "":
                found = re.search(r"SLURM run ID: (\S+)", line)
                if found:
                    sampler.pattern = found.group(1)
        proc.wait()
        seconds = time.monotonic() - t0
        sampler.stop_event.set()
        sampler.join()
    t1 = os.times()
    cpu = (t1.children_user - t0_times.children_user) + (t1.children_system
                                                         - t0_times.children_system)
    # a local run's other load is exact: all busy time minus ours minus kernel threads
    others = (max((load.core_seconds or 0.0) - cpu, 0.0) / seconds if not slurm
              else sampler.cores())
    run = Run(name, seconds, proc.returncode, lines, started, before, others,
              len(sampler.foreign), cpu)
    (scratch / f"{name.replace(' ', '-')}.log").write_text(run.output + "\n")
    log(f"{name}: {seconds:.1f} s, exit {proc.returncode}, others {others:.2f} cores"
        + (f", {run.foreign_slurm_jobs} SLURM jobs of other runs seen" if slurm else ""))
    if proc.returncode != 0:
        raise SystemExit(f"{name} failed:\n{run.output[-6000:]}")
    return run


def digests(workdir: Path) -> dict[str, str]:
    out = {}
    for sub in ("runs", "replicates", "conditions", "comparisons"):
        for path in sorted((workdir / "results" / sub).rglob("*.json")):
            out[str(path.relative_to(workdir))] = json.loads(path.read_text())["digest"]
    return out


def figures_equal(a: Path, b: Path) -> tuple[int, int]:
    found = sorted(p.relative_to(a) for p in (a / "results" / "plots").rglob("*.png"))
    same = sum((a / p).read_bytes() == (b / p).read_bytes() for p in found)
    return same, len(found)


# --- where the time goes -------------------------------------------------------------------
@dataclass
class SlurmJob:
    slurm_id: int
    rule: str                   # rule or "group <name>"
    submitted: float            # wall clock, snakemake's log line
    start: float = 0.0          # jobcomp (1 s resolution)
    end: float = 0.0
    state: str = ""
    noticed: float = 0.0        # first status check at or after the end


@dataclass
class Breakdown:
    jobs: list[SlurmJob] = field(default_factory=list)
    first_submission: float = 0.0
    checks: list[float] = field(default_factory=list)
    work: dict[str, tuple[int, float]] = field(default_factory=dict)  # stage -> (n, s)
    local_rules: dict[str, int] = field(default_factory=dict)
    last_noticed: float = 0.0
    arrays: list[tuple[float, str, int]] = field(default_factory=list)  # (t, rule, tasks)


def _jobcomp(run_id: str) -> dict[int, dict[str, str]]:
    records = {}
    path = STATE / "jobcomp.log"
    for line in path.read_text(errors="replace").splitlines() if path.exists() else []:
        fields = dict(re.findall(r"(\w+)=(\S*)", line))
        if fields.get("Name") == run_id:
            records[int(fields["JobId"])] = fields
    return records


def _epoch(value: str) -> float:
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S").timestamp()


def stage_work(workdir: Path) -> dict[str, tuple[int, float]]:
    """Each stage's own work: the 's' column of the rules' benchmark files."""
    out = {}
    for stage in STAGES_WITH_BENCHMARKS:
        files = list((workdir / "results" / "benchmarks" / stage).rglob("*.tsv"))
        total = sum(float(f.read_text().splitlines()[1].split("\t")[0]) for f in files)
        out[stage] = (len(files), total)
    return out


def breakdown(run: Run, workdir: Path) -> Breakdown:
    out = Breakdown(work=stage_work(workdir))
    run_id = re.search(r"SLURM run ID: (\S+)", run.output).group(1)
    for t, line in run.lines:
        local = re.match(r"^(?:\[[^\]]*\] )?localrule (\w+)", line)
        if local:
            out.local_rules[local.group(1)] = out.local_rules.get(local.group(1), 0) + 1
        # the plugin's log path names the rule (rule_<rule>/...) or group (group_<name>/)
        submitted = re.match(r"^Job \S+ has been submitted with SLURM jobid (\d+) "
                             r"\(log: \S*/slurm_logs/(rule|group)_([^/]+)/", line)
        if submitted:
            kind, name = submitted.group(2), submitted.group(3)
            out.jobs.append(SlurmJob(int(submitted.group(1)),
                                     name if kind == "rule" else f"group {name}", t))
        # --slurm-array-jobs: one sbatch per array, whose log path names the rule
        array = re.match(r"^Submitted array job with Snakemake IDs (\S+) and SLURM job ID "
                         r"\d+\. The individual task IDs are 1-(\d+)\.", line)
        if array:
            out.arrays.append((t, "array task", int(array.group(2))))
        if line.startswith("Checking the status of"):
            out.checks.append(t)
    records = {}
    expected = len(out.jobs) + sum(tasks for _, _, tasks in out.arrays)
    deadline = time.monotonic() + 15   # slurmctld writes jobcomp when it completes a job
    while time.monotonic() < deadline:
        records = _jobcomp(run_id)
        if len(records) >= expected:
            break
        time.sleep(0.5)
    # an array task gets its own job id when it starts, so jobcomp cannot tell which array
    # it belongs to: count it as submitted with the last array submitted before it started
    # (its queue wait is then a lower bound)
    plain = {job.slurm_id for job in out.jobs}
    for slurm_id, record in sorted(records.items()) if out.arrays else ():
        if slurm_id in plain:
            continue
        start = _epoch(record["StartTime"])
        submitted = max((t for t, _, _ in out.arrays if t <= start + 1),
                        default=out.arrays[0][0])
        out.jobs.append(SlurmJob(slurm_id, "array task", submitted))
    for job in out.jobs:
        record = records.get(job.slurm_id, {})
        job.state = record.get("JobState", "missing from jobcomp.log")
        if record:
            job.start, job.end = _epoch(record["StartTime"]), _epoch(record["EndTime"])
            # jobcomp truncates to the second: a check in that same second may have seen it
            job.noticed = next((c for c in out.checks if c >= job.end), run.started + run.seconds)
    out.first_submission = min((j.submitted for j in out.jobs), default=run.started)
    out.last_noticed = max((j.noticed for j in out.jobs), default=run.started)
    return out


def explain(run: Run, b: Breakdown) -> list[str]:
    n = len(b.jobs)
    if not n:
        return ["no SLURM job was submitted"]
    wait = sum(max(j.start - j.submitted, 0) for j in b.jobs)
    node = sum(j.end - j.start for j in b.jobs)
    delay = [j.noticed - j.end for j in b.jobs]
    remote = [s for s in ("run", "collect", "aggregate", "compare")
              if s not in b.local_rules]
    members = sum(b.work.get(s, (0, 0.0))[1] for s in remote)
    n_members = sum(b.work.get(s, (0, 0))[0] for s in remote)
    local_work = sum(b.work.get(s, (0, 0.0))[1] for s in b.work if s in b.local_rules)
    end = run.started + run.seconds
    span = (max(j.end for j in b.jobs) - min(j.start for j in b.jobs))
    edges = sorted([(j.start, 1) for j in b.jobs] + [(j.end, -1) for j in b.jobs])
    running = most = 0
    for _, step in edges:   # an end sorts before a start in the same second
        running += step
        most = max(most, running)
    by_rule: dict[str, int] = {}
    for j in b.jobs:
        by_rule[j.rule] = by_rule.get(j.rule, 0) + 1
    states = sorted({j.state for j in b.jobs})
    arrays = ([f"{len(b.arrays)} SLURM job arrays submitted, "
               f"{sum(tasks for _, _, tasks in b.arrays)} tasks in all; each task is a SLURM "
               f"job below (queue wait from the last array submitted before it started)"]
              if b.arrays else [])
    return arrays + [
        f"{n} SLURM jobs ({', '.join(f'{v} {k}' for k, v in sorted(by_rule.items()))}), "
        f"states {', '.join(states)}; local rules on the submit host: "
        + (", ".join(f"{v} {k}" for k, v in sorted(b.local_rules.items())) or "none"),
        f"snakemake start to first submission: {b.first_submission - run.started:.1f} s",
        f"SLURM jobs ran from {min(j.start for j in b.jobs) - run.started:.0f} s to "
        f"{max(j.end for j in b.jobs) - run.started:.0f} s ({span:.0f} s); queue wait "
        f"(submit -> start) {wait / n:.1f} s per job on average; at most {most} ran at once",
        f"node time {node:.0f} s in all ({node / n:.1f} s per job), of which the rules' own "
        f"work {members:.0f} s ({n_members} rule jobs: "
        + ", ".join(f"{s} {b.work[s][1]:.0f} s" for s in remote if s in b.work)
        + f"); the rest, {node - members:.0f} s ({(node - members) / n:.1f} s per SLURM job), "
        f"is the job's start on the node (bash, `python -m snakemake` importing snakemake "
        f"and its plugins, parsing the Snakefile, its DAG) and its end",
        f"status checks: {len(b.checks)}; a finished job was noticed {min(delay):.0f}-"
        f"{max(delay):.0f} s after its end (mean {sum(delay) / n:.1f} s, jobcomp's 1-s "
        f"resolution)",
        f"local rules' own work on the submit host: {local_work:.1f} s (overlapping the "
        f"SLURM jobs); from the last SLURM job noticed to the end: {end - b.last_noticed:.1f} s",
    ]


# --- the measurement -----------------------------------------------------------------------
@dataclass
class Result:
    study: str
    local: Run
    slurm: Run
    refs: int
    equal: bool
    figures: tuple[int, int]
    notes: list[str]

    @property
    def ratio(self) -> float:
        return self.slurm.seconds / self.local.seconds


def measure(study: str, make, repo: Path, scratch: Path, args: argparse.Namespace) -> Result:
    local_dir, slurm_dir = scratch / f"{study}-local", scratch / f"{study}-slurm"
    for d in (local_dir, slurm_dir):
        make(d)
    local = run_snakemake(f"{study} local", local_dir, repo,
                          ["--cores", str(CORES), "--scheduler", "greedy"], scratch,
                          args.quiet_wait, slurm=False)
    slurm = run_snakemake(f"{study} SLURM", slurm_dir, repo,
                          ["--profile", str(repo / "profiles" / "slurm"), "--verbose",
                           *shlex.split(args.slurm_args)], scratch, args.quiet_wait,
                          slurm=True)
    a, b = digests(local_dir), digests(slurm_dir)
    notes = explain(slurm, breakdown(slurm, slurm_dir))
    for note in notes:
        log(f"{study}: {note}")
    return Result(study, local, slurm, len(a), a == b and bool(a),
                  figures_equal(local_dir, slurm_dir), notes)


def start_costs(repo: Path, workdir: Path, repeats: int = 3) -> list[tuple[str, float]]:
    """What every job start on a node pays before its rules run (medians, wall seconds)."""
    env = job_env(repo)
    target = next(iter(sorted((workdir / "results" / "runs").rglob("*.json"))))
    condition, replicate = target.parent.name, target.stem
    cases = [
        ("python -c pass", [sys.executable, "-c", "pass"]),
        ("python -c 'import pandas' (the SLURM plugin imports it at start)",
         [sys.executable, "-c", "import pandas"]),
        ("snakemake --version (snakemake and every installed plugin)",
         [sys.executable, "-m", "snakemake", "--version"]),
        ("snakemake -n on one run job (+ our Snakefile, its DAG)",
         [sys.executable, "-m", "snakemake", "--snakefile", str(repo / "workflow" / "Snakefile"),
          "--directory", str(workdir), "--target-jobs",
          f"run:condition={condition},replicate={replicate}", "--allowed-rules", "run",
          "--cores", "2", "--force", "--nolock", "-n", "--quiet"]),
    ]
    out = []
    for label, command in cases:
        times = []
        for _ in range(repeats):
            t0 = time.monotonic()
            subprocess.run(command, env=env, cwd=workdir, capture_output=True, check=True)
            times.append(time.monotonic() - t0)
        out.append((label, sorted(times)[len(times) // 2]))
    return out


def report(results: list[Result], costs: list[tuple[str, float]], facts: dict) -> str:
    rows = []
    for r in results:
        rows.append([r.study, f"{r.local.seconds:.1f}", f"{r.slurm.seconds:.1f}",
                     f"**{r.ratio:.2f}**", f"<= {GOAL:g}", "yes" if r.ratio <= GOAL else "**no**",
                     f"{r.refs} refs {'equal' if r.equal else 'DIFFER'}, figures "
                     f"{r.figures[0]}/{r.figures[1]} byte-equal",
                     f"before: {r.local.others_before:.2f} / {r.slurm.others_before:.2f}; "
                     f"during: {r.local.others_during:.2f} / {r.slurm.others_during:.2f}"
                     + (f"; {r.slurm.foreign_slurm_jobs} SLURM jobs of other runs"
                        if r.slurm.foreign_slurm_jobs else "")])
    lines = [
        f"`python benchmarks/cluster_throughput.py{facts['flags']}`: each study from scratch "
        f"with `snakemake --cores {CORES} --scheduler greedy` and with `snakemake --profile "
        f"profiles/slurm --workflow-profile none{facts['slurm_args']}` on the loopback "
        "cluster of tests/slurm/cluster.sh (one node, the same 2 cores), one after the other "
        f"in one run of the script. Checkout: {facts['repo']}.",
        "",
        machine_markdown(facts["machine"]),
        f"- SLURM: {facts['slurm']}; snakemake {facts['snakemake']}, "
        f"snakemake-executor-plugin-slurm {facts['plugin']}",
        "",
        markdown_table(["study", "local s", "SLURM s", "ratio", "goal", "met", "digests",
                        "other load, cores (local / SLURM)"], rows),
        "",
        "Other load: cores used by other users' processes, measured just before each run "
        "(after waiting up to "
        f"{facts['quiet_wait']:.0f} s for the machine to quieten) and during it (local: "
        "exact, all busy time minus ours; SLURM: sampled every 0.5 s, a lower bound, since "
        "our own jobs run outside this process tree).",
        "",
    ]
    for r in results:
        lines += [f"Where the time of the {r.study} study's SLURM run goes:", ""]
        lines += [f"- {note}" for note in r.notes] + [""]
    lines += ["What every SLURM job pays to start on the node (median of 3, wall s, "
              "measured after the runs):", ""]
    lines += [f"- {label}: {seconds:.2f}" for label, seconds in costs]
    return "\n".join(lines)


def cluster_facts() -> dict[str, str]:
    def version(name: str) -> str:
        from importlib.metadata import PackageNotFoundError, version as v
        try:
            return v(name)
        except PackageNotFoundError:
            return "not installed"

    slurm = subprocess.run(["sinfo", "--version"], capture_output=True, text=True).stdout.strip()
    return {"slurm": slurm, "snakemake": version("snakemake"),
            "plugin": version("snakemake-executor-plugin-slurm")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["demo", "analysis"], action="append")
    parser.add_argument("--repo", type=Path, default=REPO,
                        help="checkout whose workflow and profiles/slurm to measure")
    parser.add_argument("--shape", type=int, nargs=3, default=[10, 10, 5],
                        metavar=("CONDITIONS", "REPLICATES", "ANALYSES"),
                        help="the analysis-only study (default 10 10 5: 500 collect jobs)")
    parser.add_argument("--slurm-args", default="",
                        help="extra snakemake arguments for the SLURM runs (experiments)")
    parser.add_argument("--quiet-wait", type=float, default=300.0,
                        help="seconds to wait for other load to drop before each run")
    parser.add_argument("--scratch", type=Path, default=Path("/tmp"))
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    parser.add_argument("--no-write", action="store_true", help="do not update RESULTS.md")
    parser.add_argument("--results", type=Path, default=RESULTS_MD)
    parser.add_argument("--section", default="Cluster throughput",
                        help="RESULTS.md section to write (e.g. for a --repo measurement)")
    args = parser.parse_args(argv)
    studies = args.only or ["demo", "analysis"]

    up = subprocess.run(["bash", str(CLUSTER), "up"], capture_output=True, text=True)
    if up.returncode != 0:
        raise SystemExit(f"cluster.sh up failed:\n{up.stdout}{up.stderr}")
    scratch = Path(tempfile.mkdtemp(prefix="assay-cluster-throughput-", dir=args.scratch))
    try:
        repo = snapshot_repo(args.repo.resolve(), scratch / "repo")
        makers = {
            "demo": lambda d: demo_study(d, repo),
            "analysis": lambda d: analysis_study(d, *args.shape),
        }
        results = [measure(s, makers[s], repo, scratch, args) for s in studies]
        costs = start_costs(repo, scratch / f"{studies[0]}-slurm")
        flags = "".join(f" --only {s}" for s in args.only or []) + (
            f" --repo {args.repo}" if args.repo.resolve() != REPO else "") + (
            f" --shape {' '.join(map(str, args.shape))}" if args.shape != [10, 10, 5] else "") + (
            f" --section '{args.section}'" if args.section != "Cluster throughput" else "")
        facts = {"flags": flags, "repo": str(args.repo.resolve()),
                 "slurm_args": f" {args.slurm_args}" if args.slurm_args else "",
                 "machine": machine_description(scratch, packages=("numpy",)),
                 "quiet_wait": args.quiet_wait, **cluster_facts()}
        text = report(results, costs, facts)
        print(text)
        if not args.no_write:
            replace_section(args.section, text, args.results)
            log(f"wrote the {args.section} section of {args.results}")
        return 0 if all(r.equal for r in results) else 1
    finally:
        if args.keep:
            log(f"kept {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
