"""The layer contracts in pyproject.toml ([tool.importlinter]) hold: the command line over
tools over the pipeline over the store, the store imports nothing of studies, built-in
plugins import the public API; and no two modules import each other, even through others."""

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
    assert "3 kept, 0 broken" in proc.stdout, proc.stdout


def test_the_checker_sees_a_broken_contract(tmp_path: Path):
    """The same tool on a contract this code breaks (objects imports hashing) says so: the
    check above is an analysis of the real imports, not a formality."""
    config = tmp_path / "broken.toml"
    config.write_text('[tool.importlinter]\nroot_package = "assay"\n\n'
                      '[[tool.importlinter.contracts]]\nname = "objects without hashing"\n'
                      'type = "forbidden"\nsource_modules = ["assay.store.objects"]\n'
                      'forbidden_modules = ["assay.store.hashing"]\n')
    proc = subprocess.run([*LINT, "--config", str(config)], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 1 and "BROKEN" in proc.stdout, proc.stdout + proc.stderr


def test_no_import_cycles():
    """Function-level imports included: a cycle hidden in a function is still a knot a
    newcomer has to untie (atomic <-> sharing was one)."""
    import grimp

    graph = grimp.build_graph("assay")
    cycles = []
    for module in sorted(graph.modules):
        for imported in graph.find_modules_directly_imported_by(module):
            chain = graph.find_shortest_chain(importer=imported, imported=module)
            if chain:
                cycles.append(" -> ".join((module, *chain)))
    assert not cycles, "import cycles:\n" + "\n".join(sorted(cycles))
