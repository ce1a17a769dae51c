"""`assay status` on a 4,000-job study that is partly finished and partly running.

    python benchmarks/status.py            # 100 conditions x 10 replicates x 3 analyses
    python benchmarks/status.py --quick    # 20 x 5 x 3

The study is made of the real files, written through the library: every finished job's
artifact is computed by ``assay.pipeline.stages.execute`` from the plan's own spec (the demo runner
with tiny settings, the three demo analyses), so the store holds real manifests and status
checks each one against the plan (staleness); refs (``write_ref``), run work directories
(``WorkDir.begin_attempt``/``write_progress``, from a helper process that stays alive for
the running runs and one that exits for the failed ones), job logs in the jobs' own wording
(cache hits, success and error lines), Snakemake's incomplete markers in Snakemake's own
encoding and its lock files, and a process named ``snakemake`` working in the study
directory, as while a workflow runs. 90 % of the runs and their downstream jobs are done (a
third of them logged as from the action cache), some runs and collect jobs are running,
some runs failed, the rest is pending.

Timed, interleaved: ``assay status --json`` as a subprocess (what a user waits for; goal
< 1 s), the library call ``study_status(plan)`` in-process, and the floor: ``os.scandir``
over the same folders (results/, store/work/, .snakemake/) without opening a file. Then,
once or a few times (it is slow): ``snakemake -n`` on the same study, the DAG that status
avoids. Writes the "## Status" section of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from common import (
    RESULTS_MD,
    interleaved,
    machine_description,
    machine_markdown,
    markdown_table,
    replace_section,
)

GOAL_S = 1.0
SECTION = "Status"

# A helper process that writes run work directories through the library and, for the
# running runs, stays alive (its pid is what state.json records).
WORKER = """
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
    time.sleep(3600)
