"""A runner's own code is part of its runs' keys: editing the `python` runner's function (or a
helper module it names in `code_dependencies`), or a script the `shell` runner lists in
`code_files`, reruns the runs, and nothing else does."""

from __future__ import annotations

import copy
import hashlib
import textwrap
from pathlib import Path

import pytest

from assay import ConfigError, PluginError
from assay.pipeline.plugins import code_digest, resolve_runner
from workflow_helpers import SMALL_CONFIG, jobs_run, snakemake, write_config

SIMULATE = textwrap.dedent('''
    import numpy as np

    import helpers


    def run(ctx):
        rng = np.random.default_rng(ctx.seed)
        return {"values": helpers.scale() * rng.normal(size=16)}
''')
HELPERS = "def scale():\n    return 1.0\n"
RUN_REFS = [f"results/runs/{c}/{r}.json" for c in ("free", "strong") for r in (1, 2)]


def python_config(code_dependencies: list[str] | None = None) -> dict:
    config = copy.deepcopy(SMALL_CONFIG)
    settings: dict = {"callable": "simulate:run", "n": 16}
    if code_dependencies is not None:
        settings["code_dependencies"] = code_dependencies
    config["runner"] = {"plugin": "python", "settings": settings}
    return config


def runs_of(proc) -> set[str]:
    return {out for rule, out in jobs_run(proc) if rule == "run"}


@pytest.mark.slow
def test_editing_the_callable_or_a_listed_helper_reruns_the_runs(tmp_path):
    # the modules sit in the study directory, not on PYTHONPATH: snakemake finds them
    # where the jobs import them from
    (tmp_path / "simulate.py").write_text(SIMULATE)
    (tmp_path / "helpers.py").write_text(HELPERS)
    (tmp_path / "notes.py").write_text("# not code the runs use\n")
    write_config(tmp_path, python_config(["helpers"]))
    assert runs_of(snakemake(tmp_path, *RUN_REFS)) == set(RUN_REFS)
    assert runs_of(snakemake(tmp_path, *RUN_REFS)) == set()

    (tmp_path / "notes.py").write_text("# edited, still unused\n")
    assert runs_of(snakemake(tmp_path, *RUN_REFS)) == set()

    (tmp_path / "simulate.py").write_text(SIMULATE + "\n# the function's module changed\n")
    assert runs_of(snakemake(tmp_path, *RUN_REFS)) == set(RUN_REFS)

    (tmp_path / "helpers.py").write_text("def scale():\n    return 2.0\n")
    assert runs_of(snakemake(tmp_path, *RUN_REFS)) == set(RUN_REFS)

    # a helper not listed is not tracked (the docs say to list it)
    write_config(tmp_path, python_config())
    snakemake(tmp_path, *RUN_REFS)
    (tmp_path / "helpers.py").write_text("def scale():\n    return 3.0\n")
    assert runs_of(snakemake(tmp_path, *RUN_REFS)) == set()


def test_code_digest_follows_the_callables_module(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "sim_a.py").write_text("def run(ctx):\n    return {}\n")
    (tmp_path / "sim_b.py").write_text("def run(ctx):\n    return {'x': 1}\n")
    runner = resolve_runner("python")
    a = code_digest(runner, {"callable": "sim_a:run"})
    b = code_digest(runner, {"callable": "sim_b:run"})
    assert a != b
    assert a == code_digest(runner, {"callable": "sim_a:run", "other": 1})
    assert code_digest(runner, {"callable": "sim_a:run", "code_dependencies": ["sim_b"]}) \
        not in (a, b)


