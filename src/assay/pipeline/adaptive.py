"""Adaptive replicates: run ``min`` per condition, then ``batch`` more until a precision
target holds, the comparison is decided (group-sequential boundaries, assay.pipeline.sequential),
or ``max`` is reached (issue 26, item 2).

    replicates: {min: 3, max: 24, batch: 3,
                 until: {precision: [{analysis: gyration, metric: mean_rg, half_width: 0.05}]}}

Look k happens after n_k = min + (k - 1) batch replicates per condition (the last look at
max). Each look is a Snakemake checkpoint job (``python -m assay.pipeline.adaptive``): it
aggregates the first n_k replicates of every condition for each named analysis (ordinary
aggregate jobs through the action cache: the look that stops made exactly the condition
artifacts the study then uses), checks every target in every condition, and writes its
decision to ``results/looks/<k>.json``: the look, n, the rule, each number it compared and
why it stopped or went on. The decision is also on record in the store: a ``decision``
artifact (payload: the decision; inputs: the condition and comparison artifacts it judged
and the previous look's decision) named by the ref ``results/decisions/<k>.json``, which
the catalog indexes (its ``decisions`` table) and gc keeps; ``results/looks/<k>.json``
carries that artifact's digest under ``artifact``. The aggregate and catalog rules ask for
the replicates the looks decided (``WorkflowPlan.replicates``), so Snakemake schedules the
next batch only after a look said to go on. Seeds are fixed per condition x replicate, so
a rerun or a resumed study makes the same decisions. `assay status` and the plan read the
decisions on disk (``decided_replicates``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

from ..errors import ConfigError

LOOKS_DIR = "looks"
# The decision artifact's analysis_name (an envelope field every artifact has): a look
# judges the whole design, not one analysis.
DECISION_ANALYSIS = "adaptive"


def check_design(design: dict[str, Any], analyses: dict[str, Any]) -> dict[str, Any]:
    """The design with its defaults, or a ConfigError naming the key."""
    out = {"batch": 1, **design}
    if out["min"] > out["max"]:
        raise ConfigError(f"config key replicates: min {out['min']} is more than max "
                          f"{out['max']}")
    until = out["until"] = dict(out["until"])
    if not until.get("precision") and not until.get("decided"):
        raise ConfigError("config key replicates.until: give precision targets, a decided "
                          "comparison, or both")
    if until.get("decided"):
        until["decided"] = {"alpha": 0.05, "spending": "obrien_fleming", **until["decided"]}
        if until["decided"]["analysis"] not in analyses:
            raise ConfigError(f"config key replicates.until.decided.analysis: "
                              f"{until['decided']['analysis']!r} is not one of the study's "
                              f"analyses ({', '.join(sorted(analyses))})")
    for index, target in enumerate(until.get("precision", [])):
        where = f"config key replicates.until.precision[{index}]"
        if target["analysis"] not in analyses:
            raise ConfigError(f"{where}.analysis: {target['analysis']!r} is not one of the "
                              f"study's analyses ({', '.join(sorted(analyses))})")
        if "half_width" not in target and "relative" not in target:
            raise ConfigError(f"{where}: give half_width (an absolute target) or relative "
                              "(a fraction of |mean|)")
    return out


def rule_analyses(until: dict[str, Any]) -> list[str]:
    """The analyses a design's stop rules read."""
    names = {t["analysis"] for t in until.get("precision", [])}
    if until.get("decided"):
        names.add(until["decided"]["analysis"])
    return sorted(names)


def looks(design: dict[str, Any]) -> list[int]:
    """n_k of every look: min, min + batch, ..., max."""
    sizes, n = [], design["min"]
    while n < design["max"]:
        sizes.append(n)
        n += design["batch"]
    return sizes + [design["max"]]


def look_path(results: str, look: int | str) -> str:
    return f"{results}/{LOOKS_DIR}/{look}.json"


def decision_ref_path(results: str, look: int | str) -> str:
    from .layout import DECISIONS_DIR

    return f"{results}/{DECISIONS_DIR}/{look}.json"


def made_looks(design: dict[str, Any], decided: list[int]) -> list[int]:
    """The looks a study whose looks decided ``decided`` replicates has made (all of them
    when it stopped; the caller knows whether one is still to make)."""
    sizes = looks(design)
    return list(range(1, sizes.index(len(decided)) + 2)) if len(decided) in sizes else []


def read_decision(path: str | Path) -> dict[str, Any] | None:
    """A look's decision file, or None when it is missing or not one."""
    try:
        found = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return found if isinstance(found, dict) and isinstance(found.get("stop"), bool) else None


def decided_replicates(design: dict[str, Any], read: Callable[[int], dict[str, Any] | None],
                       current_rule: Any) -> tuple[list[int], int | None]:
    """(replicates to run so far, the look still to make or None) from the looks' decisions:
    up to the first look that stopped; a missing decision, or one made under another rule
    or n, is the look still to make."""
    sizes = looks(design)
    for k, n in enumerate(sizes, start=1):
        decision = read(k)
        if decision is None or decision.get("rule") != current_rule or decision.get("n") != n:
            return list(range(1, n + 1)), k
        if decision["stop"]:
            return list(range(1, n + 1)), None
    return list(range(1, design["max"] + 1)), None


