"""`assay status` never calls a stale result done (issue 23, item 3): after a config or
code change its stale counts per stage equal what `snakemake -n` schedules, with a reason.

Code changes are made in a copy of the package (PYTHONPATH and the copy's Snakefile)."""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from assay import ArtifactStore
from workflow_helpers import REPO, SMALL_CONFIG, jobs_run, write_config

pytestmark = pytest.mark.slow

STAGE_OF = {"plot_summary": "plot", "plot_detail": "plot"}


def _env(lib: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(lib)}


def _snakemake(lib: Path, study: Path, *args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "snakemake", "--snakefile",
               str(lib / "assay" / "snakemake_workflow" / "Snakefile"), "--directory",
               str(study), "--cores", "2", "--workflow-profile", "none", *args]
    proc = subprocess.run(command, cwd=study, capture_output=True, text=True, env=_env(lib),
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


def _scheduled(lib: Path, study: Path) -> Counter:
    """Jobs per stage that `snakemake -n` would run."""
    return Counter(STAGE_OF.get(rule, rule) for rule, _ in jobs_run(_snakemake(lib, study, "-n")))


def _status(lib: Path, study: Path) -> dict:
    proc = subprocess.run([sys.executable, "-m", "assay.cli", "status", "--json", "--no-slurm"],
                          cwd=study, capture_output=True, text=True, env=_env(lib), timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _not_done(status: dict) -> Counter:
    return Counter({stage: c["stale"] + c["pending"] for stage, c in status["stages"].items()
                    if c["stale"] + c["pending"]})


def _reasons(status: dict) -> Counter:
    return Counter((job["stage"], job["why"]) for job in status["stale"])


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> tuple[Path, Path]:
    lib = tmp_path_factory.mktemp("lib")
    shutil.copytree(REPO / "src" / "assay", lib / "assay",
                    ignore=shutil.ignore_patterns("__pycache__"))
    study = tmp_path_factory.mktemp("study")
    write_config(study, SMALL_CONFIG)
    ArtifactStore(study / "store").close()   # marked before two jobs race to mark it
    _snakemake(lib, study)
    return lib, study


@pytest.fixture
def copies(finished, tmp_path) -> tuple[Path, Path]:
    lib, study = finished
    shutil.copytree(lib, tmp_path / "lib")
    shutil.copytree(study, tmp_path / "study", symlinks=True)
    return tmp_path / "lib", tmp_path / "study"


def test_a_finished_study_is_done(copies):
    lib, study = copies
    status = _status(lib, study)
    assert status["counts"]["done"] == status["total"] and not status["stale"]
    assert _scheduled(lib, study) == Counter()


def test_one_conditions_params(copies):
    lib, study = copies
    config = copy.deepcopy(SMALL_CONFIG)
    config["conditions"][1]["params"]["surface_epsilon"] = 2.0
    write_config(study, config)
    status = _status(lib, study)
    assert _not_done(status) == _scheduled(lib, study) == Counter(
        {"run": 2, "collect": 4, "aggregate": 2, "compare": 2, "plot": 4, "catalog": 1})
    assert _reasons(status)[("run", "config: params")] == 2
    assert _reasons(status)[("collect", "upstream run stale")] == 4


def test_one_analysis_settings(copies):
    lib, study = copies
    config = copy.deepcopy(SMALL_CONFIG)
    config["analyses"]["gyration"]["settings"]["equilibration_frames"] = 6
    write_config(study, config)
    status = _status(lib, study)
    assert _not_done(status) == _scheduled(lib, study)
    assert _reasons(status)[("collect", "config: settings, config: settings_fingerprint")] == 4
    assert status["stages"]["run"]["stale"] == 0


@pytest.mark.parametrize("module, old, stale_why", [
    ("pipeline/plotting.py", "def save_figure(", ("plot", "code of assay.pipeline.plotting + assay.pipeline.metric_info")),
    ("pipeline/statistics.py", "def welch(",
     ("aggregate", "code of assay.pipeline.aggregation + assay.pipeline.statistics + assay.pipeline.convergence + "
                   "assay.pipeline.diagnostics + assay.pipeline.metric_info")),
])
def test_framework_code(copies, module, old, stale_why):
    lib, study = copies
    path = lib / "assay" / module
    path.write_text(path.read_text().replace(old, "# edited\n" + old, 1))
    status = _status(lib, study)
    assert _not_done(status) == _scheduled(lib, study)
    assert stale_why in _reasons(status)
    assert status["stages"]["run"]["stale"] == status["stages"]["collect"]["stale"] == 0


def test_the_runners_code_and_the_storage_format(copies):
    lib, study = copies
    path = lib / "assay" / "pipeline" / "runners.py"
    path.write_text(path.read_text().replace(
        "    def run(self, ctx: RunContext) -> RunArtifact:\n        from ..demo.physics",
        "    def run(self, ctx: RunContext) -> RunArtifact:\n        # edited\n"
        "        from ..demo.physics", 1))
    status = _status(lib, study)
    assert _not_done(status) == _scheduled(lib, study)
    assert _reasons(status)[("run", "code of polymer_langevin")] == 4

    keys = lib / "assay" / "pipeline" / "keys.py"
    keys.write_text(keys.read_text().replace("STORAGE_FORMAT = 1\n", "STORAGE_FORMAT = 2\n"))
    status = _status(lib, study)
    assert _not_done(status) == _scheduled(lib, study)
    assert _reasons(status)[("run", "code of polymer_langevin, storage format")] == 4


def _why(lib: Path, study: Path, target: str, *args: str) -> list[str]:
    proc = subprocess.run([sys.executable, "-m", "assay.cli", "status", "--no-slurm", "--why",
                           target, *args], cwd=study, capture_output=True, text=True,
                          env=_env(lib), timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.splitlines()


def test_why_names_what_differs_key_by_key(copies):
    lib, study = copies
    assert _why(lib, study, "runs/strong/1") == [
        "results/runs/strong/1.json (run strong/1): done", "  up to date"]

    config = copy.deepcopy(SMALL_CONFIG)
    config["conditions"][1]["params"]["surface_epsilon"] = 2.0
    config["analyses"]["gyration"]["settings"]["equilibration_frames"] = 6
    write_config(study, config)
    assert _why(lib, study, "results/runs/strong/1.json") == [
        "results/runs/strong/1.json (run strong/1): stale",
        "  params.surface_epsilon: 3.0 → 2.0"]
    assert _why(lib, study, "replicates/gyration/strong/2") == [
        "results/replicates/gyration/strong/2.json (collect gyration/strong/2): stale",
        "  params.surface_epsilon: 3.0 → 2.0",
        "  settings.equilibration_frames: 5 → 6",
        "  upstream results/runs/strong/2.json is stale: it runs first, then this job"]
    assert _why(lib, study, "replicates/gyration/free/1") == [
        "results/replicates/gyration/free/1.json (collect gyration/free/1): stale",
        "  settings.equilibration_frames: 5 → 6"]

    write_config(study, SMALL_CONFIG)
    path = lib / "assay" / "pipeline" / "runners.py"
    path.write_text(path.read_text().replace(
        "    def run(self, ctx: RunContext) -> RunArtifact:\n        from ..demo.physics",
        "    def run(self, ctx: RunContext) -> RunArtifact:\n        # edited\n"
        "        from ..demo.physics", 1))
    from assay import read_ref

    store = ArtifactStore(study / "store")   # the digest the run was made with
    made = store.read_artifact(read_ref(study / "results/runs/free/1.json").digest)
    store.close()
    old_digest = made.provenance["code_digest"]
    new = subprocess.run(   # the edited runner's digest, from the edited package
        [sys.executable, "-c", "from assay.pipeline.plugins import code_digest, resolve_runner; "
         "print(code_digest(resolve_runner('polymer_langevin'), {}))"],
        capture_output=True, text=True, env=_env(lib), check=True).stdout.strip()
    assert new.startswith("sha256:") and new != old_digest
    assert _why(lib, study, "runs/free/1") == [
        "results/runs/free/1.json (run free/1): stale",
        f"  code of polymer_langevin: {old_digest[:19]}… → {new[:19]}…"]
    assert _why(lib, study, "runs/free/1", "--rerun-triggers", "mtime", "params", "input") == [
        "results/runs/free/1.json (run free/1): kept (made with older code of "
        "polymer_langevin; rerun with default triggers to refresh)",
        f"  code of polymer_langevin: {old_digest[:19]}… → {new[:19]}…"]


def test_why_of_an_unknown_target_is_one_line(copies):
    lib, study = copies
    proc = subprocess.run([sys.executable, "-m", "assay.cli", "status", "--no-slurm", "--why",
                           "runs/nowhere/1"], cwd=study, capture_output=True, text=True,
                          env=_env(lib), timeout=120)
    assert proc.returncode != 0 and proc.stdout == ""
    assert proc.stderr.strip().startswith(
        "assay status: error: --why runs/nowhere/1: no job of this study writes that")
    assert len(proc.stderr.strip().splitlines()) == 1


def test_a_damaged_manifest_is_never_called_done(copies):
    """Bytes that changed behind the store's back: status names the job and the fix instead
    of counting it done (snakemake sees nothing; `assay verify --repair` removes the ref)."""
    from assay import read_ref

    lib, study = copies
    ref = next((study / "results").rglob("runs/**/*.json"))
    digest = read_ref(ref).digest
    path = ArtifactStore(study / "store").objects.path_for(digest.partition(":")[2])
    path.chmod(0o644)
    path.write_bytes(path.read_bytes().replace(b'"', b"'", 1))
    status = _status(lib, study)
    damaged = [job for job in status["stale"] if digest in job["why"]]
    assert len(damaged) == 1 and damaged[0]["stage"] == "run"
    assert damaged[0]["why"] == (f"its manifest {digest} is damaged (its bytes changed): "
                                 "run `assay verify --repair`, then snakemake")
    path.unlink()
    [missing] = [job for job in _status(lib, study)["stale"] if digest in job["why"]]
    assert missing["why"] == (f"its manifest {digest} is not in the store (removed, or "
                              "another store?): run `assay verify`, then snakemake")
