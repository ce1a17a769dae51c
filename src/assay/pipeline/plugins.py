"""Finding analyses and runners by name, and fingerprinting their code.

Snakemake cannot see imported Python code, so each plugin's code digest goes into the
rule's params and the action key: editing a plugin reruns exactly its jobs. A plugin's
digest covers its own definition and the module-level code it reaches (assay.pipeline.codescope),
not the other plugins sharing its module, and no module names: moving code reruns nothing.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

from ..errors import PluginError
from ..store.hashing import canonical_json, format_digest, sha256_hex

ANALYSES_GROUP = "assay.analyses"
RUNNERS_GROUP = "assay.runners"

# The one registry of assay's own plugins (short name -> 'module:attr'). Other packages
# register theirs under the entry-point groups above; a built-in name always wins.
BUILTIN_ANALYSES = {
    "radius_of_gyration": "assay.analyses.polymer:RadiusOfGyration",
    "distance_matrix": "assay.analyses.polymer:DistanceMatrix",
    "contact_events": "assay.analyses.polymer:ContactEvents",
    "md_rmsd": "assay.analyses.md:RMSD",
    "md_rgyr": "assay.analyses.md:RadiusOfGyration",
    "md_rmsf": "assay.analyses.md:RMSF",
    "md_distance_matrix": "assay.analyses.md:DistanceMatrix",
    "md_contacts": "assay.analyses.md:ContactEvents",
}
BUILTIN_RUNNERS = {
    "polymer_langevin": "assay.pipeline.runners:PolymerLangevinRunner",
    "python": "assay.pipeline.runners:PythonCallableRunner",
    "shell": "assay.pipeline.runners:ShellRunner",
    "import": "assay.pipeline.runners:ImportRunner",
    "openmm": "assay.pipeline.openmm_runner:OpenMMRunner",
}


def _entry_points(group: str) -> dict[str, str]:
    from importlib.metadata import entry_points

    return {ep.name: ep.value for ep in entry_points(group=group)}


def plugin_target(name: str, group: str, builtins: dict[str, str], *, where: str) -> str:
    """'module:attr' for a plugin name (builtin, entry point) or a literal 'module:attr'."""
    if ":" in name:
        return name
    if name in builtins:
        return builtins[name]
    found = _entry_points(group)
    if name in found:
        return found[name]
    known = sorted(set(builtins) | set(found))
    raise PluginError(f"{where}: unknown plugin {name!r}; known: {', '.join(known)}; or give "
                      "'module:attr'")


def load_target(target: str, *, where: str) -> Any:
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise PluginError(f"{where}: cannot import {module_name!r} for plugin {target!r}: "
                          f"{exc}") from exc
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise PluginError(f"{where}: module {module_name!r} has no attribute {attr!r}") \
                from None
    return obj


def resolve_analysis(name: str, *, where: str = "analysis") -> Any:
    target = plugin_target(name, ANALYSES_GROUP, BUILTIN_ANALYSES, where=where)
    cls = load_target(target, where=where)
    if not hasattr(cls, "collect"):
        raise PluginError(f"{where}: {target} has no collect(ctx) method; an analysis is a "
                          "class with collect and optional aggregate, compare, plot")
    return cls


def resolve_runner(name: str, *, where: str = "runner") -> Any:
    target = plugin_target(name, RUNNERS_GROUP, BUILTIN_RUNNERS, where=where)
    runner = load_target(target, where=where)
    if isinstance(runner, type):
        if not hasattr(runner, "run"):
            raise PluginError(f"{where}: runner class {target} has no run(ctx) method")
        return runner
    if not callable(runner):
        raise PluginError(f"{where}: {target} is neither a runner class nor a callable")
    return runner


def _module_file(module_name: str) -> Path:
    try:
        spec = importlib.util.find_spec(module_name)
    except (ImportError, ValueError):
        spec = None
    if spec is None and "." not in module_name:
        # a study's own module beside its config (runner.settings.callable): jobs import
        # it from their working directory, the study directory, which is snakemake's too
        spec = importlib.machinery.PathFinder.find_spec(module_name, [os.getcwd()])
    if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
        raise PluginError(f"cannot locate the source of module {module_name!r} (looked on "
                          f"sys.path and in {os.getcwd()})")
    return Path(spec.origin)


@lru_cache(maxsize=None)
def modules_digest(module_names: tuple[str, ...]) -> str:
    """sha256 over the sources of the named modules; their names are left out (so moving
    or renaming a module reruns nothing), the sources' digests sorted."""
    from .codescope import placeless

    parts = sorted({sha256_hex(placeless(_module_file(name).read_bytes().decode("utf-8")).encode())
                    for name in module_names})
    return format_digest(sha256_hex(canonical_json(parts)))


@lru_cache(maxsize=None)
def _own_code_digest(module_name: str, qualname: str) -> str:
    from .codescope import own_source, placeless

    return sha256_hex(placeless(own_source(_module_file(module_name).read_bytes().decode("utf-8"),
                                           qualname.split(".")[0])).encode())


@lru_cache(maxsize=None)
def distribution_versions(names: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    from importlib.metadata import PackageNotFoundError, version

    out = []
    for name in sorted(set(names)):
        try:
            out.append((name, version(name)))
        except PackageNotFoundError:
            out.append((name, "not installed"))
    return tuple(out)


def code_digest(plugin: Any, settings: dict[str, Any] | None = None) -> str:
    """Digest of a plugin's own code (its class or function and the module-level code it
    uses, not the other plugins of its module), the modules in ``code_dependencies``, those
    its ``settings_code_modules(settings)`` names (the ``python`` runner: the user's
    callable) and the installed versions of the distributions in ``version_dependencies``
    (e.g. MDAnalysis): upgrading a library that computes the numbers reruns its jobs."""
    module = getattr(plugin, "__module__", None)
    qualname = getattr(plugin, "__qualname__", None)
    if module is None or qualname is None:
        raise PluginError(f"cannot tell which module defines {plugin!r}")
    deps = tuple(getattr(plugin, "code_dependencies", ()))
    from_settings = getattr(plugin, "settings_code_modules", None)
    if from_settings is not None and settings is not None:
        deps += tuple(from_settings(settings))
    parts: list[Any] = [_own_code_digest(module, qualname)]
    if deps:
        parts.append(modules_digest(deps))
    versions = distribution_versions(tuple(getattr(plugin, "version_dependencies", ())))
    if versions:
        parts.append([list(v) for v in versions])
    return format_digest(sha256_hex(canonical_json(parts)))
