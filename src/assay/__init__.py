"""assay: replicate-based analyses on a content-addressed artifact store.

Everything a user or plugin author needs is importable from here. The packages below are
the project's own layers (docs/architecture.md): ``assay.store`` (bytes on disk),
``assay.pipeline`` (config to artifacts), ``assay.tools`` (reading a finished study), and
the command line; plugins and scripts import from ``assay`` only. Heavy modules (pandas,
duckdb, matplotlib) load only when first used.
"""

from __future__ import annotations

from typing import Any

from .store.actions import action_key
from .store.artifacts import (
    SCHEMA_VERSION,
    Artifact,
    ArtifactSidecarRef,
    ComparisonArtifact,
    ConditionArtifact,
    ReplicateArtifact,
    RunArtifact,
    Sidecar,
)
from .pipeline.context import (
    AggregateContext,
    CollectorContext,
    CompareContext,
    PlotContext,
    RunContext,
)
from .errors import (
    ArtifactIntegrityError,
    ArtifactSchemaError,
    ArtifactStoreError,
    AssayError,
    BundleError,
    ConfigError,
    PayloadError,
    PluginError,
    RunFailed,
    RunInterrupted,
    SidecarPathError,
)
from .store.hashing import canonical_json
from .pipeline.metric_info import Metric
from .store.payload import (
    COMPARISONS,
    METRICS,
    P_ADJUSTED,
    SKIP_REASON,
    SKIPPED_REPLICATES,
    VALUES,
    strict_json_payload,
)
from .store.refs import Ref, read_ref, write_ref
from .pipeline.settings import REQUIRED, Setting, Settings, SettingsView
from .store import ArtifactStore

__version__ = "0.1.0"

__all__ = [
    "SCHEMA_VERSION", "METRICS", "SKIP_REASON", "SKIPPED_REPLICATES", "VALUES", "COMPARISONS",
    "P_ADJUSTED",
    "Artifact", "Sidecar", "ArtifactSidecarRef", "ArtifactStore",
    "RunArtifact", "ReplicateArtifact", "ConditionArtifact", "ComparisonArtifact",
    "RunContext", "CollectorContext", "AggregateContext", "CompareContext", "PlotContext",
    "AssayError", "ArtifactStoreError", "ArtifactIntegrityError", "ArtifactSchemaError",
    "SidecarPathError", "BundleError", "PayloadError", "ConfigError", "PluginError",
    "RunFailed", "RunInterrupted",
    "strict_json_payload", "canonical_json", "action_key", "Ref", "read_ref", "write_ref",
    "Setting", "Settings", "SettingsView", "REQUIRED", "Metric",
]

_LAZY = {"open_catalog": "tools.catalog", "Catalog": "tools.catalog",
         "write_crate": "tools.crate"}
__all__ += list(_LAZY)


def __getattr__(name: str) -> Any:
    """Exports whose modules import duckdb/pandas load on first use, not with `import assay`."""
    if name in _LAZY:
        from importlib import import_module

        value = getattr(import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
