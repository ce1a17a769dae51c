"""assay verify / gc: checking and cleaning a store."""

from __future__ import annotations

import dataclasses
import shlex
import sys
from typing import Any

from ..store.workdirs import WORK_DIR
from ._common import add_command, add_json, add_jobs, human_bytes, print_json, progress_for, results_dir, short, store_root


def run_verify(args: Any) -> int:
    from ..tools.verify import repair_store, verify_store

    from ..store.sharing import SharingSettings

    root, results = store_root(args), results_dir(args)
    sharing = SharingSettings.from_env()
    if args.trusted is not None:
        sharing = dataclasses.replace(sharing, trusted=tuple(
            t for t in args.trusted.split(",") if t) or None)
    progress = progress_for(args)
    try:
        report = verify_store(root, results, full=args.full, jobs=args.jobs, progress=progress,
                              sharing=sharing, store_wide=args.full or args.store_wide)
    finally:
        progress.close()
    if args.repair and not report.ok:
        repair_store(root, results, report)
    if args.json:
        print_json(report.to_dict())
    else:
        _print_verify(report, args.repair, results)
    if report.ok:
        return 0
    if args.repair and not report.unrepaired:
        return 0   # everything found was removed; the workflow recomputes it
    return 1


def _print_verify(report: Any, repair: bool, results: Any) -> None:
    what = "every object" if report.full else "refs, manifests and their sidecars"
    print(f"checked {what}: {report.refs_checked} refs, {report.artifacts_checked} artifacts, "
          f"{report.objects_hashed} objects hashed ({human_bytes(report.bytes_hashed)})")
    if report.ok:
        print("ok: no damage found")
        return
    for damage in report.damaged:
        if damage.awaiting_recompute:
            print(f"\nMISSING {damage.role} sha256:{damage.sha256}: awaiting recompute (its "
                  "ref and action record are gone; rerun the workflow)")
        else:
            print(f"\nDAMAGED {damage.role} sha256:{damage.sha256} {damage.problem}")
        for digest in damage.artifacts:
            print(f"  artifact {short(digest)}  {report.labels.get(digest, '')}".rstrip())
        for ref in damage.refs:
            print(f"  ref      {ref}")
        if not damage.artifacts and not damage.refs:
            print("  (nothing depends on it)")
    for name, problem in sorted(report.bad_refs.items()):
        print(f"\nBAD REF {name}: {problem}")
    for digest, problem in sorted(report.bad_manifests.items()):
        print(f"\nBAD MANIFEST {digest}: {problem}")
    for key, problem in sorted(report.bad_actions.items()):
        print(f"\nBAD ACTION RECORD {key}: {problem}")
    for key, problem in sorted(report.untrusted_actions.items()):
        print(f"\nUNTRUSTED ACTION RECORD {key}: {problem}")
    plan = report.repaired if repair else report.plan
    verb = "removed" if repair else "`assay verify --repair` would remove"
    print(f"\n{verb}: {len(plan.objects)} damaged objects, {len(plan.refs)} refs, "
          f"{len(plan.actions)} action records")
    for ref in plan.refs:
        print(f"  ref {ref}")
    if repair and plan.catalog:
        print("  the catalog (a stale index; the workflow rebuilds it)")
    if repair and plan.refs:
        targets = " ".join(shlex.quote(str(results / ref)) for ref in plan.refs)
        print(f"\nrecompute exactly those jobs:  snakemake {targets}\n"
              "(a plain `snakemake` recomputes them too, and reruns what is downstream of "
              "them from the action cache)")
    if report.unrepaired:
        print(f"not repaired: {len(report.unrepaired)} manifests this assay cannot read "
              "(see BAD MANIFEST above)", file=sys.stderr)


SHORT_KEY = 12


