"""Bad study configs are refused before any job, each with its exact short message.

Every row goes through `assay config validate` and through the workflow's own entry
(assay.pipeline.workflow.plan_or_exit, what the Snakefile calls); a few rows also through a real
`snakemake -n`, which must print the message and nothing else (no schema dump, no
traceback). The rows cover typos at every level, wrong types, bad ranges, params a runner
does not take, and third-party plugins' declared settings.
"""

from __future__ import annotations

import contextlib
import copy
import io
import sys
import textwrap
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml

from workflow_helpers import SMALL_CONFIG, snakemake, write_config

from assay.cli import main
from assay.pipeline.workflow import plan_or_exit

PLUGINS_MODULE = "bad_config_plugins"
PLUGINS = textwrap.dedent('''
    """Third-party plugins of the bad-config table: what a user's own module declares."""

    from assay import METRICS, REQUIRED, Setting, Settings


    class Smooth:
        """A third-party analysis with a required setting and choices."""

        SETTINGS = Settings({
            "window": Setting(int, REQUIRED, ge=1, unit="frames", help="frames averaged"),
            "method": Setting(str, "mean", choices=("mean", "max"),
                              help="how a window is summarised"),
        })

        def collect(self, ctx):
            s = self.SETTINGS.read(ctx)
            return ctx.result(payload={METRICS: {"window": float(s.window)}})


    class Plain:
        """Declared as a plain dict of Setting."""

        SETTINGS = {"threshold": Setting(float, 0.5, ge=0, le=1, help="a fraction")}

        def collect(self, ctx):
            return ctx.result(payload={METRICS: {"one": 1.0}})


    class Undeclared:
        """Declares nothing: it runs, and `assay config validate` warns."""

        def collect(self, ctx):
            return ctx.result(payload={METRICS: {"one": 1.0}})


    class BadDeclaration:
        SETTINGS = ["window"]

        def collect(self, ctx):
            return ctx.result(payload={METRICS: {"one": 1.0}})


    class Engine:
        """A third-party runner whose condition params override its settings."""

        SETTINGS = Settings({
            "steps": Setting(int, 100, ge=1, unit="steps", help="steps per run"),
            "rate": Setting(float, 1.0, gt=0, unit="1/s", help="reaction rate"),
        }, params="merged")

        def run(self, ctx):
            raise NotImplementedError
''')

_DELETE = object()


def change(**changes: Any) -> Callable[[dict], dict]:
    """Set (or delete) keys given as dotted paths; list items by index: conditions.0.params."""
    def apply(config: dict) -> dict:
        for key, value in changes.items():
            *parents, last = key.split(".")
            target = config
            for part in parents:
                target = target[int(part)] if part.isdigit() else target.setdefault(part, {})
            if value is _DELETE:
                del target[last]
            else:
                target[int(last) if last.isdigit() else last] = value
        return config
    return apply


def base(kind: str) -> dict:
    """The small demo config, or the same study with another runner or analyses."""
    config = copy.deepcopy(SMALL_CONFIG)
    config["analyses"]["distances"] = {"plugin": "distance_matrix", "settings": {}}
    if kind == "shell":
        config["runner"] = {"plugin": "shell", "settings": {
            "command": "python sim.py --seed {seed} --eps {params[surface_epsilon]} "
                       "--out {workdir}/trajectory.npz",
            "outputs": ["trajectory.npz"]}}
    elif kind == "import":
        config["runner"] = {"plugin": "import", "settings": {
            "files": {"trajectory": "sims/{condition}/{replicate}.npz"}}}
        for condition in config["conditions"]:
            condition["params"] = {}
    elif kind == "openmm":
        config["runner"] = {"plugin": "openmm", "settings": {
            "structure": "MDAnalysisTests:data/A6PA6_alpha.pdb", "steps": 1000,
            "report_interval": 100, "checkpoint_interval": 500}}
        config["conditions"] = [{"label": "T300", "params": {"temperature_k": 300.0}},
                                {"label": "T350", "params": {"temperature_k": 350.0}}]
        config["control"] = "T300"
        config["analyses"] = {"contacts": {"plugin": "md_contacts",
                                           "settings": {"cutoff": 3.5}},
                              "rmsd": {"plugin": "md_rmsd", "settings": {}},
                              "rmsf": {"plugin": "md_rmsf", "settings": {}}}
    elif kind == "third_party":
        config["analyses"] = {"smooth": {"plugin": f"{PLUGINS_MODULE}:Smooth",
                                         "settings": {"window": 5}},
                              "plain": {"plugin": f"{PLUGINS_MODULE}:Plain"}}
    return config


