"""Built-in runners: the demo simulation, a Python callable, a shell command, a file import."""

from __future__ import annotations

import dataclasses
import os
import shlex
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

from .artifacts import RunArtifact
from .context import RunContext
from .errors import AssayError, ConfigError
from .plugins import load_target


class PolymerLangevinRunner:
    """Langevin dynamics of a bead-spring chain near an attractive surface (numpy only)."""

    code_dependencies = ("assay.demo.physics",)

    def run(self, ctx: RunContext) -> RunArtifact:
        from .demo.physics import simulate_polymer

        settings = ctx.merged_settings
        try:
            traj = simulate_polymer(seed=ctx.seed, **settings)
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
    """

    def run(self, ctx: RunContext) -> Any:
        target = ctx.settings.get("callable")
        if not isinstance(target, str) or ":" not in target:
            raise ConfigError("runner.settings.callable must be 'module:function'")
        function = load_target(target, where="runner.settings.callable")
        inner = {k: v for k, v in ctx.settings.items() if k != "callable"}
        return function(dataclasses.replace(ctx, settings=inner))


def _template_fields(ctx: RunContext, outdir: Path) -> dict[str, Any]:
    return {"condition": ctx.condition_label, "replicate": ctx.replicate, "seed": ctx.seed,
            "params": ctx.params, "settings": ctx.settings, "outdir": shlex.quote(str(outdir))}


class ShellRunner:
    """Runs ``settings.command`` (a format template) and ingests ``settings.outputs``.

    Template fields: {condition}, {replicate}, {seed}, {outdir}, {params[name]},
    {settings[name]}. The command runs in a fresh scratch directory inside the store's tmp/,
    so declared outputs are moved (not copied) into the store.
    """

    def run(self, ctx: RunContext) -> RunArtifact:
        command = ctx.settings.get("command")
        outputs = ctx.settings.get("outputs", [])
        if not isinstance(command, str) or not command.strip():
            raise ConfigError("runner.settings.command must be a non-empty shell command")
        if not isinstance(outputs, list) or not all(isinstance(o, str) for o in outputs):
            raise ConfigError("runner.settings.outputs must be a list of file names")
        store = ctx.artifact_store
        outdir = store.root / "tmp" / f"shell-{uuid.uuid4().hex}"
        outdir.mkdir(parents=True)
        try:
            try:
                rendered = command.format(**_template_fields(ctx, outdir))
            except (KeyError, IndexError) as exc:
                raise ConfigError(f"runner.settings.command: unknown template field {exc}") \
                    from None
            proc = subprocess.run(rendered, shell=True, cwd=outdir, capture_output=True,
                                  text=True, env={**os.environ, "ASSAY_OUTDIR": str(outdir)})
            if proc.returncode != 0:
                raise AssayError(f"shell runner for {ctx.condition_label}/{ctx.replicate} "
                                 f"exited with {proc.returncode}: {rendered}\n"
                                 f"stderr (last lines):\n{proc.stderr[-2000:]}")
            sidecars = []
            for name in outputs:
                produced = outdir / name
                if not produced.is_file():
                    raise AssayError(f"shell runner did not produce declared output {name!r} "
                                     f"for {ctx.condition_label}/{ctx.replicate}")
                staged = store.resolve_sidecar(f"sidecars/{name}")
                staged.parent.mkdir(parents=True, exist_ok=True)
                os.replace(produced, staged)
                sidecars.append(store.register_sidecar(
                    f"sidecars/{name}", metadata={"kind": Path(name).stem}))
            return ctx.result(payload={"command": command, "outputs": outputs},
                              sidecars=sidecars)
        finally:
            shutil.rmtree(outdir, ignore_errors=True)


class ImportRunner:
    """Imports files that already exist (simulations made elsewhere) without copying twice.

    ``settings.files`` maps a kind to a path template with {condition} and {replicate};
    relative paths are taken from the workflow directory. Files are hard-linked into the
    store when on the same filesystem; only their names (never absolute paths) are recorded.
    """

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
        files = ctx.merged_settings.get("files")
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
