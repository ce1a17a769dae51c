"""The layer contracts in pyproject.toml ([tool.importlinter]) hold: the store imports
nothing of the pipeline, tools or commands; only the command line imports the commands."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from workflow_helpers import REPO

LINT = [sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command; "
        "sys.exit(lint_imports_command())"]


def test_the_layer_contracts_are_kept():
    proc = subprocess.run(LINT, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 kept, 0 broken" in proc.stdout, proc.stdout


def test_the_checker_sees_a_broken_contract(tmp_path: Path):
    """The same tool on a contract this code breaks (objects imports hashing) says so: the
    check above is an analysis of the real imports, not a formality."""
    config = tmp_path / "broken.toml"
    config.write_text('[tool.importlinter]\nroot_package = "assay"\n\n'
                      '[[tool.importlinter.contracts]]\nname = "objects without hashing"\n'
                      'type = "forbidden"\nsource_modules = ["assay.objects"]\n'
                      'forbidden_modules = ["assay.hashing"]\n')
    proc = subprocess.run([*LINT, "--config", str(config)], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 1 and "BROKEN" in proc.stdout, proc.stdout + proc.stderr
