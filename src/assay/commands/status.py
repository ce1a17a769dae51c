"""assay status: how far a study has got, which jobs failed and what to type next."""

from __future__ import annotations

import sys
import time
from typing import Any

from ._common import add_command, add_json, print_json, print_table

WATCH_DEFAULT_S = 5.0
BAR_WIDTH = 30
# Above this many runs the table lists only those running or failed (--all lists all).
ALL_RUNS_UP_TO = 30


def run_status(args: Any) -> int:
    import json
    import os

    # Planning imports the study's plugins: no __pycache__ from a command that promises
    # not to write. Jobs run `python -m assay.jobs` in the study directory, so its own
    # modules are plugins too.
    sys.dont_write_bytecode = True
    sys.path.insert(0, os.path.abspath(args.directory))
    from ..tools.status import load_study_config, study_status
    from ..pipeline.workflow import WorkflowPlan

    configfiles = args.configfile or []
    triggers = tuple(args.rerun_triggers) if args.rerun_triggers else None
    plan = WorkflowPlan(load_study_config(configfiles, args.directory,
                                          replace=args.replace_workflow_config),
                        workdir=args.directory)
    # The commands status prints are typed in the study directory.
    typed = [os.path.relpath(os.path.abspath(f), os.path.abspath(args.directory))
             for f in configfiles]
    redraw = args.watch is not None and sys.stdout.isatty() and not args.json
    while True:
        status = study_status(plan, args.directory, slurm=not args.no_slurm,
                              configfiles=typed, replace_config=args.replace_workflow_config,
                              rerun_triggers=triggers)
        if args.why is not None:   # one job: which key parts differ from what is stored
            from ..tools.explain import explain

            report = explain(plan, status, args.directory, args.why)
            if args.json:
                print_json(report)
            else:
                print("\n".join(report["lines"]))
            return 0
        counts = status.counts()
        if args.json and args.watch is not None:   # one line per look
            sys.stdout.write(json.dumps(status.to_dict(), sort_keys=True) + "\n")
        elif args.json:
            print_json(status.to_dict())
        else:
            if redraw:
                sys.stdout.write("\x1b[H\x1b[2J")   # clear the screen: redraw in place
            print_status(status, show_all=args.all)
            if not args.no_slurm:   # SLURM jobs a killed snakemake left running here
                from ..pipeline.cluster_jobs import leftover_lines

                for line in leftover_lines(status, args.directory):
                    print(line)
        sys.stdout.flush()
        # Done when nothing runs or waits, or when Snakemake stopped at failures.
        stopped = not status.snakemake["running"] and counts["failed"] and not counts["running"]
        if args.watch is None or status.finished or stopped:
            return 1 if counts["failed"] else 0
        if not redraw and not args.json:
            print(f"--- next look in {args.watch:g} s", flush=True)
        time.sleep(max(args.watch, 0.1))


# --- the text form ------------------------------------------------------------------------
def progress_bar(fraction: float, width: int = BAR_WIDTH) -> str:
    filled = round(max(0.0, min(1.0, fraction)) * width)
    return "[" + "#" * filled + "." * (width - filled) + f"] {100 * fraction:3.0f}%"


def _duration(seconds: float | None) -> str | None:
    """12s, 3m05s, 2h07m, 3d04h: short enough for a column."""
    if seconds is None:
        return None
    s = round(max(seconds, 0))
    for unit, size, sub, sub_size in (("d", 86400, "h", 3600), ("h", 3600, "m", 60),
                                      ("m", 60, "s", 1)):
        if s >= size:
            return f"{s // size}{unit}{(s % size) // sub_size:02d}{sub}"
    return f"{s}s"


def _ago(when: float | None, now: float) -> str | None:
    return None if when is None else f"{_duration(now - when)} ago"


