"""What the Snakefile needs from a study: ref paths, job specs, targets.

Kept in the library so the rules stay thin and everything here is testable without
Snakemake. Building a plan imports the plugins (to fingerprint their code), nothing heavier.
"""

from __future__ import annotations

import json
import re
import shlex
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any

from .config import Study
from ..store.hashing import canonical_json
from .keys import RULE_CODE_KEYS, rule_code_args
from .layout import CATALOG_FILE, STAGE_LAYOUTS
from .plotting import plot_outputs
from .plugins import resolve_analysis
from ..store.spec_files import spec_argument, spec_text
from . import stages


class WorkflowPlan:
    def __init__(self, config: dict[str, Any], workdir: str | Path = ".") -> None:
        self.study = Study.from_config(config)
        self.workdir = Path(workdir)
        self.store = self.study.store
        self.results = self.study.results.rstrip("/")
        self._checkpoints: Any = None
        if self.study.adaptive:   # the replicates the looks on disk decided so far
            import dataclasses

            decided, _ = self._decided_on_disk()
            self.study = dataclasses.replace(self.study, replicates=decided)

    # --- paths ----------------------------------------------------------------------
    def ref_output(self, stage: str) -> str:
        """A stage rule's output: its ref path with Snakemake wildcards."""
        return STAGE_LAYOUTS[stage].wildcard_path(self.results)

    def log_output(self, stage: str) -> str:
        return STAGE_LAYOUTS[stage].log_path(self.results)

    def benchmark_output(self, stage: str) -> str:
        return STAGE_LAYOUTS[stage].benchmark_path(self.results)

    def run_ref(self, condition: str, replicate: int | str) -> str:
        return STAGE_LAYOUTS["run"].ref_path(self.results, condition=condition,
                                             replicate=replicate)

    def replicate_ref(self, analysis: str, condition: str, replicate: int | str) -> str:
        return STAGE_LAYOUTS["collect"].ref_path(self.results, analysis=analysis,
                                                 condition=condition, replicate=replicate)

    def condition_ref(self, analysis: str, condition: str) -> str:
        return STAGE_LAYOUTS["aggregate"].ref_path(self.results, analysis=analysis,
                                                   condition=condition)

    def comparison_ref(self, analysis: str) -> str:
        return STAGE_LAYOUTS["compare"].ref_path(self.results, analysis=analysis)

    @property
    def catalog(self) -> str:
        return f"{self.results}/{CATALOG_FILE}"

    @cached_property
    def plot_format(self) -> str:
        return self.study.plots["format"]

    def has_detail_plot(self, analysis: str) -> bool:
        from .plotting import has_detail

        return has_detail(resolve_analysis(self.study.analyses[analysis].plugin))

    def plot_looks(self, wildcards: Any = None) -> list[str]:
        """An adaptive study's look decisions up to the one that stopped (asked through the
        checkpoints like the aggregates' inputs); none for a fixed design."""
        if not self.study.adaptive or self._checkpoints is None:
            return []
        from .adaptive import look_path, looks

        n = len(self.replicates())
        last = looks(self.study.adaptive).index(n) + 1
        return [look_path(self.results, k) for k in range(1, last + 1)]

    def decided_look_paths(self) -> list[str]:
        """``plot_looks`` from the decisions on disk (outside Snakemake: `assay crate`);
        none while a look is still to be made."""
        if not self.study.adaptive:
            return []
        from .adaptive import look_path, looks

        decided, pending = self._decided_on_disk()
        if pending is not None:
            return []
        last = looks(self.study.adaptive).index(len(decided)) + 1
        return [str(self.workdir / look_path(self.results, k)) for k in range(1, last + 1)]

    @lru_cache(maxsize=None)
    def _caption(self, figure: str, analysis: str) -> str:
        from .plotting import figure_caption

        return figure_caption(self.study, analysis, figure)

    def caption(self, figure: str, wildcards: Any) -> str:
        """The report caption of a figure (reStructuredText), from the config alone."""
        return self._caption(figure, wildcards.analysis)

    # --- resources (never in a spec: changing them reruns nothing) ------------------------
    def threads(self, stage: str) -> Any:
        """A rule's ``threads:``; per condition for run jobs."""
        if stage == "run" and any("threads" in r for r in self.study.condition_resources.values()):
            return lambda wildcards: self.study.job_resources("run", wildcards.condition)["threads"]
        return self.study.job_resources(stage)["threads"]

    def resources(self, stage: str) -> dict[str, Any]:
        """A rule's ``resources:`` under Snakemake's and the SLURM executor's names.

        Numbers always have a value (the schema fills them); a partition or extra options
        are declared only where the study sets them, so the profile's default applies
        otherwise.
        """
        keys = ["mem_mb", "runtime", "gpu"]
        overrides = self.study.condition_resources.values() if stage == "run" else ()
        for key in ("slurm_partition", "slurm_extra"):
            if key in self.study.resources.get(stage, {}) or any(key in r for r in overrides):
                keys.append(key)
        if not overrides:
            values = self.study.job_resources(stage)
            return {key: values.get(key, "") for key in keys}
        return {key: (lambda wildcards, key=key:
                      self.study.job_resources("run", wildcards.condition).get(key, ""))
                for key in keys}

    def check_cores(self, cores: int | None) -> None:
        self.study.check_threads(cores)

    @property
    def grace_seconds(self) -> float:
        return self.study.grace_seconds

    @property
    def claim_wait_seconds(self) -> float:
        return self.study.claim_wait_seconds

    # --- the shared store (never in a spec: who may write changes no result) -------------
    @cached_property
    def sharing(self) -> Any:
        from ..store.sharing import SharingSettings

        return SharingSettings.from_config(self.study.store_sharing)

    def export_sharing(self, environ: Any) -> None:
        """Hand the study's store_sharing to every job (through the environment, on the
        cluster too: each SLURM job re-reads the Snakefile), and stop before any job when
        the store exists but is refused (world-writable) or a trusted name is unknown."""
        from ..store.sharing import ENV_VAR, SharingPolicy

        environ[ENV_VAR] = self.sharing.env_value()
        SharingPolicy.for_store(self.workdir / self.store, self.sharing)

    # --- wildcard constraints ---------------------------------------------------------
    @staticmethod
    def _alternatives(names: list[str]) -> str:
        return "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))

    @property
    def condition_pattern(self) -> str:
        return self._alternatives(list(self.study.conditions))

    @property
    def analysis_pattern(self) -> str:
        return self._alternatives(list(self.study.analyses))

    # --- specs ----------------------------------------------------------------------
    @cached_property
    def _runner(self) -> Any:
        return stages.resolve_runner(self.study.runner.plugin)

    @lru_cache(maxsize=None)
    def _shared(self, stage: str, analysis: str | None) -> Any:
        """What all jobs of a stage (and analysis) share: the code digest, the settings
        fingerprint. Made once per plan (status makes thousands of specs)."""
        if stage == "run":
            return stages.runner_code_digest(self.study)
        return stages._analysis_spec(self.study, analysis, stage)

    @lru_cache(maxsize=None)
    def _spec_dict(self, stage: str, analysis: str | None, condition: str | None,
                   replicate: int | None) -> dict[str, Any]:
        if stage == "run":
            spec = stages.run_spec(self.study, condition, replicate,
                                   code=self._shared("run", None))
            extras = getattr(self._runner, "spec_extras", None)
            sources = None if extras is None else extras(
                self.study.runner.settings, condition, replicate,
                self.study.conditions[condition], self.workdir)
            if sources:   # none (the shell runner without code_files): the key as before
                spec["sources"] = sources
        elif stage == "collect":
            spec = stages.collect_spec(self.study, analysis, condition, replicate,
                                       base=self._shared(stage, analysis))
        elif stage == "aggregate":
            spec = stages.aggregate_spec(self.study, analysis, condition,
                                         base=self._shared(stage, analysis))
        elif stage == "compare":
            spec = stages.compare_spec(self.study, analysis)
        else:
            spec = stages.plot_spec(self.study, analysis)
        if self.study.numerics.get("portable"):
            from .numerics import PORTABLE_PROFILE

            spec["numerics"] = {"portable": PORTABLE_PROFILE}
        return spec

    @lru_cache(maxsize=None)
    def _spec(self, stage: str, analysis: str | None, condition: str | None,
              replicate: int | None, rule_params: bool = False) -> str:
        spec = self._spec_dict(stage, analysis, condition, replicate)
        if rule_params:   # the rule's command carries these instead (assay.pipeline.keys)
            spec = {k: v for k, v in spec.items() if k not in RULE_CODE_KEYS.get(stage, ())}
        return spec_argument(canonical_json(spec), self.results, self.workdir)

    def spec(self, stage: str, wildcards: Any, *, rule_params: bool = False) -> str:
        """A job's whole spec (its key and provenance) as shell-quoted canonical JSON; with
        ``rule_params``, the rule's ``spec`` param (Snakemake's params trigger): without the
        key parts the rule's command carries (``rule_code``)."""
        get = lambda name: getattr(wildcards, name, None)  # noqa: E731
        replicate = get("replicate")
        return self._spec(stage, get("analysis"), get("condition"),
                          int(replicate) if replicate is not None else None, rule_params)

    def spec_dict(self, stage: str, wildcards: Any) -> dict[str, Any]:
        """``spec`` as the job reads it (JSON types: what provenance records), without the
        shell quoting or a long spec's file (assay status)."""
        get = lambda name: getattr(wildcards, name, None)  # noqa: E731
        replicate = get("replicate")
        return json.loads(canonical_json(self._spec_dict(
            stage, get("analysis"), get("condition"),
            int(replicate) if replicate is not None else None)))

    @lru_cache(maxsize=None)
    def rule_code(self, stage: str) -> str:
        """The key parts a rule's shell text carries (Snakemake's code trigger), the same for
        all its jobs: the run rule's runner code digest and storage format (assay.pipeline.keys)."""
        if stage != "run":
            return ""
        first = next(iter(self.study.conditions))
        return rule_code_args(stage, stages.run_spec(self.study, first, 1))

    def run_sources(self, wildcards: Any) -> list[str]:
        """Files an import runner reads: Snakemake inputs, so their changes rerun the run."""
        runner = stages.resolve_runner(self.study.runner.plugin)
        sources = getattr(runner, "source_files", None)
        if sources is None:
            return []
        return sources(self.study.runner.settings, wildcards.condition, int(wildcards.replicate),
                       self.study.conditions[wildcards.condition])

    # --- adaptive replicates (assay.pipeline.adaptive) -----------------------------------------------
    def bind_checkpoints(self, checkpoints: Any) -> None:
        """The Snakefile's ``checkpoints``: input functions ask the looks through them."""
        self._checkpoints = checkpoints

    def _decided_on_disk(self) -> tuple[list[int], int | None]:
        from .adaptive import decided_replicates, look_path, read_decision

        return decided_replicates(
            self.study.adaptive,
            lambda k: read_decision(self.workdir / look_path(self.results, k)),
            self.study.adaptive["until"])

    def replicates(self) -> list[int]:
        """The replicates the aggregate and catalog jobs ask for: all of a fixed design; of
        an adaptive one, those the looks decided, asked through Snakemake's checkpoints
        (raising its IncompleteCheckpointException until the next look has run)."""
        if not self.study.adaptive or self._checkpoints is None:
            return list(self.study.replicates)
        from .adaptive import decided_replicates, read_decision

        def read(look: int) -> dict[str, Any] | None:
            return read_decision(self._checkpoints.look.get(look=look).output[0])

        return decided_replicates(self.study.adaptive, read, self.study.adaptive["until"])[0]

    def look_path(self) -> str:
        from .adaptive import look_path

        return look_path(self.results, "{look}")

    def decision_ref_output(self) -> str:
        from .adaptive import decision_ref_path

        return decision_ref_path(self.results, "{look}")

    def decision_refs(self) -> list[str]:
        """The refs of the decisions of the looks made so far: in Snakemake (a catalog
        input) every look up to the one that stopped, asked through the checkpoints; outside
        it, those made on disk before the look still to make."""
        if not self.study.adaptive:
            return []
        from .adaptive import decision_ref_path, made_looks

        if self._checkpoints is None:
            decided, pending = self._decided_on_disk()
            made = (list(range(1, pending)) if pending is not None
                    else made_looks(self.study.adaptive, decided))
        else:
            made = made_looks(self.study.adaptive, self.replicates())
        return [decision_ref_path(self.results, k) for k in made]

    def look_inputs(self, wildcards: Any) -> list[str]:
        """Look k reads the first n_k replicates of each analysis its rule names (every
        condition), after look k - 1."""
        from .adaptive import look_path, looks, rule_analyses

        look = int(wildcards.look)
        n = looks(self.study.adaptive)[look - 1]
        analyses = rule_analyses(self.study.adaptive["until"])
        refs = [self.replicate_ref(a, c, r) for a in analyses for c in self.study.conditions
                for r in range(1, n + 1)]
        return refs + ([look_path(self.results, look - 1)] if look > 1 else [])

    def look_spec(self, wildcards: Any) -> str:
        from .adaptive import looks, rule_analyses

        def job_spec(stage: str, analysis: str, condition: str | None) -> dict[str, Any]:
            return json.loads(spec_text(shlex.split(self._spec(stage, analysis, condition,
                                                               None))[0]))

        design = self.study.adaptive
        look = int(wildcards.look)
        spec = {"look": look, "n": looks(design)[look - 1], "min": design["min"],
                "max": design["max"], "batch": design["batch"], "rule": design["until"],
                "conditions": list(self.study.conditions), "control": self.study.control,
                "aggregate": {f"{a}/{c}": job_spec("aggregate", a, c)
                              for a in rule_analyses(design["until"])
                              for c in self.study.conditions}}
        if design["until"].get("decided"):
            spec["compare"] = job_spec("compare", design["until"]["decided"]["analysis"], None)
        return spec_argument(canonical_json(spec), self.results, self.workdir)

    # --- inputs -----------------------------------------------------------------------
    def replicate_refs(self, wildcards: Any) -> list[str]:
        return [self.replicate_ref(wildcards.analysis, wildcards.condition, r)
                for r in self.replicates()]

    def condition_refs(self, wildcards: Any) -> list[str]:
        return [self.condition_ref(wildcards.analysis, c) for c in self.study.conditions]

    def all_refs(self, wildcards: Any = None) -> list[str]:
        replicates = self.replicates()
        refs = [self.run_ref(c, r) for c in self.study.conditions for r in replicates]
        for analysis in self.study.analyses:
            refs += [self.replicate_ref(analysis, c, r)
                     for c in self.study.conditions for r in replicates]
            refs += [self.condition_ref(analysis, c) for c in self.study.conditions]
            refs.append(self.comparison_ref(analysis))
        return refs + self.decision_refs()

    def plots(self) -> list[str]:
        out = []
        for analysis in self.study.analyses:
            plugin = resolve_analysis(self.study.analyses[analysis].plugin)
            out += plot_outputs(plugin, self.results, analysis, self.plot_format)
        return out

    def targets(self) -> list[str]:
        return self.plots() + [self.catalog]


