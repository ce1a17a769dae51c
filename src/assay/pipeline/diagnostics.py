"""Convergence diagnostics stored with every result, and the words every tool shows.

An analysis declares which of its metrics are means of a time series, in one line::

    SERIES = {"mean_rg": "radius_of_gyration"}   # metric -> array in one of its NPZ sidecars

Collect then stores, per declared metric, the series' t0, g, N_eff and MCSE in the
replicate's ``payload["convergence"]`` (assay.pipeline.convergence computes them). Aggregate adds,
per metric, each replicate's numbers, the rank-normalized R-hat and combined ESS across
replicates (reading the series sidecars of that condition), the thresholds
(``aggregation.min_n_eff``, ``aggregation.max_rhat``) and a verdict; a metric below them
is named in the condition artifact's warnings. `assay metrics`, `assay status`, the
summary figure and the report show the verdict (``problem_text`` words it once for all).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from ..errors import PluginError
from ..store.payload import CONVERGENCE, METRICS, SKIP_REASON

SERIES_ATTRIBUTE = "SERIES"
# Defaults of the thresholds; the config schema (aggregation.min_n_eff, max_rhat) repeats
# them and tests/test_convergence.py checks that the two agree.
MIN_N_EFF = 10.0
MAX_RHAT = 1.01
# A series shorter than this has no diagnostics worth storing (pymbar needs > mintime lags).
MIN_SERIES = 8
CONVERGED = "converged"
NOT_CONVERGED = "NOT CONVERGED"


def declared_series(plugin: Any) -> dict[str, str]:
    """A plugin's ``SERIES`` (metric -> NPZ array name), checked; {} when it has none."""
    declared = getattr(plugin, SERIES_ATTRIBUTE, None)
    if declared is None:
        return {}
    name = getattr(plugin, "__qualname__", type(plugin).__qualname__)
    if not isinstance(declared, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) and k and v for k, v in declared.items()):
        raise PluginError(f"{name}.SERIES must map metric names to array names, e.g. "
                          "SERIES = {'mean_rg': 'radius_of_gyration'}; got "
                          f"{declared!r:.80}")
    return dict(sorted(declared.items()))


# The framework code a collect of a plugin with SERIES computes with (its key's stage_code).
SERIES_CODE = ("assay.pipeline.convergence", "assay.pipeline.diagnostics")


def series_stage_code(plugin: Any) -> dict[str, str]:
    """{"stage_code": digest of SERIES_CODE} for a plugin that declares series, else {}:
    an edit of the diagnostics reruns the collects that store them, and no other."""
    if not declared_series(plugin):
        return {}
    from .plugins import modules_digest

    return {"stage_code": modules_digest(SERIES_CODE)}


# --- collect: one replicate ----------------------------------------------------------------
def _series_arrays(store: Any, artifact: Any, arrays: set[str], who: str
                   ) -> dict[str, tuple[str, Any]]:
    """For each named array: (path of the one NPZ sidecar holding it, its values as 1-D
    float64). Each NPZ sidecar is opened (and verified) once."""
    import numpy as np

    found: dict[str, list[tuple[str, Any]]] = {name: [] for name in arrays}
    for sidecar in artifact.sidecars:
        if not sidecar.path.endswith(".npz"):
            continue
        with store.load_npz_sidecar(sidecar) as data:
            for name in arrays.intersection(data.files):
                found[name].append((sidecar.path, np.asarray(data[name], dtype=np.float64)))
    out = {}
    for array, places in sorted(found.items()):
        if len(places) != 1:
            where = ("no NPZ sidecar of its result holds" if not places else
                     f"{len(places)} NPZ sidecars ({', '.join(p for p, _ in places)}) hold")
            raise PluginError(f"{who} declares the series {array!r} in SERIES, but {where} "
                              f"an array {array!r}; write it once with write_npz_sidecar(..., "
                              f"{array}=values) or fix SERIES")
        path, values = places[0]
        if values.ndim != 1:
            raise PluginError(f"{who}: series {array!r} in {path} has shape {values.shape}; "
                              "a series is one value per frame (1-D)")
        out[array] = (path, values)
    return out


def with_replicate_diagnostics(store: Any, plugin: Any, artifact: Any, who: str) -> Any:
    """``artifact`` with payload["convergence"] for each metric its plugin declares a series.

    Skipped replicates and a result without metrics are returned as they are; a declared
    metric the result lacks, or a series no NPZ sidecar holds, is a plugin error."""
    from .convergence import series_diagnostics

    series = declared_series(plugin)
    metrics = artifact.payload.get(METRICS)
    if not series or artifact.payload.get(SKIP_REASON) or not metrics:
        return artifact
    lacking = sorted(set(series) - set(metrics))
    if lacking:
        raise PluginError(f"{who} declares metric {lacking[0]!r} as a series in SERIES, but "
                          f"its result has no metric {lacking[0]!r} (it has "
                          f"{', '.join(sorted(metrics))}); fix SERIES")
    arrays = _series_arrays(store, artifact, set(series.values()), who)
    entries = {}
    for metric, array in series.items():
        path, values = arrays[array]
        if values.size < MIN_SERIES:
            entries[metric] = {"series": array, "sidecar": path, "n": int(values.size),
                               "note": f"fewer than {MIN_SERIES} values: no diagnostics"}
            continue
        try:
            entries[metric] = {"series": array, "sidecar": path,
                               **series_diagnostics(values)}
        except ValueError as exc:
            raise PluginError(f"{who}: series {array!r} in {path}: {exc}") from None
    payload = {**artifact.payload, CONVERGENCE: entries}
    return dataclasses.replace(artifact, payload=payload)


