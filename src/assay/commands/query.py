"""assay query / metrics / catalog build: the DuckDB catalog from the command line."""

from __future__ import annotations

import sys
from typing import Any

from ._common import (
    catalog_path,
    print_frame,
    print_json,
    print_table,
    progress_for,
    results_dir,
    store_root,
)


def run_query(args: Any) -> int:
    from ..catalog import open_catalog

    with open_catalog(catalog_path(args)) as catalog:
        frame = catalog.query(args.sql)
    print_frame(frame, "json" if args.json else args.format)
    return 0


def run_metrics(args: Any) -> int:
    from ..catalog import open_catalog

    with open_catalog(catalog_path(args)) as catalog:
        frame = catalog.query_metrics(analysis=args.analysis, condition=args.condition,
                                      metric=args.metric, statistic=args.statistic,
                                      artifact_type=args.artifact_type,
                                      live_only=not args.all)
    fmt = "json" if args.json else args.format
    print_frame(frame, fmt, args.output)
    if args.output:
        print(f"wrote {len(frame)} rows to {args.output}", file=sys.stderr)
    return 0


def run_catalog(args: Any) -> int:
    from ..catalog import build_catalog

    progress = progress_for(args)
    try:
        summary = build_catalog(store_root(args), results_dir(args), args.output,
                                jobs=args.jobs, progress=progress)
    finally:
        progress.close()
    if args.json:
        print_json(summary.to_dict())
        return 0
    print(f"built {summary.path} in {summary.seconds:.2f} s")
    print_table([{"table": k, "rows": v} for k, v in summary.rows.items()], ["table", "rows"])
    for digest, problem in sorted(summary.skipped.items()):
        print(f"not indexed: {digest} {problem} (run `assay verify`)", file=sys.stderr)
    return 0
