"""`assay init DIR`: start a new study outside this repository (see assay.tools.scaffold)."""

from __future__ import annotations

from typing import Any

from ._common import add_command, add_json, print_json

# Order of this group in `assay --help`: first, it is where a new user starts.
HELP_ORDER = 0


def run_init(args: Any) -> int:
    from ..tools.scaffold import init_study

    report = init_study(args.directory, args.template, force=args.force)
    if args.json:
        print_json(report.to_dict())
        return 0
    for name in report.written:
        print(f"wrote {report.directory / name}")
    for name in report.kept:
        print(f"kept  {report.directory / name} (not written by assay init, or changed since)")
    from ..deploy import DISTRIBUTION
    from ..tools.scaffold import TEMPLATES

    spec = TEMPLATES[report.template]
    steps = [f"cd {report.directory}", *(line.split("#")[0].strip() for line in spec.setup),
             "assay config validate", "snakemake --cores 2"]
    if spec.extras:
        print(f"\nneeds: pip install '{DISTRIBUTION}[{spec.extras}]' (if it is not installed)")
    print(f"\nnext: {' && '.join(steps)}")
    print("then: assay ls, assay metrics (in the study directory: no --results needed); "
          "README.md there says more")
    return 0


def register(sub: Any) -> None:
    """Add `assay init` to the `assay` parser."""
    from ..tools.scaffold import TEMPLATES

    p = add_command(sub, "init", "start a new study directory from a template (a Snakefile "
                    "that uses assay's installed workflow, a commented config, profiles)",
                    run_init)
    p.add_argument("directory", metavar="DIR", help="the new study directory")
    p.add_argument("--template", "-t", choices=list(TEMPLATES), default="demo",
                   help="what the study starts as (default: demo)")
    p.add_argument("--force", action="store_true",
                   help="fill in a non-empty DIR: write what is missing or still as init "
                        "wrote it; never overwrite anything else")
    add_json(p)
