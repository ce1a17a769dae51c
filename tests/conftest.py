"""Fixtures shared by several test files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Subprocesses (snakemake and its jobs, `assay`, `python -c`) import this checkout's library
# whatever PYTHONPATH the tests were started with: a relative `PYTHONPATH=src` means
# nothing in another working directory, and an editable install may point elsewhere.
_SRC = str(Path(__file__).resolve().parents[1] / "src")
os.environ["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(
    [_SRC] + [os.path.abspath(p) for p in os.environ.get("PYTHONPATH", "").split(os.pathsep)
              if p]))

from study_helpers import Study, make_study


@pytest.fixture
def study(tmp_path: Path) -> Study:
    """A small finished study (runs, replicates, conditions, comparison, refs, actions)."""
    return make_study(tmp_path)
