"""Per-job start: one workflow job's wall time, from process start to ref written.

    python benchmarks/jobs.py            # 15 repeats of each case
    python benchmarks/jobs.py --quick    # 10 repeats

Runs the exact shell command the workflow's ``collect`` rule runs, with the spec
``assay.pipeline.workflow.WorkflowPlan(config).spec("collect", wildcards)`` gives for the trivial
analysis of benchmarks/workflow.py (``bench_plugins:Tiny``), the way Snakemake runs it
(``bash -c 'set -euo pipefail; export PYTHONPATH=...; python -m assay.jobs collect ...'``,
``python`` found on PATH). Baseline: ``python -c pass`` started the same way. Cases:

* collect, action-cache miss (a fresh copy of a store holding only the run artifact, so the
  job computes, writes the artifact and records the action) -- goal < 0.5 s;
* collect, action-cache hit (the same job again: it looks the action up and writes the ref);
* aggregate of 10 replicates, miss (informational: what an aggregate job imports);
* ``assay --help`` if the ``assay`` command works -- goal < 0.15 s.

All cases run round-robin. Also reports which modules a job imports (``python -X importtime``)
and whether any heavy one (numpy, scipy, pandas, pyarrow, matplotlib, duckdb, ...) is among
them. Writes the "## Per-job start" section of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
from common import (  # noqa: E402
    RESULTS_MD,
    machine_markdown,
    markdown_table,
)
from workflow import Shape, measure_and_write, bench_env, study_config, write_plugins  # noqa: E402

GOAL_JOB = 0.5
GOAL_HELP = 0.15
BIG_SIDECAR_MB = 256
HEAVY = ("numpy", "scipy", "pandas", "pyarrow", "matplotlib", "duckdb", "joblib", "yaml",
         "jsonschema", "snakemake")
SHELL_PREFIX = "set -euo pipefail; "


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def job_prefix() -> str:
    """What workflow/rules/common.smk prefixes every job's shell command with."""
    return f'export PYTHONPATH="{REPO}/src${{PYTHONPATH:+:$PYTHONPATH}}"; '


