"""assay export / import: bundles."""

from __future__ import annotations

from typing import Any

from ._common import add_command, add_json, human_bytes, print_json, progress_for, resolve_many, results_dir, \
    store_path, store_root


def run_export(args: Any) -> int:
    from ..tools.bundle import export_bundle

    root, results = store_root(args), results_dir(args)
    refs, digests = resolve_many(args.targets, root, results)
    summary = export_bundle(root, args.output, refs=refs, digests=digests)
    if args.json:
        print_json(summary.to_dict())
    else:
        print(f"wrote {summary.path}: {summary.artifacts} artifacts, {summary.objects} objects "
              f"({human_bytes(summary.bytes)}), {len(summary.refs)} refs")
    return 0


def run_import(args: Any) -> int:
    from ..tools.bundle import import_bundle
    from ..store.artifact_store import ArtifactStore

    store = ArtifactStore(store_path(args))   # importing into a new store creates it
    progress = progress_for(args)
    try:
        summary = import_bundle(store, args.bundle,
                                None if args.no_refs else results_dir(args),
                                max_bytes=args.max_bytes, overwrite_refs=args.overwrite_refs,
                                progress=progress)
    finally:
        progress.close()
        store.close()
    if args.json:
        print_json(summary.to_dict())
    else:
        print(f"imported {summary.path}: {summary.artifacts} artifacts, {summary.objects} "
              f"objects ({human_bytes(summary.bytes)}; {summary.new_objects} new), "
              f"{len(summary.refs)} refs")
    return 0


# Order of this group in `assay --help`.
HELP_ORDER = 40


def register(sub: Any) -> None:
    """Add this module's subcommands to the `assay` parser."""
    p = add_command(sub, "export", "write artifacts with their provenance closure to a zip bundle",
                run_export)
    p.add_argument("targets", nargs="+", metavar="REF",
                   help="ref files, directories of refs, or digests")
    p.add_argument("-o", "--output", required=True, metavar="BUNDLE.zip")
    add_json(p)

    p = add_command(sub, "import", "verify a bundle completely, then add it to the store and results",
                run_import)
    p.add_argument("bundle", metavar="BUNDLE.zip")
    p.add_argument("--no-refs", action="store_true",
                   help="import objects only (gc collects them after the grace period unless "
                        "a ref or --root keeps them)")
    p.add_argument("--overwrite-refs", action="store_true",
                   help="replace existing refs that point elsewhere")
    p.add_argument("--max-bytes", type=_size, default=4 * 1024 ** 3, metavar="SIZE",
                   help="refuse bundles that unpack to more: bytes, or with a unit "
                        "(500M, 20G, 1T; default 4G)")
    add_json(p)


def _size(text: str) -> int:
    """Bytes from '123', '500M', '20G', '1T' (powers of 1024), for --max-bytes."""
    import argparse

    units = {"": 1, "K": 1024, "M": 1024 ** 2, "G": 1024 ** 3, "T": 1024 ** 4}
    body = text.strip().upper().removesuffix("IB").removesuffix("B")
    unit = body[-1:] if body[-1:] in units and body[-1:] else ""
    number = body[:-1] if unit else body
    try:
        value = float(number) * units[unit]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a size: give bytes or a number with K, M, G or T") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: the limit must be more than 0 bytes")
    return int(value)
