"""A real OpenMM run job killed mid-simulation resumes to the uninterrupted digest.

Real Snakemake, real `python -m assay.jobs run` processes, real signals: SIGTERM (the job
asks the runner to checkpoint, as at a walltime) and SIGKILL (no warning: the runner
resumes from its last periodic checkpoint).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("openmm")
pytest.importorskip("MDAnalysis")

from assay import read_ref  # noqa: E402
from workflow_helpers import REPO, jobs_run, snakemake, write_config  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.openmm]

STEPS = 6000
CONFIG = {
    "seed": 5,
    "conditions": [{"label": "T300", "params": {"temperature_k": 300.0}}],
    "control": "T300",
    "replicates": 1,
    "runner": {"plugin": "openmm", "grace_seconds": 20,
               "settings": {"structure": "MDAnalysisTests:data/A6PA6_alpha.pdb",
                            "solvent": "vacuum", "steps": STEPS, "report_interval": 100,
                            "checkpoint_interval": 500, "platform": "CPU", "threads": 1}},
    "analyses": {"rgyr": {"plugin": "md_rgyr", "settings": {"select": "protein"}}},
    "aggregation": {"min_replicates": 1},
}
RUN_REF = "results/runs/T300/1.json"
LOG = "results/logs/run/T300/1.log"


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("openmm-uninterrupted")
    write_config(root, CONFIG)
    snakemake(root)
    return root


def wait_for_step(root: Path, at_least: int, timeout: float = 120) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for progress in (root / "store" / "work").glob("*/progress.json"):
            try:
                if json.loads(progress.read_text())["done"] >= at_least:
                    return progress.parent
            except (FileNotFoundError, ValueError):
                pass
        time.sleep(0.05)
    raise AssertionError(f"the run never reached step {at_least}")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_killed_openmm_job_resumes_to_the_uninterrupted_digest(uninterrupted, tmp_path, signum):
    root = tmp_path / "study"
    write_config(root, CONFIG)
    command = [sys.executable, "-m", "snakemake", "--snakefile",
               str(REPO / "workflow" / "Snakefile"), "--directory", str(root), "--cores", "2",
               "--workflow-profile", "none"]
    proc = subprocess.Popen(command, cwd=root, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        work = wait_for_step(root, 1000)
        os.kill(json.loads((work / "state.json").read_text())["pid"], signum)
        proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode != 0
    first = (root / LOG).read_text()
    if signum == signal.SIGTERM:
        assert "stopped on request at step" in first
    assert not (root / RUN_REF).exists()

    rerun = snakemake(root)
    assert ("run", RUN_REF) in jobs_run(rerun)
    log = (root / LOG).read_text()
    resumed = [line for line in log.splitlines() if "resuming from step" in line]
    assert resumed, log
    step = int(resumed[0].split("resuming from step ")[1].split()[0])
    assert 0 < step < STEPS
    assert read_ref(root / RUN_REF).digest == read_ref(uninterrupted / RUN_REF).digest
    assert list((root / "store" / "work").iterdir()) == []