def timed_shell(command: str, env: dict[str, str], cwd: Path) -> float:
    start = time.perf_counter()
    proc = subprocess.run(["bash", "-c", SHELL_PREFIX + command], env=env, cwd=cwd,
                          capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{command!r} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return seconds


class Fixture:
    """A scratch study: the run artifact and 10 replicate artifacts of one condition."""

    def __init__(self, root: Path, python: str) -> None:
        self.root = root
        self.python = python
        plugins = write_plugins(root / "plugins")
        sys.path.insert(0, str(plugins))
        self.env = bench_env(plugins)
        from assay import ArtifactStore, write_ref
        from assay.pipeline.layout import ref_identity
        from assay.pipeline.stages import execute
        from assay.pipeline.workflow import WorkflowPlan, spec_json

        self.config = study_config(Shape(2, 10, 1))
        self.config["analyses"]["big"] = {"plugin": "bench_plugins:TinySidecar",
                                          "settings": {"sidecar_mb": BIG_SIDECAR_MB}}
        self.plan = WorkflowPlan(self.config)
        base = root / "base-store"
        results = root / "results"
        with ArtifactStore(base) as store:
            self.replicate_refs = []
            for replicate in range(1, 11):
                wc = SimpleNamespace(condition="c000", replicate=str(replicate), analysis="a0")
                run_spec = spec_json(self.plan.spec("run", wc))
                run_digest = execute(store, run_spec, [])
                run_ref = results / "runs" / "c000" / f"{replicate}.json"
                write_ref(run_ref, run_digest, **ref_identity(run_spec))
                if replicate == 1:
                    self.run_ref = run_ref
                    continue  # replicate 1's collect is the job under test
                collect_spec = spec_json(self.plan.spec("collect", wc))
                digest = execute(store, collect_spec, [run_digest])
                ref = results / "replicates" / "a0" / "c000" / f"{replicate}.json"
                write_ref(ref, digest, **ref_identity(collect_spec))
                self.replicate_refs.append(ref)
        self.base = base
        self.wc = SimpleNamespace(condition="c000", replicate="1", analysis="a0")

    def fresh_store(self, name: str, source: Path | None = None) -> Path:
        path = self.root / name
        if path.exists():
            shutil.rmtree(path)
        shutil.copytree(source or self.base, path)
        return path

    def collect_command(self, store: Path, output: Path, logfile: Path,
                        python: str = "python", flags: str = "", analysis: str = "a0") -> str:
        """The collect rule's shell command, filled in as Snakemake fills it in."""
        q = shlex.quote
        wc = SimpleNamespace(**{**vars(self.wc), "analysis": analysis})
        spec = self.plan.spec("collect", wc)  # already shell-quoted, like {params.spec}
        return (job_prefix() + f"{python}{flags} -m assay.jobs collect --store {q(str(store))} "
                f"--spec {spec} --inputs {q(str(self.run_ref))} --output {q(str(output))} "
                f"> {q(str(logfile))} 2>&1")

    def aggregate_command(self, store: Path, output: Path, logfile: Path,
                          python: str = "python", flags: str = "") -> str:
        q = shlex.quote
        wc = SimpleNamespace(condition="c000", analysis="a0")
        # replicate 1 comes from the collect fixture below: give the 9 stored ones plus it
        refs = " ".join(q(str(p)) for p in self.replicate_refs + [self.rep1_ref])
        return (job_prefix() + f"{python}{flags} -m assay.jobs aggregate --store "
                f"{q(str(store))} --spec {self.plan.spec('aggregate', wc)} --inputs {refs} "
                f"--output {q(str(output))} > {q(str(logfile))} 2>&1")


def import_report(logfile: Path) -> dict:
    """Parse ``-X importtime`` output: total, top-level imports, heavy modules present."""
    pattern = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)")
    modules, top = set(), []
    for line in logfile.read_text(errors="replace").splitlines():
        m = pattern.match(line)
        if not m:
            continue
        name, indent, cumulative = m.group(4), len(m.group(3)), int(m.group(2))
        modules.add(name)
        if indent == 1:
            top.append((cumulative / 1e6, name))
    heavy = sorted({name.split(".")[0] for name in modules} & set(HEAVY))
    return {"total": sum(t for t, _ in top), "top": sorted(top, reverse=True),
            "heavy": heavy, "count": len(modules)}


def assay_help_works(env: dict[str, str]) -> tuple[bool, str]:
    exe = shutil.which("assay", path=env.get("PATH"))
    if exe is None:
        return False, "no `assay` command on PATH"
    proc = subprocess.run([exe, "--help"], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["?"])[-1]
        return False, f"`assay --help` fails: {last}"
    return True, exe


