"""The ``openmm`` runner: a real MD engine whose runs survive kills and give stable digests.

Why it is built the way it is:

* **One loop we own.** Instead of OpenMM reporters, the runner steps in chunks of
  ``report_interval`` and writes one DCD frame and one state-data row per chunk, exactly
  what ``DCDReporter`` + ``StateDataReporter`` would write at that interval. Between
  chunks it checks ``ctx.stop_requested`` (SIGTERM) and writes checkpoints.
* **Byte-identical outputs.** On the CPU platform with ``threads: 1`` (the default)
  OpenMM is deterministic, so two runs with one seed give the same sidecar bytes, and a
  run killed at any step and resumed from its last checkpoint gives the uninterrupted
  bytes (the files and checkpoints: ``openmm_files``). Two or more CPU threads give other
  bytes on every run (measured with OpenMM 8.6.1): the runner then warns in the
  artifact. Platform, precision and threads are settings, so they are in the action key.
* **Adaptive run length.** ``run_length: {segment, max, until: {n_eff, series}}`` instead
  of ``steps``: the run stops at the first segment end (a checkpoint) where the N_eff of a
  state-table series (assay.pipeline.convergence, as stored diagnostics compute it) reaches the
  target, or at ``max``. Each decision reads only the frames so far, so a run extended to
  N steps, and one killed and resumed, has the bytes (and artifact digest) of a run of
  ``steps: N`` in one go; the decisions are in the job log, and a run that stops at
  ``max`` short of the target carries a warning.
* **What the payload holds.** Steps, simulated ns, frame spacing, atoms, platform,
  precision, threads, OpenMM version and seed: facts that depend only on the inputs. The
  issue also asks for ns/day, but a manifest must not hold timings: the payload of a
  resumed run would differ from the uninterrupted one, and so would its digest. ns/day is
  therefore written to the job log (``ctx.log``) per attempt, and the action record keeps
  the job's duration, from which ``simulated_ns / duration`` follows.
"""

from __future__ import annotations

import base64
import io
import math
import re
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Any

from ..store.artifacts import RunArtifact
from ..store.atomic import atomic_write_bytes
from .context import RunContext
from ..errors import ConfigError, RunInterrupted
from ..store.hashing import canonical_json, hash_file, sha256_hex
from .run_length import (
    Ends,
    RunLength,
    csv_column,
    json_schema as run_length_schema,
    parse_run_length,
)
from .settings import PARAMS_MERGED, REQUIRED, Setting, Settings
from .openmm_files import (
    FILES,
    STATE_COLUMNS,
    Outputs,
    pdb_bytes,
    save_checkpoint,
    usable_checkpoint,
)

DEFAULTS: dict[str, Any] = {
    "forcefield": ["amber14-all.xml"],
    "solvent": "vacuum",             # vacuum or an OpenMM implicit model (implicit/<name>.xml)
    "nonbonded_cutoff_nm": None,     # None: NoCutoff; a number: CutoffNonPeriodic
    "constraints": "HBonds",
    "integrator": "langevin_middle",
    "temperature_k": 300.0,
    "friction_per_ps": 1.0,
    "timestep_fs": 2.0,
    "steps": None,                   # null: DEFAULT_STEPS, or run_length decides
    "report_interval": 500,          # steps between DCD frames / state rows
    "checkpoint_interval": 5_000,    # steps between checkpoints; a multiple of the above
    "minimize": True,
    "minimize_max_iterations": 0,    # 0: until converged
    "platform": "CPU",
    "precision": None,               # CUDA/OpenCL/HIP only: single, mixed, double
    "threads": 1,                    # CPU only; 1 is the deterministic choice
    "run_length": None,              # instead of steps: {segment, max, until: {n_eff}}
}
# run_length.until.series: a column of the state table; the potential energy by default.
RUN_LENGTH_SERIES = ("potential_energy_kj_mol", "kinetic_energy_kj_mol",
                     "total_energy_kj_mol", "temperature_k")