# --- aggregate: one condition ---------------------------------------------------------------
def _chains(store: Any, artifacts: dict[int, Any], entries: dict[int, dict[str, Any]]
            ) -> tuple[Any, int | None, int | None, str | None]:
    """The replicates' series from the common production window (after the largest t0,
    up to the shortest series' end: runs of an adaptive length differ), as rows of equal
    length, with the window's start and, when the lengths differ, its end; or None and
    why not."""
    import numpy as np

    if len(entries) < 2:
        return None, None, None, "fewer than 2 replicates"
    lengths = {int(entry["n"]) for entry in entries.values()}
    end = min(lengths) if len(lengths) > 1 else None
    start = max(int(entry.get("t0", 0)) for entry in entries.values())
    rows = []
    for number, entry in sorted(entries.items()):
        sidecar = artifacts[number].sidecar(path=entry["sidecar"])
        with store.load_npz_sidecar(sidecar) as data:
            rows.append(np.asarray(data[entry["series"]], dtype=np.float64)[start:end])
    if rows[0].size < 4:
        where = "the largest t0" + ("" if end is None else " and before the shortest "
                                                          "series ends")
        return None, start, end, f"fewer than 4 frames after {where}"
    return np.stack(rows), start, end, None


def condition_convergence(store: Any, artifacts: dict[int, Any], min_n_eff: float,
                          max_rhat: float) -> tuple[dict[str, Any], list[str]]:
    """Per metric with diagnostics: each replicate's, R-hat and combined ESS, the
    thresholds and the verdict; and one warning per metric that is not converged."""
    from .convergence import bulk_ess, rank_rhat, rounded

    per_metric: dict[str, dict[int, dict[str, Any]]] = {}
    for number, artifact in sorted(artifacts.items()):
        for metric, entry in (artifact.payload.get(CONVERGENCE) or {}).items():
            per_metric.setdefault(metric, {})[number] = entry
    out, warnings = {}, []
    for metric, entries in sorted(per_metric.items()):
        lacking = sorted(set(artifacts) - set(entries))
        usable = {n: e for n, e in entries.items() if "n_eff" in e}
        chains, start, end, why = _chains(store, artifacts, usable) if len(usable) == len(
            entries) else (None, None, None, "a replicate has no diagnostics")
        rhat = ess = None
        if chains is not None:
            rhat, ess = rounded(rank_rhat(chains)), rounded(bulk_ess(chains))
        low = {n: e["n_eff"] for n, e in usable.items() if e["n_eff"] < min_n_eff}
        problems = []
        if low:
            problems.append(f"N_eff < {min_n_eff:g} in replicate{'s' if len(low) > 1 else ''} "
                            + ", ".join(f"{n} ({v:.3g})" for n, v in sorted(low.items())))
        if rhat is not None and rhat > max_rhat:
            problems.append(f"R-hat {rhat:.3f} > {max_rhat:g}")
        unknown = lacking + sorted(set(entries) - set(usable))
        if unknown:
            problems.append(f"no diagnostics for replicate{'s' if len(unknown) > 1 else ''} "
                            + ", ".join(map(str, unknown)))
        series = sorted({e.get("series") for e in entries.values()})
        out[metric] = {
            "series": series[0] if len(series) == 1 else series,
            "replicates": {str(n): {k: e[k] for k in ("n", "t0", "g", "n_eff", "mcse", "note")
                                    if k in e} for n, e in sorted(entries.items())},
            "n_eff_min": min((e["n_eff"] for e in usable.values()), default=None),
            "rhat": rhat, "ess": ess, "window_start": start,
            **({} if end is None else {"window_end": end}), "rhat_note": why,
            "thresholds": {"min_n_eff": min_n_eff, "max_rhat": max_rhat},
            CONVERGED: not problems, "problems": problems}
        if problems:
            warnings.append(f"metric {metric!r}: {problem_text(out[metric])}")
    return out, warnings


# --- what the tools show --------------------------------------------------------------------
def problem_text(entry: Mapping[str, Any] | None) -> str | None:
    """'converged' or 'NOT CONVERGED: N_eff < 10 in replicate 2 (4.21); R-hat 1.034 >
    1.01' for a condition's entry of one metric; None for a metric without diagnostics."""
    if not isinstance(entry, Mapping) or CONVERGED not in entry:
        return None
    if entry[CONVERGED]:
        return CONVERGED
    return f"{NOT_CONVERGED}: " + "; ".join(str(p) for p in entry.get("problems", []))


