"""`assay init`: a study directory outside the repository that runs the installed workflow."""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import yaml

import assay
from assay import AssayError
from assay.pipeline.config import Study
from assay.tools.scaffold import RECORD, TEMPLATES, init_study
from watch_helpers import run_watched
from workflow_helpers import jobs_run

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("template", list(TEMPLATES))
def test_every_template_validates_and_comments_every_key(tmp_path, template):
    report = init_study(tmp_path / "study", template)
    assert {"Snakefile", "config/config.yaml", "README.md", "profiles/default/config.yaml",
            "profiles/slurm/config.yaml"} <= set(report.written)
    text = (tmp_path / "study" / "config" / "config.yaml").read_text()
    Study.from_config(yaml.safe_load(text), check_plugins=template not in ("md", "openmm")
                      or _has(template))
    lines = text.splitlines()
    for i, line in enumerate(lines):   # every top-level key: a comment on it or just above
        if line[:1].isalpha() and ":" in line:
            assert "#" in line or lines[i - 1].lstrip().startswith("#"), line
    assert json.loads((tmp_path / "study" / RECORD).read_text()).keys() == set(report.written)


def _ls_and_metrics_here(study: Path, assay: str = "assay",
                         env: dict[str, str] | None = None) -> tuple[str, str]:
    """`assay ls` and `assay metrics` in the study directory with no flag: they find its
    results (a new user types no --results)."""
    env = {k: v for k, v in (env or os.environ).items()
           if k not in ("ASSAY_STORE", "ASSAY_RESULTS")}
    listed = subprocess.run([assay, "ls"], cwd=study, capture_output=True, text=True,
                            env=env)
    metrics = subprocess.run([assay, "metrics", "--format", "csv"], cwd=study,
                             capture_output=True, text=True, env=env)
    assert listed.returncode == 0 and metrics.returncode == 0, listed.stderr + metrics.stderr
    return listed.stdout, metrics.stdout


def _has(template: str) -> bool:
    import importlib.util

    return all(importlib.util.find_spec(m) for m in
               {"md": ("MDAnalysis",), "openmm": ("openmm", "MDAnalysis")}[template])


def test_non_empty_directory_is_refused_and_force_never_overwrites_foreign_files(tmp_path):
    study = tmp_path / "study"
    study.mkdir()
    (study / "notes.txt").write_text("mine")
    with pytest.raises(AssayError) as info:
        init_study(study, "demo")
    assert str(info.value) == (
        f"{study} is not empty; choose a new directory, or add --force to fill in what is "
        "missing (files you changed or wrote yourself are never overwritten)")
    (study / "config").mkdir()
    (study / "config" / "config.yaml").write_text("store: mine\n")   # the user's own
    report = init_study(study, "demo", force=True)
    assert "config/config.yaml" in report.kept
    assert (study / "config" / "config.yaml").read_text() == "store: mine\n"
    assert (study / "notes.txt").read_text() == "mine"
    # Files init wrote and nobody changed are refreshed; a changed one is kept.
    (study / "README.md").write_text("edited")
    again = init_study(study, "demo", force=True)
    assert "README.md" in again.kept and "Snakefile" in again.written
    assert (study / "README.md").read_text() == "edited"


def test_unknown_template(tmp_path):
    with pytest.raises(AssayError, match=r"^unknown template 'nope'; choose one of demo, "):
        init_study(tmp_path / "s", "nope")


