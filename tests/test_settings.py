"""Declared plugin settings: the declarations agree with the code that uses them, jobs read
through them, and a plugin that declares nothing runs with a warning."""

from __future__ import annotations

import contextlib
import copy
import inspect
import io
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from workflow_helpers import REPO, SMALL_CONFIG, write_config

from assay import ConfigError, PluginError, Setting, Settings
from assay.cli import main
from assay.pipeline.config import Study
from assay.pipeline.plugins import BUILTIN_ANALYSES, BUILTIN_RUNNERS, resolve_analysis, resolve_runner
from assay.pipeline.settings import declared_settings

TEMPLATES = REPO / "src" / "assay" / "templates"


def cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


# --- the built-in declarations ----------------------------------------------------------
@pytest.mark.parametrize("name", sorted(BUILTIN_ANALYSES) + sorted(BUILTIN_RUNNERS))
def test_every_builtin_plugin_declares_its_settings(name):
    import jsonschema

    plugin = (resolve_analysis if name in BUILTIN_ANALYSES else resolve_runner)(name)
    declared = declared_settings(plugin)
    assert isinstance(declared, Settings) and len(declared)
    for key, setting in declared.items():
        assert setting.help, f"{name}.{key} has no help"
    # the exported JSON-schema fragment holds what the declaration holds
    jsonschema.validate(declared.defaults(), {**declared.json_schema(), "required": []})


def test_no_builtin_plugin_reads_settings_with_its_own_default():
    sources = [*(REPO / "src" / "assay" / "analyses").glob("*.py"),
               REPO / "src" / "assay" / "pipeline" / "runners.py", REPO / "src" / "assay" / "pipeline" / "openmm_runner.py"]
    for path in sources:
        assert not re.search(r"ctx\.(merged_)?settings\.get\(", path.read_text()), path


def test_declared_defaults_are_the_code_defaults():
    from assay.pipeline import openmm_runner
    from assay.demo.physics import simulate_polymer
    from assay.pipeline.runners import PolymerLangevinRunner, ShellRunner, _template_fields

    signature = inspect.signature(simulate_polymer).parameters
    assert PolymerLangevinRunner.SETTINGS.defaults() == {
        name: p.default for name, p in signature.items() if name != "seed"}
    assert openmm_runner.OPENMM_SETTINGS.defaults() == openmm_runner.DEFAULTS
    assert set(openmm_runner.OPENMM_SETTINGS) == {"structure", *openmm_runner.DEFAULTS}
    ctx = SimpleNamespace(condition_label="c", replicate=1, seed=1, params={}, settings={},
                          study_dir=Path("."), threads=1, attempt=1)
    assert set(ShellRunner.SETTINGS.template_fields) == set(_template_fields(ctx, Path(".")))


@pytest.mark.parametrize("template", sorted(p.name for p in TEMPLATES.iterdir()
                                            if (p / "config.yaml").is_file()))
def test_every_template_validates_and_only_python_warns(template, monkeypatch):
    monkeypatch.chdir(TEMPLATES / "study_extras")   # the study's own simulate.py
    config = yaml.safe_load((TEMPLATES / template / "config.yaml").read_text())
    study = Study.from_config(config)
    if template == "python":   # its function's settings are the user's own
        assert study.warnings == (
            "runner.settings 'n_beads', 'n_frames' and the params of conditions "
            "'small_steps', 'large_steps' go unchecked: runner python cannot see which ones "
            "your code reads",)
    else:
        assert study.warnings == ()


# --- what a job reads ------------------------------------------------------------------
DECLARED = Settings({
    "cutoff": Setting(float, 1.5, gt=0, unit="Å", help="contact distance"),
    "kinds": Setting(list, ["a"], items=str, help="which kinds"),
    "label": Setting(str, None, help="optional"),
})


def test_a_job_reads_defaults_and_cannot_read_an_undeclared_key():
    ctx = SimpleNamespace(analysis_name="contacts", settings={"cutoff": 3.0})
    settings = DECLARED.read(ctx)
    assert (settings.cutoff, settings["kinds"], settings.label) == (3.0, ["a"], None)
    assert "cutof" not in settings and dict(settings) == {"cutoff": 3.0, "kinds": ["a"],
                                                          "label": None}
    settings["kinds"].append("b")   # a default is the job's own copy
    assert DECLARED.read(ctx)["kinds"] == ["a"]
    with pytest.raises(PluginError, match=r"reads setting 'cutof', which it does not declare "
                                          r"\(did you mean 'cutoff'\?\): add it to its SETTINGS"):
        settings.get("cutof", 1.5)
    with pytest.raises(PluginError):
        settings.cutof