def measure(args: argparse.Namespace, root: Path) -> dict:
    fx = Fixture(root, "python")
    env, cwd = fx.env, root
    out = root / "out"
    out.mkdir()
    which_python = shutil.which("python", path=env.get("PATH")) or "?"
    facts: dict = {"which_python": which_python, "executable": sys.executable}

    # Replicate 1's artifact, for the aggregate case (computed once, untimed, in a copy of
    # the base store so the collect misses below still miss).
    rep1 = root / "results" / "replicates" / "a0" / "c000" / "1.json"
    agg_base = fx.fresh_store("agg-base")
    timed_shell(fx.collect_command(agg_base, rep1, out / "seed.log"), env, cwd)
    fx.rep1_ref = rep1
    hit_store = fx.fresh_store("hit-store")
    timed_shell(fx.collect_command(hit_store, out / "hit.json", out / "hit.log"), env, cwd)

    def miss(python: str = "python"):
        store = fx.fresh_store("miss-store")
        (out / "miss.json").unlink(missing_ok=True)
        return lambda: timed_shell(fx.collect_command(store, out / "miss.json",
                                                      out / "miss.log", python), env, cwd)

    def hit():
        (out / "hit.json").unlink(missing_ok=True)
        return lambda: timed_shell(fx.collect_command(hit_store, out / "hit.json",
                                                      out / "hit.log"), env, cwd)

    # A hit whose cached artifact has a big sidecar: the job verifies it (hashes it) again.
    big_store = fx.fresh_store("big-store")
    timed_shell(fx.collect_command(big_store, out / "big.json", out / "big.log",
                                   analysis="big"), env, cwd)

    def big_hit():
        (out / "big.json").unlink(missing_ok=True)
        return lambda: timed_shell(fx.collect_command(big_store, out / "big.json",
                                                      out / "big.log", analysis="big"),
                                   env, cwd)

    def aggregate():
        store = fx.fresh_store("agg-store", agg_base)
        (out / "agg.json").unlink(missing_ok=True)
        return lambda: timed_shell(fx.aggregate_command(store, out / "agg.json",
                                                        out / "agg.log"), env, cwd)

    cases = {
        "python -c pass": lambda: (lambda: timed_shell("python -c pass", env, cwd)),
        "collect (miss)": miss,
        "collect (hit)": hit,
        f"collect (hit), {BIG_SIDECAR_MB} MB sidecar": big_hit,
        "aggregate 10 (miss)": aggregate,
    }
    direct = shlex.quote(sys.executable)
    if os.path.realpath(which_python) != os.path.realpath(sys.executable):
        # `python` on PATH is a wrapper (pyenv shim, ...): also time the interpreter itself.
        cases[f"{sys.executable} -c pass"] = lambda: (
            lambda: timed_shell(f"{direct} -c pass", env, cwd))
        cases["collect (miss), interpreter by full path"] = lambda: miss(direct)
    help_ok, help_note = assay_help_works(env)
    facts["help_note"] = help_note
    if help_ok:
        cases["assay --help"] = lambda: (lambda: timed_shell("assay --help > /dev/null",
                                                             env, cwd))

    times: dict[str, list[float]] = {name: [] for name in cases}
    for i in range(args.repeats):
        for name, make in cases.items():
            fn = make()  # untimed setup
            times[name].append(fn())
        log(f"  [{i + 1}/{args.repeats}] " + ", ".join(
            f"{name} {t[-1]:.3f}s" for name, t in times.items()))
    facts["times"] = times

    # What a job imports, and how long its own work takes after the imports.
    store = fx.fresh_store("imp-store")
    timed_shell(fx.collect_command(store, out / "imp.json", out / "imp.log", direct,
                                   " -X importtime"), env, cwd)
    facts["imports_collect"] = import_report(out / "imp.log")
    store = fx.fresh_store("imp-agg-store", agg_base)
    timed_shell(fx.aggregate_command(store, out / "impa.json", out / "impa.log", direct,
                                     " -X importtime"), env, cwd)
    facts["imports_aggregate"] = import_report(out / "impa.log")
    miss_log, hit_log = (out / "miss.log").read_text(), (out / "hit.log").read_text()
    if "computed collect" not in miss_log or "action cache hit" not in hit_log:
        raise RuntimeError(f"the miss/hit cases did not miss/hit:\n{miss_log}\n{hit_log}")
    facts["job_log_miss"] = miss_log.strip().splitlines()[-1]
    facts["job_log_hit"] = hit_log.strip().splitlines()[-1]
    big_log = (out / "big.log").read_text()
    if "action cache hit" not in big_log:
        raise RuntimeError(f"the big-sidecar case did not hit:\n{big_log}")
    facts["job_log_big"] = big_log.strip().splitlines()[-1]
    return facts


def med(values: list[float]) -> float:
    return statistics.median(values)


def cell(values: list[float]) -> str:
    return f"{med(values):.3f} s ({min(values):.3f}-{max(values):.3f})"


