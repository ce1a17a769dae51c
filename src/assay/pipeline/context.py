"""What a runner or an analysis plugin is handed: identity, settings and the store."""

from __future__ import annotations

import os
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from ..store.artifacts import (
    ConditionArtifact,
    ReplicateArtifact,
    RunArtifact,
)
from ..store import ArtifactStore
from .supervise import Supervisor


@dataclass
class RunContext:
    condition_label: str
    replicate: int
    params: dict[str, Any]
    settings: dict[str, Any]
    seed: int
    artifact_store: ArtifactStore
    runner_name: str
    # The workflow directory: relative paths in settings (imported files) start here.
    study_dir: Path = field(default_factory=Path.cwd)
    # The run's persistent work directory (store/work/<action key>/files): kept across
    # kills and retries, removed once the artifact is published. Checkpoints go here.
    workdir: Path | None = None
    attempt: int = 1
    resuming: bool = False          # an earlier attempt left files in workdir
    threads: int = 1                # the job's CPU threads (the study's resources)
    warnings: list[str] = field(default_factory=list)
    log_path: Path | None = None    # the job's log (its stdout/stderr), for error messages
    # Starts commands (own process group, output to the log) and learns of SIGTERM.
    supervisor: Supervisor = field(default_factory=Supervisor, repr=False)
    progress_sink: Callable[[float, float | None, str], None] | None = field(
        default=None, repr=False)

    @property
    def stop_event(self) -> threading.Event:
        return self.supervisor.stop_event

    @property
    def stop_requested(self) -> bool:
        """True once the job got SIGTERM (walltime, scancel, preemption): write the
        checkpoint and raise ``RunInterrupted``; the next attempt resumes from it."""
        return self.supervisor.stop_event.is_set()

    def run_command(self, command: str, *, env: dict[str, str] | None = None) -> int:
        """Run a shell command in the work directory, its output streamed to the job log."""
        base = {**os.environ, **self.environment()}
        return self.supervisor.run(command, cwd=self.workdir or Path.cwd(),
                                   env={**base, **(env or {})})

    def environment(self) -> dict[str, str]:
        """What a child process learns about its run."""
        env = {"ASSAY_ATTEMPT": str(self.attempt), "ASSAY_THREADS": str(self.threads),
               "OMP_NUM_THREADS": str(self.threads), "ASSAY_SEED": str(self.seed),
               "ASSAY_CONDITION": self.condition_label, "ASSAY_REPLICATE": str(self.replicate)}
        env["ASSAY_STUDY_DIR"] = str(Path(self.study_dir).absolute())
        if self.workdir is not None:   # absolute: the child runs inside it
            env["ASSAY_WORKDIR"] = env["ASSAY_OUTDIR"] = str(Path(self.workdir).absolute())
        if self.resuming:
            env["ASSAY_RESUME"] = "1"
        return env

    def progress(self, done: float, total: float | None = None, message: str = "") -> None:
        """Report how far the run has got (read by `assay status`); cheap, call it often."""
        if self.progress_sink is not None:
            self.progress_sink(done, total, message)

    def log(self, message: str) -> None:
        """A line in the job's log, written at once (the log is read while the job runs)."""
        print(f"[{self.runner_name} {self.condition_label}/{self.replicate}] {message}",
              file=sys.stderr, flush=True)

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
    plugin: Any = None   # the analysis plugin instance (its METRIC_INFO, replicate_kind)
    # An adaptive study's look decisions up to the last (results/looks/<k>.json)
    looks: list[dict[str, Any]] = field(default_factory=list)