def run_gc(args: Any) -> int:
    from ..tools.gc import collect_garbage

    if args.delete and args.grace < 60:
        print(f"assay gc: warning: --grace {args.grace:g} deletes unreferenced objects only "
              f"{args.grace:g} s old: a job still running has written its sidecars and "
              "manifest but not its ref yet, and would lose them. Use it only when no "
              "workflow is running.", file=sys.stderr)
    progress = progress_for(args)
    try:
        report = collect_garbage(store_root(args), results_dir(args), roots=args.root,
                                 grace_seconds=args.grace, delete=args.delete, jobs=args.jobs,
                                 work_grace_seconds=args.work_grace,
                                 rescan=args.rescan, progress=progress)
    finally:
        progress.close()
    if report.index_note:
        print(f"assay gc: note: {report.index_note}", file=sys.stderr)
    if args.json:
        print_json(report.to_dict())
        return 0
    print(f"roots: {report.roots} refs; reachable: {report.live_objects} objects "
          f"({human_bytes(report.live_bytes)})")
    if report.objects_from == "rescan" and not report.index_note:
        print("object index rebuilt from a scan of objects/ "
              f"({report.live_objects + report.garbage_objects + report.young_objects} "
              "objects)")
    if report.live_figures:
        print(f"figures: {report.live_figures} under plots/, their cached bytes kept")
    for where in report.member_results:
        print(f"kept what the refs of another member's results keep: {where}")
    for where in report.gone_results:
        print(f"{'forgot' if report.delete else 'would forget'} results directory {where} "
              "(it no longer exists)")
    for where, problem in sorted(report.unreadable_results.items()):
        print(f"cannot read the refs of another member's results {where} ({problem}); "
              "gc --delete refuses until its owner makes them readable")
    for owner, count in sorted(report.kept_sticky.items()):
        print(f"left {count} record(s) of {owner}: the records folders are sticky, so only "
              f"{owner} (or root) can delete them; {owner}'s own `assay gc --delete` does")
    for where, writer in sorted(report.untrusted_roots.items()):
        print(f"ignored a results directory registered by {writer}, whom the store does not "
              f"trust: {where}")
    if report.broken_refs:
        print(f"broken refs: {len(report.broken_refs)} (see `assay verify`)")
    kept = (f"; kept {report.young_objects} unreferenced objects younger than "
            f"{report.grace_seconds:g} s ({human_bytes(report.young_bytes)})"
            if report.young_objects else "")
    for work in report.work_dirs:
        print(f"{'removed' if report.delete else 'would remove'} work directory "
              f"{WORK_DIR}/{work['key'][:SHORT_KEY]} of run {work['condition']}/{work['replicate']} "
              f"(attempt {work['attempt']}, {human_bytes(work['size_bytes'])}, "
              f"{'result published' if work['why'] == 'published' else 'untouched for %.0f h' % (work['age_s'] / 3600)})")
    if report.delete:
        print(f"deleted {report.deleted_objects} objects ({human_bytes(report.deleted_bytes)}), "
              f"{report.tmp_entries} stale tmp entries ({human_bytes(report.tmp_bytes)}), "
              f"{report.actions} action records{kept}")
    else:
        print(f"dry run: would delete {report.garbage_objects} objects "
              f"({human_bytes(report.garbage_bytes)}), {report.tmp_entries} stale tmp entries "
              f"({human_bytes(report.tmp_bytes)}), {report.actions} action records{kept}")
        print("run `assay gc --delete` to delete them")
    return 0


# Order of this group in `assay --help`.
HELP_ORDER = 30


def register(sub: Any) -> None:
    """Add this module's subcommands to the `assay` parser."""
    p = add_command(sub, "verify", "check refs, manifests and sidecars (and with --full every "
                          "object); exit 1 on damage", run_verify)
    p.add_argument("--full", action="store_true", help="also hash objects no ref reaches "
                   "(store-wide: every object and action record)")
    p.add_argument("--store-wide", action="store_true",
                   help="check every action record of the store, not only those behind this "
                        "study's refs (reads all of store/actions: slow on a lab store)")
    p.add_argument("--repair", action="store_true",
                   help="remove damaged objects and the refs and action records that point "
                        "to them (and action records by untrusted writers), so the next "
                        "snakemake run recomputes exactly those jobs")
    p.add_argument("--trusted", metavar="NAMES",
                   help="comma-separated users and groups whose action records count, or "
                        "'any' (default: the study's store_sharing.trusted if the workflow "
                        "exported it, else you and the members of the store's group)")
    add_jobs(p, "hashing")
    add_json(p)

    p = add_command(sub, "gc", "remove objects no ref reaches (dry run unless --delete)",
                run_gc)
    p.add_argument("--root", action="append", default=[], metavar="PATH",
                   help="extra ref file or directory of refs to keep (repeatable)")
    p.add_argument("--grace", type=float, default=3600.0, metavar="SECONDS",
                   help="keep unreferenced objects younger than this (default 3600): a "
                        "running job's outputs have no ref yet")
    p.add_argument("--work-grace", type=float, default=7 * 24 * 3600.0, metavar="SECONDS",
                   help="remove a run's work directory (its checkpoints) once untouched this "
                        "long (default 7 days) or once its result is published")
    p.add_argument("--rescan", action="store_true",
                   help="list objects/ instead of reading the object index, and rebuild the "
                        "index from that scan (a store written before the index, or after "
                        "objects were added or removed by hand)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--delete", action="store_true", help="actually delete")
    mode.add_argument("--dry-run", action="store_true", help="only report (the default)")
    add_jobs(p, "reading manifests")
    add_json(p)
