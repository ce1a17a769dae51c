"""Upgrading assay recomputes no OpenMM simulation unless the OpenMM runner changed (issue 23).

A finished OpenMM study (the workflow tests' settings, fewer steps), then edits outside the
OpenMM runner's code, in a copy of the package as tests/test_code_change_reruns.py does:
another runner, the statistics, the plotting. Which jobs recomputed is read from the jobs'
own logs, not from the plan.
"""

from __future__ import annotations

import copy
import shutil
from collections import Counter

import pytest

pytest.importorskip("openmm")
pytest.importorskip("MDAnalysis")

from assay import ArtifactStore  # noqa: E402
from test_code_change_reruns import _clear_logs, _edit, _ran, _recomputed, _snakemake  # noqa: E402
from test_openmm_workflow import CONFIG  # noqa: E402
from workflow_helpers import REPO, write_config  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.openmm]

SMALL = copy.deepcopy(CONFIG)
SMALL["runner"]["settings"]["steps"] = 1000   # a multiple of report_interval (100)


def test_edits_outside_the_openmm_runner_recompute_no_simulation(tmp_path):
    lib = tmp_path / "lib"
    shutil.copytree(REPO / "src" / "assay", lib / "assay",
                    ignore=shutil.ignore_patterns("__pycache__"))
    study = tmp_path / "study"
    write_config(study, SMALL)
    ArtifactStore(study / "store").close()
    _snakemake(lib, study)
    assert _recomputed(study)["run"] == 1   # the simulation ran once
    _clear_logs(study)

    _edit(lib, "pipeline/runners.py", "class ShellRunner:\n", "class ShellRunner:\n    # edited\n")
    _edit(lib, "pipeline/statistics.py", "def welch(", "# edited\ndef welch(")
    _edit(lib, "pipeline/plotting.py", "def save_figure(", "# edited\ndef save_figure(")
    ran = _ran(_snakemake(lib, study))
    assert ran["run"] == 0 and ran["collect"] == 0, ran
    assert ran["aggregate"] == 1 and ran["compare"] == 1, ran   # statistics changed
    recomputed = _recomputed(study)
    assert recomputed["run"] == 0 and recomputed["collect"] == 0, recomputed
    assert recomputed == Counter({"aggregate": 1, "compare": 1})
