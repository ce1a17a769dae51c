"""What a study needs from this machine before its first job: the optional packages its
plugins import, and the files its import runner copies in.

The MD analyses and the OpenMM runner import MDAnalysis and OpenMM inside their jobs only
(so `assay --help` and the other plugins stay fast): without this check a study whose
extra is missing passed `assay config validate` and failed in every job with an
ImportError. Here it stops before any job, in one line naming the `pip install` to type.
Only ``importlib.util.find_spec`` runs: nothing heavy is imported.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any, Iterable

from ..deploy import DISTRIBUTION
from ..errors import ConfigError

# The extra of assay's distribution that installs a module.
EXTRA_OF = {"MDAnalysis": "md", "MDAnalysisTests": "md", "openmm": "openmm",
            "snakemake_executor_plugin_slurm": "slurm"}
# Built-in plugin modules -> the modules their jobs import.
PLUGIN_NEEDS = {"assay.analyses.md": ("MDAnalysis",),
                "assay.pipeline.openmm_runner": ("openmm",)}


def install_command(modules: Iterable[str]) -> str:
    """`pip install 'assay-workflow[md]'` for assay's extras, else the modules by name."""
    modules = list(modules)
    extras = sorted({EXTRA_OF[m] for m in modules if m in EXTRA_OF})
    others = sorted(m for m in modules if m not in EXTRA_OF)
    parts = ([f"'{DISTRIBUTION}[{','.join(extras)}]'"] if extras else []) + others
    return "pip install " + " ".join(parts)


def is_installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):   # a broken install is not an install
        return False


def plugin_modules(target: str) -> tuple[str, ...]:
    """The optional modules a plugin target ('module:attr') imports in its jobs."""
    module = target.partition(":")[0]
    return PLUGIN_NEEDS.get(module, ())


def check_extras(study: Any) -> None:
    """Raise ConfigError (one line) if a plugin of ``study`` needs a module not installed."""
    from .plugins import (
        ANALYSES_GROUP,
        BUILTIN_ANALYSES,
        BUILTIN_RUNNERS,
        RUNNERS_GROUP,
        plugin_target,
    )

    runner = plugin_target(study.runner.plugin, RUNNERS_GROUP, BUILTIN_RUNNERS,
                           where="runner.plugin")
    needs: list[tuple[str, tuple[str, ...]]] = [
        (f"runner {study.runner.plugin}", plugin_modules(runner))]
    structure = study.runner.settings.get("structure")   # openmm: 'package:path'
    package = _package_of(structure)
    if package is not None:
        needs.append((f"runner.settings.structure {structure!r}", (package,)))
    for name, spec in sorted(study.analyses.items()):
        target = plugin_target(spec.plugin, ANALYSES_GROUP, BUILTIN_ANALYSES,
                               where=f"analyses.{name}.plugin")
        needs.append((f"analysis {name} ({spec.plugin})", plugin_modules(target)))
    # One line for everything missing: the one pip install that makes the study run.
    users: dict[str, list[str]] = {}
    for what, modules in needs:
        for module in modules:
            if not is_installed(module):
                users.setdefault(module, []).append(what)
    if users:
        what = [f"{module} (for {whats[0]}"
                + (f" and {len(whats) - 1} more)" if len(whats) > 1 else ")")
                for module, whats in users.items()]
        raise ConfigError(f"this study needs {', '.join(what)}, not installed here: "
                          f"{install_command(users)}")


def _package_of(spec: Any) -> str | None:
    """The package of a 'package:relpath' structure that is not a file of the study."""
    if not isinstance(spec, str) or ":" not in spec or Path(spec).exists():
        return None
    package = spec.partition(":")[0]
    return package if package.replace(".", "").replace("_", "").isalnum() else None


def missing_import_files(study: Any, study_dir: Path = Path(), *, show: int = 1) -> str | None:
    """A warning naming the files the import runner would not find, or None.

    A warning, not an error: a study whose raw files were removed after their runs were
    imported still runs (the store holds them), and `snakemake` says which runs need them.
    """
    from .plugins import BUILTIN_RUNNERS

    if BUILTIN_RUNNERS.get(study.runner.plugin) != "assay.pipeline.runners:ImportRunner":
        return None
    from .runners import ImportRunner

    missing, total = [], 0
    for label, params in study.conditions.items():
        for replicate in study.replicates:
            for path in ImportRunner.source_files(study.runner.settings, label, replicate,
                                                  params):
                total += 1
                full = Path(path) if Path(path).is_absolute() else study_dir / path
                if not full.is_file():
                    missing.append(path)
    if not missing:
        return None
    first = ", ".join(missing[:show])
    return (f"{len(missing)} of {total} files to import are not there yet (first: {first}); "
            "the runs that need them will fail until they are")
