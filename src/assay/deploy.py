"""Where the installed package keeps assay's Snakemake workflow, for studies elsewhere.

A study made by `assay init` declares ``module assay: snakefile: workflow_snakefile()``:
the workflow ships inside the package (``assay/snakemake_workflow/``), so an editable
install, a plain ``pip install``, and this repository's own ``snakemake`` run the same
rules. Importing this module imports nothing else of assay.
"""

from __future__ import annotations

from pathlib import Path

# The name pip installs assay by (`pip install assay-workflow`): `assay` on the public
# index belongs to another project. The package (`import assay`) and the command keep
# the short name.
DISTRIBUTION = "assay-workflow"
WORKFLOW_DIR = Path(__file__).resolve().parent / "snakemake_workflow"
LIBRARY_DIR = WORKFLOW_DIR.parents[1]   # the directory that holds the `assay` package


def workflow_snakefile() -> str:
    """Path of the packaged Snakefile (a plain string, as Snakemake's ``module`` wants)."""
    return str(WORKFLOW_DIR / "Snakefile")
