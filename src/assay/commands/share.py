"""assay export / import: bundles."""

from __future__ import annotations

from typing import Any

from ._common import human_bytes, print_json, progress_for, resolve_many, results_dir, \
    store_root


def run_export(args: Any) -> int:
    from ..bundle import export_bundle

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
    from ..bundle import import_bundle
    from ..store import ArtifactStore

    store = ArtifactStore(args.store)   # importing into a new store creates it
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
