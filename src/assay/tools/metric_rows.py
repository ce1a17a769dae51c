"""A payload as long-form metric rows: the catalog's ``metrics`` table.

One row per (artifact, condition, reference, metric, statistic) whose value is a number;
anything else in a payload (names, lists, replicate values) is left to the manifest.
"""

from __future__ import annotations

from typing import Any

from ..store.payload import ANOVA, COMPARISONS, CONTROL, METRICS, PAIRWISE, RANKING

# The statistic name of a plain scalar metric (replicate and run artifacts).
VALUE = "value"


def as_number(value: Any) -> float | None:
    """A JSON number as float (bools are not numbers); anything else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def as_text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def metric_rows(out: dict[str, list[Any]], digest: str, payload: Any,
                 identity: tuple[Any, ...]) -> None:
    """Long-form rows: a scalar metric is statistic 'value'; a condition summary gives one
    row per statistic; a comparison one row per (condition, reference, metric, statistic)
    of every test (the reference is in the ``control`` column), its Welch ANOVA per metric
    (statistics ``anova_*``, no condition) and each condition's ``rank``."""
    if not isinstance(payload, dict):
        return
    kind, analysis, condition, replicate = identity
    control = as_text(payload.get(CONTROL)) if kind == "comparison" else None
    rows: list[tuple[Any, ...]] = []
    metrics = payload.get(METRICS)
    if isinstance(metrics, dict):
        for name, value in metrics.items():
            if isinstance(value, dict):
                rows.extend((condition, control, name, stat, v) for stat, v in value.items()
                            if as_number(v) is not None)
            elif as_number(value) is not None:
                rows.append((condition, control, name, VALUE, value))
    if kind == "comparison":
        rows.extend(_comparison_rows(payload, control))
    if not rows:
        return
    rows.sort(key=lambda r: (str(r[0]), str(r[1]), r[2], r[3]))
    n = len(rows)
    out["artifact"] += [digest] * n
    out["artifact_type"] += [kind] * n
    out["analysis"] += [analysis] * n
    out["replicate"] += [replicate if kind != "comparison" else None] * n
    for condition_, control_, name, stat, value in rows:
        out["condition"].append(condition_)
        out["control"].append(control_)
        out["metric"].append(name)
        out["statistic"].append(stat)
        out["value"].append(float(value))


def _test_rows(tests: Any, reference: str | None) -> list[tuple[Any, ...]]:
    """{condition: {metric: {statistic: number}}} -> rows (strings such as the test's name
    are left out; they are in the comparison table sidecar)."""
    rows: list[tuple[Any, ...]] = []
    if isinstance(tests, dict):
        for label, per_metric in tests.items():
            if isinstance(per_metric, dict):
                for name, stats in per_metric.items():
                    if isinstance(stats, dict):
                        rows.extend((label, reference, name, stat, v)
                                    for stat, v in stats.items() if as_number(v) is not None)
    return rows


def _comparison_rows(payload: dict[str, Any], control: str | None) -> list[tuple[Any, ...]]:
    rows = _test_rows(payload.get(COMPARISONS), control)
    pairwise = payload.get(PAIRWISE)
    if isinstance(pairwise, dict):
        for reference, tests in pairwise.items():
            rows.extend(_test_rows(tests, as_text(reference)))
    anova = payload.get(ANOVA)
    if isinstance(anova, dict):
        for name, stats in anova.items():
            if isinstance(stats, dict):
                rows.extend((None, None, name, f"anova_{stat}", v)
                            for stat, v in stats.items() if as_number(v) is not None)
    ranking = payload.get(RANKING)
    if isinstance(ranking, dict):
        for name, entries in ranking.items():
            for entry in entries if isinstance(entries, list) else ():
                if isinstance(entry, dict) and as_number(entry.get("rank")) is not None:
                    rows.append((as_text(entry.get("condition")), None, name, "rank",
                                 entry["rank"]))
    return rows