def replicate_text(entry: Mapping[str, Any] | None, replicate: Any) -> str | None:
    """One replicate's verdict for one metric, from its condition's entry."""
    if not isinstance(entry, Mapping) or CONVERGED not in entry:
        return None
    own = (entry.get("replicates") or {}).get(str(replicate))
    threshold = (entry.get("thresholds") or {}).get("min_n_eff", MIN_N_EFF)
    if not isinstance(own, Mapping) or "n_eff" not in own:
        return f"{NOT_CONVERGED}: no diagnostics"
    if own["n_eff"] < threshold:
        return f"{NOT_CONVERGED}: N_eff {own['n_eff']:.3g} < {threshold:g}"
    return CONVERGED


def condition_warnings(payload: Mapping[str, Any]) -> dict[str, str]:
    """{metric: problem text} of a condition payload's metrics that are not converged."""
    out = {}
    for metric, entry in sorted((payload.get(CONVERGENCE) or {}).items()):
        text = problem_text(entry)
        if text is not None and text != CONVERGED:
            out[metric] = text
    return out


def metrics_convergence(catalog: Any, frame: Any) -> list[str | None]:
    """The verdict beside each row of `assay metrics`: a condition row its metric's, a
    replicate row its own N_eff's (judged by the live condition that aggregates it), a
    comparison row the two conditions' it compares; None for metrics without series."""
    import json

    if frame.empty:
        return []
    found = catalog.query(
        "SELECT digest, condition, live, "
        "CAST(json_extract(manifest, '$.payload.convergence') AS VARCHAR) AS entries "
        "FROM artifacts WHERE artifact_type = 'condition' "
        "AND json_extract(manifest, '$.payload.convergence') IS NOT NULL")
    if found.empty:
        return [None] * len(frame)
    entries = {d: json.loads(e) for d, e in zip(found.digest, found.entries)}
    label = dict(zip(found.digest, found.condition))
    # Inputs of the condition and comparison artifacts in the frame; a live condition
    # first, when old ones read the same replicate.
    live = dict(zip(found.digest, found.live))
    edges = catalog.query("SELECT e.artifact, e.input FROM edges e JOIN artifacts a "
                          "ON a.digest = e.artifact "
                          "WHERE a.artifact_type IN ('condition', 'comparison')")
    readers: dict[str, list[str]] = {}
    compared: dict[str, dict[str, str]] = {}
    for artifact, source in zip(edges.artifact, edges.input):
        if artifact in entries:
            readers.setdefault(source, []).append(artifact)
        elif source in entries:
            compared.setdefault(artifact, {})[label[source]] = source
    out: list[str | None] = []
    for row in frame.itertuples(index=False):
        kind, digest, metric = row.artifact_type, row.artifact, row.metric
        text = None
        if kind == "condition" and digest in entries:
            text = problem_text(entries[digest].get(metric))
        elif kind == "replicate" and digest in readers:
            reader = sorted(readers[digest], key=lambda d: not live[d])[0]
            text = replicate_text(entries[reader].get(metric), row.replicate)
        elif kind == "comparison" and digest in compared:
            verdicts = {c: problem_text(entries[compared[digest][c]].get(metric))
                        for c in (row.condition, row.control) if c in compared[digest]}
            bad = sorted(c for c, v in verdicts.items() if v not in (None, CONVERGED))
            if bad:
                text = (f"{NOT_CONVERGED}: condition{'s' if len(bad) > 1 else ''} "
                        + ", ".join(map(repr, bad)))
            elif any(v == CONVERGED for v in verdicts.values()):
                text = CONVERGED
        out.append(text)
    return out


def status_warnings(root: Any, store_dir: str, jobs: list[Any]) -> list[dict[str, Any]]:
    """For `assay status`: every metric not converged in a finished aggregate job's
    condition artifact (one verified manifest read per aggregate job; nothing written)."""
    import json
    import os

    from ..errors import AssayError
    from ..store.hashing import parse_digest
    from ..store.objects import ObjectStore
    from ..store.refs import read_ref

    out: list[dict[str, Any]] = []
    objects = None
    for job in jobs:
        if job.stage != "aggregate" or job.state not in ("done", "stale", "kept"):
            continue
        try:
            digest = read_ref(os.path.join(str(root), job.output)).digest
            objects = objects or ObjectStore(os.path.join(str(root), store_dir))
            manifest = json.loads(objects.read_bytes(parse_digest(digest), None,
                                                     what=f"manifest {digest}"))
        except (AssayError, OSError, ValueError):
            continue   # unreadable: `assay verify` says why; status stays read-only
        payload = manifest.get("payload") if isinstance(manifest, dict) else None
        if isinstance(payload, dict):
            for metric, text in condition_warnings(payload).items():
                out.append({**job.names, "metric": metric, "warning": text})
    return out
