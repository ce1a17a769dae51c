"""`assay status --why TARGET`: for one job, the key parts that differ between what is
stored and what the current plan would make, key by key.

What is stored: the spec an artifact's provenance records and the inputs its manifest
names (a figure: the spec Snakemake recorded as its params). What the plan gives: the job's
current spec and the artifacts its upstream refs name now. The job's state and its reason
come from `assay status` itself (assay.tools.staleness), so both always agree.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from ..errors import AssayError

# Spec keys shown one sub-key at a time (params.surface_epsilon: 3.0 → 2.0).
_NESTED = {"params", "settings", "aggregation", "comparison", "plots", "numerics"}
_SHORT = 12   # hex digits of a digest shown


def find_job(jobs: list[Any], results: str, root: str | Path, target: str) -> Any:
    """The job whose output ``target`` names: as Snakemake names it, relative to the results
    directory, with or without its ``.json``; relative to ``root`` or absolute."""
    wanted = target.strip()
    if os.path.isabs(wanted):
        wanted = os.path.relpath(wanted, os.path.abspath(root))
    wanted = os.path.normpath(wanted)
    for job in jobs:
        output = os.path.normpath(job.output)
        inside = os.path.relpath(output, results)
        bare = os.path.splitext(inside)[0]
        if wanted in (output, inside, bare, os.path.splitext(output)[0]):
            return job
    raise AssayError(f"--why {target}: no job of this study writes that (a target is a ref "
                     "such as runs/<condition>/<replicate>, replicates/<analysis>/<condition>/"
                     "<replicate>, conditions/<analysis>/<condition>, comparisons/<analysis>, "
                     "or a figure under plots/)")


def _value(value: Any) -> str:
    if value is _MISSING:
        return "(none)"
    if isinstance(value, str) and value.startswith("sha256:"):
        return value[: 7 + _SHORT] + "…"
    return json.dumps(value, sort_keys=True)


_MISSING = object()


def _flatten(prefix: str, old: Any, new: Any) -> list[tuple[str, Any, Any]]:
    """(dotted key, old, new) for every leaf that differs."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in sorted(set(old) | set(new), key=str):
            out += _flatten(f"{prefix}.{key}", old.get(key, _MISSING), new.get(key, _MISSING))
        return out
    return [] if old == new else [(prefix, old, new)]


def spec_lines(stage: str, current: dict[str, Any], recorded: dict[str, Any]
               ) -> list[tuple[str, Any, Any]]:
    """(what, old, new) for every key part that differs, named as the user knows them."""
    from .staleness import differing_keys, stage_modules

    keys = differing_keys(current, recorded)
    out: list[tuple[str, Any, Any]] = []
    for key in keys:
        old, new = recorded.get(key, _MISSING), current.get(key, _MISSING)
        if key == "settings_fingerprint" and "settings" in keys:
            continue   # derived from the settings, shown key by key
        if key == "code_digest":
            out.append((f"code of {current.get('plugin')}", old, new))
        elif key == "stage_code":
            out.append((f"code of {stage_modules(stage)}", old, new))
        elif key == "format":
            out.append(("storage format", old, new))
        elif key in _NESTED:
            out += _flatten(key, old if old is not _MISSING else {},
                            new if new is not _MISSING else {})
        else:
            out.append((key, old, new))
    return out


def explain(plan: Any, status: Any, root: str | Path, target: str) -> dict[str, Any]:
    """The report for one job: its state, why, and one line per differing key part."""
    from ..store.objects import ObjectStore
    from ..store.refs import read_ref
    from .staleness import _manifest, _metadata_params, _upstream, recorded_plot_spec

    root = Path(root)
    job = find_job(status.jobs, plan.results, root, target)
    name = "/".join(str(v) for v in job.names.values())
    head = f"{job.output} ({job.stage}{' ' + name if name else ''}): {job.state}"
    if job.state == "kept":
        head += f" ({job.why})"
    report: dict[str, Any] = {"output": job.output, "stage": job.stage, "state": job.state,
                              "why": job.why, "differences": [], "lines": [head]}
    if job.state not in ("done", "stale", "kept"):
        report["lines"].append("  nothing stored yet to compare with the plan")
        return report
    if job.stage == "catalog":
        report["lines"].append("  up to date" if job.state == "done" else
                               "  rebuilt after the jobs above it")
        return report
    current = plan.spec_dict(job.stage, SimpleNamespace(**job.names))
    if job.stage == "plot":
        params = _metadata_params(root, job.output)
        recorded = recorded_plot_spec(params) if params is not None else None
        inputs: list[tuple[str, Any, Any]] = []
    else:
        objects = ObjectStore(root / plan.store)
        manifest = _manifest(objects, read_ref(root / job.output).digest)[0] or {}
        recorded = manifest.get("provenance")
        inputs = _input_lines(job, manifest, _upstream(job, {j.output: j for j in status.jobs},
                                                       plan), root)
    if recorded is None:
        report["lines"].append("  no record of the spec it was made with; "
                               "snakemake decides by its own records")
        return report
    diffs = spec_lines(job.stage, current, recorded) + inputs
    report["differences"] = [{"what": w, "stored": None if o is _MISSING else o,
                              "plan": None if n is _MISSING else n} for w, o, n in diffs]
    report["lines"] += [f"  {w}: {_value(o)} → {_value(n)}" for w, o, n in diffs]
    waiting = [u for u in _upstream(job, {j.output: j for j in status.jobs}, plan)
               if u.state not in ("done", "kept")]
    report["lines"] += [f"  upstream {u.output} is {u.state}: it runs first, then this job"
                        for u in waiting[:3]]
    if len(waiting) > 3:
        report["lines"].append(f"  ... and {len(waiting) - 3} more upstream jobs")
    if len(report["lines"]) == 1:
        report["lines"].append("  up to date")
    return report


def _input_lines(job: Any, manifest: dict[str, Any], upstream: list[Any], root: Path
                 ) -> list[tuple[str, Any, Any]]:
    """An input whose ref now names another artifact than the one this job was made from."""
    from ..store.refs import read_ref

    stored = [i.get("digest") for i in manifest.get("inputs") or [] if isinstance(i, dict)]
    now = []
    for u in upstream:
        try:
            now.append(read_ref(root / u.output).digest)
        except (OSError, AssayError):
            now.append(_MISSING)
    if len(stored) != len(now):
        return [("inputs", f"{len(stored)} artifacts", f"{len(now)} refs")]
    return [(f"input {u.output}", old, new)
            for u, old, new in zip(upstream, stored, now) if old != new]
