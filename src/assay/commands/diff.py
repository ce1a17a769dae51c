"""assay diff: how two artifacts differ, beyond their digests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ._common import (
    UsageError,
    add_command,
    add_json,
    add_tolerance,
    open_store,
    print_json,
    resolve,
    results_dir,
    short,
    store_root,
)


def run_diff(args: Any) -> int:
    from ..tools.diffing import diff_artifacts
    from ..store.artifact_store import ArtifactStore

    root, results = store_root(args), results_dir(args)
    digest_a, entry_a = resolve(args.a, root, results)
    second = args.store2 is not None or args.results2 is not None
    root_b = Path(args.store2) if args.store2 is not None else root
    results_b = Path(args.results2) if args.results2 is not None else results
    from ..store.store_root import has_objects

    if not has_objects(root_b):
        from ..errors import ArtifactStoreError

        raise ArtifactStoreError(f"no store at {root_b} (no objects/ directory); pass "
                                 "--store2 DIR")
    if args.b is not None:
        digest_b, entry_b = resolve(args.b, root_b, results_b)
    elif not second:
        raise UsageError("give B, or --results2/--store2 to compare A with the same ref "
                         "(or digest) of another study")
    elif entry_a is not None:
        digest_b, entry_b = resolve(str(results_b / entry_a.name), root_b, results_b)
    else:
        digest_b, entry_b = digest_a, None
    store_a = open_store(args)
    store_b = store_a if root_b == root else ArtifactStore(root_b)
    report = diff_artifacts(store_a, digest_a, store_b, digest_b, rtol=args.rtol,
                            atol=args.atol)
    if args.json:
        print_json({**report.to_dict(), "a_ref": entry_a.path if entry_a else None,
                    "b_ref": entry_b.path if entry_b else None})
    else:
        for label, digest, entry, where in (("A", digest_a, entry_a, root),
                                            ("B", digest_b, entry_b, root_b)):
            name = f"{entry.path} " if entry else ""
            print(f"{label}: {name}{short(digest)} (store {where})")
        for line in report.lines():
            print(f"  {line}")
        print(report.summary())
    return 0 if report.equal else 1


# Order of this group in `assay --help`: after reproduce, which uses it.
HELP_ORDER = 55


def register(sub: Any) -> None:
    """Add `assay diff` to the `assay` parser."""
    p = add_command(sub, "diff", "how two artifacts differ beyond their digests: payload "
                    "numbers, NPZ arrays, table columns; exit 1 if they differ beyond the "
                    "tolerance", run_diff)
    p.add_argument("a", metavar="A", help="ref file, path under results/, or digest")
    p.add_argument("b", metavar="B", nargs="?",
                   help="the same, looked up in --store2/--results2 (default: A's ref path "
                        "in --results2)")
    p.add_argument("--store2", metavar="DIR", help="store holding B (default: --store)")
    p.add_argument("--results2", metavar="DIR", help="results directory holding B's ref "
                                                     "(default: --results)")
    add_tolerance(p)
    add_json(p)