def print_status(status: Any, show_all: bool = False) -> None:
    counts = status.counts()
    total = counts["total"] or 1
    snakemake = status.snakemake
    who = ("Snakemake is running here" if snakemake["running"]
           else "no Snakemake is running here")
    print(f"{counts['total']} jobs; {who}; {time.strftime('%H:%M:%S', time.localtime(status.time))}")
    finished = counts["done"] + counts["kept"]
    print(f"{progress_bar(finished / total)}  {counts['done']} done "
          f"({counts['cached']} from cache), "
          + (f"{counts['kept']} kept, " if counts["kept"] else "")
          + f"{counts['running']} running"
          + (f" ({counts['queued']} queued)" if counts["queued"] else "")
          + f", {counts['failed']} failed"
          + (f", {counts['stale']} stale" if counts["stale"] else "")
          + f", {counts['pending']} pending\n")
    rows = [{"stage": stage, **status.counts(stage)} for stage in ("run", "collect",
            "aggregate", "compare", "plot", "catalog")]
    print_table(rows, ["stage", "total", "done", "cached"]
                + (["kept"] if counts["kept"] else [])
                + ["stale", "running", "failed", "pending"])
    print_stale(status)
    print_convergence(status)

    runs = status.runs()
    shown = [r for r in runs if show_all or len(runs) <= ALL_RUNS_UP_TO
             or r["state"] in ("running", "failed")]
    if shown:
        print()
        print_table([_run_cells(r, status.time) for r in shown],
                    ["run", "state", "progress", "message", "checkpoint", "elapsed",
                     "attempt", "slurm"])
    hidden = len(runs) - len(shown)
    if hidden:
        print(f"({hidden} more runs done or pending; --all lists every run)")

    failed = [j for j in status.jobs if j.state == "failed"]
    if failed:
        print(f"\nFAILED ({len(failed)}):")
        for job in failed:
            name = "/".join(str(v) for v in job.names.values()) or job.output
            print(f"  {job.stage} {name}: {job.log}\n    {job.error}")
        print("\nrerun just these (runs resume from their work directories):")
        for command in status.rerun["commands"]:
            print(f"  {command}")
        print("or finish the whole study:\n" + "".join(f"  {c}\n" for c in status.rerun["study"]),
              end="")
    for note in status.notes:
        print(f"\nnote: {note}")


def print_stale(status: Any) -> None:
    """Stale jobs grouped by stage and reason: what `snakemake -n` would run again, and why."""
    from collections import Counter

    for state, title in (("kept", "snakemake with these --rerun-triggers keeps them"),
                         ("stale", "done, but snakemake would run them again")):
        groups = Counter((j.stage, j.why) for j in status.jobs if j.state == state)
        if groups:
            print(f"\n{state.upper()} ({sum(groups.values())}): {title}")
            for (stage, why), n in sorted(groups.items()):
                print(f"  {n:>5} {stage}: {why}")


def print_convergence(status: Any) -> None:
    """Finished conditions whose series metrics are below the convergence thresholds."""
    if status.convergence:
        print(f"\nNOT CONVERGED ({len(status.convergence)}): below aggregation.min_n_eff "
              "or above aggregation.max_rhat (docs/statistics.md)")
        for item in status.convergence:
            text = item["warning"].removeprefix("NOT CONVERGED: ")
            print(f"  {item.get('analysis')}/{item.get('condition')} {item['metric']}: {text}")


def _run_cells(row: dict[str, Any], now: float) -> dict[str, Any]:
    from ..tools.status import SLURM_QUEUED

    state = ("queued" if row["state"] == "running" and row["slurm_state"] in SLURM_QUEUED
             else row["state"] + (" (cache)" if row["cached"] else ""))
    slurm = " ".join(str(v) for v in (row["slurm_job_id"], row["slurm_state"]) if v) or None
    return {"run": f"{row['condition']}/{row['replicate']}", "state": state,
            "progress": ("100%" if row["state"] in ("done", "kept")
                         else None if row["percent"] is None
                         else f"{row['percent']:.0f}%"),
            "message": row["message"], "checkpoint": _ago(row["checkpoint"], now),
            "elapsed": _duration(row["elapsed_s"]), "attempt": row["attempt"],
            "slurm": slurm}


# Order of this group in `assay --help`.
HELP_ORDER = 5


def register(sub: Any) -> None:
    """Add `assay status` to the `assay` parser."""
    p = add_command(sub, "status", "where a study stands: jobs done, running, failed and "
                    "pending per stage, each run's progress, what to rerun (read-only; "
                    "reads files, not the DAG)", run_status)
    p.add_argument("--configfile", nargs="+", metavar="PATH",
                   help="the study's config, as given to snakemake (default: "
                        "config/config.yaml; given files extend it, as in snakemake)")
    p.add_argument("--replace-workflow-config", action="store_true",
                   help="as snakemake's: the --configfile files replace config/config.yaml")
    p.add_argument("-d", "--directory", default=".", metavar="DIR",
                   help="the study directory (snakemake's working directory; default .)")
    p.add_argument("--watch", nargs="?", type=float, const=WATCH_DEFAULT_S, metavar="SECONDS",
                   help=f"look again every SECONDS (default {WATCH_DEFAULT_S:g}) until "
                        "nothing runs or waits")
    p.add_argument("--all", action="store_true", help="list every run, not only the "
                   f"running and failed ones (the default above {ALL_RUNS_UP_TO} runs)")
    p.add_argument("--no-slurm", action="store_true", help="do not ask squeue")
    from ..tools.staleness import TRIGGERS

    p.add_argument("--rerun-triggers", nargs="+", choices=TRIGGERS, metavar="TRIGGER",
                   help="as given to snakemake (default: all): e.g. `mtime params input` "
                        "shows runs made with older runner code as kept, not stale")
    p.add_argument("--why", metavar="TARGET",
                   help="for one job (a ref path such as runs/free/1 or "
                        "results/runs/free/1.json, or a figure), the key parts that differ "
                        "between what is stored and the current plan")
    add_json(p)