"""


def study_config(conditions: int, replicates: int) -> dict:
    labels = [f"c{i:03d}" for i in range(conditions)]
    return {
        "store": "store", "results": "results", "seed": 1,
        "conditions": [{"label": label, "params": {"surface_epsilon": 0.01 * i}}
                       for i, label in enumerate(labels)],
        "control": labels[0], "replicates": replicates,
        # tiny real simulations: a finished job's artifact is computed, not invented
        "runner": {"plugin": "polymer_langevin",
                   "settings": {"n_beads": 4, "n_frames": 4, "steps_per_frame": 1,
                                "equilibration_steps": 0}},
        "analyses": {"rg": {"plugin": "radius_of_gyration"},
                     "dm": {"plugin": "distance_matrix"},
                     "ce": {"plugin": "contact_events"}},
        "plots": {"format": "png", "dpi": 40},
    }


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _log_lines(job, cached: bool, digest: str) -> str:
    tag = f"[assay {job.stage}]"
    if job.stage == "plot":
        return f"{tag} wrote 1 figure(s) in 0.41s\n"
    if job.stage == "catalog":
        return "built results/catalog.duckdb in 0.30 s\n"
    if cached:
        return (f"{tag} action cache hit {digest[7:19]}: {digest}\n"
                f"{tag} ref {job.output} -> {digest} (0.02s)\n")
    attempt = f"{tag} attempt 1 in store/work/{digest[7:]}/files\n" if job.stage == "run" else ""
    return (f"{attempt}{tag} computed {job.stage} {digest} in 1.234s\n"
            f"{tag} ref {job.output} -> {digest} (1.30s)\n")


def build_study(root: Path, conditions: int, replicates: int) -> dict:
    """Write the study; returns the expected count of each state per stage."""
    import yaml
    from snakemake.persistence.file import FilePersistence

    from assay.pipeline.layout import ref_identity
    from assay.store.refs import write_ref
    from assay.pipeline.stages import execute
    from assay.tools.status import plan_jobs
    from assay.store.artifact_store import ArtifactStore
    from assay.pipeline.workflow import WorkflowPlan, spec_json

    config = study_config(conditions, replicates)
    _write(root / "config" / "config.yaml", yaml.safe_dump(config, sort_keys=False))
    plan = WorkflowPlan(config, workdir=root)
    labels = list(plan.study.conditions)
    done_conditions = set(labels[: int(0.9 * conditions)])
    running_condition, failed_condition = labels[int(0.9 * conditions)], labels[-1]
    encoder = types.SimpleNamespace(_fetch_max_len=lambda _subject: 255)
    incomplete = root / ".snakemake" / "incomplete"
    running_work, failed_work = [], []
    expected: dict[str, dict[str, int]] = {}
    store = ArtifactStore(root / plan.store)
    made: dict[str, str] = {}   # output -> digest of the finished jobs

    def compute(job) -> str:
        """The job's artifact, computed from the plan's spec and its inputs' refs."""
        n = job.names
        wildcards = types.SimpleNamespace(**n)
        if job.stage == "run":
            inputs = []
        elif job.stage == "collect":
            inputs = [made[plan.run_ref(n["condition"], n["replicate"])]]
        else:
            inputs = [made[plan.replicate_ref(n["analysis"], n["condition"], r)]
                      for r in plan.study.replicates]
        spec = spec_json(plan.spec(job.stage, wildcards))
        digest = execute(store, spec, inputs)
        write_ref(root / job.output, digest, **ref_identity(spec))
        made[job.output] = digest
        return digest

    for i, job in enumerate(plan_jobs(plan)):
        names = job.names
        condition = names.get("condition")
        if job.stage in ("run", "collect", "aggregate") and condition in done_conditions:
            state = "done"
        elif job.stage in ("run", "collect") and condition == running_condition:
            state = "running" if job.stage == "run" or names["replicate"] <= 2 else "pending"
        elif job.stage == "run" and condition == failed_condition:
            state = "failed"
        else:
            state = "pending"
        counts = expected.setdefault(job.stage, {"done": 0, "running": 0, "failed": 0,
                                                 "pending": 0, "cached": 0})
        counts[state] += 1
        if state == "done":
            cached = i % 3 == 0 and job.stage in ("run", "collect", "aggregate")
            counts["cached"] += cached
            _write(root / job.log, _log_lines(job, cached, compute(job)))
        elif state == "running":
            key = (incomplete / FilePersistence._record_path(encoder, "", job.output).lstrip("/"))
            _write(key, json.dumps({"external_jobid": None}))
            if job.stage == "run":
                _write(root / job.log, "[assay run] attempt 1 in ...\nstep 40\n")
                running_work.append(_work_item(root, plan, job, progress=[40, 100, "step 40"]))
            else:
                _write(root / job.log, "")
        elif state == "failed":
            _write(root / job.log, "[assay run] attempt 1 in ...\n[assay run] error: runner "
                   "'python' for c/1 failed: ValueError: the engine diverged at step 17\n")
            failed_work.append(_work_item(root, plan, job, progress=[17, 100, "step 17"]))
    for name in ("0.input.lock", "0.output.lock"):
        _write(root / ".snakemake" / "locks" / name, "results/runs\n")
    store.close()
    for items, mode in ((failed_work, "exit"), (running_work, "stay")):
        expected.setdefault("_helpers", []).append(_worker(items, mode))
    return expected


def _work_item(root: Path, plan, job, progress) -> dict:
    key = hashlib.sha256(f"run:{job.output}".encode()).hexdigest()
    return {"dir": str(root / plan.store / "work" / key), "log": job.log, "progress": progress,
            "identity": {"stage": "run", "condition": job.names["condition"],
                         "replicate": job.names["replicate"], "plugin": "python"}}


