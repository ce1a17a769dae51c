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


def test_environment_yml_matches_pyproject_dependencies_and_test_extra():
    """Conda users run the tests too: the environment holds the test extra as well."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pip = dict(_split(r) for r in project["dependencies"]
               + project["optional-dependencies"]["test"])
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    conda = {}
    for item in env["dependencies"]:
        if isinstance(item, str) and not item.startswith(("python>", "python=", "pip")):
            name, spec = _split(item)
            conda[CONDA_NAMES.get(name, name)] = spec
    assert conda == pip


def test_workflow_conda_env_is_the_project_environment():
    link = REPO / "workflow" / "envs" / "assay.yaml"
    assert link.resolve() == (REPO / "environment.yml").resolve()
