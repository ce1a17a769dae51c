"""assay crate: a finished study as a Workflow Run RO-Crate (Provenance Run Crate)."""

from __future__ import annotations

from typing import Any

from ._common import add_command, add_json, human_bytes, print_json


def run_crate(args: Any) -> int:
    import os
    import sys

    # Planning imports the study's plugins (its own modules too), as `assay status` does.
    sys.dont_write_bytecode = True
    sys.path.insert(0, os.path.abspath(args.directory))
    from ..tools.crate import write_crate

    summary = write_crate(args.directory, args.output, configfiles=args.configfile or [],
                          replace_config=args.replace_workflow_config, license=args.license,
                          author=args.author,
                          figures=args.for_figures)
    if args.json:
        print_json(summary.to_dict())
    else:
        print(f"wrote {summary.path}: {summary.jobs} jobs, {summary.artifacts} artifacts, "
              f"{summary.objects} objects ({human_bytes(summary.bytes)}), "
              f"{len(summary.figures)} figures")
    return 0


# After export/import (40): the other way to hand a study on.
HELP_ORDER = 41


def register(sub: Any) -> None:
    """Add `assay crate` to the `assay` parser."""
    p = add_command(sub, "crate", "write a finished study as a Workflow Run RO-Crate zip "
                    "(Provenance Run Crate: jobs, artifacts with sha256, figures)", run_crate)
    p.add_argument("-o", "--output", required=True, metavar="CRATE.zip")
    p.add_argument("--license", metavar="ID_OR_URL",
                   help="the license of the crate's content, e.g. "
                        "https://spdx.org/licenses/CC-BY-4.0 (data repositories ask for one)")
    p.add_argument("--author", metavar="NAME_OR_ORCID",
                   help="who ran the study (the crate's author and each job's agent), e.g. "
                        "https://orcid.org/0000-0002-1825-0097")
    p.add_argument("--for", dest="for_figures", nargs="+", metavar="FIGURE",
                   help="only these figures' lineage, e.g. results/plots/contacts/summary.png")
    p.add_argument("--configfile", nargs="+", metavar="PATH",
                   help="as given to snakemake (default: config/config.yaml)")
    p.add_argument("--replace-workflow-config", action="store_true",
                   help="as given to snakemake: the --configfile replaces config/config.yaml")
    p.add_argument("-d", "--directory", default=".", metavar="DIR",
                   help="the study directory (default: here)")
    add_json(p)
