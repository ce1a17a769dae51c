"""The `assay` command: look at, query, check, clean, share and reproduce a study's store.

Each module of `assay.commands` registers its own subcommands (``register(sub)``) and
imports what is heavy (pandas, duckdb) only when its command runs, so `assay --help`
starts fast. Workflow jobs run `python -m assay.jobs` (`assay job ...` forwards there).

Exit codes: 0 success; 1 problems found (damage, mismatch) or the command failed;
2 usage error (bad arguments, ambiguous names).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Sequence

EXIT_OK, EXIT_PROBLEMS, EXIT_USAGE = 0, 1, 2
_GLOBAL_WITH_VALUE = ("--store", "--results")
_GLOBAL_FLAGS = ("--progress", "--no-progress", "-h", "--help", "--version")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="assay",
        description="Query, check, clean, share and reproduce an assay study "
                    "(a content-addressed store plus the refs under results/).",
        epilog="Exit codes: 0 ok, 1 problems found or command failed, 2 usage error. "
               "Run `assay COMMAND --help` for a command's options.")
    # None: resolved when a command needs it (commands._common: flag, environment, the
    # study config in the working directory or a parent, then ./store and ./results).
    parser.add_argument("--store", default=None,
                        help="store directory (default: $ASSAY_STORE, else the `store:` of "
                             "the study whose config/config.yaml is here or in a parent, "
                             "else ./store)")
    parser.add_argument("--results", default=None,
                        help="results directory holding the refs (default: $ASSAY_RESULTS, "
                             "else the study config's `results:`, else ./results)")
    progress = parser.add_mutually_exclusive_group()
    progress.add_argument("--progress", dest="progress", action="store_true", default=None,
                          help="report progress on stderr (default: only when it is a terminal)")
    progress.add_argument("--no-progress", dest="progress", action="store_false")
    parser.add_argument("--version", action="version", version=f"assay {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in _command_modules():
        module.register(sub)
    sub.add_parser("job", help="run one workflow job (used by the Snakefile rules)",
                   add_help=False)
    return parser


def _command_modules() -> list[Any]:
    """Every module of ``assay.commands`` that registers subcommands, in help order.

    Adding a command is adding (or editing) one module there: it defines ``register(sub)``.
    The modules import only the standard library and assay's light modules at import time.
    """
    import pkgutil
    from importlib import import_module

    from . import commands

    modules = [import_module(f"{commands.__name__}.{info.name}")
               for info in pkgutil.iter_modules(commands.__path__)
               if not info.name.startswith("_")]
    return sorted((m for m in modules if hasattr(m, "register")),
                  key=lambda m: (getattr(m, "HELP_ORDER", 100), m.__name__))


def _version() -> str:
    try:
        from importlib.metadata import version

        from .deploy import DISTRIBUTION

        return version(DISTRIBUTION)
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

    from .errors import AssayError

    try:
        return int(args.handler(args))
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
