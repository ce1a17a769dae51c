"""Runs that survive being killed: real Snakemake, real job processes, real signals.

A deterministic checkpointing "simulation" (a Python script run by the shell runner)
advances one step every 50 ms, writes its checkpoint atomically after each step and
resumes from it. Killed mid-run (SIGTERM as at a walltime, or SIGKILL), the next attempt
must resume, and the run's artifact must equal an uninterrupted run's.
"""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from assay import ArtifactStore, read_ref
from workflow_helpers import REPO, jobs_run, snakemake, write_config

pytestmark = pytest.mark.slow

SIM = textwrap.dedent('''
    """Deterministic toy engine: STEPS steps, a checkpoint after each, resumable."""
    import hashlib, json, os, signal, sys, time

    STEPS = int(sys.argv[1])
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    state, step = "seed-" + os.environ["ASSAY_SEED"], 0
    if os.path.exists("ckpt.json"):
        ckpt = json.load(open("ckpt.json"))
        state, step = ckpt["state"], ckpt["step"]
        print(f"resuming from step {step} (attempt {os.environ['ASSAY_ATTEMPT']}, "
              f"ASSAY_RESUME={os.environ.get('ASSAY_RESUME')})", flush=True)
    while step < STEPS:
        time.sleep(0.05)
        state = hashlib.sha256(f"{state}:{step}".encode()).hexdigest()
        step += 1
        with open("ckpt.tmp", "w") as f:
            json.dump({"state": state, "step": step}, f)
            f.flush(); os.fsync(f.fileno())
        os.replace("ckpt.tmp", "ckpt.json")
        print(f"step {step}", flush=True)
        if stop:
            print(f"SIGTERM: checkpoint at step {step}, exiting", flush=True)
            sys.exit(143)
    with open("result.txt", "w") as f:
        f.write(f"{state}\\n{os.environ['OMP_NUM_THREADS']} {os.environ['ASSAY_THREADS']}\\n")
''')

ANALYSIS = textwrap.dedent('''
    from assay import METRICS

    class Lines:
        def collect(self, ctx):
            path = ctx.artifact_store.validate_sidecar(ctx.run_sidecar("result"))
            return ctx.result(payload={METRICS: {"lines": float(len(path.read_text().splitlines()))}})
''')

CONFIG = {
    "seed": 11,
    "conditions": [{"label": "a", "params": {}}, {"label": "b", "params": {}}],
    "control": "a",
    "replicates": 1,
    "runner": {"plugin": "shell", "grace_seconds": 10,
               "settings": {"command": f"{sys.executable} {{settings[sim]}} {{settings[steps]}}",
                            "sim": "SIMPATH", "steps": 60, "outputs": ["result.txt"]}},
    "analyses": {"lines": {"plugin": "toy_analysis:Lines"}},
    "aggregation": {"min_replicates": 1},
    "resources": {"run": {"threads": 2}},
}


# One copy of the engine for every study: its path is part of the runner settings, so of
# the digests that the tests compare across studies.
SIM_PATH = Path()


@pytest.fixture(scope="module", autouse=True)
def engine(tmp_path_factory):
    global SIM_PATH
    SIM_PATH = tmp_path_factory.mktemp("engine") / "sim.py"
    SIM_PATH.write_text(SIM)


def make_study(root: Path, **changes) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "toy_analysis.py").write_text(ANALYSIS)
    config = copy.deepcopy(CONFIG)
    config["runner"]["settings"]["sim"] = str(SIM_PATH)
    for key, value in changes.items():
        config[key] = value
    write_config(root, config)
    return root


