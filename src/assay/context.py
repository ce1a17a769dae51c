"""What a runner or an analysis plugin is handed: identity, settings and the store."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from .artifacts import (
    ConditionArtifact,
    ReplicateArtifact,
    RunArtifact,
)
from .store import ArtifactStore


@dataclass
class RunContext:
    condition_label: str
    replicate: int
    params: dict[str, Any]
    settings: dict[str, Any]
    seed: int
    artifact_store: ArtifactStore
    runner_name: str
    workdir: Path = field(default_factory=Path.cwd)
    warnings: list[str] = field(default_factory=list)

    @property
    def merged_settings(self) -> dict[str, Any]:
        """Runner settings overridden by the condition's parameters."""
        return {**self.settings, **self.params}

    def result(self, *, payload: dict[str, Any] | None = None, sidecars: list | None = None,
               metadata: dict[str, Any] | None = None) -> RunArtifact:
        return RunArtifact(analysis_name=self.runner_name, condition_label=self.condition_label,
                           replicate=self.replicate, payload=payload or {},
                           sidecars=sidecars or [], metadata=metadata or {},
                           warnings=list(self.warnings))


@dataclass
class CollectorContext:
    analysis_name: str
    condition_label: str
    replicate: int
    settings: dict[str, Any]
    settings_fingerprint: str
    run: RunArtifact
    run_digest: str
    artifact_store: ArtifactStore
    params: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def run_sidecars(self) -> list:
        return list(self.run.sidecars)

    def run_sidecar(self, kind: str):
        return self.run.sidecar(kind=kind)

    def result(self, *, payload: dict[str, Any], sidecars: list | None = None,
               metadata: dict[str, Any] | None = None,
               provenance: dict[str, Any] | None = None) -> ReplicateArtifact:
        """A ReplicateArtifact already carrying this context's identity and warnings."""
        return ReplicateArtifact(
            analysis_name=self.analysis_name, condition_label=self.condition_label,
            replicate=self.replicate, payload=payload, sidecars=sidecars or [],
            metadata={"settings_fingerprint": self.settings_fingerprint, **(metadata or {})},
            provenance=provenance or {}, warnings=list(self.warnings))


@dataclass
class AggregateContext:
    analysis_name: str
    condition_label: str
    settings: dict[str, Any]
    settings_fingerprint: str
    replicates: dict[int, ReplicateArtifact]
    confidence: float
    artifact_store: ArtifactStore


@dataclass
class CompareContext:
    analysis_name: str
    control: str
    settings: dict[str, Any]
    conditions: dict[str, ConditionArtifact]
    confidence: float
    artifact_store: ArtifactStore


@dataclass
class PlotContext:
    """Everything a plot may use: artifacts read through the store, never raw files."""

    analysis_name: str
    control: str
    settings: dict[str, Any]
    comparison: Any
    conditions: dict[str, ConditionArtifact]
    replicates: Mapping[str, dict[int, ReplicateArtifact]]   # read on first access
    artifact_store: ArtifactStore
    plot_options: dict[str, Any]
