"""A code change reruns exactly the jobs whose bytes that code computes (issue 23).

Real Snakemake on a copy of the assay package (PYTHONPATH and the copy's own Snakefile),
so the repository's files are never edited. Which jobs ran comes from Snakemake's log;
which of them recomputed comes from the jobs' own logs (`computed ...` lines).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from assay import ArtifactStore
from workflow_helpers import REPO, SMALL_CONFIG, jobs_run, write_config

pytestmark = pytest.mark.slow

PLOTS = {"plot_summary": 2, "plot_detail": 2}   # two analyses; both have a detail plot
STATISTICS = {"aggregate": 4, "compare": 2, **PLOTS, "catalog": 1}


def _snakemake(lib: Path, study: Path, *args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "snakemake", "--snakefile",
               str(lib / "assay" / "snakemake_workflow" / "Snakefile"), "--directory",
               str(study), "--cores", "2", "--workflow-profile", "none", *args]
    env = {**os.environ, "PYTHONPATH": str(lib)}
    proc = subprocess.run(command, cwd=study, capture_output=True, text=True, env=env,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


def _edit(lib: Path, module: str, old: str, new: str) -> None:
    path = lib / "assay" / module
    text = path.read_text()
    assert text.count(old) == 1, (module, old)
    path.write_text(text.replace(old, new))


def _ran(proc: subprocess.CompletedProcess) -> Counter:
    return Counter(rule for rule, _ in jobs_run(proc))


def _recomputed(study: Path) -> Counter:
    """Stages whose job logs say they computed (not a cache hit), since the last clear."""
    found: Counter = Counter()
    for log in (study / "results" / "logs").rglob("*.log"):
        match = re.search(r"^\[assay (\w+)\] computed ", log.read_text(), re.M)
        if match:
            found[match.group(1)] += 1
    return found


def _clear_logs(study: Path) -> None:
    for log in (study / "results" / "logs").rglob("*.log"):
        log.unlink()


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> tuple[Path, Path]:
    """A copy of the package (its source is ours to edit) and a study it finished."""
    lib = tmp_path_factory.mktemp("lib")
    shutil.copytree(REPO / "src" / "assay", lib / "assay",
                    ignore=shutil.ignore_patterns("__pycache__"))
    study = tmp_path_factory.mktemp("study")
    write_config(study, SMALL_CONFIG)
    # marked before two jobs race to mark it (store_root's temporary marker name,
    # '..assay-store.*.tmp', is taken for a foreign entry by the other job)
    ArtifactStore(study / "store").close()
    _snakemake(lib, study)
    return lib, study


@pytest.fixture
def copies(finished, tmp_path) -> tuple[Path, Path]:
    lib, study = finished
    shutil.copytree(lib, tmp_path / "lib")
    shutil.copytree(study, tmp_path / "study", symlinks=True)
    _clear_logs(tmp_path / "study")
    return tmp_path / "lib", tmp_path / "study"


def test_a_comment_in_plotting_code_reruns_only_the_plots(copies):
    lib, study = copies
    _edit(lib, "pipeline/plotting.py", "def save_figure(", "# a comment\ndef save_figure(")
    assert _ran(_snakemake(lib, study)) == Counter(PLOTS)
    assert _recomputed(study) == Counter()   # figures are not artifacts: no `computed` line


def test_statistics_code_reruns_aggregate_compare_and_plots(copies):
    lib, study = copies
    _edit(lib, "pipeline/statistics.py", "def welch(", "# a comment\ndef welch(")
    assert _ran(_snakemake(lib, study)) == Counter(STATISTICS)
    assert _recomputed(study) == Counter({"aggregate": 4, "compare": 2})


def test_convergence_code_reruns_only_the_collects_that_store_diagnostics(copies):
    """The gyration analysis declares SERIES, contacts does not: an edit of the
    diagnostics reruns gyration's 4 collects (not contacts'), the aggregates (which judge
    convergence) and what follows, and no run."""
    lib, study = copies
    _edit(lib, "pipeline/diagnostics.py", "def declared_series(", "# a comment\ndef declared_series(")
    ran = _ran(_snakemake(lib, study))
    assert ran == Counter({"collect": 4, **STATISTICS}), ran
    logs = study / "results" / "logs" / "collect"
    assert {p.relative_to(logs).parts[0] for p in logs.rglob("*.log")} == {"gyration"}
    assert _recomputed(study) == Counter({"collect": 4, "aggregate": 4, "compare": 2})


def test_another_runner_in_the_same_module_reruns_nothing(copies):
    lib, study = copies
    _edit(lib, "pipeline/runners.py", "class ShellRunner:\n", "class ShellRunner:\n    # edited\n")
    _edit(lib, "pipeline/runners.py", "def _template_fields(", "# edited\ndef _template_fields(")
    _edit(lib, "pipeline/stages.py", "def _replay(", "# stage glue: the format version covers it\n"
          "def _replay(")
    assert _ran(_snakemake(lib, study, "-n")) == Counter()
    assert "Nothing to be done" in _snakemake(lib, study).stdout + _snakemake(lib, study).stderr


def test_the_runners_own_code_reruns_its_runs_and_what_they_feed(copies):
    lib, study = copies
    _edit(lib, "pipeline/runners.py", "    def run(self, ctx: RunContext) -> RunArtifact:\n"
          "        from ..demo.physics",
          "    def run(self, ctx: RunContext) -> RunArtifact:\n        # edited\n"
          "        from ..demo.physics")
    ran = _ran(_snakemake(lib, study))
    assert ran["run"] == 4 and ran["collect"] == 8
    assert _recomputed(study)["run"] == 4


def test_moving_a_module_reruns_nothing(copies):
    lib, study = copies
    # the polymer analyses move to another module; the registry follows them
    analyses = lib / "assay" / "analyses"
    (analyses / "polymer.py").rename(analyses / "chain.py")
    registry = lib / "assay" / "pipeline" / "plugins.py"
    registry.write_text(registry.read_text().replace("assay.analyses.polymer:",
                                                     "assay.analyses.chain:"))
    assert _ran(_snakemake(lib, study, "-n")) == Counter()


def test_a_storage_format_bump_reruns_everything(copies):
    lib, study = copies
    _edit(lib, "pipeline/keys.py", "STORAGE_FORMAT = 1\n", "STORAGE_FORMAT = 2\n")
    ran = _ran(_snakemake(lib, study))
    assert ran == Counter({"run": 4, "collect": 8, **STATISTICS}), ran
    assert _recomputed(study) == Counter({"run": 4, "collect": 8, "aggregate": 4, "compare": 2})


KEEP = ("--rerun-triggers", "mtime", "params", "input")
RUNNER_RUN = "    def run(self, ctx: RunContext) -> RunArtifact:\n        from ..demo.physics"
RUNNER_EDITED = ("    def run(self, ctx: RunContext) -> RunArtifact:\n        # edited\n"
                 "        from ..demo.physics")


def _status(lib: Path, study: Path, *args: str) -> dict:
    import json

    proc = subprocess.run([sys.executable, "-m", "assay.cli", "status", "--json",
                           "--no-slurm", *args], cwd=study, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(lib)}, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _made_with(study: Path) -> set[str]:
    """The runner code digests the runs' provenance records."""
    from assay import read_ref

    store = ArtifactStore(study / "store")
    try:
        return {store.read_artifact(read_ref(ref).digest).provenance["code_digest"]
                for ref in (study / "results" / "runs").rglob("*.json")}
    finally:
        store.close()


def test_rerun_triggers_without_code_keep_the_runs_and_status_says_kept(copies):
    lib, study = copies
    made_with = _made_with(study)
    _edit(lib, "pipeline/runners.py", RUNNER_RUN, RUNNER_EDITED)

    # The user keeps the campaign: nothing is scheduled, nothing recomputes.
    assert _ran(_snakemake(lib, study, *KEEP)) == Counter()
    assert _recomputed(study) == Counter()
    assert _made_with(study) == made_with   # the kept runs name the code they were made with
    kept = _status(lib, study, *KEEP)
    assert kept["stages"]["run"]["kept"] == 4 and kept["counts"]["stale"] == 0
    assert {job["why"] for job in kept["kept"]} == {
        "made with older code of polymer_langevin; rerun with default triggers to refresh"}
    # Under the default triggers the same runs are stale, for their code only.
    stale = _status(lib, study)
    assert Counter(job["why"] for job in stale["stale"] if job["stage"] == "run") == Counter(
        {"code of polymer_langevin": 4})

    # Default triggers refresh them: the four runs recompute with the new code.
    assert _ran(_snakemake(lib, study))["run"] == 4
    assert _recomputed(study)["run"] == 4
    assert len(_made_with(study)) == 1 and _made_with(study) != made_with