@pytest.mark.slow
def test_demo_study_runs_end_to_end_from_its_own_directory(tmp_path):
    """`assay init` then `snakemake --cores 2`: the module finds the installed workflow."""
    study = tmp_path / "study"
    proc = subprocess.run(["assay", "init", str(study)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    config = yaml.safe_load((study / "config" / "config.yaml").read_text())
    config["replicates"] = 2                       # a smaller demo, same code paths
    config["runner"]["settings"].update(n_frames=40, steps_per_frame=5)
    (study / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    # No deadline: run_watched waits as long as the run progresses (output, files changing
    # in the study) and fails on a hang.
    run_watched([sys.executable, "-m", "snakemake", "--cores", "2"], cwd=study, watch=[study],
                env=env)
    assert (study / "results" / "catalog.duckdb").is_file()
    assert (study / "results" / "plots" / "contacts" / "summary.png").is_file()
    assert not (study / "workflow").exists()            # nothing of assay copied in
    listed, metrics = _ls_and_metrics_here(study)
    assert "comparisons/contacts.json" in listed and "fraction_adsorbed" in metrics
    again = run_watched([sys.executable, "-m", "snakemake", "--cores", "2"], cwd=study,
                        watch=[study], env=env, check=False)
    assert "Nothing to be done" in again.stdout + again.stderr


@pytest.mark.slow
@pytest.mark.parametrize("template", ["python", "shell"])
def test_own_code_templates_run_and_rerun_when_their_script_changes(tmp_path, template):
    """The templates whose runs are the user's own script: they run as shipped (the shell
    command runs inside the run's work directory and reaches the script through
    {study_dir}), and editing the script reruns every run."""
    study = tmp_path / "study"
    init_study(study, template)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}

    def snakemake() -> subprocess.CompletedProcess:
        return run_watched([sys.executable, "-m", "snakemake", "--cores", "2"], cwd=study,
                           watch=[study], env=env)

    snakemake()
    runs = {p.relative_to(study).as_posix() for p in (study / "results" / "runs").rglob("*.json")}
    assert len(runs) == 6 and (study / "results" / "catalog.duckdb").is_file()
    second = snakemake()
    assert "Nothing to be done" in second.stdout + second.stderr
    listed, metrics = _ls_and_metrics_here(study)
    assert "comparisons/gyration.json" in listed and "mean_rg" in metrics
    with (study / "simulate.py").open("a") as handle:
        handle.write("\n# edited\n")
    again = snakemake()
    assert {out for rule, out in jobs_run(again) if rule == "run"} == runs, again.stderr[-4000:]


def _venv_seeing_this_environment(venv: Path) -> Path:
    """A new venv of its own that also sees every package the running interpreter sees;
    returns its python.

    Not `python -m venv --system-site-packages`: when the tests run inside a venv, the new
    venv's "system" is the base interpreter's site-packages, not the running venv's, so
    the dependencies are missing there. Instead the new venv is isolated, and a .pth file
    in its site-packages adds the running interpreter's site directories (as site
    directories: their own .pth files are read, as for system site-packages) after its
    own: what is installed into the new venv (assay's wheel) comes first, the dependencies
    come from the running environment. Without pip of its own: the running environment's
    pip, seen through the .pth file, installs into the venv (its sys.prefix)."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    purelib = subprocess.run([str(python), "-c",
                              "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    paths = sysconfig.get_paths()
    ours = [*site.getsitepackages(), paths["purelib"], paths["platlib"]]
    if site.ENABLE_USER_SITE:
        ours.append(site.getusersitepackages())
    seen = [d for d in dict.fromkeys(ours) if os.path.isdir(d)]
    assert seen, "the running interpreter has no site-packages directory"
    Path(purelib, "_assay_test_running_environment.pth").write_text(
        "import site; " + "; ".join(f"site.addsitedir({d!r})" for d in seen) + "\n")
    return python


def _packaged_files() -> set[str]:
    """What a study needs from the package besides its code: templates, the workflow, the
    schemas (paths inside the wheel)."""
    src = REPO / "src"
    return {path.relative_to(src).as_posix()
            for folder in ("templates", "snakemake_workflow", "schemas")
            for path in (src / "assay" / folder).rglob("*")
            if path.is_file() and "__pycache__" not in path.parts}


@pytest.mark.slow
def test_demo_study_runs_from_a_plain_pip_install(tmp_path):
    """A wheel, not the checkout: the workflow and templates must be inside the package,
    the distribution is assay-workflow (the name pip installs), every template starts
    and validates from it, and the demo runs; `assay ls`/`assay metrics` there need no
    flag."""
    import zipfile

    wheel_dir, venv = tmp_path / "wheel", tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w",
                    str(wheel_dir), str(REPO)], check=True, capture_output=True)
    python = _venv_seeing_this_environment(venv)
    [wheel] = wheel_dir.glob("assay_workflow-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        [info] = {n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA")}
        metadata = archive.read(f"{info}/METADATA").decode()
        scripts = archive.read(f"{info}/entry_points.txt").decode()
    assert _packaged_files() - names == set()
    assert "templates/study_extras/fetch_sample.py" in "".join(names)
    assert "\nName: assay-workflow\n" in metadata and "assay = assay.cli:main" in scripts
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env['PATH']}"
    # A plain (not editable) install of the wheel into the venv, and nothing else: the
    # dependencies are the running environment's. --ignore-installed: the venv also sees
    # the running environment's (editable) assay and must not settle for it.
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps",
                    "--ignore-installed", str(wheel)], check=True, capture_output=True, env=env)
    study = tmp_path / "study"
    subprocess.run([str(venv / "bin" / "assay"), "init", str(study)], check=True, env=env,
                   capture_output=True)
    config = yaml.safe_load((study / "config" / "config.yaml").read_text())
    config["replicates"] = 2
    config["runner"]["settings"].update(n_frames=40, steps_per_frame=5)
    (study / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    where = subprocess.run([str(python), "-c", "import assay; print(assay.__file__)"],
                           cwd=study, env=env, capture_output=True, text=True, check=True)
    assert where.stdout.startswith(str(venv)), where.stdout   # not this checkout
    run_watched([str(python), "-m", "snakemake", "--cores", "2"], cwd=study, watch=[study],
                env=env)
    assert (study / "results" / "plots" / "gyration" / "summary.png").is_file()
    listed, metrics = _ls_and_metrics_here(study, str(venv / "bin" / "assay"), env)
    assert "comparisons/contacts.json" in listed and "fraction_adsorbed" in metrics
    version = subprocess.run([str(venv / "bin" / "assay"), "--version"], env=env,
                             capture_output=True, text=True, check=True)
    # The distribution's metadata, looked up by its name (not "unknown").
    assert version.stdout == f"assay {assay.__version__}\n"
    # Every template's files are in the wheel (above); one with files of its own beside its
    # config starts and validates from it.
    for template in ("import",):
        other = tmp_path / f"study-{template}"
        subprocess.run([str(venv / "bin" / "assay"), "init", "-t", template, str(other)],
                       check=True, env=env, capture_output=True)
        checked = subprocess.run([str(venv / "bin" / "assay"), "config", "validate"],
                                 cwd=other, env=env, capture_output=True, text=True)
        assert checked.returncode == 0, (template, checked.stderr)
        assert checked.stdout.startswith("config/config.yaml: ok ("), checked.stdout
    shutil.rmtree(venv)