def _worker(items: list[dict], mode: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", WORKER, mode], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    proc.stdin.write(json.dumps(items))
    proc.stdin.close()
    assert proc.stdout.readline().strip() == "ready"
    if mode == "exit":
        proc.wait(timeout=60)
    return proc


def fake_snakemake(root: Path, bin_dir: Path) -> subprocess.Popen:
    """A process whose argv[0] is `snakemake`, working in the study (as a live workflow)."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    link = bin_dir / "snakemake"
    link.symlink_to(sys.executable)
    return subprocess.Popen([str(link), "-c", "import time; time.sleep(3600)"], cwd=root)


def scandir_floor(root: Path) -> int:
    """Names under the folders status reads, without opening or stat-ing a file."""
    count, stack = 0, [root / "results", root / "store" / "work", root / ".snakemake"]
    while stack:
        try:
            with os.scandir(stack.pop()) as entries:
                for entry in entries:
                    count += 1
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(Path(entry.path))
        except FileNotFoundError:
            continue
    return count


def check(result: dict, expected: dict) -> None:
    for stage, counts in expected.items():
        if stage.startswith("_"):
            continue
        got = {k: result["stages"][stage][k] for k in counts}
        if got != counts:
            raise AssertionError(f"status says {stage}: {got}, the study holds {counts}")
    c = result["counts"]
    assert c["done"] + c["running"] + c["failed"] + c["pending"] == result["total"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20 x 5 x 3 instead of 100 x 10 x 3")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--max-other-cores", type=float, default=0.5,
                        help="run a round again when other processes used more cores")
    parser.add_argument("--scratch", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    parser.add_argument("--no-write", action="store_true", help="do not update RESULTS.md")
    parser.add_argument("--results", type=Path, default=RESULTS_MD)
    parser.add_argument("--snakemake-repeats", type=int, default=3,
                        help="times `snakemake -n` runs on the same study (0: skip)")
    args = parser.parse_args(argv)
    conditions, replicates = (20, 5) if args.quick else (100, 10)

    scratch = Path(tempfile.mkdtemp(prefix="assay-status-bench-", dir=args.scratch))
    root = scratch / "study"
    helpers: list[subprocess.Popen] = []
    try:
        started = time.monotonic()
        expected = build_study(root, conditions, replicates)
        helpers += expected.pop("_helpers")
        helpers.append(fake_snakemake(root, scratch / "bin"))
        build_s = time.monotonic() - started

        from assay.pipeline.config import Study  # noqa: F401  (imports outside the timing)
        from assay.tools.status import load_study_config, study_status
        from assay.pipeline.workflow import WorkflowPlan

        plan = WorkflowPlan(load_study_config((), root), workdir=root)
        assay = shutil.which("assay")
        command = [assay] if assay else [sys.executable, "-m", "assay.cli"]
        command += ["status", "--json", "--no-slurm"]

        def cli():
            proc = subprocess.run(command, cwd=root, capture_output=True, text=True,
                                  check=False)
            if proc.returncode not in (0, 1):
                raise AssertionError(proc.stderr)
            return proc.stdout

        result = json.loads(cli())
        check(result, expected)
        check(study_status(plan, root, slurm=False).to_dict(), expected)
        n_files = scandir_floor(root)
        plan_only = [sys.executable, "-c", ("from assay.tools.status import load_study_config; "
                                            "from assay.pipeline.workflow import WorkflowPlan; "
                                            "WorkflowPlan(load_study_config()).plots()")]
        discarded: list[str] = []
        timings = interleaved({
            "cli": (None, cli),
            "library": (None, lambda: study_status(plan, root, slurm=False)),
            "scandir": (None, lambda: scandir_floor(root)),
            "plan": (None, lambda: subprocess.run(plan_only, cwd=root, check=True)),
        }, repeats=args.repeats, max_other_cores=args.max_other_cores, max_discards=5,
            discarded=discarded)
        dry_run = [sys.executable, "-m", "snakemake", "-n", "--quiet", "--snakefile",
                   str(HERE.parent / "workflow" / "Snakefile"), "--directory", str(root),
                   "--cores", "2", "--workflow-profile", "none"]
        dry_runs = []
        for _ in range(args.snakemake_repeats):   # the DAG status avoids; too slow to interleave
            t0 = time.perf_counter()
            proc = subprocess.run(dry_run, cwd=root, capture_output=True, text=True)
            dry_runs.append(time.perf_counter() - t0)
            if proc.returncode != 0:
                raise AssertionError(f"snakemake -n failed:\n{proc.stderr[-3000:]}")
        squeue_s = None
        if shutil.which("squeue"):
            from assay.tools.status import squeue_states

            t0 = time.perf_counter()
            squeue_states()
            squeue_s = time.perf_counter() - t0
        text = report(result, timings, n_files, build_s, squeue_s, dry_runs,
                      machine_description(args.scratch, packages=("numpy", "snakemake")),
                      conditions, replicates, discarded)
    finally:
        for proc in helpers:   # only the helpers started above, by their own handle
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=30)
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)
    print(text)
    if not args.no_write:
        replace_section(SECTION, text, args.results)
        print(f"wrote the {SECTION} section of {args.results}", file=sys.stderr)
    return 0


def report(result, timings, n_files, build_s, squeue_s, dry_runs, info, conditions,
           replicates, discarded) -> str:
    c = result["counts"]
    cli, lib, floor, plan = (timings[k] for k in ("cli", "library", "scandir", "plan"))
    shape = f"{conditions} conditions x {replicates} replicates x 3 analyses"

    def ms(timing) -> str:
        return f"{timing.median * 1000:.0f} ms ({timing.spread})"

    rows = [
        (f"`assay status --json` (subprocess), {result['total']} jobs", ms(cli),
         f"{floor.median * 1000:.1f} ms", f"{cli.median / floor.median:.0f}x",
         f"< {GOAL_S:g} s", "yes" if cli.median < GOAL_S else "**no**"),
        ("`study_status(plan)` (library, in-process, plan built)", ms(lib),
         f"{floor.median * 1000:.1f} ms", f"{lib.median / floor.median:.0f}x", "(reported)",
         ""),
        (("a subprocess that only plans: python start, imports, config validation, "
          "`WorkflowPlan`"), ms(plan), "", "", "(reported)", ""),
    ]
    if dry_runs:
        dry = sorted(dry_runs)[len(dry_runs) // 2]
        rows.append((f"`snakemake -n` on the same study (the DAG status does not build; "
                     f"{len(dry_runs)} runs)",
                     f"{dry * 1000:.0f} ms ({min(dry_runs):.2f}-{max(dry_runs):.2f})", "", "",
                     "(reported)", ""))
    if squeue_s is not None:
        rows.append((("one `squeue --me --states=all` call (made only when a job has a "
                      "SLURM id; none here)"), f"{squeue_s * 1000:.0f} ms", "", "",
                     "(reported)", ""))
    stale = c["stale"] + c["kept"]
    intro = (
        f"`python benchmarks/status.py`: a study of {shape} ({result['total']} "
        "jobs) written through the library: each finished job's artifact computed by "
        "`assay.pipeline.stages.execute` from the plan's spec (the demo runner, tiny settings), so "
        "status reads and checks a real manifest per finished job (staleness: "
        f"{stale} stale or kept), plus run work directories, job logs, "
        "Snakemake's incomplete markers and lock files, a live process named snakemake: "
        f"{c['done']} done ({c['cached']} logged as cache hits), {c['running']} running, "
        f"{c['failed']} failed, {c['pending']} pending; status's counts are checked against "
        f"what was written. Built in {build_s:.1f} s. Median (min-max) of {len(cli.times)} "
        "interleaved rounds; the baseline is `os.scandir` over results/, store/work/ and "
        f".snakemake/ ({n_files} entries), opening no file.")
    load = (f"{len(discarded)} rounds were thrown away because other processes used the "
            "cores, and run again once the machine was quiet." if discarded
            else "No round was disturbed by other processes.")
    return "\n".join([
        intro, "", machine_markdown(info), "",
        markdown_table(["figure", "measured: median (min-max)", "baseline (scandir)",
                        "ratio", "goal", "met?"], rows), "",
        f"Where the time goes: of the subprocess's {cli.median * 1000:.0f} ms, "
        f"{plan.median * 1000:.0f} ms are Python, the imports (jsonschema, the analysis "
        "plugins' modules, which the plan needs to know which figures exist) and the plan "
        "(row 3); reading the study is the library call (row 2): one open of each ref and "
        "each job log (its first 4 KiB and last 8 KiB) and of the live or failed runs' work "
        "directories, and one manifest read (no hash) per finished artifact job to compare "
        "its recorded spec and inputs with the plan's; the rest is writing the JSON. "
        + (f"Against `snakemake -n` on the same study: status takes "
           f"{cli.median / sorted(dry_runs)[len(dry_runs) // 2]:.2f}x its time. "
           if dry_runs else "") + load,
    ])


if __name__ == "__main__":
    raise SystemExit(main())
