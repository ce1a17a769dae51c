"""assay query / metrics / catalog build: the DuckDB catalog from the command line."""

from __future__ import annotations

import sys
from typing import Any

from ..pipeline.joblog import CATALOG_BUILT
from ._common import (
    add_command,
    add_json,
    add_jobs,
    catalog_path,
    print_frame,
    print_json,
    print_table,
    progress_for,
    results_dir,
    store_root,
)


def run_query(args: Any) -> int:
    from ..tools.catalog import open_catalog

    with open_catalog(catalog_path(args)) as catalog:
        frame = catalog.query(args.sql)
    print_frame(frame, "json" if args.json else args.format)
    return 0


def run_metrics(args: Any) -> int:
    from ..tools.catalog import open_catalog

    with open_catalog(catalog_path(args)) as catalog:
        frame = catalog.query_metrics(analysis=args.analysis, condition=args.condition,
                                      metric=args.metric, statistic=args.statistic,
                                      artifact_type=args.artifact_type,
                                      live_only=not args.all)
        from ..pipeline.diagnostics import metrics_convergence

        frame["convergence"] = metrics_convergence(catalog, frame)
    fmt = "json" if args.json else args.format
    print_frame(frame, fmt, args.output)
    if args.output:
        print(f"wrote {len(frame)} rows to {args.output}", file=sys.stderr)
    return 0


def run_catalog(args: Any) -> int:
    from ..tools.catalog import build_catalog

    progress = progress_for(args)
    try:
        summary = build_catalog(store_root(args), results_dir(args), args.output,
                                jobs=args.jobs, progress=progress,
                                store_wide=args.store_wide)
    finally:
        progress.close()
    # A catalog that silently lacks rows answers queries with wrong numbers: it is still
    # written (to be inspected), but the build fails, so the workflow does not call it done.
    incomplete = 1 if summary.skipped else 0
    if args.json:
        print_json(summary.to_dict())
        return incomplete
    print(f"{CATALOG_BUILT}{summary.path} in {summary.seconds:.2f} s")
    print_table([{"table": k, "rows": v} for k, v in summary.rows.items()], ["table", "rows"])
    for digest, problem in sorted(summary.skipped.items()):
        print(f"not indexed: {digest} {problem} (run `assay verify`)", file=sys.stderr)
    if summary.skipped:
        print(f"assay catalog build: error: {len(summary.skipped)} artifact(s) reachable from "
              "the refs could not be read, so the catalog lacks their rows; run `assay verify "
              "--repair`, rerun snakemake, then build the catalog again", file=sys.stderr)
    return incomplete


# Order of this group in `assay --help`.
HELP_ORDER = 20


def register(sub: Any) -> None:
    """Add this module's subcommands to the `assay` parser."""
    p = add_command(sub, "query", "run SQL against the catalog (results/catalog.duckdb)",
                run_query)
    p.add_argument("sql", metavar="SQL")
    p.add_argument("--catalog", metavar="PATH", help="default: RESULTS/catalog.duckdb")
    p.add_argument("--format", choices=["table", "csv", "json"], default="table")
    add_json(p)

    p = add_command(sub, "metrics", "export metrics (long form) from the catalog", run_metrics)
    p.add_argument("--analysis")
    p.add_argument("--condition")
    p.add_argument("--metric")
    p.add_argument("--statistic", help="value (per replicate), mean, sem, ci_low, ... "
                                       "(conditions); difference, p, p_adjusted, hedges_g, "
                                       "ratio, rank, anova_p, ... (comparisons, the "
                                       "reference condition in the CONTROL column)")
    p.add_argument("--type", dest="artifact_type",
                   choices=["run", "replicate", "condition", "comparison"])
    p.add_argument("--all", action="store_true",
                   help="include artifacts no ref reaches any more (old results)")
    p.add_argument("--catalog", metavar="PATH", help="default: RESULTS/catalog.duckdb")
    p.add_argument("--format", choices=["table", "csv", "parquet", "json"], default="table")
    p.add_argument("-o", "--output", metavar="FILE", help="write to FILE (needed for parquet)")
    add_json(p)

    p = add_command(sub, "catalog", "build the catalog", run_catalog)
    catalog_sub = p.add_subparsers(dest="catalog_command", metavar="ACTION", required=True)
    b = catalog_sub.add_parser("build", help="(re)build the DuckDB catalog from the store "
                                             "and the refs; swapped in atomically")
    b.add_argument("-o", "--output", metavar="PATH", help="default: RESULTS/catalog.duckdb")
    b.add_argument("--store-wide", action="store_true",
                   help="index every object and action record of the store, not only what "
                        "this study's refs reach (reads the whole store: slow on a lab store)")
    add_jobs(b, "reading manifests")
    add_json(b)
