"""pyproject.toml (pip) and environment.yml (conda) ask for the same dependencies."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
CONDA_NAMES = {"python-duckdb": "duckdb", "matplotlib-base": "matplotlib",
               "snakemake-minimal": "snakemake"}


def _split(requirement: str) -> tuple[str, str]:
    name, spec = re.match(r"^([A-Za-z0-9_.-]+)\s*(.*)$", requirement.strip()).groups()
    return name.lower(), spec.replace(" ", "")


# Extras the conda environment installs too (the workflow's conda env runs their jobs).
CONDA_EXTRAS = ("openmm", "test")


def _project() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def test_environment_yml_matches_pyproject_dependencies_and_extras():
    """Conda users run the tests and the OpenMM runner too: the environment holds them."""
    project = _project()
    pip = dict(_split(r) for r in project["dependencies"])
    for extra in CONDA_EXTRAS:
        pip.update(_split(r) for r in project["optional-dependencies"][extra])
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    conda = {}
    for item in env["dependencies"]:
        if isinstance(item, str) and not item.startswith(("python>", "python=", "pip")):
            name, spec = _split(item)
            conda[CONDA_NAMES.get(name, name)] = spec
    assert conda == pip


def test_builtin_plugins_are_listed_once_and_all_resolve():
    """plugins.BUILTIN_* is the one registry: pyproject declares no entry points of its
    own for them (a second list would drift), and every name loads."""
    from assay.pipeline.plugins import BUILTIN_ANALYSES, BUILTIN_RUNNERS, load_target

    points = _project().get("entry-points", {})
    assert "assay.runners" not in points and "assay.analyses" not in points
    for target in {**BUILTIN_ANALYSES, **BUILTIN_RUNNERS}.values():
        assert load_target(target, where="test") is not None


def test_workflow_conda_env_is_the_project_environment():
    link = REPO / "workflow" / "envs" / "assay.yaml"
    assert link.resolve() == (REPO / "environment.yml").resolve()


def test_the_distribution_name_is_the_one_the_docs_and_messages_give():
    """`pip install assay` installs someone else's project: the distribution is
    assay-workflow (deploy.DISTRIBUTION, which `assay --version` and every missing-extra
    message use), while the package and the command keep the name assay."""
    from assay.deploy import DISTRIBUTION
    from assay.pipeline.preflight import install_command

    project = _project()
    assert project["name"] == DISTRIBUTION == "assay-workflow"
    assert project["scripts"] == {"assay": "assay.cli:main"}
    assert install_command(["openmm", "MDAnalysis"]) == "pip install 'assay-workflow[md,openmm]'"
    assert set(project["optional-dependencies"]) >= {"md", "openmm", "slurm"}
    readme = (REPO / "README.md").read_text()
    assert "pip install assay-workflow " in readme
    assert not re.search(r"pip install (-U )?assay(\s|$)", readme)


def test_installed_metadata_is_found_by_the_distribution_name():
    from importlib.metadata import version

    from assay import __version__
    from assay.deploy import DISTRIBUTION

    assert version(DISTRIBUTION) == __version__ == _project()["version"]