RUN_LENGTH_CODE = ("assay.pipeline.run_length", "assay.pipeline.convergence")
# steps when a study gives neither steps nor run_length. The declared default is null so
# that the check can tell steps a study gives (refused beside run_length) from a default.
DEFAULT_STEPS = 10_000
SOLVENTS = ("vacuum", "hct", "obc1", "obc2", "gbn", "gbn2")
CONSTRAINTS = ("none", "HBonds", "AllBonds", "HAngles")
INTEGRATORS = ("langevin_middle",)
PLATFORMS = ("CPU", "Reference", "CUDA", "OpenCL", "HIP")
GPU_PLATFORMS = ("CUDA", "OpenCL", "HIP")
PRECISIONS = ("single", "mixed", "double")
MAX_STEPS = 2**31 - 1     # DCD headers hold 32-bit step numbers
_PACKAGE = re.compile(r"^([A-Za-z_][A-Za-z0-9_.]*):(.+)$")
_PROGRESS_EVERY_S = 0.5               # progress writes fsync; keep them off the hot path


def _steps(name: str, unit: str, help: str, minimum: int = 1) -> Setting:
    return Setting(int, DEFAULTS[name], ge=minimum, le=MAX_STEPS, unit=unit, help=help)


# The runner's settings for validation before any job and for `assay plugins`; the job
# reads them with parse_settings (same defaults: DEFAULTS), which also does the
# cross-checks run here per condition (a multiple of report_interval, GPU-only precision).
OPENMM_SETTINGS = Settings({
    "structure": Setting(str, REQUIRED, check=lambda v: None if v.strip() else "empty",
                         help="PDB/PDBx path from the study directory, or "
                              "'package:path/in/package.pdb'"),
    "forcefield": Setting((list, str), DEFAULTS["forcefield"], items=str,
                          check=lambda v: "an empty list" if v == [] else None,
                          help="OpenMM force-field XMLs (bundled names or study files)"),
    "solvent": Setting(str, DEFAULTS["solvent"], choices=SOLVENTS,
                       help="vacuum or an implicit-solvent model"),
    "nonbonded_cutoff_nm": Setting(float, None, gt=0, unit="nm",
                                   help="null: no cutoff; a number: CutoffNonPeriodic"),
    "constraints": Setting(str, DEFAULTS["constraints"], choices=CONSTRAINTS,
                           help="which bonds/angles are rigid"),
    "integrator": Setting(str, DEFAULTS["integrator"], choices=INTEGRATORS,
                          help="the integrator"),
    "temperature_k": Setting(float, DEFAULTS["temperature_k"], gt=0, unit="K",
                             help="thermostat temperature"),
    "friction_per_ps": Setting(float, DEFAULTS["friction_per_ps"], gt=0, unit="1/ps",
                               help="Langevin friction"),
    "timestep_fs": Setting(float, DEFAULTS["timestep_fs"], gt=0, unit="fs",
                           help="integration time step"),
    "steps": Setting(int, None, ge=1, le=MAX_STEPS, unit="steps",
                     help=f"MD steps per run (null: {DEFAULT_STEPS}); leave out with "
                          "run_length"),
    "report_interval": _steps("report_interval", "steps",
                              "steps between trajectory frames / state rows"),
    "checkpoint_interval": _steps("checkpoint_interval", "steps",
                                  "steps between checkpoints (a multiple of report_interval)"),
    "minimize": Setting(bool, DEFAULTS["minimize"], help="minimize the structure first"),
    "minimize_max_iterations": _steps("minimize_max_iterations", "iterations",
                                      "0: until converged", minimum=0),
    "platform": Setting(str, DEFAULTS["platform"], choices=PLATFORMS,
                        help="OpenMM platform (CPU is deterministic with threads: 1)"),
    "precision": Setting(str, None, choices=PRECISIONS,
                         help="CUDA/OpenCL/HIP only: single, mixed or double"),
    "threads": Setting(int, DEFAULTS["threads"], ge=1, unit="threads",
                       help="CPU platform only; 1 is the deterministic choice"),
    "run_length": Setting(dict, None, schema=run_length_schema(RUN_LENGTH_SERIES),
                          help="instead of steps: {segment: steps, max: steps, until: "
                               "{n_eff: 50, series: potential_energy_kj_mol}}: extend the "
                               "run a segment at a time until N_eff of the series holds"),
}, params=PARAMS_MERGED, check=lambda merged, params: parse_settings(dict(merged), params))


