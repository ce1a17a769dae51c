"""Which finished jobs Snakemake would run again, and why, from files alone.

A done artifact job is *stale* when the spec its artifact records (its provenance) differs
from the spec the current plan gives it (Snakemake's params trigger, and for a run its
`code` trigger: the run rule's command carries the runner's code digest and the storage
format, assay.pipeline.keys.RULE_CODE_KEYS), or when its inputs are not the artifacts its upstream
refs now name; a figure, when the spec Snakemake recorded for it differs. A job downstream
of anything that will run is stale too (Snakemake reruns it after its input). So
`assay status` counts what `snakemake -n` schedules without building the DAG: one small
manifest read per finished job.

Given Snakemake's ``--rerun-triggers`` without ``code`` (or ``params``), a job whose only
differences are what that trigger sees is *kept*: Snakemake keeps it, and status says
what it was made with instead of calling it done.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from ..store.refs import read_ref

# A spec key that differs, said as what the user changed.
_CONFIG_KEYS = {"settings", "params", "seed", "aggregation", "control", "confidence",
                "comparison", "conditions", "plots", "settings_fingerprint", "numerics",
                "plugin"}
_NAME_MAX = 255
# Snakemake's --rerun-triggers; status models `code` and `params` (an input that changed is
# always stale: its ref was rewritten, so its mtime is newer).
TRIGGERS = ("mtime", "params", "input", "software-env", "code")
KEPT_HINT = "rerun with default triggers to refresh"


def _reason(key: str, spec: dict[str, Any]) -> str:
    if key == "code_digest":
        return f"code of {spec.get('plugin')}"
    if key == "stage_code":
        return f"code of {stage_modules(spec.get('stage'))}"
    if key == "format":
        return "storage format"
    return f"config: {key}" if key in _CONFIG_KEYS else f"spec: {key}"


def stage_modules(stage: Any) -> str:
    """The framework modules a stage's ``stage_code`` covers, as a reason names them."""
    from ..pipeline.diagnostics import SERIES_CODE
    from ..pipeline.keys import STAGE_CODE

    # a collect's stage_code exists only for a plugin with SERIES (assay.pipeline.diagnostics)
    modules = STAGE_CODE.get(stage, ()) or (SERIES_CODE if stage == "collect" else ())
    return " + ".join(modules) or f"the {stage} stage's modules"


def differing_keys(current: dict[str, Any], recorded: dict[str, Any]) -> list[str]:
    """Spec keys whose recorded value (provenance, or Snakemake's params) is not current."""
    from ..pipeline.stages import OPTIONAL_SPEC_KEYS

    keys = (set(current) | {k for k in OPTIONAL_SPEC_KEYS if k in recorded}) - {"sources"}
    return sorted(k for k in keys if current.get(k) != recorded.get(k))


def spec_differences(current: dict[str, Any], recorded: dict[str, Any]) -> list[str]:
    """Reasons a recorded spec (provenance, or Snakemake's params) is not the current one."""
    return sorted({_reason(k, current) for k in differing_keys(current, recorded)})


def trigger_of(stage: str, key: str) -> str:
    """The Snakemake rerun trigger that sees a change of this spec key."""
    from ..pipeline.keys import RULE_CODE_KEYS

    return "code" if key in RULE_CODE_KEYS.get(stage, ()) else "params"


def judge(stage: str, keys: list[str], current: dict[str, Any],
          triggers: tuple[str, ...] = TRIGGERS) -> tuple[str | None, str | None]:
    """(stale why, kept why) for differing spec keys under the given rerun triggers."""
    stale = sorted({_reason(k, current) for k in keys if trigger_of(stage, k) in triggers})
    kept = sorted({_reason(k, current) for k in keys if trigger_of(stage, k) not in triggers})
    return (", ".join(stale) or None,
            f"made with older {', '.join(kept)}; {KEPT_HINT}" if kept else None)


def _manifest(objects: Any, digest: str) -> tuple[dict[str, Any] | None, str | None]:
    """(a manifest whose bytes hash to its digest, or None; why not): a verdict is never
    drawn from bytes that changed or went away."""
    from ..store.hashing import read_regular, sha256_hex
    from ..store.reading import MAX_MANIFEST_BYTES

    sha = digest.partition(":")[2]
    try:
        data = read_regular(objects.path_str(sha), MAX_MANIFEST_BYTES)
    except FileNotFoundError:
        return None, (f"its manifest {digest} is not in the store (removed, or another "
                      "store?): run `assay verify`, then snakemake")
    except OSError as exc:
        return None, f"its manifest {digest} cannot be read ({exc.strerror})"
    try:
        value = json.loads(data) if sha256_hex(data) == sha else None
    except ValueError:
        value = None
    if not isinstance(value, dict):
        return None, (f"its manifest {digest} is damaged (its bytes changed): run `assay "
                      "verify --repair`, then snakemake")
    return value, None


def _metadata_params(root: Path, output: str) -> list[str] | None:
    """The params Snakemake recorded for ``output`` (.snakemake/metadata), if any."""
    encoded = base64.urlsafe_b64encode(os.path.normpath(output).encode()).decode()
    size = _NAME_MAX - 1
    chunks = [encoded[i:i + size] for i in range(0, len(encoded), size)] or [""]
    path = root.joinpath(".snakemake", "metadata",
                         *["@" + c for c in chunks[:-1]], chunks[-1])
    try:
        params = json.loads(path.read_text()).get("params")
    except (OSError, ValueError, AttributeError):
        return None
    return params if isinstance(params, list) else None


