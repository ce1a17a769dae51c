"""An adaptive study makes the same decisions and digests every way it is run: rerun from
scratch and SIGKILLed in the middle of a batch, then resumed with the documented recipe
(--unlock, then --rerun-incomplete); and through the loopback SLURM cluster.

The study: the small demo, gyration only, replicates {min 2, batch 2, max 6} until the
mean_rg CI half-width is <= 0.3 in both conditions. Look 1 (n = 2: 0.50 and 1.86) goes
on, look 2 (n = 4: 0.27 and 0.26) stops: two looks, one batch between them, below max.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from reliability_helpers import snakemake_command
from workflow_helpers import digests, snakemake, write_config
from test_adaptive import CATALOG, _config

pytestmark = pytest.mark.slow

HALF_WIDTH, MAX = 0.3, 6


def _decisions(root: Path) -> dict[str, bytes]:
    """Every look's decision file, as bytes (it holds the decision artifact's digest)."""
    return {p.name: p.read_bytes() for p in sorted((root / "results" / "looks").glob("*.json"))}


def _outcome(root: Path) -> tuple[dict[str, str], dict[str, bytes]]:
    return digests(root), _decisions(root)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[dict[str, str], dict[str, bytes]]:
    """The study run once, uninterrupted, locally."""
    root = tmp_path_factory.mktemp("adaptive-reference")
    write_config(root, _config(HALF_WIDTH, maximum=MAX))
    snakemake(root, CATALOG)
    found = _outcome(root)
    # what the design says it does: two looks, stop at 4 on the precision rule
    assert sorted(found[1]) == ["1.json", "2.json"]
    assert sorted(p for p in found[0] if "/runs/" in p) == [
        f"results/runs/{c}/{r}.json" for c in ("free", "strong") for r in (1, 2, 3, 4)]
    assert sorted(p for p in found[0] if "/decisions/" in p) == [
        "results/decisions/1.json", "results/decisions/2.json"]
    return found


def _kill_group(proc: subprocess.Popen) -> bool:
    """SIGKILL snakemake and every job it started; True if it was still running."""
    running = proc.poll() is None
    try:
        os.killpg(proc.pid, signal.SIGKILL)   # the session this test started, by its id
    except ProcessLookupError:
        pass
    proc.wait(30)
    return running


def test_rerun_from_scratch_killed_in_a_batch_and_resumed_makes_the_same_decisions(
        reference, tmp_path):
    """The study again, in a new directory with a new store (nothing cached): SIGKILLed
    with its jobs while the second batch runs, then the recipe. Every decision file and
    every ref is the uninterrupted first run's. (A rerun in place runs nothing and keeps
    the decisions: tests/test_adaptive.py.)"""
    write_config(tmp_path, _config(HALF_WIDTH, maximum=MAX))
    results = tmp_path / "results"
    proc = subprocess.Popen(snakemake_command(tmp_path, CATALOG), cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    # Kill once the second batch has started: look 1 said go on and a replicate 3 run
    # exists, while look 2 has not been made.
    deadline = time.monotonic() + 180
    while not list(results.glob("runs/*/3.json")) and proc.poll() is None:
        assert time.monotonic() < deadline, "snakemake made no progress"
        time.sleep(0.01)
    assert _kill_group(proc), "snakemake finished before the kill"
    assert (results / "looks" / "1.json").is_file()
    assert not (results / "looks" / "2.json").exists(), "killed after the batch"
    assert not (results / "conditions").exists()

    snakemake(tmp_path, "--unlock", timeout=120)   # the recipe (README): unlock, then
    snakemake(tmp_path, CATALOG, "--rerun-incomplete")   # rerun what was incomplete
    assert _outcome(tmp_path) == reference


@pytest.mark.slurm
def test_through_slurm_makes_the_same_decisions_and_digests(reference, tmp_path):
    """The runs and collects go to SLURM in replicate groups, the looks run on this host:
    two rounds of SLURM jobs, one per batch."""
    from test_slurm import check_ok, jobcomp_records, snakemake_slurm

    if shutil.which("sbatch") is None and os.environ.get("ASSAY_REQUIRE_SLURM") != "1":
        pytest.skip("no SLURM client (sbatch) installed; `bash tests/slurm/cluster.sh up`")
    status = subprocess.run(["bash", str(Path(__file__).parent / "slurm" / "cluster.sh"),
                             "status"], capture_output=True, text=True, timeout=60)
    if status.returncode != 0:
        message = f"the loopback SLURM cluster is not up:\n{status.stdout}{status.stderr}"
        if os.environ.get("ASSAY_REQUIRE_SLURM") == "1":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    write_config(tmp_path, _config(HALF_WIDTH, maximum=MAX))
    run = check_ok(snakemake_slurm(tmp_path, CATALOG))
    assert run.submitted, "no job went to SLURM"
    deadline = time.monotonic() + 15
    while len(jobcomp_records(run.run_id)) < len(run.submitted):
        assert time.monotonic() < deadline, "SLURM has no record of the study's jobs"
        time.sleep(0.5)
    assert _outcome(tmp_path) == reference
