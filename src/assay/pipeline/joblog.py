"""The words a job writes to its log that `assay status` reads back: one spelling for both.

Every job line starts with ``[assay STAGE] ``; these are what follows, where a reader
depends on it. Change a wording here and both sides change.
"""

from __future__ import annotations

CACHE_HIT = "action cache hit"          # "[assay S] action cache hit KEY: DIGEST"
FIGURE_CACHE_HIT = "figure cache hit"   # "[assay plot] figure cache hit KEY: PATH"
REF_WRITTEN = "ref "                    # "[assay S] ref PATH -> DIGEST (1.23s)": success
FIGURES_WRITTEN = "wrote "              # "[assay plot] wrote N figure(s) in 1.23s": success
CATALOG_BUILT = "built "                # "built PATH in 1.23 s" (`assay catalog build`)
ATTEMPT = "attempt "                    # "[assay run] attempt N in WORKDIR"
REPLAY_START = "---- the log of attempt "
REPLAY_END = "---- end of the log of attempt "


def prefix(stage: str) -> str:
    return f"[assay {stage}] "
