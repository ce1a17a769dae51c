"""Comparing conditions: the tests, their correction, effect sizes and a ranking.

Everything is computed from the condition artifacts alone (each carries its replicates'
values per metric), after checking that they are what they claim to be: one artifact per
label, all of this analysis and these settings, and summaries that match their values.
What each test assumes and when to use which: docs/statistics.md.
"""

from __future__ import annotations

import math
from typing import Any

from .aggregation import replicate_values
from ..store.artifacts import ComparisonArtifact, ConditionArtifact
from ..errors import AssayError
from ..store.hashing import canonical_json, sha256_hex
from ..store.payload import (
    ANOVA,
    COMPARISONS,
    CONDITIONS,
    CONTROL,
    METRICS,
    MISSING_METRICS,
    OPTIONS,
    P_ADJUSTED,
    P_VALUE,
    PAIRWISE,
    RANKING,
)
from ..store import ArtifactStore

DEFAULT_OPTIONS: dict[str, Any] = {"pairs": "control", "test": "welch", "correction": "holm",
                                   "permutations": 9999, "seed": 0}
TESTS = {"welch": "Welch t-test", "mannwhitney": "Mann-Whitney U test",
         "permutation": "permutation test"}
CORRECTIONS = {"holm": "Holm-adjusted", "bh": "Benjamini-Hochberg-adjusted",
               "none": "unadjusted"}
TABLE_PATH = "sidecars/comparison_table.csv"
TABLE_COLUMNS = ("metric", "condition", "reference", "test", "method", "n_condition",
                 "n_reference", "difference", "ci_low", "ci_high", "hedges_g", "g_ci_low",
                 "g_ci_high", "ratio", "statistic", "df_between", "df", "p", "p_adjusted",
                 "correction")
# Stored summaries must equal the ones recomputed from their values to this precision.
SUMMARY_RTOL, SUMMARY_ATOL = 1e-9, 1e-12
_SUMMARY_FIELDS = ("n", "mean", "std", "sem", "ci_low", "ci_high")


def comparison_options(options: dict[str, Any] | None) -> dict[str, Any]:
    """The options that change the numbers: permutations and seed only for that test, so
    editing them does not rerun a Welch comparison."""
    resolved = {**DEFAULT_OPTIONS, **(options or {})}
    keys = ["pairs", "test", "correction"]
    if resolved["test"] == "permutation":
        keys += ["permutations", "seed"]
    return {k: resolved[k] for k in keys}


# --- inputs that cannot lie --------------------------------------------------------------
def read_conditions(store: ArtifactStore, spec: dict[str, Any],
                    inputs: list[str]) -> dict[str, ConditionArtifact]:
    analysis = spec["analysis"]
    conditions: dict[str, ConditionArtifact] = {}
    digests: dict[str, str] = {}
    for digest in inputs:
        artifact = store.read_condition_result(digest)
        label = artifact.condition_label
        if artifact.analysis_name != analysis:
            raise AssayError(
                f"compare {analysis}: condition {label!r} ({digest}) belongs to analysis "
                f"{artifact.analysis_name!r}, not {analysis!r}; pass the condition refs of "
                f"{analysis!r}")
        fingerprint = artifact.metadata.get("settings_fingerprint")
        if fingerprint != spec["settings_fingerprint"]:
            raise AssayError(
                f"compare {analysis}: condition {label!r} ({digest}) was aggregated with "
                f"settings fingerprint {fingerprint}, not {spec['settings_fingerprint']}; "
                "rerun its aggregate job")
        if label in conditions:
            raise AssayError(
                f"compare {analysis}: condition {label!r} is given twice ({digests[label]} "
                f"and {digest}); pass one condition artifact per label")
        check_summaries(artifact, digest)
        conditions[label], digests[label] = artifact, digest
    return conditions


def check_summaries(artifact: ConditionArtifact, digest: str) -> None:
    """Every metric's stored summary equals the one recomputed from its replicate values."""
    from .statistics import summarize

    where = f"compare {artifact.analysis_name}: condition {artifact.condition_label!r} ({digest})"
    metrics = artifact.payload.get(METRICS)
    if not isinstance(metrics, dict):
        raise AssayError(f"{where} has no metrics summary in its payload; rerun its "
                         "aggregate job")
    for name, summary in sorted(metrics.items()):
        values = replicate_values(summary) if isinstance(summary, dict) else None
        if not values:
            raise AssayError(
                f"{where} metric {name!r} has no replicate values, so no test can be made "
                "from it (made by an older assay, or an aggregate hook added it without "
                "them); rerun its aggregate job")
        recomputed = summarize(values, summary.get("confidence", 0.95))
        for field in _SUMMARY_FIELDS:
            stored, fresh = summary.get(field), recomputed[field]
            if not _close(stored, fresh):
                raise AssayError(
                    f"{where} metric {name!r}: stored {field} {stored!r} does not match its "
                    f"{len(values)} replicate values ({field} {fresh!r}); the artifact was "
                    "edited or made by other code: rerun its aggregate job")
        if "interval_method" in summary:   # the bounded interval the figures draw
            from .metric_info import recorded_info
            from .statistics import bounded_interval

            fresh_interval = bounded_interval(recomputed,
                                              recorded_info(artifact.payload, name).bounds)
            for field, fresh in fresh_interval.items():
                stored = summary.get(field)
                same = stored == fresh if field == "interval_method" else _close(stored, fresh)
                if not same:
                    raise AssayError(
                        f"{where} metric {name!r}: stored {field} {stored!r} is not the "
                        f"interval its values and declared bounds give ({fresh!r}); the "
                        "artifact was edited or made by other code: rerun its aggregate job")


