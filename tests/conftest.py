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


# Longest files first (pyproject passes --no-loadscope-reorder): pytest-xdist's loadfile
# mode hands each worker one file at a time in collection order, so the files that take
# minutes start at once instead of last. By default xdist orders files by their number of
# tests, which put the SLURM walltime campaign (7 tests, a 170 s fixture) near the end,
# where it alone set the wall time. Rough serial times from CI's --durations, longest first.
LONGEST_FIRST = (
    "test_slurm_campaign.py", "test_slurm_faults.py", "test_md.py", "test_init.py",
    "test_shared_store.py", "test_slurm.py", "test_adaptive_replay.py",
    "test_reliability_kill.py", "test_status.py",
    "test_one_live_attempt.py", "test_store_proofs.py", "test_templates.py",
    "test_code_change_reruns.py", "test_cli.py", "test_slurm_twins.py",
    "test_openmm_workflow.py", "test_status_stale.py", "test_figures.py", "test_adaptive.py",
    "test_openmm_code_reruns.py", "test_object_index.py",
)


def pytest_collection_modifyitems(session, config, items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))   # stable
