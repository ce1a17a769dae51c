"""Default aggregation of replicate metrics, and the checks that keep its inputs honest.

A condition artifact keeps each replicate's value beside n/mean/std/SEM/CI, so every
comparison, correction and figure is computed from stored artifacts without re-opening a
replicate. (Only the convergence diagnostics of series metrics read the replicates'
series sidecars: R-hat needs every frame; assay.pipeline.diagnostics.) What goes in must be what it claims: metrics are finite real numbers (a bool
or the string "1.0" is not averaged as 1.0), and every replicate belongs to this analysis,
this condition and these settings.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

from ..store.artifacts import ConditionArtifact, ReplicateArtifact
from .context import AggregateContext
from ..errors import AssayError
from ..store.payload import CONVERGENCE, METRICS, SKIP_REASON, SKIPPED_REPLICATES, VALUES
from ..store import ArtifactStore


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def metric_value(value: Any, *, analysis: str, condition: str, replicate: int,
                 name: str) -> float:
    """The metric as a float, or an error naming where it came from and what to do."""
    if (isinstance(value, numbers.Real) and not isinstance(value, bool)
            and math.isfinite(value)):
        return float(value)
    raise AssayError(
        f"aggregate {analysis}/{condition}: replicate {replicate} metric {name!r} is "
        f"{_shown(value)} ({type(value).__name__}), not a finite real number; the collector "
        "must store each metric as a finite float (keep other values elsewhere in the "
        "payload, or skip the replicate with a reason)")


def read_replicates(store: ArtifactStore, spec: dict[str, Any],
                    inputs: list[str]) -> dict[int, ReplicateArtifact]:
    """The input replicates by number; refuses another analysis, condition or settings."""
    analysis, condition = spec["analysis"], spec["condition"]
    replicates: dict[int, ReplicateArtifact] = {}
    for digest in inputs:
        artifact = store.read_replicate_result(digest)
        if artifact.analysis_name != analysis:
            raise AssayError(
                f"aggregate {analysis}/{condition}: replicate {artifact.replicate} "
                f"({digest}) belongs to analysis {artifact.analysis_name!r}, not "
                f"{analysis!r}; pass the replicate refs of {analysis!r}")
        fingerprint = artifact.metadata.get("settings_fingerprint")
        if fingerprint != spec["settings_fingerprint"]:
            raise AssayError(
                f"replicate {artifact.replicate} of {analysis}/{condition} ({digest}) was "
                f"collected with settings fingerprint {fingerprint}, not "
                f"{spec['settings_fingerprint']}; rerun its collect job")
        if artifact.condition_label != condition:
            raise AssayError(f"{digest} belongs to condition {artifact.condition_label!r}, "
                             f"not {condition!r}")
        if artifact.replicate in replicates:
            raise AssayError(f"replicate {artifact.replicate} given twice for "
                             f"{analysis}/{condition}")
        replicates[artifact.replicate] = artifact
    return replicates


def default_aggregate(ctx: AggregateContext, min_replicates: int, allow_partial: bool,
                      thresholds: dict[str, Any] | None = None, *,
                      plugin: Any = None) -> ConditionArtifact:
    """Per metric: each replicate's value, n, mean, std, SEM, t interval and an interval
    inside the metric's declared bounds (``interval_low/high/method``).

    The plugin's metric metadata (label, unit, bounds: assay.pipeline.metric_info; fallbacks for a
    plugin that declares none) goes to payload["metric_info"]; a replicate value outside
    its metric's declared bounds is an error naming the declaration, not a number averaged.

    Replicates with a skip reason or no metrics are recorded as skipped; a metric that
    some replicates lack is summarized from the others, with a warning. Metrics whose
    replicates carry convergence diagnostics (a plugin's SERIES) get R-hat, ESS and a
    verdict against ``thresholds`` (min_n_eff, max_rhat: the study's aggregation section)
    in payload["convergence"]; one not converged is named in the warnings.
    """
    from .diagnostics import MAX_RHAT, MIN_N_EFF, condition_convergence
    from .metric_info import METRIC_INFO_KEY, metric_info
    from .statistics import bounded_interval, check_bounds, summarize

    skipped, usable = [], {}
    for number, artifact in sorted(ctx.replicates.items()):
        reason = artifact.payload.get(SKIP_REASON)
        metrics = artifact.payload.get(METRICS) or {}
        if not isinstance(metrics, dict):
            raise AssayError(
                f"aggregate {ctx.analysis_name}/{ctx.condition_label}: replicate {number} "
                f"payload[{METRICS!r}] is a {type(metrics).__name__}, not a mapping of metric "
                "names to numbers; fix its collector")
        if reason or not metrics:
            skipped.append({"replicate": number, "reason": str(reason or "no metrics")})
        else:
            usable[number] = metrics
    warnings = []
    if len(usable) < min_replicates:
        message = (f"condition {ctx.condition_label!r} of analysis {ctx.analysis_name!r} has "
                   f"{len(usable)} usable replicate(s), fewer than min_replicates="
                   f"{min_replicates}")
        if not allow_partial or not usable:
            raise AssayError(message + "; set aggregation.allow_partial: true to aggregate "
                             "anyway, or add replicates")
        warnings.append(message)
    names = sorted({name for metrics in usable.values() for name in metrics})
    metrics, info_out = {}, {}
    for name in names:
        values = {number: metric_value(m[name], analysis=ctx.analysis_name,
                                       condition=ctx.condition_label, replicate=number,
                                       name=name)
                  for number, m in usable.items() if name in m}
        lacking = [number for number in usable if number not in values]
        if lacking:
            warnings.append(f"metric {name!r} is missing from replicate(s) {lacking}; its "
                            f"summary uses the other {len(values)}")
        info = metric_info(plugin, name)
        problem = check_bounds(list(values.values()), info.bounds)
        if problem:
            raise AssayError(
                f"aggregate {ctx.analysis_name}/{ctx.condition_label}: metric {name!r} is "
                f"declared {info.bounds} in its plugin's METRIC_INFO, but a replicate value "
                f"{problem}; fix the collector or the declaration")
        summary = summarize(list(values.values()), ctx.confidence)
        metrics[name] = {**summary, **bounded_interval(summary, info.bounds),
                         VALUES: {str(number): value for number, value in values.items()}}
        info_out[name] = info.as_dict()
    payload: dict[str, Any] = {METRICS: metrics, SKIPPED_REPLICATES: skipped,
                               METRIC_INFO_KEY: info_out}
    thresholds = thresholds or {}
    convergence, unconverged = condition_convergence(
        ctx.artifact_store, {n: ctx.replicates[n] for n in usable},
        float(thresholds.get("min_n_eff", MIN_N_EFF)),
        float(thresholds.get("max_rhat", MAX_RHAT)))
    if convergence:   # only analyses with series: the others' payloads stay as they were
        payload[CONVERGENCE] = convergence
    return ConditionArtifact(
        analysis_name=ctx.analysis_name, condition_label=ctx.condition_label,
        replicates=sorted(usable), payload=payload,
        metadata={"settings_fingerprint": ctx.settings_fingerprint},
        warnings=warnings + unconverged)


def replicate_values(summary: dict[str, Any]) -> list[float] | None:
    """A stored summary's replicate values in replicate order (None if it has none)."""
    values = summary.get(VALUES)
    if not isinstance(values, dict):
        return None
    return [values[key] for key in sorted(values, key=_replicate_number)]


def _replicate_number(key: str) -> tuple[int, str]:
    return (int(key), key) if key.isdigit() else (-1, key)