POLYMER_TAKES = ("runner polymer_langevin takes: bond_k, bond_length, dt, equilibration_steps, "
                 "n_beads, n_frames, steps_per_frame, surface_epsilon, temperature")
CONTACTS_TAKES = "contact_events takes: cutoff, equilibration_frames, min_frames"
MD_CONTACTS_TAKES = ("md_contacts takes: blocks, cutoff, equilibration, min_frames, "
                     "min_separation, pbc, select, select_b, start, step, stop, table_format, "
                     "topology_kind, trajectory_kind, unwrap")
OPENMM_TAKES = ("runner openmm takes: checkpoint_interval, constraints, forcefield, "
                "friction_per_ps, integrator, minimize, minimize_max_iterations, nonbonded_cutoff_nm, platform, precision, "
                "report_interval, run_length, solvent, steps, structure, temperature_k, threads, "
                "timestep_fs")
SHELL_FIELDS = ("{condition}, {replicate}, {seed}, {params}, {settings}, {workdir}, {outdir}, "
                "{study_dir}, {threads}, {attempt}")

# (id, base config, change, exact message)
BAD = [
    # --- the study's own keys (the schema) ---------------------------------------------
    ("top-level typo", "demo", change(seeed=3),
     "config key (top level): unknown key 'seeed' (did you mean 'seed'?); known keys: "
     "aggregation, analyses, comparison, conditions, control, numerics, plots, replicates, "
     "resources, results, runner, seed, store, store_sharing"),
    ("analysis 'setting' for 'settings'", "demo",
     change(**{"analyses.contacts.setting": {"cutoff": 3.0}}),
     "config key analyses.contacts: unknown key 'setting' (did you mean 'settings'?); known "
     "keys: plugin, settings"),
    ("condition 'param' for 'params'", "demo", change(**{"conditions.0.param": {}}),
     "config key conditions[0]: unknown key 'param' (did you mean 'params'?); known keys: "
     "label, params, resources"),
    ("aggregation typo", "demo", change(**{"aggregation.confidance": 0.9}),
     "config key aggregation: unknown key 'confidance' (did you mean 'confidence'?); known "
     "keys: allow_partial, confidence, max_rhat, min_n_eff, min_replicates"),
    ("comparison typo", "demo", change(**{"comparison.tests": "welch"}),
     "config key comparison: unknown key 'tests' (did you mean 'test'?); known keys: "
     "correction, pairs, permutations, seed, test"),
    ("resources typo", "demo", change(**{"resources.run.thread": 2}),
     "config key resources.run: unknown key 'thread' (did you mean 'threads'?); known keys: "
     "gpu, mem_mb, runtime, slurm_extra, slurm_partition, threads"),
    ("plots dpi of the wrong type", "demo", change(**{"plots.dpi": "high"}),
     "config key plots.dpi: 'high' is not of type 'integer'"),
    ("unknown comparison test", "demo", change(**{"comparison.test": "t-test"}),
     "config key comparison.test: 't-test' is not one of ['welch', 'mannwhitney', "
     "'permutation']"),
    ("analysis settings not a mapping", "demo",
     change(**{"analyses.contacts.settings": [1.5]}),
     "config key analyses.contacts.settings: [1.5] is not of type 'object'"),
    # --- an analysis's settings ----------------------------------------------------------
    ("cutof for cutoff (the issue's case)", "demo",
     change(**{"analyses.contacts.settings": {"cutof": 3.0}}),
     f"config key analyses.contacts.settings: unknown setting 'cutof' (did you mean "
     f"'cutoff'?); {CONTACTS_TAKES}"),
    ("two typos at once", "demo",
     change(**{"analyses.contacts.settings": {"cutof": 3.0, "min_frame": 2}}),
     f"config key analyses.contacts.settings: unknown settings 'cutof' (did you mean "
     f"'cutoff'?), 'min_frame' (did you mean 'min_frames'?); {CONTACTS_TAKES}"),
    ("a setting no analysis has", "demo",
     change(**{"analyses.contacts.settings.colour": "red"}),
     f"config key analyses.contacts.settings: unknown setting 'colour'; {CONTACTS_TAKES}"),
    ("cutoff as text", "demo", change(**{"analyses.contacts.settings.cutoff": "far"}),
     "config key analyses.contacts.settings.cutoff: 'far' is not a number; expected a number "
     "> 0 (σ); default 1.5"),
    ("negative cutoff", "demo", change(**{"analyses.contacts.settings.cutoff": -1.5}),
     "config key analyses.contacts.settings.cutoff: -1.5 is out of range; expected a number "
     "> 0 (σ); default 1.5"),
    ("zero cutoff (exclusive bound)", "demo",
     change(**{"analyses.contacts.settings.cutoff": 0}),
     "config key analyses.contacts.settings.cutoff: 0 is out of range; expected a number > 0 "
     "(σ); default 1.5"),
    ("min_frames 0", "demo", change(**{"analyses.contacts.settings.min_frames": 0}),
     "config key analyses.contacts.settings.min_frames: 0 is out of range; expected an "
     "integer >= 1 (frames); default 1"),
    ("min_frames 1.5", "demo", change(**{"analyses.contacts.settings.min_frames": 1.5}),
     "config key analyses.contacts.settings.min_frames: 1.5 is not an integer; expected an "
     "integer >= 1 (frames); default 1"),
    ("equilibration_frames typo", "demo",
     change(**{"analyses.gyration.settings": {"equilibration_frame": 5}}),
     "config key analyses.gyration.settings: unknown setting 'equilibration_frame' (did you "
     "mean 'equilibration_frames'?); radius_of_gyration takes: equilibration_frames"),
    ("equilibration_frames negative", "demo",
     change(**{"analyses.gyration.settings.equilibration_frames": -5}),
     "config key analyses.gyration.settings.equilibration_frames: -5 is out of range; "
     "expected an integer >= 0 (frames); default 0"),
    ("equilibration_frames true", "demo",
     change(**{"analyses.gyration.settings.equilibration_frames": True}),
     "config key analyses.gyration.settings.equilibration_frames: True is not an integer; "
     "expected an integer >= 0 (frames); default 0"),
    ("stride 0", "demo", change(**{"analyses.distances.settings.stride": 0}),
     "config key analyses.distances.settings.stride: 0 is out of range; expected an integer "
     ">= 1 (frames); default 1"),
    # --- the runner's settings and the conditions' params -----------------------------------
    ("n_frame for n_frames (the issue's case)", "demo",
     change(**{"runner.settings.n_frame": 40}),
     f"config key runner.settings: unknown setting 'n_frame' (did you mean 'n_frames'?); "
     f"{POLYMER_TAKES}"),
    ("n_beads as text (the issue's case)", "demo", change(**{"runner.settings.n_beads": "12"}),
     "config key runner.settings.n_beads: '12' is not an integer; expected an integer >= 2 "
     "(beads); default 24"),
    ("one bead", "demo", change(**{"runner.settings.n_beads": 1}),
     "config key runner.settings.n_beads: 1 is out of range; expected an integer >= 2 "
     "(beads); default 24"),
    ("dt null", "demo", change(**{"runner.settings.dt": None}),
     "config key runner.settings.dt: None is not a number; expected a number > 0 (τ); "
     "default 0.005"),
    ("param typo", "demo", change(**{"conditions.1.params": {"surface_epsilonn": 3.0}}),
     f"config key conditions[1].params: unknown param 'surface_epsilonn' (did you mean "
     f"'surface_epsilon'?); {POLYMER_TAKES}"),
    ("param out of range", "demo", change(**{"conditions.1.params.surface_epsilon": -3.0}),
     "config key conditions[1].params.surface_epsilon: -3.0 is out of range; expected a "
     "number >= 0 (kT); default 1.0"),
    ("param of the wrong type", "demo", change(**{"conditions.0.params.temperature": "hot"}),
     "config key conditions[0].params.temperature: 'hot' is not a number; expected a number "
     "> 0 (kT); default 1.0"),
    ("a param the runner does not take", "demo", change(**{"conditions.0.params.pressure": 1}),
     f"config key conditions[0].params: unknown param 'pressure'; {POLYMER_TAKES}"),
    # --- shell, python, import runners -------------------------------------------------------
    ("shell without command", "shell", change(**{"runner.settings.command": _DELETE}),
     "config key runner.settings: runner shell needs setting 'command': a string; required "
     "(shell command template run per run)"),
    ("shell outputs typo", "shell", change(**{"runner.settings.ouputs": ["x.npz"]}),
     "config key runner.settings: unknown setting 'ouputs' (did you mean 'outputs'?); runner "
     "shell takes: code_files, command, outputs and what its templates use as "
     "{settings[name]}"),
    ("shell outputs not a list", "shell", change(**{"runner.settings.outputs": "x.npz"}),
     "config key runner.settings.outputs: 'x.npz' is not a list of strings; expected a list "
     "of strings; default []"),
    ("shell template field typo", "shell",
     change(**{"runner.settings.command": "python sim.py --seed {sed}"}),
     f"config key runner.settings.command: unknown template field {{sed}} (did you mean "
     f"'{{seed}}'?); known fields: {SHELL_FIELDS}"),
    ("shell param its command does not use", "shell",
     change(**{"conditions.0.params": {"surface_epsilon": 0.0, "temperature": 2.0}}),
     "config key conditions[0].params: unknown param 'temperature'; runner shell passes "
     "params on only as {params[name]} in runner.settings.command, which uses "
     "surface_epsilon"),
    ("python callable without a function", "demo",
     change(runner={"plugin": "python", "settings": {"callable": "simulate"}}),
     "config key runner.settings.callable: 'simulate' is not 'module:function'; expected a "
     "string; required"),
    ("python callable in no module there is", "demo",
     change(runner={"plugin": "python", "settings": {"callable": "simulat:run"}}),
     "config key runner.settings: cannot locate the source of module 'simulat' (looked on "
     "sys.path and in <TMP>)"),
    ("import without files", "import", change(**{"runner.settings": {}}),
     "config key conditions[0]: runner import needs setting 'files' (in runner.settings or "
     "this condition's params): a mapping of strings; required (kind -> path template "
     "({condition}, {replicate}, {params[name]}) from the study directory)"),
    ("import template field typo", "import",
     change(**{"runner.settings.files.trajectory": "sims/{condition}/{replicat}.npz"}),
     "config key runner.settings.files: unknown template field {replicat} (did you mean "
     "'{replicate}'?); known fields: {condition}, {replicate}, {params}"),
    ("import param no template uses", "import", change(**{"conditions.0.params.system": "a"}),
     "config key conditions[0].params: unknown param 'system'; runner import takes: files"),
    # --- openmm and the MD analyses ------------------------------------------------------------
    ("openmm temprature_k", "openmm", change(**{"runner.settings.temprature_k": 310.0}),
     f"config key runner.settings: unknown setting 'temprature_k' (did you mean "
     f"'temperature_k'?); {OPENMM_TAKES}"),
    ("openmm param out of range", "openmm", change(**{"conditions.1.params.temperature_k": -5}),
     "config key conditions[1].params.temperature_k: -5 is out of range; expected a number "
     "> 0 (K); default 300.0"),
    ("openmm solvent not a choice", "openmm", change(**{"runner.settings.solvent": "water"}),
     "config key runner.settings.solvent: 'water' is not one of the choices; expected one of "
     "'vacuum', 'hct', 'obc1', 'obc2', 'gbn', 'gbn2'; default 'vacuum'"),
    ("openmm steps not a multiple of report_interval", "openmm",
     change(**{"runner.settings.steps": 1050}),
     "runner.settings.steps (1050) must be a multiple of report_interval "
     "(100)"),
    ("openmm precision on the CPU", "openmm", change(**{"runner.settings.precision": "mixed"}),
     "runner.settings.precision applies to ['CUDA', 'OpenCL', 'HIP'] only; remove it for "
     "platform 'CPU'"),
    ("openmm param breaks a cross-check", "openmm",
     change(**{"conditions.1.params.steps": 1050}),
     "condition 'T350': condition param 'steps' (1050) must be a multiple of report_interval "
     "(100)"),
    ("md_contacts cutof (the issue's MD case)", "openmm",
     change(**{"analyses.contacts.settings": {"cutof": 8.0}}),
     f"config key analyses.contacts.settings: unknown setting 'cutof' (did you mean "
     f"'cutoff'?); {MD_CONTACTS_TAKES}"),
    ("md_contacts framse (the issue's MD case)", "openmm",
     change(**{"analyses.contacts.settings.framse": 3}),
     f"config key analyses.contacts.settings: unknown setting 'framse' (did you mean "
     f"'min_frames'?); {MD_CONTACTS_TAKES}"),
    ("md_rmsf reference not a choice", "openmm",
     change(**{"analyses.rmsf.settings.reference": "mean"}),
     "config key analyses.rmsf.settings.reference: 'mean' is not one of the choices; expected "
     "one of 'average', 'frame'; default 'average'"),
    ("md_rmsd group name", "openmm",
     change(**{"analyses.rmsd.settings.groupselections": {"1lid": "name CA"}}),
     "config key analyses.rmsd.settings.groupselections: group name '1lid' is not letters, "
     "digits and '_' (starting with a letter); expected a mapping of strings; default {}"),
    ("md step 0", "openmm", change(**{"analyses.rmsd.settings.step": 0}),
     "config key analyses.rmsd.settings.step: 0 is out of range; expected an integer >= 1 "
     "(frames); default 1"),
    ("md empty selection", "openmm", change(**{"analyses.rmsd.settings.select": " "}),
     "config key analyses.rmsd.settings.select: an empty selection selects nothing; expected "
     "a string; default 'name CA'"),
    # --- third-party plugins (module:Class) ------------------------------------------------------
    ("third-party setting typo", "third_party",
     change(**{"analyses.smooth.settings": {"window": 5, "methd": "max"}}),
     f"config key analyses.smooth.settings: unknown setting 'methd' (did you mean 'method'?); "
     f"{PLUGINS_MODULE}:Smooth takes: method, window"),
    ("third-party required setting missing", "third_party",
     change(**{"analyses.smooth.settings": {}}),
     f"config key analyses.smooth.settings: {PLUGINS_MODULE}:Smooth needs setting 'window': "
     f"an integer >= 1 (frames); required (frames averaged)"),
    ("third-party choice", "third_party", change(**{"analyses.smooth.settings.method": "median"}),
     "config key analyses.smooth.settings.method: 'median' is not one of the choices; expected "
     "one of 'mean', 'max'; default 'mean'"),
    ("third-party plain-dict declaration, out of range", "third_party",
     change(**{"analyses.plain.settings": {"threshold": 1.5}}),
     "config key analyses.plain.settings.threshold: 1.5 is out of range; expected a number "
     ">= 0 and <= 1; default 0.5"),
    ("third-party declaration that is not Settings", "third_party",
     change(**{"analyses.plain.plugin": f"{PLUGINS_MODULE}:BadDeclaration"}),
     "config key analyses.plain.plugin: BadDeclaration.SETTINGS is a list, not "
     "Settings({name: Setting(...)})"),
    ("third-party runner, param it does not take", "demo",
     change(runner={"plugin": f"{PLUGINS_MODULE}:Engine", "settings": {"steps": 10}}),
     f"config key conditions[0].params: unknown param 'surface_epsilon'; runner "
     f"{PLUGINS_MODULE}:Engine takes: rate, steps"),
]
# A few rows through a real `snakemake -n` (~2 s each): one per layer of the config.
THROUGH_SNAKEMAKE = ["top-level typo", "cutof for cutoff (the issue's case)",
                     "n_beads as text (the issue's case)", "param typo",
                     "shell template field typo", "third-party setting typo"]