def status_note(design: dict[str, Any], results_dir: Path) -> str:
    """For `assay status`: where the looks stand (read from results/looks/)."""
    def read(look: int) -> dict[str, Any] | None:
        return read_decision(results_dir / LOOKS_DIR / f"{look}.json")

    decided, pending = decided_replicates(design, read, design["until"])
    if pending is not None:
        return (f"adaptive replicates: {len(decided)} per condition planned; look {pending} "
                f"decides whether to add {design['batch']} more (max {design['max']})")
    last = looks(design).index(len(decided)) + 1
    return (f"adaptive replicates: stopped at {len(decided)} per condition (look {last}: "
            f"{read(last)['why']})")


# --- the look job ---------------------------------------------------------------------------
def decide(store: Any, spec: dict[str, Any], refs: list[str]) -> dict[str, Any]:
    """Aggregate the first n replicates of each named analysis and condition, check every
    precision target, and say whether to stop and why."""
    from ..store.refs import read_ref
    from .stages import execute

    n, rule = spec["n"], spec["rule"]
    by_group: dict[tuple[str, str], list[tuple[int, str]]] = {}
    for path in refs:
        if Path(path).parent.name == LOOKS_DIR:   # the previous look: an ordering input
            continue
        ref = read_ref(path)
        identity = ref.identity
        if identity.get("artifact_type") != "replicate":
            continue
        by_group.setdefault((identity["analysis"], identity["condition"]), []).append(
            (int(identity["replicate"]), ref.digest))
    numbers: dict[str, Any] = {}
    conditions: dict[str, dict[str, str]] = {}   # analysis -> condition -> its artifact
    for key, agg_spec in sorted(spec["aggregate"].items()):
        analysis, condition = key.split("/", 1)
        digests = [d for r, d in sorted(by_group.get((analysis, condition), [])) if r <= n]
        if len(digests) != n:
            raise ConfigError(f"look {spec['look']}: {analysis}/{condition} has "
                              f"{len(digests)} replicates of the {n} this look needs")
        conditions.setdefault(analysis, {})[condition] = execute(store, agg_spec, digests)
    reasons, missed = [], []
    if rule.get("precision"):
        missed = _precision(store, rule["precision"], conditions, numbers)
        if not missed:
            reasons.append(f"precision reached at n = {n}")
    if rule.get("decided"):
        crossed = _decided(store, spec, conditions, numbers)
        if crossed:
            reasons.append(f"comparison decided at n = {n}: {crossed}")
    last = n >= spec["max"]
    if reasons:
        why = "; ".join(reasons)
    else:
        pending = ", ".join(missed) or "comparison not decided"
        why = (f"max {spec['max']} reached; precision not reached: {pending}" if missed
               and last else f"max {spec['max']} reached; {pending}" if last
               else f"precision not reached: {pending}; add {spec['batch']}" if missed
               else f"{pending}; add {spec['batch']}")
    return {"look": spec["look"], "n": n, "rule": rule, "stop": bool(reasons) or last,
            "why": why, "numbers": numbers}


def _precision(store: Any, targets: list[dict[str, Any]],
               conditions: dict[str, dict[str, str]], numbers: dict[str, Any]) -> list[str]:
    """Check every target in every condition; the (analysis/condition metric)s missed."""
    from .sequential import half_width, precise_enough

    missed = []
    for target in targets:
        analysis, metric = target["analysis"], target["metric"]
        for condition, digest in sorted(conditions[analysis].items()):
            metrics = store.read_condition_result(digest).payload["metrics"]
            summary = metrics.get(metric)
            if summary is None:
                raise ConfigError(f"replicates.until.precision: analysis {analysis!r} has no "
                                  f"metric {metric!r} (it has {', '.join(sorted(metrics))})")
            met = precise_enough(summary, absolute=target.get("half_width"),
                                 relative=target.get("relative"))
            numbers.setdefault(analysis, {}).setdefault(condition, {})[metric] = {
                "n": summary["n"], "mean": summary["mean"], "half_width": half_width(summary),
                "half_width_target": target.get("half_width"),
                "relative_target": target.get("relative"), "met": met,
                "condition_artifact": digest}
            if not met:
                missed.append(f"{analysis}/{condition} {metric}")
    return missed


