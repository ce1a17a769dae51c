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
# Run and collect bytes come from the runner and the analysis plugin alone.
STAGE_CODE: dict[str, tuple[str, ...]] = {
    "run": (),
    "collect": (),
    "aggregate": ("assay.aggregation", "assay.statistics"),
    "compare": ("assay.comparison", "assay.aggregation", "assay.statistics"),
    "plot": ("assay.plotting",),
}


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
