"""A small study written through the public API, as the workflow would leave it.

Shared by the catalog, CLI, verify/gc and bundle tests (the ``study`` fixture lives in
conftest.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from assay import (
    ArtifactStore,
    ComparisonArtifact,
    ConditionArtifact,
    ReplicateArtifact,
    RunArtifact,
    action_key,
    write_ref,
)
from assay.cli import main
from assay.pipeline.layout import job_key_path

CONDITIONS = {"ctrl": 0.0, "treat": 1.0}
REPLICATES = (1, 2, 3)


@dataclass
class Study:
    root: Path
    store: ArtifactStore
    results: Path
    runs: dict = field(default_factory=dict)          # (cond, rep) -> digest
    replicates: dict = field(default_factory=dict)    # (cond, rep) -> digest
    conditions: dict = field(default_factory=dict)    # cond -> digest
    comparison: str = ""
    actions: dict = field(default_factory=dict)       # digest -> action key
    refs: dict = field(default_factory=dict)          # digest -> ref path

    @property
    def store_root(self) -> Path:
        return self.store.root

    def ref(self, digest: str) -> Path:
        return self.refs[digest]


def make_study(root: Path) -> Study:
    """Runs, per-replicate metrics, condition summaries and a comparison, each with a ref
    and an action record, as the workflow would leave them. The replicate profile sidecar
    is the same array for every replicate, so the store deduplicates it."""
    study = Study(root, ArtifactStore(root / "store"), root / "results")
    store = study.store

    def publish(artifact, ref: str, **identity) -> str:
        digest = store.write_artifact(artifact)
        path = study.results / ref
        write_ref(path, digest, **identity)
        key = action_key(stage=artifact.provenance["stage"], plugin="test", code_digest="c",
                         settings={}, inputs=[ref])
        store.record_action(key, digest, stage=artifact.provenance["stage"], plugin="test",
                            when="2024-05-01T12:00:00+00:00", host="node1", duration_s=0.25)
        key_file = job_key_path(study.results, ref)   # as a job leaves it (results/.keys)
        key_file.parent.mkdir(parents=True, exist_ok=True)
        key_file.write_text(key)
        study.actions[digest], study.refs[digest] = key, path
        return digest

    for cond, offset in CONDITIONS.items():
        for rep in REPLICATES:
            trajectory = store.write_npz_sidecar(
                "sidecars/trajectory.npz", x=np.arange(16.0) * rep + offset,
                metadata={"kind": "trajectory"})
            study.runs[cond, rep] = publish(
                RunArtifact(analysis_name="demo", condition_label=cond, replicate=rep,
                            payload={"n_frames": 16}, sidecars=[trajectory],
                            provenance={"stage": "run", "plugin": "demo"}),
                f"runs/{cond}/{rep}.json", artifact_type="run", condition=cond, replicate=rep)
            profile = store.write_npz_sidecar("sidecars/profile.npz", p=np.ones(8),
                                              metadata={"kind": "profile"})
            study.replicates[cond, rep] = publish(
                ReplicateArtifact(
                    analysis_name="rg", condition_label=cond, replicate=rep,
                    payload={"metrics": {"rg": offset + rep, "e2e": 2.0 * rep + offset}},
                    sidecars=[profile], inputs=[{"role": "run", "digest": study.runs[cond, rep]}],
                    provenance={"stage": "collect", "plugin": "rg",
                                "settings_fingerprint": "sha256:" + "f" * 64}),
                f"replicates/rg/{cond}/{rep}.json", artifact_type="replicate", analysis="rg",
                condition=cond, replicate=rep)
        summary = {"n": 3, "mean": offset + 2.0, "std": 1.0, "sem": 0.577, "ci_low": offset,
                   "ci_high": offset + 4.0, "confidence": 0.95}
        study.conditions[cond] = publish(
            ConditionArtifact(
                analysis_name="rg", condition_label=cond, replicates=list(REPLICATES),
                payload={"metrics": {"rg": summary, "e2e": {**summary, "std": None}}},
                inputs=[{"role": "replicate", "digest": study.replicates[cond, r]}
                        for r in REPLICATES],
                provenance={"stage": "aggregate", "plugin": "rg"}),
            f"conditions/rg/{cond}.json", artifact_type="condition", analysis="rg",
            condition=cond)
    study.comparison = publish(
        ComparisonArtifact(
            analysis_name="rg",
            payload={"control": "ctrl", "comparisons": {"treat": {"rg": {
                "difference": 1.0, "ci_low": -1.0, "ci_high": 3.0, "t": 1.2, "p": 0.3,
                "df": 4.0}}}},
            inputs=[{"role": "condition", "digest": d} for d in study.conditions.values()],
            provenance={"stage": "compare", "plugin": "rg"}),
        "comparisons/rg.json", artifact_type="comparison", analysis="rg")
    return study



def run_cli(study: Study, capsys, *argv: str) -> tuple[int, str, str]:
    """``assay --store ... --results ... ARGV`` in-process: exit code, stdout, stderr."""
    capsys.readouterr()
    code = main(["--store", str(study.store_root), "--results", str(study.results), *argv])
    out = capsys.readouterr()
    return code, out.out, out.err