@pytest.fixture
def plugins_module(tmp_path, monkeypatch):
    (tmp_path / f"{PLUGINS_MODULE}.py").write_text(PLUGINS)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    sys.modules.pop(PLUGINS_MODULE, None)
    yield tmp_path
    sys.modules.pop(PLUGINS_MODULE, None)


def bad_config(name: str) -> dict:
    _, kind, mutate, _ = next(row for row in BAD if row[0] == name)
    return mutate(base(kind))


def validate(path: Path) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["config", "validate", str(path)])
    return code, out.getvalue(), err.getvalue()


def test_the_table_is_big_and_its_bases_are_good(plugins_module):
    assert len(BAD) >= 40 and len({row[0] for row in BAD}) == len(BAD)
    for kind in ("demo", "shell", "import", "openmm", "third_party"):
        path = write_config(plugins_module / kind, base(kind))
        code, out, err = validate(path)
        # The import base names files that are not there: validate says so, as a warning.
        files = ("warning: 4 of 4 files to import are not there yet (first: sims/free/1.npz); "
                 "the runs that need them will fail until they are\n")
        assert (code, err) == (0, files if kind == "import" else ""), err


@pytest.mark.parametrize("name, kind, mutate, message", BAD, ids=[row[0] for row in BAD])
def test_bad_config_is_refused_with_its_message(plugins_module, name, kind, mutate, message):
    message = message.replace("<TMP>", str(plugins_module))
    path = write_config(plugins_module, mutate(base(kind)))
    code, out, err = validate(path)
    assert (code, out, err) == (1, "", f"assay config: error: {message}\n")
    # what the Snakefile calls: the same message, then how to check without snakemake
    with pytest.raises(SystemExit) as stop:
        plan_or_exit(yaml.safe_load(path.read_text()), cores=2, environ={})
    assert str(stop.value) == (f"assay: {message}\n(`assay config validate FILE` checks a "
                               "config without starting snakemake)")


@pytest.mark.slow
@pytest.mark.parametrize("name", THROUGH_SNAKEMAKE)
def test_snakemake_refuses_before_any_job_in_two_lines(tmp_path, name):
    message = next(row[3] for row in BAD if row[0] == name)
    (tmp_path / f"{PLUGINS_MODULE}.py").write_text(PLUGINS)
    write_config(tmp_path, bad_config(name))
    proc = snakemake(tmp_path, "-n", check=False, timeout=120)
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert proc.stderr.splitlines() == [f"assay: {message}", "(`assay config validate FILE` "
                                        "checks a config without starting snakemake)"]
    assert not (tmp_path / "results").exists() and not (tmp_path / "store").exists()