def plan_or_exit(config: dict[str, Any], *, cores: int | None, environ: Any) -> WorkflowPlan:
    """The Snakefile's plan. A bad config (the schema, a plugin's declared settings, a
    param its runner does not take) or a refused store stops snakemake before any job with
    the message alone: a few lines, not a traceback or snakemake's dump of the schema."""
    from ..errors import AssayError, ConfigError
    from .study_settings import check_runner_code

    try:
        plan = WorkflowPlan(config)  # paths in the config are relative to the working dir
        check_runner_code(plan.study)   # the python runner's module, found from here
        # A stage asking for more threads than this run may use stops here too (when the
        # run has a core count at all: `snakemake --unlock` or a listing has none).
        plan.check_cores(cores)
        plan.export_sharing(environ)  # store_sharing reaches the jobs; a refused store stops
    except AssayError as exc:
        hint = ("\n(`assay config validate FILE` checks a config without starting snakemake)"
                if isinstance(exc, ConfigError) else "")
        raise SystemExit(f"assay: {exc}{hint}") from None
    return plan


def spec_json(quoted: str) -> dict[str, Any]:
    """Inverse of the quoting in ``WorkflowPlan.spec`` (for tests and debugging)."""
    return json.loads(spec_text(shlex.split(quoted)[0]))
