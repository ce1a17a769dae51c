"""Built-in runners: the demo simulation, a Python callable, a shell command, a file import."""

from __future__ import annotations

import dataclasses
import os
import shlex
from pathlib import Path
from typing import Any

from ..store.artifacts import RunArtifact
from .context import RunContext
from ..errors import AssayError, ConfigError, RunFailed, RunInterrupted
from ..store.hashing import hash_file
from .supervise import log_tail
from .plugins import load_target
from .settings import PARAMS_MERGED, PARAMS_TEMPLATES, REQUIRED, Setting, Settings


class PolymerLangevinRunner:
    """Langevin dynamics of a bead-spring chain near an attractive surface (numpy only)."""

    code_dependencies = ("assay.demo.physics",)
    # simulate_polymer's keyword arguments (a test keeps the defaults equal); condition
    # params override them. Reduced units: σ bead size, kT thermal energy, τ time.
    SETTINGS = Settings({
        "n_beads": Setting(int, 24, ge=2, unit="beads", help="beads in the chain"),
        "n_frames": Setting(int, 200, ge=1, unit="frames", help="frames stored per run"),
        "steps_per_frame": Setting(int, 20, ge=1, unit="steps",
                                   help="integration steps between stored frames"),
        "dt": Setting(float, 0.005, gt=0, unit="τ", help="integration time step"),
        "temperature": Setting(float, 1.0, gt=0, unit="kT", help="reduced temperature"),
        "surface_epsilon": Setting(float, 1.0, ge=0, unit="kT",
                                   help="depth of the surface's attractive well"),
        "bond_k": Setting(float, 100.0, gt=0, unit="kT/σ²", help="bond spring constant"),
        "bond_length": Setting(float, 1.0, gt=0, unit="σ", help="bond rest length"),
        "equilibration_steps": Setting(int, 1000, ge=0, unit="steps",
                                       help="unrecorded steps before the first frame"),
    }, params=PARAMS_MERGED)

    def run(self, ctx: RunContext) -> RunArtifact:
        from ..demo.physics import simulate_polymer

        settings = ctx.merged_settings   # as the config writes them: for the payload
        try:
            traj = simulate_polymer(seed=ctx.seed, **self.SETTINGS.read(ctx))
        except TypeError as exc:
            raise ConfigError(f"runner settings/condition params for {ctx.condition_label!r}: "
                              f"{exc}") from None
        positions = traj["positions"]
        sidecar = ctx.artifact_store.write_npz_sidecar(
            "sidecars/trajectory.npz", positions=positions, time=traj["time"],
            metadata={"kind": "trajectory", "layout": "frame_x_bead_x_xyz",
                      "shape": list(positions.shape)})
        return ctx.result(payload={"n_frames": int(positions.shape[0]),
                                   "n_beads": int(positions.shape[1]), "seed": ctx.seed,
                                   "physics": settings},
                          sidecars=[sidecar])


class PythonCallableRunner:
    """``settings.callable: module:function``; the function gets the RunContext.

    It returns a RunArtifact, or a mapping of arrays that is stored as one NPZ sidecar.
    The source of the callable's module, and of the modules listed in
    ``settings.code_dependencies``, is part of every run's key: editing it reruns the runs.
    """

    OWN_SETTINGS = ("callable", "code_dependencies")
    # Other keys go to the function unchecked (open): it declares nothing to check them by.
    SETTINGS = Settings({
        "callable": Setting(str, REQUIRED, help="module:function to call per run",
                            check=lambda v: None if ":" in v else
                            f"{v!r} is not 'module:function'"),
        "code_dependencies": Setting(list, [], items=str,
                                     help="modules of yours it imports (their code joins "
                                          "the key)"),
    }, open=True)

    @staticmethod
    def settings_code_modules(settings: dict[str, Any]) -> tuple[str, ...]:
        target = _callable_target(settings)
        deps = settings.get("code_dependencies", [])
        if not isinstance(deps, list) or not all(isinstance(d, str) and d for d in deps):
            raise ConfigError("runner.settings.code_dependencies must be a list of module "
                              f"names, got {deps!r}")
        return (target.partition(":")[0], *deps)

    def run(self, ctx: RunContext) -> Any:
        function = load_target(_callable_target(ctx.settings), where="runner.settings.callable")
        inner = {k: v for k, v in ctx.settings.items() if k not in self.OWN_SETTINGS}
        return function(dataclasses.replace(ctx, settings=inner))