def _close(stored: Any, fresh: Any) -> bool:
    if fresh is None or stored is None:
        return fresh is None and stored is None
    if isinstance(stored, bool) or not isinstance(stored, (int, float)):
        return False
    return math.isclose(stored, fresh, rel_tol=SUMMARY_RTOL, abs_tol=SUMMARY_ATOL)


# --- the comparison ----------------------------------------------------------------------
def pairs_to_test(labels: list[str], control: str, pairs: str) -> list[tuple[str, str]]:
    """(condition, reference) pairs: the control first, then the others by label, so the
    result never depends on the order the inputs arrive in."""
    order = [control] + sorted(label for label in labels if label != control)
    if pairs == "control":
        return [(label, control) for label in order[1:]]
    return [(order[j], order[i]) for i in range(len(order)) for j in range(i + 1, len(order))]


def seed_of_test(seed: int, metric: str, condition: str, reference: str) -> int:
    """One seed per test, so adding a metric or condition leaves other tests' p alone."""
    return int(sha256_hex(canonical_json([seed, metric, condition, reference]))[:16], 16)


def pair_test(own: dict[str, Any], ref: dict[str, Any], *, test: str, confidence: float,
              permutations: int = 9999, seed: int = 0) -> dict[str, Any]:
    """One condition against a reference on one metric: the chosen test, the Welch
    interval of the difference, Hedges' g and the ratio of means."""
    from .statistics import (
        hedges_g,
        mann_whitney,
        permutation_test,
        ratio_of_means,
        welch,
    )

    result = {**welch(own, ref, confidence), "test": test}
    if test == "welch":
        result["statistic"] = result["t"]
    else:
        del result["t"]   # t belongs to Welch's test; df stays as the interval's
        x, y = replicate_values(own), replicate_values(ref)
        found = (mann_whitney(x, y) if test == "mannwhitney"
                 else permutation_test(x, y, permutations=permutations, seed=seed))
        result.update(statistic=found["statistic"], p=found["p"], method=found["method"])
    result.update(hedges_g(own, ref, confidence))
    result["ratio"] = ratio_of_means(own["mean"], ref["mean"])
    return result


def rank_conditions(summaries: dict[str, dict[str, Any]],
                    confidence: float) -> list[dict[str, Any]]:
    """Conditions by mean, highest first; ``tied_with`` names those the Welch interval of
    the difference (at ``confidence``) cannot separate from this one."""
    order = sorted(summaries, key=lambda label: (-summaries[label]["mean"], label))
    ranking = []
    for position, label in enumerate(order, start=1):
        own = summaries[label]
        ranking.append({"condition": label, "rank": position, "mean": own["mean"],
                        "ci_low": own["ci_low"], "ci_high": own["ci_high"],
                        "tied_with": [other for other in order if other != label
                                      and not _separated(own, summaries[other], confidence)]})
    return ranking


def _separated(a: dict[str, Any], b: dict[str, Any], confidence: float) -> bool:
    from .statistics import welch

    interval = welch(a, b, confidence)
    if interval["ci_low"] is not None:
        return interval["ci_low"] > 0 or interval["ci_high"] < 0
    if a.get("std") is not None and b.get("std") is not None:   # no spread at all
        return a["mean"] != b["mean"]
    return False   # a single value has no interval: nothing separates it