def report(args: argparse.Namespace, facts: dict, info: dict) -> str:
    t = facts["times"]
    base_name = "python -c pass"
    rows = []

    def row(name: str, goal: float | None, baseline: str = base_name, note: str = ""):
        ours = t[name]
        ratio = med(ours) / med(t[baseline])
        met = "" if goal is None else ("yes" if med(ours) < goal else "**no**")
        rows.append([f"{name}{note}", cell(ours), f"`{baseline}` {cell(t[baseline])}",
                     f"{ratio:.2f}", "" if goal is None else f"< {goal} s", met])

    row("collect (miss)", GOAL_JOB, note=": compute, write artifact + action, write ref")
    row("collect (hit)", GOAL_JOB, note=": action cache lookup, verify, write ref")
    row(f"collect (hit), {BIG_SIDECAR_MB} MB sidecar", None,
        note=": the cached artifact's sidecar is hashed again (informational)")
    row("aggregate 10 (miss)", None, note=": 10 replicates (informational)")
    direct_name = f"{facts['executable']} -c pass"
    if direct_name in t:
        row("collect (miss), interpreter by full path", GOAL_JOB, baseline=direct_name)
        row(direct_name, None, note=" (the interpreter without the PATH wrapper)")
    if "assay --help" in t:
        row("assay --help", GOAL_HELP)
    table = markdown_table(["figure", "measured: median (min-max)", "baseline", "ratio",
                            "goal", "met?"], rows)
    cmd = "python benchmarks/jobs.py" + (" --quick" if args.quick else "")

    def imports(rep: dict) -> str:
        top = ", ".join(f"{name} {sec * 1e3:.0f} ms" for sec, name in rep["top"][:8])
        heavy = ", ".join(rep["heavy"]) or "none"
        return (f"{rep['count']} modules, {rep['total'] * 1e3:.0f} ms of imports in total "
                f"(largest top-level: {top}); heavy modules among them: **{heavy}**")

    others = facts.get("others")
    lines = [
        "## Per-job start", "",
        f"`{cmd}`: wall time of one job process from start to exit (its ref written), "
        "running the collect rule's exact shell command (spec from "
        "`WorkflowPlan(config).spec(\"collect\", wildcards)`, trivial analysis "
        "`bench_plugins:Tiny`) the way Snakemake runs it: `bash -c 'set -euo pipefail; "
        "export PYTHONPATH=...; python -m assay.jobs collect ...'`, with `python` from "
        f"PATH (here `{facts['which_python']}`). Baseline: `python -c pass` started the "
        f"same way. Median of {args.repeats} (min-max), all cases round-robin; a miss runs "
        "against a fresh copy of a store holding only its run artifact.", "",
        machine_markdown(info), "",
        table, "",
        f"- `assay --help`: {'measured above' if 'assay --help' in t else facts['help_note']}.",
        f"- Imports of a collect job (miss): {imports(facts['imports_collect'])}.",
        f"- Imports of an aggregate job (miss): {imports(facts['imports_aggregate'])}.",
        f"- The job's own log, miss: `{facts['job_log_miss']}`; hit: "
        f"`{facts['job_log_hit']}`; hit with a {BIG_SIDECAR_MB} MB sidecar: "
        f"`{facts['job_log_big']}` (time after the imports).",
    ]
    if others is not None and others.cores is not None:
        lines.append(f"- Other processes used on average {others.cores:.2f} of "
                     f"{os.cpu_count()} cores while this ran.")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 repeats")
    parser.add_argument("--repeats", type=int, help="default 15 (--quick: 10)")
    parser.add_argument("--scratch", type=Path, default=Path("/tmp"))
    parser.add_argument("--no-write", action="store_true", help="do not update RESULTS.md")
    parser.add_argument("--results", type=Path, default=RESULTS_MD)
    args = parser.parse_args(argv)
    args.repeats = args.repeats or (10 if args.quick else 15)
    if args.repeats < 10:
        log("note: fewer than 10 repeats")
    return measure_and_write("Per-job start", args, "assay-bench-jobs-", measure, report)


if __name__ == "__main__":
    raise SystemExit(main())
