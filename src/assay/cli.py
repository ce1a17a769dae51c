"""The `assay` command: look at, query, check, clean, share and reproduce a study's store.

Only the standard library is imported here, so `assay --help` and every Snakemake job
(`assay job ...`) start fast; each command imports what it needs when it runs, from
`assay.commands.*`.

Exit codes: 0 success; 1 problems found (damage, mismatch) or the command failed;
2 usage error (bad arguments, ambiguous names).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

EXIT_OK, EXIT_PROBLEMS, EXIT_USAGE = 0, 1, 2
_GLOBAL_WITH_VALUE = ("--store", "--results")
_GLOBAL_FLAGS = ("--progress", "--no-progress", "-h", "--help", "--version")


def _add_json(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="machine-readable JSON on stdout")


def _add_tolerance(p: argparse.ArgumentParser) -> None:
    p.add_argument("--rtol", type=float, default=0.0, metavar="R",
                   help="relative tolerance: numbers a, b are equal if |a-b| <= atol + "
                        "rtol*max(|a|,|b|) (default 0)")
    p.add_argument("--atol", type=float, default=0.0, metavar="A",
                   help="absolute tolerance (default 0)")


def _add_jobs(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--jobs", "-j", type=int, metavar="N",
                   help=f"parallel threads for {what} (default: one per CPU for hashing, "
                        "one reader for small files; raise it on network filesystems)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="assay",
        description="Query, check, clean, share and reproduce an assay study "
                    "(a content-addressed store plus the refs under results/).",
        epilog="Exit codes: 0 ok, 1 problems found or command failed, 2 usage error. "
               "Run `assay COMMAND --help` for a command's options.")
    parser.add_argument("--store", default=os.environ.get("ASSAY_STORE", "store"),
                        help="store directory (default: $ASSAY_STORE or ./store)")
    parser.add_argument("--results", default=os.environ.get("ASSAY_RESULTS", "results"),
                        help="results directory holding the refs "
                             "(default: $ASSAY_RESULTS or ./results)")
    progress = parser.add_mutually_exclusive_group()
    progress.add_argument("--progress", dest="progress", action="store_true", default=None,
                          help="report progress on stderr (default: only when it is a terminal)")
    progress.add_argument("--no-progress", dest="progress", action="store_false")
    parser.add_argument("--version", action="version", version=f"assay {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def command(name: str, help: str, handler: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.set_defaults(handler=handler)
        return p

    # browse -----------------------------------------------------------------------------
    p = command("ls", "list the refs under results/ (one per artifact the workflow made)",
                "browse:run_ls")
    p.add_argument("--type", dest="artifact_type",
                   choices=["run", "replicate", "condition", "comparison"])
    p.add_argument("--analysis")
    p.add_argument("--condition")
    _add_json(p)

    p = command("show", "print an artifact's manifest", "browse:run_show")
    p.add_argument("target", metavar="REF|DIGEST",
                   help="ref file, path under results/, or digest (a unique prefix of 6+ hex)")
    _add_json(p)

    p = command("cat", "write a sidecar's verified bytes to stdout or a file",
                "browse:run_cat")
    p.add_argument("target", metavar="REF|DIGEST")
    p.add_argument("sidecar", metavar="SIDECAR_PATH", help="e.g. sidecars/profile.npz")
    p.add_argument("-o", "--output", metavar="FILE", help="write here instead of stdout")

    p = command("stats", "objects, bytes, artifacts by type, deduplication ratio",
                "browse:run_stats")
    _add_json(p)

    # catalog ----------------------------------------------------------------------------
    p = command("query", "run SQL against the catalog (results/catalog.duckdb)",
                "query:run_query")
    p.add_argument("sql", metavar="SQL")
    p.add_argument("--catalog", metavar="PATH", help="default: RESULTS/catalog.duckdb")
    p.add_argument("--format", choices=["table", "csv", "json"], default="table")
    _add_json(p)

    p = command("metrics", "export metrics (long form) from the catalog", "query:run_metrics")
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
    _add_json(p)

    p = command("catalog", "build the catalog", "query:run_catalog")
    catalog_sub = p.add_subparsers(dest="catalog_command", metavar="ACTION", required=True)
    b = catalog_sub.add_parser("build", help="(re)build the DuckDB catalog from the store "
                                             "and the refs; swapped in atomically")
    b.add_argument("-o", "--output", metavar="PATH", help="default: RESULTS/catalog.duckdb")
    _add_jobs(b, "reading manifests")
    _add_json(b)

    # maintenance ------------------------------------------------------------------------
    p = command("verify", "check refs, manifests and sidecars (and with --full every "
                          "object); exit 1 on damage", "maintain:run_verify")
    p.add_argument("--full", action="store_true", help="also hash objects no ref reaches")
    p.add_argument("--repair", action="store_true",
                   help="remove damaged objects and the refs and action records that point "
                        "to them, so the next snakemake run recomputes exactly those jobs")
    _add_jobs(p, "hashing")
    _add_json(p)

    p = command("gc", "remove objects no ref reaches (dry run unless --delete)",
                "maintain:run_gc")
    p.add_argument("--root", action="append", default=[], metavar="PATH",
                   help="extra ref file or directory of refs to keep (repeatable)")
    p.add_argument("--grace", type=float, default=3600.0, metavar="SECONDS",
                   help="keep unreferenced objects younger than this (default 3600): a "
                        "running job's outputs have no ref yet")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--delete", action="store_true", help="actually delete")
    mode.add_argument("--dry-run", action="store_true", help="only report (the default)")
    _add_jobs(p, "reading manifests")
    _add_json(p)

    # sharing ----------------------------------------------------------------------------
    p = command("export", "write artifacts with their provenance closure to a zip bundle",
                "share:run_export")
    p.add_argument("targets", nargs="+", metavar="REF",
                   help="ref files, directories of refs, or digests")
    p.add_argument("-o", "--output", required=True, metavar="BUNDLE.zip")
    _add_json(p)

    p = command("import", "verify a bundle completely, then add it to the store and results",
                "share:run_import")
    p.add_argument("bundle", metavar="BUNDLE.zip")
    p.add_argument("--no-refs", action="store_true",
                   help="import objects only (gc collects them after the grace period unless "
                        "a ref or --root keeps them)")
    p.add_argument("--overwrite-refs", action="store_true",
                   help="replace existing refs that point elsewhere")
    p.add_argument("--max-bytes", type=int, default=64 * 1024 ** 3, metavar="N",
                   help="refuse bundles that unpack to more (default 64 GiB)")
    _add_json(p)

    # provenance -------------------------------------------------------------------------
    p = command("reproduce", "recompute an artifact from its provenance in a scratch store "
                             "and compare digests (and, if they differ, by how much); exit 1 "
                             "if it differs beyond --rtol/--atol",
                "reproduce:run_reproduce")
    p.add_argument("target", metavar="REF|DIGEST")
    p.add_argument("--scratch", metavar="DIR", help="where to make the scratch store")
    p.add_argument("--keep", action="store_true", help="keep the scratch store")
    _add_tolerance(p)
    _add_json(p)

    p = command("diff", "how two artifacts differ beyond their digests: payload numbers, "
                        "NPZ arrays, table columns; exit 1 if they differ beyond the "
                        "tolerance", "diff:run_diff")
    p.add_argument("a", metavar="A", help="ref file, path under results/, or digest")
    p.add_argument("b", metavar="B", nargs="?",
                   help="the same, looked up in --store2/--results2 (default: A's ref path "
                        "in --results2)")
    p.add_argument("--store2", metavar="DIR", help="store holding B (default: --store)")
    p.add_argument("--results2", metavar="DIR", help="results directory holding B's ref "
                                                     "(default: --results)")
    _add_tolerance(p)
    _add_json(p)

    p = command("config", "study configuration", "reproduce:run_config")
    config_sub = p.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    v = config_sub.add_parser("validate", help="validate a config file (default "
                                               "config/config.yaml)")
    v.add_argument("file", nargs="?", default="config/config.yaml")
    _add_json(v)

    sub.add_parser("job", help="run one workflow job (used by the Snakefile rules)",
                   add_help=False)
    return parser


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("assay")
    except Exception:  # not installed: running from a checkout
        return "unknown"


def _job_argv(argv: list[str]) -> list[str] | None:
    """The arguments after `job`, if `job` is the command (global options may precede it)."""
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in _GLOBAL_WITH_VALUE:
            i += 2
            continue
        if arg.startswith(tuple(f"{o}=" for o in _GLOBAL_WITH_VALUE)) or arg in _GLOBAL_FLAGS:
            i += 1
            continue
        return argv[i + 1:] if arg == "job" else None
    return None


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    job_argv = _job_argv(argv)
    if job_argv is not None:
        from .jobs import main as job_main

        try:
            return job_main(job_argv)
        except SystemExit as exc:   # the job's own argparse: --help or a usage error
            return exc.code if isinstance(exc.code, int) else EXIT_USAGE

    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:   # --help, --version (0) or a usage error (2)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    if not getattr(args, "handler", None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    if args.progress is None:
        args.progress = sys.stderr.isatty()

    from importlib import import_module

    from .errors import AssayError

    module_name, func_name = args.handler.split(":")
    try:
        func = getattr(import_module(f"assay.commands.{module_name}"), func_name)
        return int(func(args))
    except AssayError as exc:
        from .commands._common import UsageError

        print(f"assay {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE if isinstance(exc, UsageError) else EXIT_PROBLEMS
    except KeyboardInterrupt:
        print(f"assay {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`assay ls | head`): stop quietly, as other tools do.
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