def _callable_target(settings: dict[str, Any]) -> str:
    target = settings.get("callable")
    if not isinstance(target, str) or ":" not in target:
        raise ConfigError("runner.settings.callable must be 'module:function'")
    return target


def _code_files(settings: dict[str, Any]) -> list[str]:
    files = settings.get("code_files", [])
    if not isinstance(files, list) or not all(isinstance(f, str) and f for f in files):
        raise ConfigError(f"runner.settings.code_files must be a list of file paths, "
                          f"got {files!r}")
    return sorted(set(files))


def _template_fields(ctx: RunContext, workdir: Path) -> dict[str, Any]:
    # absolute: the command runs inside the work directory, so a relative path to it (or
    # to the study's own scripts) would point nowhere
    quoted = shlex.quote(str(Path(workdir).absolute()))
    return {"condition": ctx.condition_label, "replicate": ctx.replicate, "seed": ctx.seed,
            "params": ctx.params, "settings": ctx.settings, "workdir": quoted,
            "outdir": quoted, "study_dir": shlex.quote(str(Path(ctx.study_dir).absolute())),
            "threads": ctx.threads, "attempt": ctx.attempt}


class ShellRunner:
    """Runs ``settings.command`` (a format template) and ingests ``settings.outputs``.

    Template fields: {condition}, {replicate}, {seed}, {workdir} (alias {outdir}),
    {study_dir} (to reach the study's own scripts), {threads}, {attempt}, {params[name]},
    {settings[name]}; paths are absolute. The command runs in the run's
    persistent work directory (kept across kills and retries: write checkpoints there;
    ``ASSAY_RESUME=1`` tells it an earlier attempt left files), with its output streamed
    to the job log. Declared outputs are moved (not copied) into the store.
    ``settings.code_files`` lists the scripts the command runs (paths from the study
    directory): Snakemake inputs whose bytes join the key, so editing one reruns the runs.
    """

    # Condition params reach the command only as {params[name]}; its fields are those of
    # _template_fields (a test keeps the two equal).
    SETTINGS = Settings({
        "command": Setting(str, REQUIRED, help="shell command template run per run",
                           check=lambda v: None if v.strip() else "the command is empty"),
        "outputs": Setting(list, [], items=str,
                           help="files the command leaves in {workdir}, moved into the store"),
        "code_files": Setting(list, [], items=str,
                              help="scripts the command runs (their bytes join the key)"),
    }, params=PARAMS_TEMPLATES, templates=("command",),
        template_fields=("condition", "replicate", "seed", "params", "settings", "workdir",
                         "outdir", "study_dir", "threads", "attempt"))

    @staticmethod
    def source_files(settings: dict[str, Any], condition: str, replicate: int,
                     params: dict[str, Any]) -> list[str]:
        return _code_files(settings)

    @staticmethod
    def spec_extras(settings: dict[str, Any], condition: str, replicate: int,
                    params: dict[str, Any], workdir: Path) -> dict[str, Any]:
        digests = {}
        for name in _code_files(settings):
            path = Path(workdir) / name   # an absolute name stays as it is
            try:
                digests[name] = hash_file(path)[0]
            except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
                raise ConfigError(f"runner.settings.code_files: {path} is not a file "
                                  f"(relative paths start at the study directory "
                                  f"{workdir})") from None
        return {"code_files": digests} if digests else {}

    def run(self, ctx: RunContext) -> RunArtifact:
        declared = self.SETTINGS.read(ctx)
        command, outputs = declared["command"], declared["outputs"]
        if not isinstance(command, str) or not command.strip():
            raise ConfigError("runner.settings.command must be a non-empty shell command")
        if not isinstance(outputs, list) or not all(isinstance(o, str) for o in outputs):
            raise ConfigError("runner.settings.outputs must be a list of file names")
        if ctx.workdir is not None:
            return self._run(ctx, command, outputs)
        with ctx.artifact_store.scratch_dir("shell-") as scratch:   # outside a workflow job
            return self._run(dataclasses.replace(ctx, workdir=scratch), command, outputs)

    def _run(self, ctx: RunContext, command: str, outputs: list[str]) -> RunArtifact:
        workdir = ctx.workdir
        who = f"{ctx.condition_label}/{ctx.replicate}"
        try:
            rendered = command.format(**_template_fields(ctx, workdir))
        except (KeyError, IndexError) as exc:
            raise ConfigError(f"runner.settings.command: unknown template field {exc}") \
                from None
        ctx.log(f"$ {rendered}")
        ctx.progress(0, None, "command running")
        code = ctx.run_command(rendered)
        if ctx.stop_requested:
            raise RunInterrupted(
                f"shell runner for {who} stopped by SIGTERM (exit {code}); its work directory "
                f"{workdir} is kept, and the next attempt runs there with ASSAY_RESUME=1")
        if code != 0:
            where = f"; its output is in {ctx.log_path}" if ctx.log_path else ""
            tail = log_tail(ctx.log_path)
            raise RunFailed(f"shell runner for {who} exited with {code}: {rendered}{where}"
                            + (f"\nlast lines:\n{tail}" if tail else "")
                            + f"\n(work directory kept for the next attempt: {workdir})")
        store = ctx.artifact_store
        sidecars = []
        for name in outputs:
            produced = workdir / name
            if not produced.is_file():
                raise RunFailed(f"shell runner did not produce declared output {name!r} "
                                f"for {who} (looked in {workdir})")
            staged = store.resolve_sidecar(f"sidecars/{name}")
            staged.parent.mkdir(parents=True, exist_ok=True)
            os.replace(produced, staged)
            sidecars.append(store.register_sidecar(
                f"sidecars/{name}", metadata={"kind": Path(name).stem}))
        ctx.progress(1, 1, "command finished")
        return ctx.result(payload={"command": command, "outputs": outputs}, sidecars=sidecars)


