"""Fixtures shared by several test files."""

from __future__ import annotations

from pathlib import Path

import pytest

from study_helpers import Study, make_study


@pytest.fixture
def study(tmp_path: Path) -> Study:
    """A small finished study (runs, replicates, conditions, comparison, refs, actions)."""
    return make_study(tmp_path)
