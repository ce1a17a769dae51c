"""The new-user path through each template: `assay init`, `assay config validate`, a run,
then `assay ls` / `assay metrics` in the study directory with no flag to guess.

Also: which study an `assay` command reads (assay.commands._common), the study README and
config headers written for the study they are in, and a missing extra stopping validate
and snakemake in one line (assay.pipeline.preflight).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from assay.cli import main
from assay.tools.scaffold import TEMPLATES, init_study
from watch_helpers import run_watched

# Hides modules from the import system (`HIDE_MODULES=a,b`), as if they were not installed:
# the one way to see a missing extra in an environment that has every extra.
HIDER = '''
import os, sys
_HIDE = set(filter(None, os.environ.get("HIDE_MODULES", "").split(",")))
class _Hide:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in _HIDE:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, _Hide())
'''


def _env(hide: str = "", extra_path: Path | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "ASSAY_STORE", "ASSAY_RESULTS")}
    if extra_path is not None:
        env["PYTHONPATH"] = str(extra_path)
        env["HIDE_MODULES"] = hide
    return env


def _assay(study: Path, *args: str, env: dict[str, str] | None = None
           ) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "assay.cli", *args], cwd=study,
                          capture_output=True, text=True, env=env or _env())


# --- which study a command reads ---------------------------------------------------------
def _md_study(tmp_path: Path) -> Path:
    study = tmp_path / "study"
    init_study(study, "md")
    (study / "results-md").mkdir()
    return study


def test_commands_in_a_study_read_its_results_and_store(tmp_path, monkeypatch, capsys):
    """The md template writes results-md/: `assay ls` there (and in a directory below)
    reads it with no flag, and says so in one line on stderr."""
    study = _md_study(tmp_path)
    monkeypatch.delenv("ASSAY_RESULTS", raising=False)
    monkeypatch.delenv("ASSAY_STORE", raising=False)
    monkeypatch.chdir(study)
    assert main(["ls"]) == 0
    assert capsys.readouterr().err == (   # "(no refs)": ls found results-md/
        "assay: the study of config/config.yaml: store store, results results-md "
        "(--store/--results to choose others)\n(no refs)\n")
    (study / "sub" / "dir").mkdir(parents=True)
    monkeypatch.chdir(study / "sub" / "dir")
    assert main(["ls"]) == 0
    err = capsys.readouterr().err
    assert "results ../../results-md " in err and err.endswith("\n(no refs)\n")
    # A store that does not exist is named with the study's path, not ./store.
    assert main(["stats"]) == 1
    assert "no store at ../../store " in capsys.readouterr().err


def test_flags_and_environment_win_over_the_study_config(tmp_path, monkeypatch, capsys):
    study = _md_study(tmp_path)
    monkeypatch.chdir(study)
    monkeypatch.delenv("ASSAY_STORE", raising=False)
    monkeypatch.setenv("ASSAY_RESULTS", "elsewhere")
    assert main(["ls"]) == 1
    assert capsys.readouterr().err == ("assay ls: error: no results directory at elsewhere; "
                                       "run in the study directory or pass --results DIR\n")
    assert main(["--results", "results-md", "ls"]) == 0
    assert capsys.readouterr().err == "(no refs)\n"   # no note: the user chose


def test_no_study_config_means_the_working_directory(tmp_path, monkeypatch, capsys):
    """Without a study config (or with a config/config.yaml that is no study's: no
    `runner`), the commands read ./store and ./results, as they always did."""
    monkeypatch.delenv("ASSAY_RESULTS", raising=False)
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.yaml").write_text("something: else\n")
    (tmp_path / "results").mkdir()
    monkeypatch.chdir(tmp_path)
    assert main(["ls"]) == 0
    assert capsys.readouterr().err == "(no refs)\n"


def test_an_unreadable_study_config_stops_the_command(tmp_path, monkeypatch, capsys):
    """Guessing ./results when the study's config cannot be read could show another
    study's numbers: the command stops and names the fix."""
    monkeypatch.delenv("ASSAY_RESULTS", raising=False)
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.yaml").write_text("runner: [unclosed\n")
    (tmp_path / "results").mkdir()
    monkeypatch.chdir(tmp_path)
    assert main(["ls"]) == 1
    assert capsys.readouterr().err == (
        f"assay ls: error: cannot read the study config {tmp_path}/config/config.yaml to "
        "find its store and results (ParserError); fix it, or pass --store DIR --results "
        "DIR\n")


# --- what init writes: for the study, not for a checkout of assay -------------------------
@pytest.mark.parametrize("template", list(TEMPLATES))
def test_readme_and_config_are_written_for_the_study(tmp_path, template):
    study = tmp_path / "study"
    init_study(study, template)
    readme = (study / "README.md").read_text()
    config_text = (study / "config" / "config.yaml").read_text()
    results = yaml.safe_load(config_text)["results"]
    assert f"refs under `{results}/`" in readme
    for text in (readme, config_text, (study / "Snakefile").read_text()):
        assert "pip install -e" not in text and "--configfile" not in text
        assert "config/examples" not in text and "docs/" not in text
        assert "pip install assay " not in text and "pip install -U assay\n" not in text
    spec = TEMPLATES[template]
    if spec.extras:
        assert f"pip install 'assay-workflow[{spec.extras}]'" in readme
    for line in spec.setup:
        assert line in readme
    for name in spec.files:
        assert (study / name).is_file()


# --- a missing extra: one line before any job ----------------------------------------------
@pytest.mark.parametrize("template, hide, line", [
    ("md", "MDAnalysis,MDAnalysisTests,openmm",
     "this study needs MDAnalysis (for analysis contacts (md_contacts) and 4 more), not "
     "installed here: pip install 'assay-workflow[md]'"),
    ("import", "MDAnalysis,MDAnalysisTests",
     "this study needs MDAnalysis (for analysis rgyr (md_rgyr) and 1 more), not installed "
     "here: pip install 'assay-workflow[md]'"),
    ("openmm", "openmm",
     "this study needs openmm (for runner openmm), not installed here: "
     "pip install 'assay-workflow[openmm]'"),
    ("openmm", "MDAnalysis,MDAnalysisTests,openmm",
     "this study needs openmm (for runner openmm), MDAnalysisTests (for "
     "runner.settings.structure 'MDAnalysisTests:data/A6PA6_alpha.pdb'), MDAnalysis (for "
     "analysis contacts (md_contacts) and 3 more), not installed here: "
     "pip install 'assay-workflow[md,openmm]'"),
])
def test_a_missing_extra_stops_validate_in_one_line(tmp_path, template, hide, line):
    study = tmp_path / "study"
    init_study(study, template)
    (tmp_path / "hider").mkdir()
    (tmp_path / "hider" / "sitecustomize.py").write_text(HIDER)
    proc = _assay(study, "config", "validate", env=_env(hide, tmp_path / "hider"))
    assert (proc.returncode, proc.stdout, proc.stderr) == (1, "", f"assay config: error: {line}\n")


@pytest.mark.slow
def test_a_missing_extra_stops_snakemake_before_any_job(tmp_path):
    study = tmp_path / "study"
    init_study(study, "openmm")
    (tmp_path / "hider").mkdir()
    (tmp_path / "hider" / "sitecustomize.py").write_text(HIDER)
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--cores", "1"], cwd=study,
                          capture_output=True, text=True, env=_env("openmm", tmp_path / "hider"))
    assert proc.returncode == 1
    assert ("assay: this study needs openmm (for runner openmm), not installed here: "
            "pip install 'assay-workflow[openmm]'\n") in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.splitlines()) <= 4
    assert not (study / "results-openmm").exists()


