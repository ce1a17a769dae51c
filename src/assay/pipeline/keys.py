"""What a stage's action key holds besides its settings and inputs, and nothing more.

A key covers the code that computes the stage's bytes: a run, its runner's own code; a
collect, its analysis plugin; aggregate and compare, the statistics modules below; a plot,
the plotting code. Serialization (manifests, NPZ, tables) enters every key as
``STORAGE_FORMAT``, not as source text: a refactor of it that writes the same bytes reruns
nothing, and ``tests/data/small_study_pins.json`` fails when it would write other bytes.
"""

from __future__ import annotations

from typing import Any

# Bump when unchanged computations would write other bytes (artifacts.py, npz.py,
# tables.py, the stage glue in stages.py/context.py): every job of every study reruns.
# The pinned-digest test names this constant when the pins move.
STORAGE_FORMAT = 1

# Framework modules whose code computes a stage's bytes (beside the plugin's own code).
# Run and collect bytes come from the runner and the analysis plugin alone (a collect of a
# plugin that declares SERIES also keys assay.pipeline.diagnostics.SERIES_CODE).
STAGE_CODE: dict[str, tuple[str, ...]] = {
    "run": (),
    "collect": (),
    "aggregate": ("assay.pipeline.aggregation", "assay.pipeline.statistics", "assay.pipeline.convergence",
                  "assay.pipeline.diagnostics", "assay.pipeline.metric_info"),
    "compare": ("assay.pipeline.comparison", "assay.pipeline.aggregation", "assay.pipeline.statistics",
                "assay.pipeline.metric_info"),
    "plot": ("assay.pipeline.plotting", "assay.pipeline.metric_info"),
}


# Key parts a rule hands its job through its shell command, not through its params:
# Snakemake's `code` trigger (the rule's command text) sees a change of them, its `params`
# trigger does not. So `--rerun-triggers mtime params input` keeps runs made by older runner
# code (or an older storage format), and the default triggers rerun them. Only the run rule:
# one runner per study, so the command's digest is exactly its runs'. The other stages keep
# their code in their params: one rule serves every analysis, and a rule-wide digest would
# rerun every analysis for one plugin's change.
RULE_CODE_KEYS: dict[str, tuple[str, ...]] = {"run": ("code_digest", "format")}
# The job options that carry them (assay.jobs), in RULE_CODE_KEYS order.
RULE_CODE_OPTIONS = {"code_digest": "--code-digest", "format": "--storage-format"}


def rule_code_args(stage: str, spec: dict[str, Any]) -> str:
    """The rule-code part of a job's command line, e.g. ``--code-digest sha256:… --storage-
    format 1``: no braces or quotes, so it sits in a rule's shell text as it is."""
    return " ".join(f"{RULE_CODE_OPTIONS[k]} {spec[k]}" for k in RULE_CODE_KEYS.get(stage, ()))


def with_rule_code(spec: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    """The job's whole spec: its ``spec`` param plus what the rule's command gave
    (``given``: RULE_CODE_KEYS -> value or None). A value that contradicts the spec stops the
    job: its key would be wrong."""
    from ..errors import AssayError

    if not isinstance(spec, dict):
        return spec   # the job reports a malformed spec
    merged = dict(spec)
    for key, value in given.items():
        if value is None:
            continue
        if key in spec and spec[key] != value:
            raise AssayError(f"{RULE_CODE_OPTIONS[key]} {value} contradicts the spec's "
                             f"{key} {spec[key]!r}; give one of them")
        merged[key] = value
    return merged


def stage_code_digest(stage: str) -> str | None:
    """Digest of the framework modules a stage computes with; None for run and collect."""
    from .plugins import modules_digest

    modules = STAGE_CODE[stage]
    return modules_digest(modules) if modules else None


def key_parts(stage: str) -> dict[str, Any]:
    """Spec entries (so Snakemake params, action key and provenance) for a stage's framework
    code and the storage format."""
    parts: dict[str, Any] = {"format": STORAGE_FORMAT}
    digest = stage_code_digest(stage)
    if digest is not None:
        parts["stage_code"] = digest
    return parts