def _decided(store: Any, spec: dict[str, Any], conditions: dict[str, dict[str, str]],
             numbers: dict[str, Any]) -> str | None:
    """The comparison at this look against its group-sequential boundary: every
    condition's test of the metric vs the control (its multiplicity-adjusted p) below the
    look's nominal level. Records p, the level and, on a stop, the p adjusted for the
    looks; returns what crossed, or None."""
    from ..store.payload import COMPARISONS, P_ADJUSTED, P_VALUE
    from .sequential import adjusted_p, boundaries, nominal_levels
    from .stages import execute

    rule = spec["rule"]["decided"]
    analysis, metric = rule["analysis"], rule["metric"]
    sizes = looks({"min": spec["min"], "max": spec["max"], "batch": spec["batch"]})
    fractions = [size / spec["max"] for size in sizes]
    bounds = boundaries(fractions, rule["alpha"], rule["spending"])
    level = nominal_levels(bounds)[spec["look"] - 1]
    digest = execute(store, spec["compare"],
                     [conditions[analysis][c] for c in spec["conditions"]])
    tests = store.read_comparison_result(digest).payload.get(COMPARISONS, {})
    found = {}
    for condition in spec["conditions"]:
        if condition == spec["control"]:
            continue
        test = tests.get(condition, {}).get(metric)
        if test is None:
            raise ConfigError(f"replicates.until.decided: the comparison of {analysis!r} has "
                              f"no test of metric {metric!r} for condition {condition!r}")
        p = test.get(P_ADJUSTED, test.get(P_VALUE))
        found[condition] = {"p": p, "nominal_p": level, "crossed": p is not None and p < level,
                            "comparison_artifact": digest}
    crossed = bool(found) and all(v["crossed"] for v in found.values())
    for condition, entry in found.items():
        if crossed:
            entry["p_adjusted_for_looks"] = adjusted_p(fractions, bounds, spec["look"],
                                                       entry["p"])
        numbers.setdefault(analysis, {}).setdefault(condition, {}).setdefault(
            "decided", {})[metric] = entry
    if not crossed:
        return None
    return ", ".join(f"{c} vs {spec['control']} {metric} p {e['p']:.3g} < {e['nominal_p']:.3g}"
                     f" (adjusted for the looks {e['p_adjusted_for_looks']:.3g})"
                     for c, e in found.items())


def record(store: Any, decision: dict[str, Any], previous: str | None) -> str:
    """Store the decision as a ``decision`` artifact; its digest. Its inputs are the
    condition and comparison artifacts the look judged and the previous look's decision,
    so the catalog's edges and gc's liveness reach everything a decision stands on."""
    from ..store.artifacts import DecisionArtifact

    judged: dict[str, str] = {}
    pending = [decision["numbers"]]
    while pending:   # every artifact digest the numbers name, at any depth
        node = pending.pop()
        for key, value in node.items():
            if isinstance(value, dict):
                pending.append(value)
            elif key in ("condition_artifact", "comparison_artifact") and value:
                judged.setdefault(value, key.removesuffix("_artifact"))
    inputs = [{"role": role, "digest": digest} for digest, role in sorted(
        judged.items(), key=lambda item: (item[1], item[0]))]
    if previous:
        inputs.append({"role": "previous_look", "digest": previous})
    return store.write_artifact(DecisionArtifact(
        analysis_name=DECISION_ANALYSIS, payload=decision, inputs=inputs,
        provenance={"stage": "look", "look": decision["look"]}))


def previous_decision(refs: list[str], look: int) -> str | None:
    """The digest of look - 1's decision artifact, from its decision file among the
    inputs (None at look 1; a decision file without one: a ConfigError naming the fix)."""
    if look == 1:
        return None
    for path in refs:
        if Path(path).parent.name == LOOKS_DIR and Path(path).stem == str(look - 1):
            found = read_decision(path)
            if found is not None and isinstance(found.get("artifact"), str):
                return found["artifact"]
            raise ConfigError(f"{path} holds no decision artifact digest (written by an "
                              f"older assay); delete {Path(path).parent} and rerun to "
                              "make the looks again")
    raise ConfigError(f"look {look}: the decision of look {look - 1} is not among the inputs")


def main(argv: list[str] | None = None) -> int:
    """``python -m assay.pipeline.adaptive --store S --spec JSON --inputs REFS --output FILE
    --ref REF``."""
    import argparse
    import sys

    from ..store.atomic import atomic_write_bytes
    from ..errors import AssayError
    from ..store.hashing import canonical_json
    from ..store.refs import write_ref
    from ..store.spec_files import spec_text
    from ..store import ArtifactStore

    parser = argparse.ArgumentParser(prog="python -m assay.pipeline.adaptive")
    parser.add_argument("--store", required=True)
    parser.add_argument("--spec", required=True)
    parser.add_argument("--inputs", nargs="*", default=[])
    parser.add_argument("--output", required=True)
    parser.add_argument("--ref", required=True, help="the decision artifact's ref")
    args = parser.parse_args(argv)
    try:
        spec = json.loads(spec_text(args.spec))
        store = ArtifactStore(args.store)
        previous = previous_decision(args.inputs, spec["look"])
        decision = decide(store, spec, args.inputs)
        digest = record(store, decision, previous)
    except AssayError as exc:
        print(f"[assay look] error: {exc}", file=sys.stderr)
        return 1
    # The ref first: a decision file on disk always names a stored, referenced decision.
    write_ref(args.ref, digest, artifact_type="decision", analysis=DECISION_ANALYSIS)
    atomic_write_bytes(Path(args.output),
                       canonical_json({**decision, "artifact": digest}) + b"\n")
    print(f"[assay look] look {decision['look']} (n = {decision['n']}): "
          f"{'stop' if decision['stop'] else 'go on'}: {decision['why']}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