class SimulationStopped(RunInterrupted):
    """The run was asked to stop (SIGTERM) and left a checkpoint; rerun to resume."""


@dataclass(frozen=True)
class MDSettings:
    structure: str
    forcefield: tuple[str, ...]
    solvent: str
    nonbonded_cutoff_nm: float | None
    constraints: str
    integrator: str
    temperature_k: float
    friction_per_ps: float
    timestep_fs: float
    steps: int
    report_interval: int
    checkpoint_interval: int
    minimize: bool
    minimize_max_iterations: int
    platform: str
    precision: str | None
    threads: int
    run_length: RunLength | None = None   # then ``steps`` is run_length.max, the most


def parse_settings(raw: dict[str, Any], params: dict[str, Any] | None = None) -> MDSettings:
    """Defaults filled and every value checked; errors name the config key to fix."""
    params = params or {}

    def where(key: str) -> str:
        return f"condition param {key!r}" if key in params else f"runner.settings.{key}"

    allowed = {"structure", *DEFAULTS}
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise ConfigError(f"openmm runner: unknown setting(s) {unknown}; it accepts "
                          f"{sorted(allowed)}")
    s = {**DEFAULTS, **raw}
    steps_given = s["steps"] is not None and "steps" in raw
    if s["steps"] is None:
        s["steps"] = DEFAULT_STEPS

    def number(key: str, *, minimum: float = 0.0, optional: bool = False) -> float | None:
        value = s[key]
        if value is None and optional:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not math.isfinite(value) or not value > minimum:
            raise ConfigError(f"{where(key)} must be a number > {minimum:g}, got {value!r}")
        return float(value)

    def integer(key: str, minimum: int) -> int:
        value = s[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ConfigError(f"{where(key)} must be an integer >= {minimum}, got {value!r}")
        return value

    def choice(key: str, options: tuple[str, ...], optional: bool = False) -> str | None:
        value = s[key]
        if value is None and optional:
            return None
        if value not in options:
            raise ConfigError(f"{where(key)} must be one of {list(options)}, got {value!r}")
        return value

    if not isinstance(s.get("structure"), str) or not s["structure"].strip():
        raise ConfigError(f"{where('structure')} is required: a PDB path relative to the "
                          "study directory, or 'package:path/in/package.pdb'")
    forcefield = s["forcefield"]
    if isinstance(forcefield, str):
        forcefield = [forcefield]
    if not isinstance(forcefield, list) or not forcefield \
            or not all(isinstance(f, str) and f for f in forcefield):
        raise ConfigError(f"{where('forcefield')} must be a list of OpenMM force-field XML "
                          f"names such as ['amber14-all.xml'], got {s['forcefield']!r}")
    if not isinstance(s["minimize"], bool):
        raise ConfigError(f"{where('minimize')} must be true or false, got {s['minimize']!r}")
    out = MDSettings(
        structure=s["structure"], forcefield=tuple(forcefield),
        solvent=choice("solvent", SOLVENTS),
        nonbonded_cutoff_nm=number("nonbonded_cutoff_nm", optional=True),
        constraints=choice("constraints", CONSTRAINTS),
        integrator=choice("integrator", INTEGRATORS),
        temperature_k=number("temperature_k"), friction_per_ps=number("friction_per_ps"),
        timestep_fs=number("timestep_fs"), steps=integer("steps", 1),
        report_interval=integer("report_interval", 1),
        checkpoint_interval=integer("checkpoint_interval", 1),
        minimize=s["minimize"], minimize_max_iterations=integer("minimize_max_iterations", 0),
        platform=choice("platform", PLATFORMS),
        precision=choice("precision", PRECISIONS, optional=True),
        threads=integer("threads", 1))
    if s["run_length"] is not None:
        if steps_given:
            raise ConfigError(f"{where('steps')} and {where('run_length')}: give steps (a "
                              "fixed length) or run_length (extend until a target holds), "
                              "not both")
        rl = parse_run_length(s["run_length"], where("run_length"),
                              report_interval=out.report_interval, max_steps=MAX_STEPS,
                              series=RUN_LENGTH_SERIES)
        out = replace(out, steps=rl.max, run_length=rl)
    if out.steps > MAX_STEPS:
        raise ConfigError(f"{where('steps')} must be at most {MAX_STEPS}, got {out.steps}")
    if out.steps % out.report_interval:
        raise ConfigError(f"{where('steps')} ({out.steps}) must be a multiple of "
                          f"report_interval ({out.report_interval})")
    if out.checkpoint_interval % out.report_interval:
        raise ConfigError(f"{where('checkpoint_interval')} ({out.checkpoint_interval}) must "
                          f"be a multiple of report_interval ({out.report_interval})")
    if out.precision is not None and out.platform not in GPU_PLATFORMS:
        raise ConfigError(f"{where('precision')} applies to {list(GPU_PLATFORMS)} only; "
                          f"remove it for platform {out.platform!r}")
    if out.threads != 1 and out.platform != "CPU":
        raise ConfigError(f"{where('threads')} applies to platform 'CPU' only; remove it "
                          f"for platform {out.platform!r}")
    return out


def resolve_structure(spec: str, study_dir: Path) -> tuple[str, bytes]:
    """(file name, bytes) of ``path`` (from the study directory) or ``package:relpath``."""
    match = _PACKAGE.match(spec)
    if match and not Path(spec).exists():
        package, relpath = match.groups()
        rel = PurePosixPath(relpath)
        if rel.is_absolute() or ".." in rel.parts or "\\" in relpath:
            raise ConfigError(f"runner.settings.structure {spec!r}: the path inside package "
                              f"{package!r} must be relative, without '..'")
        from importlib.resources import files

        try:
            resource = files(package).joinpath(*rel.parts)
            return rel.name, resource.read_bytes()
        except (ModuleNotFoundError, TypeError):
            raise ConfigError(f"runner.settings.structure {spec!r}: package {package!r} is "
                              "not installed") from None
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ConfigError(f"runner.settings.structure {spec!r}: package {package!r} has "
                              f"no file {relpath!r}") from None
    path = Path(spec) if Path(spec).is_absolute() else Path(study_dir) / spec
    try:
        return path.name, path.read_bytes()
    except (FileNotFoundError, IsADirectoryError):
        raise ConfigError(f"runner.settings.structure: {path} is not a file (relative paths "
                          f"start at the study directory {study_dir})") from None


def study_forcefield_files(forcefield: Any, study_dir: Path) -> dict[str, Path]:
    """The force-field XMLs that are files of the study (a name that is a path from the
    study directory, or absolute), not ones bundled with OpenMM: their bytes join the
    action key, and the job hands OpenMM that very file."""
    names = [forcefield] if isinstance(forcefield, str) else forcefield
    if not isinstance(names, list):
        return {}
    out = {}
    for name in names:
        if isinstance(name, str) and name:
            path = Path(study_dir) / name   # an absolute name stays as it is
            if path.is_file():
                out[name] = path
    return out


def openmm_seed(seed: int) -> int:
    """A study seed as OpenMM's 32-bit signed seed; never 0, which means 'pick at random'."""
    return int(seed) % (2**31 - 2) + 1


# --- building the simulation ---------------------------------------------------------
def _build(s: MDSettings, name: str, data: bytes, seed: int,
           study_dir: Path | None = None) -> tuple[Any, Any, Any]:
    """(simulation, topology, positions); OpenMM is imported here, never at job start."""
    import openmm
    import openmm.app as app
    import openmm.unit as unit

    text = io.StringIO(data.decode("utf-8", errors="replace"))
    try:
        reader = app.PDBxFile if name.lower().endswith((".cif", ".pdbx")) else app.PDBFile
        structure = reader(text)
    except Exception as exc:
        raise ConfigError(f"runner.settings.structure: OpenMM cannot read {name}: {exc}") \
            from exc
    topology = structure.topology
    # Vacuum and implicit solvent are not periodic: a CRYST1 box would only put bogus cell
    # dimensions into every DCD frame (and make the MD analyses try to unwrap).
    topology.setPeriodicBoxVectors(None)
    local = study_forcefield_files(list(s.forcefield), study_dir) if study_dir else {}
    files = [str(local.get(f, f)) for f in s.forcefield] \
        + ([f"implicit/{s.solvent}.xml"] if s.solvent != "vacuum" else [])
    try:
        forcefield = app.ForceField(*files)
    except Exception as exc:
        raise ConfigError(f"runner.settings.forcefield {files}: OpenMM cannot load it: "
                          f"{exc}") from exc
    kwargs: dict[str, Any] = {"nonbondedMethod": app.NoCutoff,
                              "constraints": getattr(app, s.constraints, None)}
    if s.nonbonded_cutoff_nm is not None:
        kwargs = {**kwargs, "nonbondedMethod": app.CutoffNonPeriodic,
                  "nonbondedCutoff": s.nonbonded_cutoff_nm * unit.nanometer}
    try:
        system = forcefield.createSystem(topology, **kwargs)
    except Exception as exc:
        raise ConfigError(f"force field {files} does not describe {name}: {exc}") from exc
    integrator = openmm.LangevinMiddleIntegrator(
        s.temperature_k * unit.kelvin, s.friction_per_ps / unit.picosecond,
        s.timestep_fs * unit.femtosecond)
    integrator.setRandomNumberSeed(openmm_seed(seed))
    try:
        platform = openmm.Platform.getPlatformByName(s.platform)
    except Exception:
        names = [openmm.Platform.getPlatform(i).getName()
                 for i in range(openmm.Platform.getNumPlatforms())]
        raise ConfigError(f"runner.settings.platform {s.platform!r} is not available on "
                          f"this machine (available: {names})") from None
    properties = {"Threads": str(s.threads)} if s.platform == "CPU" else {}
    if s.precision is not None:
        properties["Precision"] = s.precision
    simulation = app.Simulation(topology, system, integrator, platform, properties)
    return simulation, topology, structure.positions


def _temperature(simulation: Any) -> Any:
    """state -> instantaneous temperature in K, computed as StateDataReporter does."""
    import openmm
    import openmm.unit as unit

    integrator, system = simulation.integrator, simulation.system
    if hasattr(integrator, "computeSystemTemperature"):
        return lambda _state: integrator.computeSystemTemperature().value_in_unit(unit.kelvin)
    massive = [system.getParticleMass(i).value_in_unit(unit.dalton) > 0
               for i in range(system.getNumParticles())]
    dof = 3 * sum(massive)
    for i in range(system.getNumConstraints()):
        p1, p2, _ = system.getConstraintParameters(i)
        dof -= massive[p1] or massive[p2]
    if any(type(f) is openmm.CMMotionRemover for f in system.getForces()):
        dof -= 3
    gas_constant = unit.MOLAR_GAS_CONSTANT_R.value_in_unit(unit.kilojoule_per_mole / unit.kelvin)
    return lambda state: (2 * state.getKineticEnergy().value_in_unit(unit.kilojoule_per_mole)
                          / (dof * gas_constant))


# --- the runner ------------------------------------------------------------------------
class OpenMMRunner:
    """Runs an OpenMM simulation per condition x replicate; resumable, deterministic."""

    code_dependencies = ("assay.pipeline.openmm_files",)
    version_dependencies = ("openmm",)

    @staticmethod
    def settings_code_modules(settings: dict[str, Any]) -> tuple[str, ...]:
        """With run_length, the code that decides where a run ends joins its code digest
        (an edit of the N_eff estimator reruns those runs, and no fixed-length run)."""
        return RUN_LENGTH_CODE if settings.get("run_length") is not None else ()

    @staticmethod
    def check_consistency(payload: dict[str, Any], sidecars: dict[str, Path]) -> list[str]:
        """`assay verify`: frames and atoms agree across payload, DCD, table and PDB."""
        from .openmm_files import consistency_problems

        return consistency_problems(payload, sidecars)
    SETTINGS = OPENMM_SETTINGS

    @staticmethod
    def source_files(settings: dict[str, Any], condition: str, replicate: int,
                     params: dict[str, Any]) -> list[str]:
        """A structure file in the study is a Snakemake input (packages are not files),
        and so is a force-field XML of the study's own."""
        merged = {**settings, **params}
        spec = merged.get("structure")
        structure = [] if not isinstance(spec, str) or (
            _PACKAGE.match(spec) and not Path(spec).exists()) else [spec]
        return structure + sorted(study_forcefield_files(merged.get("forcefield", []), Path()))

    @staticmethod
    def spec_extras(settings: dict[str, Any], condition: str, replicate: int,
                    params: dict[str, Any], workdir: Path) -> dict[str, Any]:
        """The structure's digest joins the action key: an edited PDB reruns the run; so do
        the digests of the study's own force-field XMLs (bundled ones: the openmm version)."""
        merged = {**settings, **params}
        local = study_forcefield_files(merged.get("forcefield", []), Path(workdir))
        extras = {"forcefield": {name: hash_file(path)[0]
                                 for name, path in sorted(local.items())}} if local else {}
        try:
            _, data = resolve_structure(merged.get("structure", ""), Path(workdir))
        except (ConfigError, TypeError):
            return {"structure": None, **extras}
        return {"structure": sha256_hex(data), **extras}

    def run(self, ctx: RunContext) -> RunArtifact:
        s = parse_settings(ctx.merged_settings, ctx.params)
        name, data = resolve_structure(s.structure, ctx.study_dir)
        with ExitStack() as stack:
            folder = ctx.workdir
            if folder is None:   # outside a job: a private directory, no resume possible
                folder = stack.enter_context(ctx.artifact_store.scratch_dir("openmm-"))
            folder = Path(folder)
            folder.mkdir(parents=True, exist_ok=True)
            outputs = self._simulate(ctx, s, name, data, folder, stack)
            return self._publish(ctx, s, folder, outputs)

    def _simulate(self, ctx: RunContext, s: MDSettings, name: str, data: bytes,
                  folder: Path, stack: ExitStack) -> dict[str, Any]:
        import openmm
        import openmm.unit as unit

        simulation, topology, positions = _build(s, name, data, ctx.seed, ctx.study_dir)
        identity = sha256_hex(canonical_json({
            "settings": asdict(s), "seed": ctx.seed, "structure": sha256_hex(data),
            "openmm": openmm.__version__}))
        outputs = Outputs(folder, topology, s.timestep_fs, s.report_interval)
        stack.callback(outputs.close)
        record, why = usable_checkpoint(folder, identity) if ctx.resuming else (None, "")
        if record is not None:
            outputs.reopen(record["dcd_bytes"], record["csv_bytes"],
                           base64.b64decode(record["dcd_header"]))
            simulation.context.loadCheckpoint(record["data"])
            step = int(record["step"])
            ctx.log(f"resuming from step {step} of {s.steps} ({record['checkpoint']})")
        else:
            if ctx.resuming:
                ctx.log(f"cannot resume ({why}); starting from step 0")
            atomic_write_bytes(folder / FILES["topology"], pdb_bytes(topology, positions))
            outputs.create()
            simulation.context.setPositions(positions)
            if s.minimize:
                simulation.minimizeEnergy(maxIterations=s.minimize_max_iterations)
            simulation.context.setVelocitiesToTemperature(s.temperature_k * unit.kelvin,
                                                          openmm_seed(ctx.seed))
            step = 0
            save_checkpoint(folder, simulation, outputs, 0, identity, complete=False)
            threads = f", {s.threads} thread(s)" if s.platform == "CPU" else ""
            length = (f"{s.run_length.segment}-step segments up to {s.steps}"
                      if s.run_length is not None else f"{s.steps} steps")
            ctx.log(f"starting: {topology.getNumAtoms()} atoms, {length} on "
                    f"{s.platform}{threads}; checkpoints in {folder}")
        if s.platform == "CPU" and s.threads > 1:
            ctx.warnings.append(f"threads: {s.threads} on the CPU platform is not "
                                "deterministic: reruns and resumed runs give other bytes")
        if ctx.threads < s.threads:
            ctx.log(f"note: OpenMM uses {s.threads} threads but the job has {ctx.threads}")
        first, started, shown = step, time.monotonic(), 0.0
        temperature = _temperature(simulation)
        ends = Ends(s.steps, s.run_length, s.report_interval,
                    lambda series: csv_column(outputs.csv_path, series), ctx.log)
        upto = "at most " if s.run_length is not None else ""
        # A checkpoint that ended the run: publish. (A fixed run's step 0 never does; an
        # adaptive run resumed at a segment end decides again from the same frames.)
        done = step > 0 and ends(step)
        while not done:
            simulation.step(s.report_interval)
            step += s.report_interval
            state = simulation.context.getState(getPositions=True, getEnergy=True)
            outputs.write(step, state, temperature(state))
            done = ends(step)
            stop = ctx.stop_requested and not done
            segment_end = s.run_length is not None and step % s.run_length.segment == 0
            if step % s.checkpoint_interval == 0 or done or stop or segment_end:
                save_checkpoint(folder, simulation, outputs, step, identity, complete=done)
            now = time.monotonic()
            if now - shown >= _PROGRESS_EVERY_S or done or stop:
                ctx.progress(step, s.steps, f"step {step} of {upto}{s.steps}")
                shown = now
            if stop:
                where = (f"with a checkpoint in {folder}; rerun to resume"
                         if ctx.workdir is not None
                         else "without a work directory, so a rerun starts from step 0")
                raise SimulationStopped(
                    f"openmm run {ctx.condition_label}/{ctx.replicate} stopped on request at "
                    f"step {step} of {s.steps} {where}")
        if s.run_length is not None and ends.short_of_target:
            ctx.warnings.append(ends.short_of_target)
        elapsed = time.monotonic() - started
        done_ns = (step - first) * s.timestep_fs * 1e-6
        speed = f"{done_ns / elapsed * 86400:.1f} ns/day" if elapsed > 0 and done_ns else "-"
        ctx.log(f"finished {step} steps; this attempt ran steps {first}-{step} in "
                f"{elapsed:.1f} s: {speed}, {(step - first) / max(elapsed, 1e-9):.0f} steps/s")
        outputs.close()
        return {"n_atoms": topology.getNumAtoms(), "openmm_version": openmm.__version__,
                "steps": step}

    def _publish(self, ctx: RunContext, s: MDSettings, folder: Path,
                 facts: dict[str, Any]) -> RunArtifact:
        store = ctx.artifact_store
        steps = facts["steps"]   # run_length: where the target held (or max)
        n_frames = steps // s.report_interval
        sidecars = [
            store.ingest_file(folder / FILES["topology"], "sidecars/topology.pdb",
                              media_type="chemical/x-pdb",
                              metadata={"kind": "topology", "format": "PDB"}),
            store.ingest_file(folder / FILES["trajectory"], "sidecars/trajectory.dcd",
                              media_type="application/octet-stream",
                              metadata={"kind": "trajectory", "format": "DCD",
                                        "n_frames": n_frames, "length_unit": "angstrom"}),
            store.ingest_file(folder / FILES["state_data"], "sidecars/state_data.csv",
                              media_type="text/csv",
                              metadata={"kind": "state_data", "n_rows": n_frames,
                                        "columns": list(STATE_COLUMNS)}),
        ]
        payload = {
            "steps": steps, "timestep_fs": s.timestep_fs,
            "simulated_ns": steps * s.timestep_fs * 1e-6,
            "n_frames": n_frames, "frame_interval_ps": s.report_interval * s.timestep_fs / 1000,
            "n_atoms": facts["n_atoms"], "temperature_k": s.temperature_k,
            "platform": s.platform, "precision": s.precision,
            "threads": s.threads if s.platform == "CPU" else None,
            "openmm_version": facts["openmm_version"], "openmm_seed": openmm_seed(ctx.seed)}
        return ctx.result(payload=payload, sidecars=sidecars)
