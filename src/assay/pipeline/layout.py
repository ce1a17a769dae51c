"""The results layout: one row per artifact stage, and the only place ref paths are spelled.

A stage's job writes one ref under ``results/<ref_dir>/``; the ref names an artifact of
``artifact_type`` whose inputs carry ``input_role``. The workflow plan, the rules, the
jobs, inventory (catalog, verify, gc, stats, export) and the tests all read this table, so
adding a stage or moving a folder is one edit here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class StageLayout:
    stage: str                  # the job's stage name (and `python -m assay.jobs STAGE`)
    artifact_type: str          # what its artifact is
    ref_dir: str                # folder under results/ holding its refs
    ref_pattern: str            # ref path inside ref_dir, with the job's wildcards
    input_role: str | None      # role of its input artifacts (None: no inputs)

    def ref_path(self, results: str, **names: Any) -> str:
        """``results/<ref_dir>/<pattern>`` with the names filled in (or left as wildcards)."""
        return f"{results}/{self.ref_dir}/{self.ref_pattern.format(**names)}"

    def wildcard_path(self, results: str) -> str:
        """The same path with Snakemake wildcards, for a rule's output."""
        return f"{results}/{self.ref_dir}/{self.ref_pattern}"

    def log_path(self, results: str, **names: Any) -> str:
        """The job's log: ``results/logs/<stage>/<pattern>.log`` (names or wildcards)."""
        stem = self.ref_pattern.removesuffix(".json")
        return f"{results}/{LOGS_DIR}/{self.stage}/{stem.format(**names) if names else stem}.log"

    def benchmark_path(self, results: str) -> str:
        stem = self.ref_pattern.removesuffix(".json")
        return f"{results}/{BENCHMARKS_DIR}/{self.stage}/{stem}.tsv"

    def results_of(self, ref_path: str | Path) -> Path:
        """The results directory a ref of this stage lives in."""
        return Path(ref_path).parents[self.ref_pattern.count("/") + 1]

    @property
    def identity_keys(self) -> tuple[str, ...]:
        """The names that identify one job of this stage (and go into its ref)."""
        return tuple(part.split("}")[0] for part in self.ref_pattern.split("{")[1:])


STAGE_LAYOUTS: dict[str, StageLayout] = {s.stage: s for s in (
    StageLayout("run", "run", "runs", "{condition}/{replicate}.json", None),
    StageLayout("collect", "replicate", "replicates",
                "{analysis}/{condition}/{replicate}.json", "run"),
    StageLayout("aggregate", "condition", "conditions", "{analysis}/{condition}.json",
                "replicate"),
    StageLayout("compare", "comparison", "comparisons", "{analysis}.json", "condition"),
)}
ARTIFACT_STAGES = tuple(STAGE_LAYOUTS)
ARTIFACT_TYPES = tuple(s.artifact_type for s in STAGE_LAYOUTS.values())
# Adaptive replicates: look k's decision artifact (assay.pipeline.adaptive) is named by the ref
# results/decisions/<k>.json; not a stage of the data flow, but a ref like theirs (gc keeps
# what it names, the catalog indexes it, export carries it).
DECISIONS_DIR = "decisions"
REF_DIRS = tuple(s.ref_dir for s in STAGE_LAYOUTS.values()) + (DECISIONS_DIR,)
BY_ARTIFACT_TYPE = {s.artifact_type: s for s in STAGE_LAYOUTS.values()}
BY_REF_DIR = {s.ref_dir: s for s in STAGE_LAYOUTS.values()}

CATALOG_FILE = "catalog.duckdb"
PLOTS_DIR = "plots"
# results/.keys/<ref path minus .json>.key: the action key of the job that wrote that ref,
# so per-study tools find the study's action records without scanning store/actions
# (issue 25). Not '.json': nothing that globs for refs may take one for a ref.
KEYS_DIR = ".keys"
KEY_SUFFIX = ".key"


def job_key_path(results: str | Path, ref_relative: str) -> Path:
    return (Path(results) / KEYS_DIR / ref_relative).with_suffix(KEY_SUFFIX)


def ref_of_key_path(key_relative: str) -> str:
    """The ref path (relative to results/) whose job a key file under .keys/ names."""
    return key_relative.removesuffix(KEY_SUFFIX) + ".json"
LOGS_DIR = "logs"
BENCHMARKS_DIR = "benchmarks"


def plot_log_path(results: str, analysis: str = "{analysis}", figure: str = "{figure}") -> str:
    """A plot job's log (one per figure); wildcards where names are not given."""
    return f"{results}/{LOGS_DIR}/plot/{analysis}/{figure}.log"


def catalog_log_path(results: str) -> str:
    return f"{results}/{LOGS_DIR}/catalog.log"


def ref_identity(spec: dict[str, Any]) -> dict[str, Any]:
    """What a ref records besides the digest: enough to read it without the manifest."""
    layout = STAGE_LAYOUTS[spec["stage"]]
    identity: dict[str, Any] = {"artifact_type": layout.artifact_type}
    for key in ("analysis", "condition", "replicate"):
        if key in spec:
            identity[key] = spec[key]
    return identity
