"""A real OpenMM run job killed mid-simulation resumes to the uninterrupted digest.

Real Snakemake, real `python -m assay.jobs run` processes, real signals: SIGTERM (the job
asks the runner to checkpoint, as at a walltime) and SIGKILL (no warning: the runner
resumes from its last periodic checkpoint).
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

pytest.importorskip("openmm")
pytest.importorskip("MDAnalysis")

from assay import read_ref  # noqa: E402
from watch_helpers import Watched, snakemake_command, snakemake_watched  # noqa: E402
from workflow_helpers import jobs_run, write_config  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.openmm]

# Long enough that the run is still going when the test sees step 1000: this machine ran
# 8,100 steps/s (6,000 steps ended before the test looked, 2026-12-06)
STEPS = 30000
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
    snakemake_watched(root)
    return root


def reached_step(root: Path, at_least: int) -> Path | None:
    """The run's work directory once its progress.json says ``at_least`` steps are done."""
    for progress in (root / "store" / "work").glob("*/progress.json"):
        try:
            if json.loads(progress.read_text())["done"] >= at_least:
                return progress.parent
        except (FileNotFoundError, ValueError, KeyError):
            pass
    return None


def run_state(root: Path) -> str:
    """What the run's work directory shows, for failure messages."""
    works = sorted((root / "store" / "work").glob("*/"))
    if not works:
        return "no work directory yet (the run job has not started)"
    return "; ".join(
        f"{work.name[:12]}: state {_text(work / 'state.json')}, "
        f"progress {_text(work / 'progress.json')}" for work in works)


def _text(path: Path) -> str:
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        return "(none yet)"


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_killed_openmm_job_resumes_to_the_uninterrupted_digest(uninterrupted, tmp_path, signum):
    root = tmp_path / "study"
    write_config(root, CONFIG)
    # No deadline: waits as long as the run progresses (output, files changing under the
    # study), so a loaded machine only makes it slower; a hang or an early end fails.
    with Watched(snakemake_command(root), cwd=root, watch=[root],
                 describe=lambda: run_state(root)) as watched:
        work = watched.wait_until(lambda: reached_step(root, 1000), "the run to reach step 1000")
        os.kill(json.loads((work / "state.json").read_text())["pid"], signum)
        first_run = watched.wait()
    assert first_run.returncode != 0, first_run.stdout[-4000:] + first_run.stderr[-4000:]
    first = (root / LOG).read_text()
    if signum == signal.SIGTERM:
        assert "stopped on request at step" in first
    assert not (root / RUN_REF).exists()

    rerun = snakemake_watched(root)
    assert ("run", RUN_REF) in jobs_run(rerun)
    log = (root / LOG).read_text()
    resumed = [line for line in log.splitlines() if "resuming from step" in line]
    assert resumed, log
    step = int(resumed[0].split("resuming from step ")[1].split()[0])
    assert 0 < step < STEPS
    assert read_ref(root / RUN_REF).digest == read_ref(uninterrupted / RUN_REF).digest
    assert list((root / "store" / "work").iterdir()) == []


def test_figures_of_a_one_replicate_openmm_study(uninterrupted):
    """The OpenMM study's figures through what they are drawn from: one replicate has no
    interval (and says so), the title carries the unit, the Rg series its t0."""
    import copy

    from assay import ArtifactStore
    from assay.pipeline.plotting import load_plot_context, series_panels, summary_panels
    from assay.pipeline.stages import plot_spec
    from assay.pipeline.statistics import INTERVAL_NO_SPREAD
    from assay.pipeline.workflow import WorkflowPlan

    plan = WorkflowPlan(copy.deepcopy(CONFIG), workdir=uninterrupted)
    store = ArtifactStore(uninterrupted / "store")
    ctx = load_plot_context(store, plot_spec(plan.study, "rgyr"),
                            read_ref(uninterrupted / "results" / "comparisons" / "rgyr.json").digest)
    [rg, _] = summary_panels(ctx)
    assert rg["title"] == "radius of gyration (Å)"
    [row] = rg["conditions"]
    assert (row["n"], row["low"], row["high"], row["method"]) == (1, None, None,
                                                                  INTERVAL_NO_SPREAD)
    [panel] = series_panels(ctx)
    [run] = panel["runs"]
    assert 0 <= run["t0"] < run["values"].size == STEPS // 100
    for name in ("summary", "detail"):
        assert (uninterrupted / "results" / "plots" / "rgyr" / f"{name}.png").stat().st_size
