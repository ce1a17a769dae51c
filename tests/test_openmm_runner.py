"""The openmm runner on real OpenMM (CPU platform, one thread): digests, resume, errors.

A6PA6 (137 atoms) in vacuum runs a few thousand steps per second here, so every run below
takes well under a second of simulation. Nothing of OpenMM is mocked: the runs, the kills
and the checkpoints are real, and equality is checked on the stored sidecar digests.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("openmm")
pytest.importorskip("MDAnalysisTests")

from assay import ArtifactStore, ConfigError  # noqa: E402
from assay.pipeline import openmm_runner  # noqa: E402
from assay.pipeline.context import RunContext  # noqa: E402
from assay.pipeline.openmm_runner import OpenMMRunner, SimulationStopped  # noqa: E402
from assay.pipeline.plugins import code_digest, modules_digest, resolve_runner  # noqa: E402
from assay.pipeline.stages import execute, settings_fingerprint  # noqa: E402

pytestmark = [pytest.mark.openmm, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

REPO = Path(__file__).resolve().parents[1]
STRUCTURE = "MDAnalysisTests:data/A6PA6_alpha.pdb"
SETTINGS = {"structure": STRUCTURE, "solvent": "vacuum", "steps": 3000,
            "report_interval": 100, "checkpoint_interval": 500}
SEED = 1234
RESUMED = re.compile(r"resuming from step (\d+) of (\d+)")


def make_ctx(root: Path, work: str | None = "work", *, settings: dict | None = None,
             params: dict | None = None, resuming: bool = False,
             store: ArtifactStore | None = None) -> RunContext:
    workdir = None
    if work is not None:
        workdir = root / work
        workdir.mkdir(parents=True, exist_ok=True)
    return RunContext(condition_label="T300", replicate=1, params=params or {},
                      settings=settings if settings is not None else SETTINGS, seed=SEED,
                      artifact_store=store or ArtifactStore(root / "store"),
                      runner_name="openmm", study_dir=root, workdir=workdir,
                      resuming=resuming)


def digests(run) -> dict[str, str]:
    return {ref.path: ref.sha256 for ref in run.sidecars}


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict:
    """One uninterrupted run: its sidecar digests and artifact digest."""
    root = tmp_path_factory.mktemp("reference")
    ctx = make_ctx(root)
    run = OpenMMRunner().run(ctx)
    return {"run": run, "digests": digests(run), "store": ctx.artifact_store,
            "artifact": ctx.artifact_store.write_artifact(run)}


# --- determinism ----------------------------------------------------------------------------
def test_two_uninterrupted_runs_give_the_same_bytes(reference, tmp_path):
    ctx = make_ctx(tmp_path)
    run = OpenMMRunner().run(ctx)
    assert digests(run) == reference["digests"]
    assert ctx.artifact_store.write_artifact(run) == reference["artifact"]
    assert set(reference["digests"]) == {"sidecars/topology.pdb", "sidecars/trajectory.dcd",
                                         "sidecars/state_data.csv"}


def test_outputs_carry_no_timestamps(reference):
    store, run = reference["store"], reference["run"]
    dcd = store.validate_sidecar(run.sidecar(kind="trajectory")).read_bytes()
    assert dcd[4:8] == b"CORD" and b"Created by assay (no timestamp)" in dcd[:300]
    pdb = store.validate_sidecar(run.sidecar(kind="topology")).read_text()
    assert pdb.splitlines()[0].startswith("REMARK   1 CREATED WITH OPENMM")
    assert not re.search(r"\d{4}-\d{2}-\d{2}", pdb.splitlines()[0])


def test_payload_holds_only_input_determined_facts(reference):
    payload = reference["run"].payload
    assert payload["steps"] == 3000 and payload["n_frames"] == 30
    assert payload["simulated_ns"] == pytest.approx(0.006)
    assert payload["platform"] == "CPU" and payload["threads"] == 1
    assert payload["openmm_version"]
    assert not {"ns_per_day", "resumed_from_step", "wall_s"} & set(payload)


def test_state_data_table_has_one_row_per_frame(reference):
    store, run = reference["store"], reference["run"]
    table = store.load_table_sidecar(run.sidecar(kind="state_data"))
    assert list(table.columns) == list(openmm_runner.STATE_COLUMNS)
    assert table["step"].tolist() == list(range(100, 3001, 100))
    assert table["total_energy_kj_mol"].to_numpy() == pytest.approx(
        (table["potential_energy_kj_mol"] + table["kinetic_energy_kj_mol"]).to_numpy())
    assert 150 < table["temperature_k"].mean() < 450     # thermostat at 300 K


# --- stop and resume ---------------------------------------------------------------------
def test_stop_request_leaves_a_checkpoint_and_resume_gives_the_same_digests(
        reference, tmp_path, capfd, monkeypatch):
    monkeypatch.setattr(openmm_runner, "_PROGRESS_EVERY_S", 0.0)   # a progress call per frame
    ctx = make_ctx(tmp_path)
    ctx.progress_sink = lambda done, total, message: (
        ctx.stop_event.set() if done >= 1200 else None)
    with pytest.raises(SimulationStopped) as stopped:
        OpenMMRunner().run(ctx)
    step = int(re.search(r"at step (\d+) of 3000", str(stopped.value)).group(1))
    assert 1200 < step < 3000            # not a multiple of checkpoint_interval: 1300
    assert json.loads((tmp_path / "work" / "checkpoint.json").read_text())["step"] == step
    capfd.readouterr()

    run = OpenMMRunner().run(make_ctx(tmp_path, resuming=True))
    assert RESUMED.search(capfd.readouterr().err).groups() == (str(step), "3000")
    assert digests(run) == reference["digests"]


def test_stop_without_a_workdir_says_a_rerun_starts_over(tmp_path, monkeypatch):
    monkeypatch.setattr(openmm_runner, "_PROGRESS_EVERY_S", 0.0)
    ctx = make_ctx(tmp_path, work=None)
    ctx.stop_event.set()
    with pytest.raises(SimulationStopped) as stopped:
        OpenMMRunner().run(ctx)
    assert str(stopped.value) == ("openmm run T300/1 stopped on request at step 100 of 3000 "
                                  "without a work directory, so a rerun starts from step 0")
    assert not list((tmp_path / "store" / "tmp").glob("openmm-*"))


KILL_SCRIPT = """
import json, sys
from pathlib import Path
from assay import ArtifactStore
from assay.pipeline.context import RunContext
from assay.pipeline.openmm_runner import OpenMMRunner
root, settings = Path(sys.argv[1]), json.loads(sys.argv[2])
ctx = RunContext(condition_label="T300", replicate=1, params={}, settings=settings,
                 seed=int(sys.argv[3]), artifact_store=ArtifactStore(root / "store"),
                 runner_name="openmm", study_dir=root, workdir=root / "work")