def test_bad_code_dependencies_and_unknown_module_are_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runner = resolve_runner("python")
    with pytest.raises(ConfigError) as bad:
        code_digest(runner, {"callable": "sim:run", "code_dependencies": "helpers"})
    assert str(bad.value) == ("runner.settings.code_dependencies must be a list of module "
                              "names, got 'helpers'")
    with pytest.raises(ConfigError) as no_callable:
        code_digest(runner, {"n": 1})
    assert str(no_callable.value) == "runner.settings.callable must be 'module:function'"
    with pytest.raises(PluginError) as missing:
        code_digest(runner, {"callable": "no_such_module_here:run"})
    assert str(missing.value) == ("cannot locate the source of module "
                                  f"'no_such_module_here' (looked on sys.path and in {tmp_path})")


@pytest.mark.slow
def test_a_missing_callable_module_stops_before_any_job(tmp_path):
    write_config(tmp_path, python_config())   # no simulate.py anywhere
    proc = snakemake(tmp_path, *RUN_REFS, check=False)
    assert proc.returncode != 0
    assert "cannot locate the source of module 'simulate'" in proc.stdout + proc.stderr
    assert not (tmp_path / "results" / "runs").exists()


# --- the shell runner: the scripts its command runs ------------------------------------
SHELL_SCRIPT = textwrap.dedent('''
    import sys

    import numpy as np

    seed, out = int(sys.argv[1]), sys.argv[2]
    np.savez(out, values=np.random.default_rng(seed).normal(size=8))
''')


def shell_config(code_files: list[str] | None) -> dict:
    config = copy.deepcopy(SMALL_CONFIG)
    settings: dict = {"command": "python {study_dir}/{settings[script]} {seed} "
                                  "{workdir}/values.npz",
                      "script": str(Path("scripts") / "make.py"), "outputs": ["values.npz"]}
    if code_files is not None:
        settings["code_files"] = code_files
    config["runner"] = {"plugin": "shell", "settings": settings}
    for condition in config["conditions"]:   # the command uses no {params[...]}: none taken
        condition["params"] = {}
    return config


@pytest.mark.slow
def test_editing_a_listed_script_of_the_shell_runner_reruns_the_runs(tmp_path):
    (tmp_path / "scripts").mkdir()
    script = tmp_path / "scripts" / "make.py"
    script.write_text(SHELL_SCRIPT)
    write_config(tmp_path, shell_config(["scripts/make.py"]))
    assert runs_of(snakemake(tmp_path, *RUN_REFS)) == set(RUN_REFS)
    assert runs_of(snakemake(tmp_path, *RUN_REFS)) == set()
    script.write_text(SHELL_SCRIPT + "# edited\n")
    assert runs_of(snakemake(tmp_path, *RUN_REFS)) == set(RUN_REFS)


def test_shell_code_files_join_the_key_only_when_listed(tmp_path):
    from assay.pipeline.runners import ShellRunner

    (tmp_path / "run.sh").write_text("echo one\n")
    settings = {"command": "sh run.sh", "code_files": ["run.sh"]}
    first = ShellRunner.spec_extras(settings, "free", 1, {}, tmp_path)
    assert first == {"code_files": {"run.sh": hashlib.sha256(b"echo one\n").hexdigest()}}
    assert ShellRunner.source_files(settings, "free", 1, {}) == ["run.sh"]
    # without code_files the spec gets nothing: keys of existing shell studies stay put
    assert ShellRunner.spec_extras({"command": "sh run.sh"}, "free", 1, {}, tmp_path) == {}
    (tmp_path / "run.sh").write_text("echo two\n")
    assert ShellRunner.spec_extras(settings, "free", 1, {}, tmp_path) != first

    with pytest.raises(ConfigError) as missing:
        ShellRunner.spec_extras({**settings, "code_files": ["nope.sh"]}, "free", 1, {},
                                tmp_path)
    assert str(missing.value) == (f"runner.settings.code_files: {tmp_path / 'nope.sh'} is "
                                  f"not a file (relative paths start at the study directory "
                                  f"{tmp_path})")
    with pytest.raises(ConfigError) as bad:
        ShellRunner.source_files({**settings, "code_files": "run.sh"}, "free", 1, {})
    assert str(bad.value) == ("runner.settings.code_files must be a list of file paths, "
                              "got 'run.sh'")