def test_demo_validates_with_no_extra_installed(tmp_path):
    study = tmp_path / "study"
    init_study(study, "demo")
    (tmp_path / "hider").mkdir()
    (tmp_path / "hider" / "sitecustomize.py").write_text(HIDER)
    proc = _assay(study, "config", "validate",
                  env=_env("MDAnalysis,MDAnalysisTests,openmm", tmp_path / "hider"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("config/config.yaml: ok (3 conditions x 4 replicates")


# --- every template from init, run as written ----------------------------------------------
def _ls_and_metrics(study: Path, results: str) -> tuple[str, str]:
    """`assay ls` and `assay metrics` in the study, no flags: both must find its results."""
    listed = _assay(study, "ls")
    assert listed.returncode == 0, listed.stderr
    metrics = _assay(study, "metrics", "--format", "csv")
    assert metrics.returncode == 0, metrics.stderr
    if results != "results":
        assert f"results {results} " in listed.stderr
    return listed.stdout, metrics.stdout


def _run_then_catalog(study: Path, *targets: str) -> None:
    """Snakemake makes ``targets`` (a few jobs of the study, to keep the suite short), then
    `assay catalog build` with no flags indexes them where the study keeps its results."""
    run_watched([sys.executable, "-m", "snakemake", "--cores", "2", *targets], cwd=study,
                watch=[study], env=_env())
    built = _assay(study, "catalog", "build")
    assert built.returncode == 0, built.stderr


@pytest.mark.slow
def test_import_template_runs_on_its_sample(tmp_path):
    """The import template's study: validate warns that the files are not there yet,
    fetch_sample.py writes them, validate is then silent, and a replicate's run and
    collect run as written; `assay ls`/`assay metrics` in the study find them."""
    study = tmp_path / "study"
    init_study(study, "import")
    first = _assay(study, "config", "validate")
    assert first.returncode == 0
    assert first.stderr == ("warning: 12 of 12 files to import are not there yet (first: "
                            "sims/wildtype/1/system.pdb); the runs that need them will fail "
                            "until they are\n")
    subprocess.run([sys.executable, "fetch_sample.py"], cwd=study, check=True,
                   capture_output=True, env=_env())
    again = _assay(study, "config", "validate")
    assert (again.returncode, again.stderr) == (0, "")
    _run_then_catalog(study, "results/replicates/rgyr/mutant/2.json")
    listed, metrics = _ls_and_metrics(study, "results")
    assert "runs/mutant/2.json" in listed and "replicates/rgyr/mutant/2.json" in listed
    assert "mean_rg" in metrics


@pytest.mark.slow
def test_md_template_validates_and_runs_from_its_results_dir(tmp_path):
    """The md template as written: fetch the example, validate, a replicate's run and
    collect; `assay ls`, `assay catalog build` and `assay metrics` in the study read
    results-md/ with no flag."""
    study = tmp_path / "study"
    init_study(study, "md")
    subprocess.run([sys.executable, "-m", "assay.analyses.md", "fetch-example", "data/md"],
                   cwd=study, check=True, capture_output=True, env=_env())
    proc = _assay(study, "config", "validate")
    assert (proc.returncode, proc.stderr) == (0, ""), proc.stderr
    _run_then_catalog(study, "results-md/replicates/rgyr/oplsaa_md/1.json")
    listed, metrics = _ls_and_metrics(study, "results-md")
    assert "runs/oplsaa_md/1.json" in listed and "replicates/rgyr/oplsaa_md/1.json" in listed
    assert "mean_rg" in metrics
    assert (study / "results-md" / "catalog.duckdb").is_file()


@pytest.mark.slow
def test_openmm_template_validates_and_plans(tmp_path):
    """Two minutes of simulation is too long for the suite (tests/test_openmm_workflow.py
    runs a smaller study): validate and `snakemake -n` as written; `assay ls` there
    looks in results-openmm/."""
    study = tmp_path / "study"
    init_study(study, "openmm")
    proc = _assay(study, "config", "validate")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ("config/config.yaml: ok (3 conditions x 3 replicates, analyses: "
                           "contacts, rgyr, rmsd, rmsf)\n")
    plan = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--cores", "2"],
                          cwd=study, capture_output=True, text=True, env=_env())
    assert plan.returncode == 0, plan.stderr[-3000:]
    listed = _assay(study, "ls")
    assert listed.returncode == 1
    assert "no results directory at results-openmm;" in listed.stderr


def test_init_says_what_to_type_first(tmp_path, capsys):
    """The md study needs its trajectories before it runs: `assay init` says so, and which
    extra it needs, instead of a `snakemake` that stops on missing files."""
    assert main(["init", "--template", "md", str(tmp_path / "s")]) == 0
    tail = capsys.readouterr().out.split("\n\n")[-2:]
    assert tail == [
        "needs: pip install 'assay-workflow[md]' (if it is not installed)",
        f"next: cd {tmp_path / 's'} && python -m assay.analyses.md fetch-example data/md && "
        "assay config validate && snakemake --cores 2\nthen: assay ls, assay metrics (in "
        "the study directory: no --results needed); README.md there says more\n"]