def env_for(root: Path) -> dict[str, str]:
    return {"PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}


def run_digests(root: Path) -> dict[str, str]:
    return {p.stem: read_ref(p).digest for p in (root / "results" / "runs" / "a").glob("*.json")}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    root = make_study(tmp_path_factory.mktemp("uninterrupted"))
    snakemake(root, env=env_for(root))
    return root


def start(root: Path, *args: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "workflow" / "Snakefile"),
               "--directory", str(root), "--cores", "2", "--workflow-profile", "none", *args]
    return subprocess.Popen(command, cwd=root, env={**os.environ, **env_for(root)},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def wait_for_step(root: Path, at_least: int, timeout: float = 60) -> Path:
    """The work directory of condition a's run once its checkpoint passed ``at_least``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for state in (root / "store" / "work").glob("*/state.json"):
            if json.loads(state.read_text()).get("condition") != "a":
                continue
            ckpt = state.parent / "files" / "ckpt.json"
            try:
                if json.loads(ckpt.read_text())["step"] >= at_least:
                    return state.parent
            except (FileNotFoundError, ValueError):
                pass
        time.sleep(0.05)
    raise AssertionError(f"run a/1 never reached step {at_least}")


def job_pid(work: Path) -> int:
    return json.loads((work / "state.json").read_text())["pid"]


def test_threads_reach_the_command_and_workdirs_go_once_published(uninterrupted):
    store = ArtifactStore(uninterrupted / "store")
    run = store.read_run_result(uninterrupted / "results" / "runs" / "a" / "1.json")
    text = store.validate_sidecar(run.sidecar(kind="result")).read_text()
    assert text.splitlines()[1] == "2 2"          # OMP_NUM_THREADS and ASSAY_THREADS
    assert list((uninterrupted / "store" / "work").iterdir()) == []
    log = (uninterrupted / "results" / "logs" / "run" / "a" / "1.log").read_text()
    assert "step 60" in log and "attempt 1 in" in log and "resuming" not in log


@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
def test_killed_run_resumes_to_the_uninterrupted_digest(uninterrupted, tmp_path, how):
    root = make_study(tmp_path / "study")
    proc = start(root)
    try:
        work = wait_for_step(root, 15)
        pid = job_pid(work)
        if how == "SIGTERM":        # a walltime: the job forwards it and waits the grace
            os.kill(pid, signal.SIGTERM)
        else:   # the node goes away: the job and its command die at once, no checkpoint
            sims = subprocess.run(["pgrep", "-f", f"{SIM_PATH} "], capture_output=True,
                                  text=True).stdout.split()
            groups = {os.getpgid(int(sim)) for sim in sims}   # the command's own group
            assert groups and os.getpgid(pid) not in groups
            os.kill(pid, signal.SIGKILL)
            for group in groups:
                os.killpg(group, signal.SIGKILL)
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode != 0
    ckpt = json.loads((work / "files" / "ckpt.json").read_text())
    assert 15 <= ckpt["step"] < 60, "the kill came too late to test anything"
    log = root / "results" / "logs" / "run" / "a" / "1.log"
    if how == "SIGTERM":
        text = log.read_text()
        assert "received signal 15" in text
        assert f"SIGTERM: checkpoint at step {ckpt['step']}, exiting" in text
        assert "stopped by SIGTERM" in text and "is kept" in text

    rerun = snakemake(root, env=env_for(root))
    assert ("run", "results/runs/a/1.json") in jobs_run(rerun)
    text = log.read_text()
    assert f"resuming from step {ckpt['step']} (attempt 2, ASSAY_RESUME=1)" in text
    if how == "SIGTERM":    # the stopped attempt's log outlives Snakemake's cleanup
        assert (text.index("---- the log of attempt 1 (failed or stopped) ----")
                < text.index("received signal 15")
                < text.index("---- end of the log of attempt 1 ----")
                < text.index("resuming from step"))
    assert run_digests(root) == run_digests(uninterrupted)
    assert list((root / "store" / "work").iterdir()) == []


def test_failed_command_quotes_its_log_and_keeps_its_workdir(tmp_path):
    root = make_study(tmp_path / "study")
    config_path = root / "config" / "config.yaml"
    import yaml

    config = yaml.safe_load(config_path.read_text())
    config["runner"]["settings"]["command"] = "echo about to fail; echo details >&2; exit 3"
    for unused in ("sim", "steps"):   # a setting no template uses is refused
        del config["runner"]["settings"][unused]
    config_path.write_text(yaml.safe_dump(config))
    proc = snakemake(root, "--keep-going", check=False, env=env_for(root))
    assert proc.returncode != 0
    log = (root / "results" / "logs" / "run" / "a" / "1.log").read_text()
    assert "about to fail" in log and "details" in log
    assert "exited with 3: echo about to fail; echo details >&2; exit 3; its output is in " \
        "results/logs/run/a/1.log\nlast lines:" in log
    [work] = [w for w in (root / "store" / "work").iterdir()
              if json.loads((w / "state.json").read_text())["condition"] == "a"]
    assert (work / "files").is_dir()

    listed = subprocess.run(["assay", "--store", str(root / "store"), "--results",
                             str(root / "results"), "gc", "--work-grace", "0", "--json"],
                            capture_output=True, text=True, check=True)
    report = json.loads(listed.stdout)
    assert {w["key"] for w in report["work_dirs"]} >= {work.name}
    assert work.is_dir()   # a dry run
    subprocess.run(["assay", "--store", str(root / "store"), "--results", str(root / "results"),
                    "gc", "--work-grace", "0", "--delete"], capture_output=True, check=True)
    assert not work.exists()


def test_changing_resources_reruns_nothing(uninterrupted, tmp_path):
    import shutil

    import yaml

    root = tmp_path / "study"
    shutil.copytree(uninterrupted, root, symlinks=True)
    config_path = root / "config" / "config.yaml"
    config = yaml.safe_load(config_path.read_text())
    config["resources"] = {"run": {"threads": 1, "mem_mb": 123, "runtime": 9},
                           "collect": {"mem_mb": 50}}
    config["runner"]["grace_seconds"] = 5
    config["conditions"][1]["resources"] = {"mem_mb": 77}
    config_path.write_text(yaml.safe_dump(config))
    proc = snakemake(root, env=env_for(root))
    assert jobs_run(proc) == set()


BAD_RESOURCES = [   # (resources, the message; snakemake prints the same, not a schema dump)
    ({"run": {"thread": 1}}, "config key resources.run: unknown key 'thread' (did you mean "
                             "'threads'?); known keys: gpu, mem_mb, runtime, slurm_extra, "
                             "slurm_partition, threads"),
    ({"collect": {"mem_mb": 0}}, "config key resources.collect.mem_mb: 0 is less than the "
                                 "minimum of 1"),
    ({"plot": {"runtime": -5}}, "config key resources.plot.runtime: -5 is less than the "
                                "minimum of 1"),
    ({"gpus": {}}, "config key resources: unknown key 'gpus'; known keys: aggregate, collect, "
                   "compare, plot, run"),
]
BAD_RESOURCES = [(r, m, [m]) for r, m in BAD_RESOURCES]


@pytest.mark.parametrize("resources, message, _", BAD_RESOURCES)
def test_bad_resources_have_their_exact_error(resources, message, _):
    from assay import ConfigError
    from assay.pipeline.config import Study

    config = copy.deepcopy(CONFIG)
    config["resources"] = resources
    with pytest.raises(ConfigError) as info:
        Study.from_config(config, check_plugins=False)
    assert str(info.value) == message


@pytest.mark.parametrize("resources, _, snakemake_says", BAD_RESOURCES + [
    ({"run": {"threads": 3}}, None,
     ["config key resources.run.threads: 3 threads is more than the 2 cores this run may use "
      "(--cores, or `cores:` in the profile); lower it or raise the cores"])])
def test_bad_resources_stop_snakemake_before_any_job(tmp_path, resources, _, snakemake_says):
    root = make_study(tmp_path / "study", resources=resources)
    proc = snakemake(root, check=False, env=env_for(root))
    assert proc.returncode != 0
    for fragment in snakemake_says:
        assert fragment in proc.stdout + proc.stderr
    assert not (root / "results").exists() and not (root / "store").exists()