def compare_conditions(conditions: dict[str, ConditionArtifact], *, control: str,
                       confidence: float, options: dict[str, Any]
                       ) -> tuple[dict[str, Any], list[str], list[dict[str, Any]]]:
    """Payload, warnings and the rows of the comparison table (one per test)."""
    from .statistics import adjust_pvalues, welch_anova

    opts = {**DEFAULT_OPTIONS, **options}
    summaries = {label: art.payload[METRICS] for label, art in conditions.items()}
    names = sorted({name for metrics in summaries.values() for name in metrics})
    missing = {name: sorted(label for label, m in summaries.items() if name not in m)
               for name in names}
    missing = {name: labels for name, labels in missing.items() if labels}
    warnings = [f"metric {name!r} is missing from condition(s) {labels}: no test involves "
                "them for this metric" for name, labels in missing.items()]

    tests: list[tuple[str, str, str, dict[str, Any]]] = []
    for condition, reference in pairs_to_test(list(conditions), control, opts["pairs"]):
        for name in names:
            own, ref = summaries[condition].get(name), summaries[reference].get(name)
            if own is None or ref is None:
                continue
            seed = seed_of_test(opts["seed"], name, condition, reference)
            tests.append((name, condition, reference, pair_test(
                own, ref, test=opts["test"], confidence=confidence,
                permutations=opts["permutations"], seed=seed)))
    for (_, _, _, result), adjusted in zip(tests, adjust_pvalues(
            [t[3][P_VALUE] for t in tests], opts["correction"])):
        result[P_ADJUSTED] = adjusted

    anova: dict[str, Any] = {}
    ranking: dict[str, Any] = {}
    for name in names:
        having = {label: m[name] for label, m in sorted(summaries.items()) if name in m}
        anova[name] = {**welch_anova(list(having.values())), "test": "welch_anova",
                       CONDITIONS: sorted(having)}
        ranking[name] = rank_conditions(having, confidence)
    for name, adjusted in zip(names, adjust_pvalues([anova[n][P_VALUE] for n in names],
                                                    opts["correction"])):
        anova[name][P_ADJUSTED] = adjusted

    versus_control: dict[str, dict[str, Any]] = {}
    pairwise: dict[str, dict[str, dict[str, Any]]] = {}
    for name, condition, reference, result in tests:
        if reference == control:
            versus_control.setdefault(condition, {})[name] = result
        else:
            pairwise.setdefault(reference, {}).setdefault(condition, {})[name] = result
    payload = {CONTROL: control, CONDITIONS: sorted(conditions), COMPARISONS: versus_control,
               ANOVA: anova, RANKING: ranking, MISSING_METRICS: missing,
               OPTIONS: comparison_options(opts), "confidence": confidence}
    if opts["pairs"] == "all":
        payload[PAIRWISE] = pairwise
    return payload, warnings, _table(tests, anova, opts["correction"])


def _table(tests: list[tuple[str, str, str, dict[str, Any]]], anova: dict[str, Any],
           correction: str) -> list[dict[str, Any]]:
    rows = []
    for name, a in anova.items():   # per metric: the ANOVA first, then its pairs
        rows.append({"metric": name, "condition": " ".join(a[CONDITIONS]), "reference": None,
                     "test": "welch_anova", "statistic": a["F"],
                     "df_between": a["df_between"], "df": a["df_within"], P_VALUE: a[P_VALUE],
                     P_ADJUSTED: a[P_ADJUSTED], "correction": correction})
        rows.extend(_pair_row(t, correction) for t in tests if t[0] == name)
    return [{column: row.get(column) for column in TABLE_COLUMNS} for row in rows]


def _pair_row(test: tuple[str, str, str, dict[str, Any]], correction: str) -> dict[str, Any]:
    name, condition, reference, r = test
    return {"metric": name, "condition": condition, "reference": reference,
            "test": r["test"], "method": r.get("method"), "n_condition": r["n_treatment"],
            "n_reference": r["n_control"], "correction": correction,
            **{k: r.get(k) for k in ("difference", "ci_low", "ci_high", "hedges_g",
                                     "g_ci_low", "g_ci_high", "ratio", "statistic", "df",
                                     P_VALUE, P_ADJUSTED)}}


def build_comparison(store: ArtifactStore, spec: dict[str, Any],
                     conditions: dict[str, ConditionArtifact]) -> ComparisonArtifact:
    """The comparison artifact with its table of every test as a CSV sidecar."""
    control = spec["control"]
    if control not in conditions:
        raise AssayError(f"compare {spec['analysis']}: control {control!r} is not among the "
                         f"aggregated conditions {sorted(conditions)}")
    payload, warnings, rows = compare_conditions(
        conditions, control=control, confidence=spec["confidence"],
        options=spec["comparison"])
    import pandas as pd

    table = pd.DataFrame(rows, columns=list(TABLE_COLUMNS)).astype(
        {"n_condition": "Int64", "n_reference": "Int64"})
    sidecar = store.write_table_sidecar(
        TABLE_PATH, table, metadata={"kind": "comparison_table",
                                     "confidence": spec["confidence"],
                                     **payload[OPTIONS]})
    return ComparisonArtifact(
        analysis_name=spec["analysis"], payload=payload, sidecars=[sidecar],
        metadata={"settings_fingerprint": spec["settings_fingerprint"]}, warnings=warnings)