def recorded_plot_spec(recorded: list[str]) -> dict[str, Any] | None:
    """The plot spec among a figure's recorded params (Snakemake stores each one's repr)."""
    import ast

    from ..errors import AssayError
    from ..pipeline.workflow import spec_json

    for param in recorded:
        try:
            spec = spec_json(ast.literal_eval(param))
        except (ValueError, SyntaxError, TypeError, AssayError):
            continue
        if isinstance(spec, dict) and spec.get("stage") == "plot":
            return spec
    return None


def _plot_why(current: dict[str, Any], recorded: list[str]) -> str:
    """Why a figure's recorded spec is not current."""
    spec = recorded_plot_spec(recorded)
    return "params changed" if spec is None else (
        ", ".join(spec_differences(current, spec)) or "params changed")


def _upstream(job: Any, by_output: dict[str, Any], plan: Any) -> list[Any]:
    n = job.names
    if job.stage == "collect":
        refs = [plan.run_ref(n["condition"], n["replicate"])]
    elif job.stage == "aggregate":
        refs = [plan.replicate_ref(n["analysis"], n["condition"], r)
                for r in plan.study.replicates]
    elif job.stage == "compare":
        refs = [plan.condition_ref(n["analysis"], c) for c in plan.study.conditions]
    elif job.stage == "plot":
        refs = [plan.comparison_ref(n["analysis"])]
    elif job.stage == "catalog":
        refs = plan.all_refs()
    else:
        refs = []
    return [by_output[r] for r in refs if r in by_output]


def mark_stale(plan: Any, jobs: list[Any], root: str | Path,
               triggers: tuple[str, ...] = TRIGGERS) -> list[str]:
    """Set ``state = "stale"`` and ``why`` on done jobs Snakemake would run again, and
    ``state = "kept"`` on those it keeps only because ``triggers`` lack what changed.

    ``jobs`` are in stage order (assay.tools.status.plan_jobs), so upstream is judged first.
    Returns notes: a stage whose current spec cannot be made here (a runner's module not
    found from this directory) is not checked, and says so; runs stale only for their code.
    """
    from ..errors import AssayError
    from ..store.objects import ObjectStore

    from ..store.store_root import has_objects

    root = Path(root)
    if not has_objects(root / plan.store):
        return [f"no store at {plan.store}: finished results were not checked against "
                "their manifests (run status in the study directory, or pass --store)"]
    objects = ObjectStore(root / plan.store)
    by_output = {job.output: job for job in jobs}
    digests: dict[str, str] = {}
    unchecked: dict[str, str] = {}
    for job in jobs:
        if job.state != "done" or job.stage in unchecked:
            continue
        upstream = _upstream(job, by_output, plan)
        waiting = [u for u in upstream if u.state not in ("done", "kept")]
        if waiting:
            first = waiting[0]
            job.state, job.why = "stale", f"upstream {first.stage} {first.state}"
            continue
        if job.stage == "catalog":
            continue   # its inputs are refs: rewritten only by jobs judged above
        wildcards = SimpleNamespace(**job.names)
        try:
            current = plan.spec_dict(job.stage, wildcards)
        except AssayError as exc:
            unchecked[job.stage] = str(exc)
            continue
        if job.stage == "plot":
            recorded = _metadata_params(root, job.output)
            quoted = plan.spec("plot", wildcards)   # as Snakemake records it
            if recorded is not None and repr(quoted) not in recorded:
                if "params" in triggers:
                    job.state, job.why = "stale", _plot_why(current, recorded)
                else:
                    job.state, job.why = "kept", f"made with older params; {KEPT_HINT}"
            continue
        stale, kept = _artifact_why(job, current, upstream, objects, digests, root, triggers)
        if stale:
            job.state, job.why = "stale", stale
        elif kept:
            job.state, job.why = "kept", kept
    notes = [f"{stage} jobs were not checked for staleness: {problem} (run status in the "
             "study directory)" for stage, problem in unchecked.items()]
    code_only = sum(j.stage == "run" and j.state == "stale" and j.code_only for j in jobs)
    if code_only:
        notes.append(f"{code_only} runs are stale only because their runner's code (or the "
                     "storage format) changed: `snakemake --rerun-triggers mtime params "
                     "input` keeps them (`assay status --rerun-triggers mtime params input` "
                     "then lists them as kept)")
    return notes


def _artifact_why(job: Any, current: dict[str, Any], upstream: list[Any], objects: Any,
                  digests: dict[str, str], root: Path, triggers: tuple[str, ...]
                  ) -> tuple[str | None, str | None]:
    """(stale why, kept why) of a done artifact job; notes on ``job.code_only`` whether
    only what Snakemake's code trigger sees differs."""
    digest = getattr(job, "digest", None)   # read when status judged it done
    if digest is None:
        try:
            digest = read_ref(os.path.join(root, job.output)).digest
        except Exception:   # judged done a moment ago: a ref replaced meanwhile
            return "its ref is unreadable", None
    digests[job.output] = digest
    manifest, problem = _manifest(objects, digest)
    if manifest is None:   # never "done" on bytes that changed or went away
        return problem, None
    keys = differing_keys(current, manifest.get("provenance") or {})
    stale, kept = judge(job.stage, keys, current, triggers)
    recorded = sorted(i.get("digest") for i in manifest.get("inputs") or []
                      if isinstance(i, dict))
    moved = bool(upstream) and recorded != sorted(digests.get(u.output, "") for u in upstream)
    if moved:
        stale = ", ".join(filter(None, [stale, "an input changed"]))
    job.code_only = bool(keys) and not moved and all(trigger_of(job.stage, k) == "code"
                                                      for k in keys)
    return stale, kept