class ImportRunner:
    """Imports files that already exist (simulations made elsewhere), leaving them unchanged.

    ``settings.files`` maps a kind to a path template with {condition} and {replicate};
    relative paths are taken from the workflow directory. Files are copied into the store
    (never hard-linked: the object must not share an inode someone may still write);
    only their names (never absolute paths) are recorded.
    """

    SETTINGS = Settings({
        "files": Setting(dict, REQUIRED, items=str,
                         help="kind -> path template ({condition}, {replicate}, "
                              "{params[name]}) from the study directory",
                         check=lambda v: None if v else "no files to import"),
    }, params=PARAMS_MERGED, templates=("files",),
        template_fields=("condition", "replicate", "params"))

    @staticmethod
    def source_files(settings: dict[str, Any], condition: str, replicate: int,
                     params: dict[str, Any]) -> list[str]:
        return list(_import_sources(settings, condition, replicate, params).values())

    @staticmethod
    def spec_extras(settings: dict[str, Any], condition: str, replicate: int,
                    params: dict[str, Any], workdir: Path) -> dict[str, Any]:
        """Size and mtime of each source: a replaced file changes the action key."""
        out = {}
        for kind, path in _import_sources(settings, condition, replicate, params).items():
            full = Path(path) if Path(path).is_absolute() else Path(workdir) / path
            try:
                st = full.stat()
                out[kind] = [st.st_size, st.st_mtime_ns]
            except FileNotFoundError:
                out[kind] = None
        return out

    def run(self, ctx: RunContext) -> RunArtifact:
        files = self.SETTINGS.read(ctx)["files"]
        if not isinstance(files, dict) or not files:
            raise ConfigError("runner.settings.files must map kinds to path templates")
        sidecars = []
        for kind, template in sorted(files.items()):
            source = Path(import_path(template, ctx.condition_label, ctx.replicate, ctx.params))
            if not source.is_absolute():
                source = ctx.study_dir / source
            if not source.is_file():
                raise AssayError(f"import runner: {kind} file for {ctx.condition_label}/"
                                 f"{ctx.replicate} not found: {source}")
            sidecars.append(ctx.artifact_store.ingest_file(
                source, f"sidecars/{kind}{''.join(source.suffixes)}",
                metadata={"kind": kind, "source_name": source.name}))
        return ctx.result(payload={"imported": sorted(files)}, sidecars=sidecars)


def _import_sources(settings: dict[str, Any], condition: str, replicate: int,
                    params: dict[str, Any]) -> dict[str, str]:
    files = {**settings, **params}.get("files") or {}
    return {kind: import_path(t, condition, replicate, params) for kind, t in sorted(files.items())}


def import_path(template: str, condition: str, replicate: int, params: dict[str, Any]) -> str:
    try:
        return template.format(condition=condition, replicate=replicate, params=params)
    except (KeyError, IndexError) as exc:
        raise ConfigError(f"runner.settings.files: unknown template field {exc} in "
                          f"{template!r}") from None