def test_a_job_refuses_settings_that_bypassed_validation():
    """`assay reproduce` or a direct call: the same message as before the workflow."""
    ctx = SimpleNamespace(analysis_name="contacts", settings={"cutof": 3.0})
    with pytest.raises(ConfigError) as error:
        DECLARED.read(ctx)
    assert str(error.value) == ("config key analyses.contacts.settings: unknown setting "
                                "'cutof' (did you mean 'cutoff'?); it takes: cutoff, kinds, "
                                "label")


def test_a_runner_reads_its_params_merged_over_its_settings():
    from assay.pipeline.runners import PolymerLangevinRunner

    ctx = SimpleNamespace(condition_label="strong", params={"surface_epsilon": 3.0},
                          settings={"n_beads": 12})
    settings = PolymerLangevinRunner.SETTINGS.read(ctx)
    assert (settings.n_beads, settings.surface_epsilon, settings.dt) == (12, 3.0, 0.005)


@pytest.mark.parametrize("declare, message", [
    (lambda: Setting(tuple), "Setting type <class 'tuple'> is not one of bool, int, float, "
                             "str, list, dict"),
    (lambda: Setting(int, -1, ge=0), "Setting default -1: -1 is out of range"),
    (lambda: Settings({"x": 1.5}), "setting 'x' is declared as 1.5, not a "
                                   "Setting(type, default, ...)"),
    (lambda: Settings({}, params="yes"), "Settings(params='yes'): use 'merged' or 'templates'"),
])
def test_a_wrong_declaration_fails_when_the_plugin_is_imported(declare, message):
    with pytest.raises(PluginError) as error:
        declare()
    assert str(error.value) == message


# --- plugins that declare nothing, and `assay plugins` -----------------------------------
UNDECLARED = '''
from assay import METRICS


class Lines:
    def collect(self, ctx):
        return ctx.result(payload={METRICS: {"one": 1.0}})
'''


def test_a_plugin_that_declares_nothing_runs_and_validate_warns(tmp_path, monkeypatch):
    (tmp_path / "own_plugins.py").write_text(UNDECLARED)
    monkeypatch.syspath_prepend(str(tmp_path))
    config = copy.deepcopy(SMALL_CONFIG)
    config["analyses"]["lines"] = {"plugin": "own_plugins:Lines", "settings": {"window": 3}}
    code, out, err = cli("config", "validate", str(write_config(tmp_path, config)))
    assert code == 0 and out.startswith(f"{tmp_path / 'config' / 'config.yaml'}: ok")
    assert err == ("warning: analyses.lines.settings: own_plugins:Lines declares no SETTINGS, "
                   "so 'window' goes to it unchecked (a misspelled key would be ignored); its "
                   "author can declare them (assay.Settings)\n")
    config["analyses"]["lines"]["settings"] = {}
    code, _, err = cli("config", "validate", "--json", str(write_config(tmp_path, config)))
    assert (code, err) == (0, "")


def test_plugins_command_shows_each_declaration():
    code, out, _ = cli("plugins", "contact_events")
    assert code == 0
    assert re.search(r"^cutoff +a number > 0 \(σ\); default 1.5 +a bead below this height",
                     out, re.M), out
    code, out, _ = cli("plugins", "polymer_langevin", "--json")
    schema = yaml.safe_load(out)["settings"]
    assert schema["properties"]["n_beads"] == {
        "type": "integer", "minimum": 2, "default": 24, "description": "beads in the chain",
        "x-unit": "beads"}
    code, _, err = cli("plugins", "contact_event")
    assert code == 1 and "did you mean 'contact_events'?" in err


# --- the repository's own Snakefile ------------------------------------------------------
@pytest.mark.slow
def test_snakemake_at_the_repository_root_runs_the_demo(tmp_path):
    """`snakemake` finds the top-level Snakefile first; it plans the demo study."""
    shutil.copy(REPO / "config" / "config.yaml", tmp_path / "demo.yaml")
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--cores", "2", "--directory", str(tmp_path),
         "--configfile", str(tmp_path / "demo.yaml")],
        cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"Snakefile: {REPO / 'Snakefile'}" in proc.stdout + proc.stderr
    assert re.search(r"^run +12$", proc.stdout, re.M) and re.search(r"^all +1$", proc.stdout,
                                                                     re.M), proc.stdout
