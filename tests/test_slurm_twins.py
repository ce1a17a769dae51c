"""The same run submitted twice to the loopback SLURM cluster while the first job lives:
one computes, the other waits for it (naming its SLURM job) and takes its result."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from assay import read_ref
from test_one_live_attempt import _one_trace, _run_spec, _study, _wait_for_claim
from test_slurm import slurm_cluster, slurm_env  # noqa: F401  (autouse: skip/fail without it)
from workflow_helpers import REPO


@pytest.mark.slow
@pytest.mark.slurm
def test_the_same_run_submitted_twice_to_slurm_runs_once(tmp_path):
    """A resubmission while the first job is alive: the second SLURM job waits, names the
    first one's SLURM job id, and ends with its result from the action cache."""
    import shlex

    root = _study(tmp_path / "study", steps=200)
    spec = _run_spec(root)
    env = slurm_env({"PYTHONPATH": os.pathsep.join([str(REPO / "src"),
                                                   os.environ.get("PYTHONPATH", "")])})

    def submit(n: int) -> str:
        command = (f"cd {shlex.quote(str(root))} && {shlex.quote(sys.executable)} -m "
                   f"assay.jobs run --store store --spec {shlex.quote(spec)} "
                   f"--output out{n}/a/1.json --log job{n}.log --claim-wait 240 "
                   f"> job{n}.log 2>&1")
        proc = subprocess.run(["sbatch", "--parsable", "-c", "1", "-J", f"twin{n}",
                               "-o", str(root / f"slurm{n}.out"), "--wrap", command],
                              env=env, capture_output=True, text=True, check=True, timeout=60)
        return proc.stdout.strip().split(";")[0]

    first = submit(1)
    _wait_for_claim(root, lambda: True)
    second = submit(2)
    deadline = time.monotonic() + 300   # only a hang fails this
    refs = [root / f"out{n}" / "a" / "1.json" for n in (1, 2)]
    while not all(r.exists() for r in refs):
        assert time.monotonic() < deadline, [p.read_text() for p in root.glob("job*.log")]
        time.sleep(0.2)
    logs = {n: (root / f"job{n}.log").read_text() for n in (1, 2)}
    assert f"SLURM job {first}" in logs[2] and "waiting for run a/1 by" in logs[2], logs[2]
    assert "cache hit" in logs[2] and "step 1\n" not in logs[2], logs[2]
    digests = [read_ref(r).digest for r in refs]
    assert digests[0] == digests[1]
    _one_trace(root, digests[0], 200)
    print(f"\nSLURM twins: job {second} waited for job {first} and hit the cache")
