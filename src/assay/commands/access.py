"""assay share-store: make an existing store shared by a Unix group (assay.store.sharing)."""

from __future__ import annotations

from typing import Any

from ._common import add_command, add_json, print_json, store_root


def run_share_store(args: Any) -> int:
    from ..store.share_store import make_shared
    from ..store.sharing import SharingPolicy, SharingSettings

    root = store_root(args)
    report = make_shared(root, args.group, dry_run=args.dry_run,
                         sticky_records=args.sticky_records)
    if args.json:
        print_json(report.to_dict())
        return 1 if report.not_ours else 0
    verb = "would change" if args.dry_run else "changed"
    print(f"store {root}: shared with group {args.group} "
          f"(members: {', '.join(report.members) or 'none listed'})")
    print(f"  root: {report.root_before} -> {report.root_after}")
    print(f"  {verb} {report.directories} directories: group {args.group}, group-writable, "
          "setgid (what is created in them keeps the group)")
    print(f"  {verb} {report.files} files: group {args.group}, group-readable (objects stay "
          "read-only for everyone)")
    print(f"  already right: {report.unchanged}")
    if args.sticky_records:
        print("  records folders (actions/, roots/) sticky: only a record's owner (or root) "
              "can replace or delete it; each member's gc leaves the others' records")
    for owner, count in sorted(report.not_ours.items()):
        print(f"  NOT CHANGED: {count} entries owned by {owner}; {owner} (or root) runs this "
              "command too")
    if not args.dry_run:
        policy = SharingPolicy.for_store(root, SharingSettings(), check_world_writable=False)
        print(f"jobs now create group-writable directories here; action records count when "
              f"written by: {policy.trusted_description()} (store_sharing.trusted in the "
              "study config changes that)")
    return 1 if report.not_ours else 0


# Order of this group in `assay --help`.
HELP_ORDER = 35


def register(sub: Any) -> None:
    """Add this module's subcommands to the `assay` parser."""
    p = add_command(sub, "share-store", "make the store shared by a Unix group: directories "
                    "group-writable and setgid, files group-readable (docs/reliability.md)",
                    run_share_store)
    p.add_argument("--group", required=True, metavar="GROUP",
                   help="the group whose members use the store (you must be a member)")
    p.add_argument("--sticky-records", action="store_true",
                   help="also set the sticky bit on actions/ and roots/: members cannot rename "
                        "or delete each other's records (costs: see docs/reliability.md)")
    p.add_argument("--dry-run", action="store_true", help="only count what would change")
    add_json(p)