OpenMMRunner().run(ctx)
"""


def test_sigkill_between_checkpoints_then_resume_gives_the_same_digests(tmp_path, capfd):
    settings = {**SETTINGS, "steps": 12000, "checkpoint_interval": 2000}
    expected = digests(OpenMMRunner().run(make_ctx(tmp_path / "uninterrupted",
                                                    settings=settings)))
    root = tmp_path / "killed"
    (root / "work").mkdir(parents=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(root),
                             json.dumps(settings), str(SEED)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    marker, dcd = root / "work" / "checkpoint.json", root / "work" / "trajectory.dcd"
    deadline = time.monotonic() + 120
    try:
        # Kill once a checkpoint past step 0 exists and frames were written after it, so
        # the resume must cut the trajectory back, not only continue it.
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                record = json.loads(marker.read_bytes())
            except (FileNotFoundError, ValueError):
                record = {"step": 0}
            if record["step"] >= 2000 and dcd.stat().st_size > record["dcd_bytes"]:
                break
            time.sleep(0.002)
    finally:
        proc.send_signal(signal.SIGKILL)
        stderr = proc.communicate()[1].decode()
    assert proc.returncode == -signal.SIGKILL, f"the run ended before the kill:\n{stderr}"
    record = json.loads(marker.read_bytes())
    assert 2000 <= record["step"] < 12000
    capfd.readouterr()

    run = OpenMMRunner().run(make_ctx(root, settings=settings, resuming=True))
    log = capfd.readouterr().err
    assert RESUMED.search(log), log
    assert RESUMED.search(log).groups() == (str(record["step"]), "12000")
    assert digests(run) == expected


@pytest.mark.parametrize("resuming", [True, False])
def test_rerun_in_a_finished_workdir_leaves_store_objects_intact(reference, tmp_path, capfd,
                                                                 resuming):
    """The finished files are copied into the store as inodes of their own: a later run
    in the same work directory (here with other settings, so other bytes) must never
    write into them."""
    ctx = make_ctx(tmp_path)
    first = OpenMMRunner().run(ctx)
    assert digests(first) == reference["digests"]
    work_file = tmp_path / "work" / "trajectory.dcd"
    stored = ctx.artifact_store.objects.path_for(
        next(s.sha256 for s in first.sidecars if s.path == "sidecars/trajectory.dcd"))
    assert work_file.stat().st_nlink == 1 and stored.stat().st_ino != work_file.stat().st_ino
    other = {**SETTINGS, "temperature_k": 310.0}
    second = OpenMMRunner().run(make_ctx(tmp_path, settings=other, resuming=resuming,
                                         store=ctx.artifact_store))
    assert ("cannot resume" in capfd.readouterr().err) is resuming
    assert digests(second)["sidecars/trajectory.dcd"] != reference["digests"][
        "sidecars/trajectory.dcd"]
    for ref in first.sidecars:
        ctx.artifact_store.validate_sidecar(ref, verify="full")


def test_resume_after_completion_only_publishes(reference, tmp_path, capfd):
    ctx = make_ctx(tmp_path)
    OpenMMRunner().run(ctx)
    again = OpenMMRunner().run(make_ctx(tmp_path, resuming=True, store=ctx.artifact_store))
    assert "resuming from step 3000 of 3000" in capfd.readouterr().err
    assert digests(again) == reference["digests"]


def test_a_checkpoint_of_other_settings_is_not_used(reference, tmp_path, capfd):
    OpenMMRunner().run(make_ctx(tmp_path, settings={**SETTINGS, "temperature_k": 310.0}))
    run = OpenMMRunner().run(make_ctx(tmp_path, resuming=True))
    assert ("cannot resume (the checkpoint belongs to other settings, seed or structure); "
            "starting from step 0") in capfd.readouterr().err
    assert digests(run) == reference["digests"]


def test_without_a_workdir_it_runs_in_the_store_tmp_and_cleans_up(reference, tmp_path):
    ctx = make_ctx(tmp_path, work=None)
    run = OpenMMRunner().run(ctx)
    assert digests(run) == reference["digests"]
    assert not list((tmp_path / "store" / "tmp").glob("openmm-*"))


def test_two_cpu_threads_are_flagged_as_not_reproducible(tmp_path):
    run = OpenMMRunner().run(make_ctx(tmp_path, settings={**SETTINGS, "threads": 2,
                                                          "steps": 500}))
    assert run.payload["threads"] == 2
    assert any("not deterministic" in warning for warning in run.warnings)


# --- settings -------------------------------------------------------------------------------
BAD = [
    ({"steps": 0}, "runner.settings.steps must be an integer >= 1, got 0"),
    ({"steps": 1050}, "runner.settings.steps (1050) must be a multiple of report_interval (100)"),
    ({"checkpoint_interval": 250},
     "runner.settings.checkpoint_interval (250) must be a multiple of report_interval (100)"),
    ({"timestep_fs": "2"}, "runner.settings.timestep_fs must be a number > 0, got '2'"),
    ({"solvent": "water"}, "runner.settings.solvent must be one of ['vacuum', 'hct', 'obc1', "
                           "'obc2', 'gbn', 'gbn2'], got 'water'"),
    ({"integrator": "verlet"},
     "runner.settings.integrator must be one of ['langevin_middle'], got 'verlet'"),
    ({"platform": "GPU"}, "runner.settings.platform must be one of ['CPU', 'Reference', "
                          "'CUDA', 'OpenCL', 'HIP'], got 'GPU'"),
    ({"precision": "mixed"},
     "runner.settings.precision applies to ['CUDA', 'OpenCL', 'HIP'] only; remove it for "
     "platform 'CPU'"),
    ({"platform": "Reference", "threads": 2},
     "runner.settings.threads applies to platform 'CPU' only; remove it for platform "
     "'Reference'"),
    ({"minimize": "yes"}, "runner.settings.minimize must be true or false, got 'yes'"),
    ({"forcefield": []}, "runner.settings.forcefield must be a list of OpenMM force-field XML "
                         "names such as ['amber14-all.xml'], got []"),
    ({"structure": None}, "runner.settings.structure is required: a PDB path relative to the "
                          "study directory, or 'package:path/in/package.pdb'"),
    ({"structure": "NoSuchPackage:x.pdb"},
     "runner.settings.structure 'NoSuchPackage:x.pdb': package 'NoSuchPackage' is not "
     "installed"),
    ({"structure": "MDAnalysisTests:data/none.pdb"},
     "runner.settings.structure 'MDAnalysisTests:data/none.pdb': package 'MDAnalysisTests' "
     "has no file 'data/none.pdb'"),
    ({"structure": "MDAnalysisTests:../x.pdb"},
     "runner.settings.structure 'MDAnalysisTests:../x.pdb': the path inside package "
     "'MDAnalysisTests' must be relative, without '..'"),
    ({"temprature_k": 300}, "openmm runner: unknown setting(s) ['temprature_k']; it accepts "
     + str(sorted({"structure", *openmm_runner.DEFAULTS}))),
]


@pytest.mark.parametrize("change, message", BAD, ids=[str(b[0]) for b in BAD])
def test_bad_settings_say_which_key_to_fix(tmp_path, change, message):
    with pytest.raises(ConfigError) as error:
        OpenMMRunner().run(make_ctx(tmp_path, settings={**SETTINGS, **change}))
    assert str(error.value) == message


def test_bad_condition_param_is_named_as_such(tmp_path):
    with pytest.raises(ConfigError) as error:
        OpenMMRunner().run(make_ctx(tmp_path, params={"temperature_k": -5}))
    assert str(error.value) == "condition param 'temperature_k' must be a number > 0, got -5"


def test_missing_structure_file_names_the_study_directory(tmp_path):
    with pytest.raises(ConfigError) as error:
        OpenMMRunner().run(make_ctx(tmp_path, settings={**SETTINGS, "structure": "no.pdb"}))
    assert str(error.value) == (f"runner.settings.structure: {tmp_path / 'no.pdb'} is not a "
                                f"file (relative paths start at the study directory {tmp_path})")


def test_unknown_force_field_and_missing_platform(tmp_path):
    with pytest.raises(ConfigError, match=r"^runner.settings.forcefield \['nope.xml'\]: "
                                          "OpenMM cannot load it"):
        OpenMMRunner().run(make_ctx(tmp_path, settings={**SETTINGS,
                                                        "forcefield": ["nope.xml"]}))
    import openmm

    names = [openmm.Platform.getPlatform(i).getName()
             for i in range(openmm.Platform.getNumPlatforms())]
    if "HIP" not in names:
        with pytest.raises(ConfigError) as error:
            OpenMMRunner().run(make_ctx(tmp_path, settings={**SETTINGS, "platform": "HIP"}))
        assert str(error.value) == (f"runner.settings.platform 'HIP' is not available on "
                                    f"this machine (available: {names})")


# --- the workflow's view --------------------------------------------------------------------
def test_registered_and_versioned():
    assert resolve_runner("openmm") is OpenMMRunner
    assert code_digest(OpenMMRunner) != modules_digest(("assay.pipeline.openmm_runner",))


def test_structure_digest_joins_the_action_key(tmp_path):
    from importlib.resources import files

    packaged = (files("MDAnalysisTests") / "data/A6PA6_alpha.pdb").read_bytes()
    extras = OpenMMRunner.spec_extras(SETTINGS, "T300", 1, {}, tmp_path)
    assert extras == {"structure": hashlib.sha256(packaged).hexdigest()}
    assert OpenMMRunner.source_files(SETTINGS, "T300", 1, {}) == []
    local = {**SETTINGS, "structure": "inputs/peptide.pdb"}
    assert OpenMMRunner.source_files(local, "T300", 1, {}) == ["inputs/peptide.pdb"]
    (tmp_path / "inputs").mkdir()
    (tmp_path / "inputs" / "peptide.pdb").write_bytes(packaged + b"END\n")
    assert OpenMMRunner.spec_extras(local, "T300", 1, {}, tmp_path)["structure"] \
        == hashlib.sha256(packaged + b"END\n").hexdigest()


def test_a_study_force_field_file_joins_the_key_and_is_the_one_openmm_loads(
        reference, tmp_path, monkeypatch):
    import openmm.app

    bundled = Path(openmm.app.__file__).parent / "data" / "amber14-all.xml"
    (tmp_path / "ff").mkdir()
    (tmp_path / "ff" / "mine.xml").write_bytes(bundled.read_bytes())
    settings = {**SETTINGS, "forcefield": ["ff/mine.xml"]}
    monkeypatch.chdir(tmp_path)   # snakemake's working directory: the study
    assert OpenMMRunner.source_files(settings, "T300", 1, {}) == ["ff/mine.xml"]
    first = OpenMMRunner.spec_extras(settings, "T300", 1, {}, tmp_path)
    assert first["forcefield"] == {
        "ff/mine.xml": hashlib.sha256(bundled.read_bytes()).hexdigest()}
    # bundled names are covered by the openmm version, not by a file digest
    assert "forcefield" not in OpenMMRunner.spec_extras(SETTINGS, "T300", 1, {}, tmp_path)

    # the same bytes as the bundled amber14 give the reference trajectory; the job loads
    # the study's file from the study directory, wherever the process runs
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    run = OpenMMRunner().run(make_ctx(tmp_path, settings=settings))
    trajectory = "sidecars/trajectory.dcd"
    assert digests(run)[trajectory] == reference["digests"][trajectory]

    # an edited file is a different key, and OpenMM reads the edit
    (tmp_path / "ff" / "mine.xml").write_text("<ForceField><broken></ForceField>")
    assert OpenMMRunner.spec_extras(settings, "T300", 1, {}, tmp_path) != first
    with pytest.raises(ConfigError, match=r"runner.settings.forcefield \['.*ff/mine.xml'\]"):
        OpenMMRunner().run(make_ctx(tmp_path, "work2", settings=settings))


def collect(store: ArtifactStore, run_digest: str, plugin: str, settings: dict):
    """The collect stage as a workflow job runs it."""
    from assay.pipeline.plugins import resolve_analysis

    spec = {"stage": "collect", "analysis": plugin, "plugin": plugin, "settings": settings,
            "settings_fingerprint": settings_fingerprint(plugin, settings),
            "condition": "T300", "replicate": 1, "params": {},
            "code_digest": code_digest(resolve_analysis(plugin))}
    return store.read_replicate_result(execute(store, spec, [run_digest]))


def test_sidecars_feed_the_md_analyses_unchanged(reference, tmp_path):
    mda = pytest.importorskip("MDAnalysis")
    store, run = reference["store"], reference["run"]
    rmsd = collect(store, reference["artifact"], "md_rmsd", {"select": "name CA"})
    rgyr = collect(store, reference["artifact"], "md_rgyr", {"select": "protein"})
    assert rmsd.payload["frame_selection"]["n_trajectory_frames"] == 30
    assert rmsd.payload["unwrapped"] is False              # no periodic box in the DCD
    assert 0 < rmsd.payload["metrics"]["mean_rmsd"] < 5

    # The same number from MDAnalysis on copies of the sidecars.
    for kind, name in (("topology", "t.pdb"), ("trajectory", "t.dcd")):
        (tmp_path / name).write_bytes(store.validate_sidecar(run.sidecar(kind=kind))
                                      .read_bytes())
    universe = mda.Universe(str(tmp_path / "t.pdb"), str(tmp_path / "t.dcd"))
    protein = universe.select_atoms("protein")
    assert protein.n_atoms == 137 and len(universe.trajectory) == 30
    direct = [protein.radius_of_gyration() for _ in universe.trajectory]
    assert rgyr.payload["metrics"]["mean_rg"] == pytest.approx(sum(direct) / len(direct),
                                                               rel=1e-12)
    assert universe.trajectory[1].time - universe.trajectory[0].time == pytest.approx(0.2)


# --- adaptive run length (issue 26, item 3) ------------------------------------------------
# The temperature's N_eff on this system and seed after 1000, 2000, 3000, ... steps (10
# frames each): 6.2, 9.0, 11.5, 13.0, 22.0; a target of 11 holds first at 3000 steps.
RUN_LENGTH = {"segment": 1000, "max": 6000, "until": {"n_eff": 11, "series": "temperature_k"}}
ADAPTIVE = {**{k: v for k, v in SETTINGS.items() if k != "steps"}, "run_length": RUN_LENGTH,
            "checkpoint_interval": 1000}
DECISION = re.compile(r"run_length: step (\d+) \(\d+ frames\), temperature_k N_eff (\S+) "
                      r"(<|>=) 11: (extend by 1000|done)")


def test_run_length_extends_until_the_target_holds_with_the_one_go_digest(tmp_path, capfd):
    """Extended twice (N_eff 6.2, 9.0 < 11) and stopped at 3000 steps (11.5): the sidecars
    and the artifact are byte for byte those of `steps: 3000` run in one go."""
    ctx = make_ctx(tmp_path / "adaptive", settings=ADAPTIVE)
    run = OpenMMRunner().run(ctx)
    decisions = [(int(m[0]), m[2], m[3]) for m in DECISION.findall(capfd.readouterr().err)]
    assert decisions == [(1000, "<", "extend by 1000"), (2000, "<", "extend by 1000"),
                         (3000, ">=", "done")]
    assert run.payload["steps"] == 3000 and run.payload["n_frames"] == 30
    assert run.warnings == []
    one_go = make_ctx(tmp_path / "one-go", settings={**SETTINGS, "steps": 3000,
                                                      "checkpoint_interval": 1000})
    fixed = OpenMMRunner().run(one_go)
    assert digests(run) == digests(fixed)
    assert ctx.artifact_store.write_artifact(run) == one_go.artifact_store.write_artifact(fixed)
    # the number it stopped on is the one collect's diagnostics store for that series
    from assay.pipeline.convergence import series_diagnostics

    table = ctx.artifact_store.load_table_sidecar(run.sidecar(kind="state_data"))
    assert series_diagnostics(table["temperature_k"].tolist())["n_eff"] >= 11 > \
        series_diagnostics(table["temperature_k"].tolist()[:20])["n_eff"]


def test_run_length_stopped_in_a_segment_resumes_to_the_same_run(tmp_path, capfd,
                                                                  monkeypatch):
    """Stopped at step 1600 (after the first extension), resumed from the checkpoint the
    stop left: the decisions still to make, the same 3000-step run."""
    monkeypatch.setattr(openmm_runner, "_PROGRESS_EVERY_S", 0.0)
    ctx = make_ctx(tmp_path, settings=ADAPTIVE)
    ctx.progress_sink = lambda done, total, message: (
        ctx.stop_event.set() if done >= 1500 else None)
    with pytest.raises(SimulationStopped, match="at step 1600 of 6000"):
        OpenMMRunner().run(ctx)
    capfd.readouterr()
    run = OpenMMRunner().run(make_ctx(tmp_path, settings=ADAPTIVE, resuming=True))
    err = capfd.readouterr().err
    assert RESUMED.search(err).groups() == ("1600", "6000")
    assert [int(m[0]) for m in DECISION.findall(err)] == [2000, 3000]
    fixed = OpenMMRunner().run(make_ctx(tmp_path / "one-go", settings={
        **SETTINGS, "steps": 3000}))
    assert digests(run) == digests(fixed) and run.payload == fixed.payload


def test_run_length_at_max_short_of_its_target_says_so(tmp_path):
    settings = {**ADAPTIVE, "run_length": {"segment": 1000, "max": 2000,
                                           "until": {"n_eff": 50}}}
    run = OpenMMRunner().run(make_ctx(tmp_path, settings=settings))
    assert run.payload["steps"] == 2000
    assert len(run.warnings) == 1 and re.fullmatch(
        r"run_length: potential_energy_kj_mol reached N_eff \S+ of the 50 asked for at max "
        r"2000 steps; raise run_length.max", run.warnings[0])


@pytest.mark.parametrize("change, message", [
    ({"steps": 3000}, "give steps .* or run_length .*, not both"),
    ({"run_length": {**RUN_LENGTH, "segments": 2}}, r"unknown key\(s\) \['segments'\]"),
    ({"run_length": {"segment": 1000, "until": {"n_eff": 5}}}, "run_length: max is required"),
    ({"run_length": {**RUN_LENGTH, "until": {"n_eff": 5, "neff": 2}}},
     r"run_length.until: unknown key\(s\) \['neff'\]"),
    ({"run_length": {**RUN_LENGTH, "until": {"series": "temperature_k"}}},
     "until: n_eff is required"),
    ({"run_length": {**RUN_LENGTH, "until": {"n_eff": 0}}}, "n_eff must be a number > 0"),
    ({"run_length": {**RUN_LENGTH, "until": {"n_eff": 5, "series": "rmsd"}}},
     "series must be one of"),
    ({"run_length": {**RUN_LENGTH, "segment": 150}}, "multiple of report_interval"),
    ({"run_length": {**RUN_LENGTH, "segment": 500}}, "at least 8 frames"),
    ({"run_length": {**RUN_LENGTH, "max": 6500}}, r"max \(6500\) must be a multiple of "
                                                  r"segment \(1000\)"),
    ({"run_length": {**RUN_LENGTH, "max": True}}, "max must be an integer"),
    ({"run_length": 3000}, "run_length must be a mapping"),
])
def test_run_length_keys_are_checked(change, message):
    with pytest.raises(ConfigError, match=message):
        openmm_runner.parse_settings({**ADAPTIVE, **change})


def test_run_length_schema_says_what_the_check_does():
    """The exported JSON schema (`assay plugins openmm --json`) accepts the good run_length
    and refuses every bad one the check refuses, except the cross-checks it cannot say
    (multiples of report_interval and segment)."""
    import jsonschema

    schema = OpenMMRunner.SETTINGS.json_schema()["properties"]["run_length"]
    jsonschema.validate(RUN_LENGTH, schema)
    jsonschema.validate(None, schema)
    for bad in ({**RUN_LENGTH, "segments": 2}, {"segment": 1000, "until": {"n_eff": 5}},
                {**RUN_LENGTH, "until": {"n_eff": 5, "neff": 2}},
                {**RUN_LENGTH, "until": {"series": "temperature_k"}},
                {**RUN_LENGTH, "until": {"n_eff": 0}},
                {**RUN_LENGTH, "until": {"n_eff": 5, "series": "rmsd"}},
                {**RUN_LENGTH, "max": True}, {**RUN_LENGTH, "segment": 0}, 3000):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, schema)
        with pytest.raises(ConfigError):
            openmm_runner.parse_settings({**ADAPTIVE, "run_length": bad})


def test_a_study_with_run_length_is_checked_before_any_job():
    """The example study with run_length instead of steps validates; steps in a condition's
    params beside it, or a misspelled key, stops the study naming the key (and condition)."""
    import copy

    import yaml

    from assay.pipeline.config import Study

    config = yaml.safe_load((REPO / "config" / "examples" / "openmm.yaml").read_text())
    del config["runner"]["settings"]["steps"]
    config["runner"]["settings"]["run_length"] = {"segment": 1000, "max": 20000,
                                                  "until": {"n_eff": 50}}
    Study.from_config(config)
    clash = copy.deepcopy(config)
    clash["conditions"][1]["params"]["steps"] = 3000
    with pytest.raises(ConfigError, match=r"^condition 'T350': condition param 'steps' and "
                                          r"runner.settings.run_length: give steps"):
        Study.from_config(clash)
    typo = copy.deepcopy(config)
    typo["runner"]["settings"]["run_length"]["until"] = {"neff": 50}
    with pytest.raises(ConfigError, match=r"run_length.until: unknown key\(s\) \['neff'\]"):
        Study.from_config(typo)
