"""The five stages as plain functions: run, collect, aggregate, compare, plot.

Each stage is described by a *spec* (a JSON dict built from the study at DAG time and
passed to the job) plus its input digests. The spec and inputs form the action key; the
spec is also recorded in the artifact's provenance, which is what `assay reproduce` uses.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path
from typing import Any, Callable

from .. import __version__
from . import joblog
from ..store.actions import RecordKeptError, run_facts
from ..store.claims import Claim
from ..store.artifacts import Artifact, ComparisonArtifact, ConditionArtifact, RunArtifact
from .context import AggregateContext, CollectorContext, CompareContext, RunContext
from ..errors import AssayError, PluginError
from ..store.hashing import canonical_json, format_digest, sha256_hex
from .numerics import numeric_environment
from .layout import ARTIFACT_STAGES, STAGE_LAYOUTS
from .keys import key_parts
from .plugins import code_digest, resolve_analysis, resolve_runner
from ..store import ArtifactStore
from .supervise import Supervisor
from ..store.workdirs import WorkDir

STAGES = ARTIFACT_STAGES
# Spec keys per stage: exactly what provenance must hold to recompute an artifact.
SPEC_KEYS = {
    "run": ("stage", "plugin", "settings", "condition", "replicate", "params", "seed",
            "code_digest"),
    "collect": ("stage", "analysis", "plugin", "settings", "settings_fingerprint",
                "condition", "replicate", "params", "code_digest"),
    "aggregate": ("stage", "analysis", "plugin", "settings", "settings_fingerprint",
                  "condition", "aggregation", "code_digest"),
    "compare": ("stage", "analysis", "plugin", "settings", "settings_fingerprint",
                "control", "confidence", "comparison", "code_digest"),
}

# In a spec (so in the key and provenance) only when the study sets them, or (format,
# stage_code: assay.pipeline.keys) absent from artifacts made before they existed.
OPTIONAL_SPEC_KEYS = ("numerics", "format", "stage_code")


def settings_fingerprint(plugin: str, settings: dict[str, Any]) -> str:
    return format_digest(sha256_hex(canonical_json({"plugin": plugin, "settings": settings})))


# --- specs (built at DAG time from the study) ------------------------------------------
def runner_code_digest(study: Any) -> str:
    runner = resolve_runner(study.runner.plugin, where="runner.plugin")
    return code_digest(runner, study.runner.settings)


def run_spec(study: Any, condition: str, replicate: int, *,
             code: str | None = None) -> dict[str, Any]:
    """``code``: runner_code_digest(study), when the caller made it once for every run."""
    return {"stage": "run", "plugin": study.runner.plugin, "settings": study.runner.settings,
            "condition": condition, "replicate": replicate,
            "params": study.conditions[condition], "seed": study.seed_for(condition, replicate),
            "code_digest": code or runner_code_digest(study), **key_parts("run")}


def _analysis_spec(study: Any, analysis: str, stage: str) -> dict[str, Any]:
    spec = study.analyses[analysis]
    cls = resolve_analysis(spec.plugin, where=f"analyses.{analysis}.plugin")
    parts = key_parts(stage)
    if stage == "collect":   # a plugin with SERIES collects with assay.pipeline.diagnostics too
        from .diagnostics import series_stage_code

        parts.update(series_stage_code(cls))
    return {"stage": stage, "analysis": analysis, "plugin": spec.plugin,
            "settings": spec.settings,
            "settings_fingerprint": settings_fingerprint(spec.plugin, spec.settings),
            "code_digest": code_digest(cls), **parts}


# ``base``: _analysis_spec(study, analysis, stage), when the caller made it once for all
# the analysis's jobs (the workflow plan: thousands of jobs, one code digest).
def collect_spec(study: Any, analysis: str, condition: str, replicate: int, *,
                 base: dict[str, Any] | None = None) -> dict[str, Any]:
    return {**(base or _analysis_spec(study, analysis, "collect")), "condition": condition,
            "replicate": replicate, "params": study.conditions[condition]}


def aggregate_spec(study: Any, analysis: str, condition: str, *,
                   base: dict[str, Any] | None = None) -> dict[str, Any]:
    return {**(base or _analysis_spec(study, analysis, "aggregate")), "condition": condition,
            "aggregation": study.aggregation}


def compare_spec(study: Any, analysis: str) -> dict[str, Any]:
    from .comparison import comparison_options

    return {**_analysis_spec(study, analysis, "compare"), "control": study.control,
            "confidence": study.aggregation["confidence"],
            "comparison": comparison_options(study.comparison)}


def plot_spec(study: Any, analysis: str) -> dict[str, Any]:
    return {**_analysis_spec(study, analysis, "plot"), "control": study.control,
            "conditions": list(study.conditions), "plots": study.plots}


# --- execution -------------------------------------------------------------------------
def _versions() -> dict[str, str]:
    """Recorded in provenance; numpy's version is read without importing numpy."""
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        numpy_version = numpy.__version__
    else:
        from importlib.metadata import version

        numpy_version = version("numpy")
    return {"assay": __version__, "python": f"{sys.version_info[0]}.{sys.version_info[1]}",
            "numpy": numpy_version}


def stage_action_key(spec: dict[str, Any], input_digests: list[str]) -> str:
    from ..store.actions import action_key

    return action_key(stage=spec["stage"], plugin=spec["plugin"],
                      code_digest=spec["code_digest"], settings=spec,
                      inputs=sorted(input_digests))


@dataclasses.dataclass
class JobOptions:
    """How a job runs, never what it computes: nothing here enters a key or a digest."""

    threads: int = 1
    log_path: Path | None = None
    claim_wait: float = 300.0   # seconds to wait for another live attempt of the same key
    supervisor: Supervisor = dataclasses.field(default_factory=Supervisor)


def execute(store: ArtifactStore, spec: dict[str, Any], input_digests: list[str], *,
            use_cache: bool = True, log: Callable[[str], None] = lambda _m: None,
            options: JobOptions | None = None) -> str:
    """Run one stage job: action-cache hit, or compute, store and record the action.

    A run job works in ``store/work/<action key>/``: kept when it fails or is killed, so
    the next attempt resumes from what it left; removed once the artifact is published.
    """
    stage = spec.get("stage")
    if stage not in STAGES:
        raise AssayError(f"unknown stage {stage!r} in job spec; expected one of {STAGES}")
    options = options or JobOptions()
    if isinstance(spec.get("numerics"), dict) and spec["numerics"].get("portable"):
        from .numerics import check_portable

        check_portable()   # never other bits under a portable label
    key = stage_action_key(spec, input_digests)
    claim = Claim(store.root, key, what=_job_name(spec), wait_seconds=options.claim_wait,
                  log=log, sharing=store.sharing,
                  on_lost=options.supervisor.request_stop if stage == "run" else None)
    _check_inputs(store, spec, input_digests)
    if use_cache:
        cached = _cache_hit(store, key, log, spec, input_digests)
        if cached is not None:
            if stage == "run" and not claim.lock_path.exists():
                store.work.for_key(key).remove_if_ours()   # leftovers of a finished attempt
            return cached
    with claim:   # at most one live attempt per key, across processes, hosts and users
        if use_cache:   # an attempt that held the claim before us may have published it
            cached = _cache_hit(store, key, log, spec, input_digests)
            if cached is not None:
                return cached
        work = store.work.for_key(key) if stage == "run" else None
        started = time.monotonic()
        if work is not None:
            artifact = compute_run(store, spec, input_digests, work=work, options=options,
                                   log=log)
        else:
            artifact = COMPUTE[stage](store, spec, input_digests)
        role = STAGE_LAYOUTS[stage].input_role
        # "sources" (stat of imported files) belongs in the key, not the manifest: touching
        # a file must not change an artifact's digest.
        recorded = {k: v for k, v in spec.items() if k != "sources"}
        provenance = {**artifact.provenance, **recorded, "versions": _versions()}
        artifact = dataclasses.replace(
            artifact, provenance=provenance,
            inputs=[{"role": role, "digest": d} for d in input_digests] if role else [])
        claim.check()   # an attempt that lost its claim publishes nothing
        digest = store.write_artifact(artifact)
        try:
            store.record_action(key, digest, stage=stage, plugin=spec["plugin"],
                                **run_facts(started), numerics=numeric_environment())
        except RecordKeptError as exc:   # a sticky store: another member's record stays
            log(str(exc))
        if work is not None:
            work.remove()   # ours: we hold the claim
    log(f"computed {stage} {digest} in {time.monotonic() - started:.3f}s")
    return digest


def _check_inputs(store: ArtifactStore, spec: dict[str, Any], input_digests: list[str]) -> None:
    """Each input is the artifact this job reads (a ref may name another: proofs)."""
    import json

    from .proofs import check_inputs

    check_inputs(spec, [(d, json.loads(store.manifest_bytes(d)[1])) for d in input_digests])


def _cache_hit(store: ArtifactStore, key: str, log: Callable[[str], None],
               spec: dict[str, Any], input_digests: list[str]) -> str | None:
    cached = store.lookup_action(key)
    if cached is not None:
        import json

        from .proofs import check_provenance

        problem = check_provenance(spec, input_digests, json.loads(store.manifest_bytes(cached)[1]))
        if problem is not None:
            log(f"ignoring the action record {key[:12]}: it names {cached}, which this key "
                f"did not make ({problem}); recomputing. `assay verify` reports the record")
            return None
        log(f"{joblog.CACHE_HIT} {key[:12]}: {cached}")
        return cached
    untrusted = store.actions.untrusted_writer(key)
    if untrusted is not None:
        log(f"ignoring the action record {key[:12]}: "
            f"{store.sharing.untrusted('it', store.actions.path_for(key), untrusted)}; "
            "recomputing")
    return None


def _job_name(spec: dict[str, Any]) -> str:
    parts = [spec.get("stage", "job")]
    if spec.get("analysis"):
        parts.append(str(spec["analysis"]))
    where = "/".join(str(spec[k]) for k in ("condition", "replicate") if spec.get(k) is not None)
    return " ".join(parts + ([where] if where else []))


def _check_identity(artifact: Artifact, cls: type, spec: dict[str, Any], who: str) -> None:
    if not isinstance(artifact, cls):
        raise PluginError(f"{who} returned {type(artifact).__name__}, expected {cls.__name__}")
    expected = {"condition_label": spec.get("condition"), "replicate": spec.get("replicate")}
    for field_name, value in expected.items():
        if value is not None and getattr(artifact, field_name) != value:
            raise PluginError(f"{who} returned {field_name}={getattr(artifact, field_name)!r}, "
                              f"expected {value!r}")


def compute_run(store: ArtifactStore, spec: dict[str, Any], inputs: list[str], *,
                work: WorkDir | None = None, options: JobOptions | None = None,
                log: Callable[[str], None] = lambda _m: None) -> Artifact:
    runner = resolve_runner(spec["plugin"], where="runner.plugin")
    options = options or JobOptions()
    ctx = RunContext(condition_label=spec["condition"], replicate=spec["replicate"],
                     params=spec["params"], settings=spec["settings"], seed=spec["seed"],
                     artifact_store=store, runner_name=_runner_label(spec["plugin"]),
                     threads=options.threads, log_path=options.log_path,
                     supervisor=options.supervisor)
    if work is not None:
        ctx.resuming = work.has_files()
        ctx.attempt = work.begin_attempt(
            {"stage": "run", "condition": spec["condition"], "replicate": spec["replicate"],
             "plugin": spec["plugin"]},
            log_path=str(options.log_path) if options.log_path else None)
        ctx.workdir = work.files
        for link in work.remove_foreign_links():
            log(f"removed a link another user planted in the work directory: {link}")
        ctx.progress_sink = _throttled(work.write_progress)
        log(f"{joblog.ATTEMPT}{ctx.attempt} in {work.files}"
            + (" (resuming: an earlier attempt left files)" if ctx.resuming else ""))
        for earlier in work.kept_logs():   # Snakemake deletes the rule log before a retry
            _replay(earlier, log)
    try:
        run = runner().run(ctx) if isinstance(runner, type) else runner(ctx)
    except BaseException:
        if work is not None and options.log_path is not None:
            work.keep_log(ctx.attempt, options.log_path)
        raise
    if isinstance(run, dict):  # a callable may return arrays: store them as one NPZ
        sidecar = store.write_npz_sidecar("sidecars/run.npz", metadata={"kind": "run"}, **run)
        run = ctx.result(payload={"arrays": sorted(run)}, sidecars=[sidecar])
    who = f"runner {spec['plugin']!r}"
    _check_identity(run, RunArtifact, spec, who)
    return run


def _replay(kept: Path, log: Callable[[str], None]) -> None:
    """Copy an earlier attempt's log into this one, so the rule's log tells the whole story."""
    attempt = kept.stem.split("-")[-1]
    log(f"{joblog.REPLAY_START}{attempt} (failed or stopped) ----")
    try:
        text = kept.read_text(errors="replace")
    except OSError:
        return
    sys.stderr.write(text if text.endswith("\n") or not text else text + "\n")
    log(f"{joblog.REPLAY_END}{attempt} ----")


def _throttled(write: Callable[[float, float | None, str], None],
               every: float = 1.0) -> Callable[[float, float | None, str], None]:
    """Progress reports cost one small atomic write at most once a second (and at the end)."""
    last = [0.0]

    def report(done: float, total: float | None, message: str = "") -> None:
        now = time.monotonic()
        if now - last[0] >= every or (total is not None and done >= total):
            last[0] = now
            write(done, total, message)

    return report


def _runner_label(plugin: str) -> str:
    label = plugin.rsplit(":", 1)[-1].rsplit(".", 1)[-1]
    return "".join(ch if ch.isalnum() or ch in "_.-" else "_" for ch in label) or "run"


def compute_collect(store: ArtifactStore, spec: dict[str, Any], inputs: list[str]) -> Artifact:
    from ..store.artifacts import ReplicateArtifact

    [run_digest] = inputs
    cls = resolve_analysis(spec["plugin"], where=f"analyses.{spec['analysis']}.plugin")
    ctx = CollectorContext(
        analysis_name=spec["analysis"], condition_label=spec["condition"],
        replicate=spec["replicate"], settings=spec["settings"],
        settings_fingerprint=spec["settings_fingerprint"],
        run=store.read_run_result(run_digest), run_digest=run_digest, artifact_store=store,
        params=spec["params"])
    result = cls().collect(ctx)
    _check_identity(result, ReplicateArtifact, spec, f"analysis {spec['plugin']!r} collect")
    if result.analysis_name != spec["analysis"]:
        result = dataclasses.replace(result, analysis_name=spec["analysis"])
    from .diagnostics import with_replicate_diagnostics

    result = with_replicate_diagnostics(store, cls, result, f"analysis {spec['plugin']!r}")
    metadata = {**result.metadata, "settings_fingerprint": spec["settings_fingerprint"]}
    return dataclasses.replace(result, metadata=metadata)


def compute_aggregate(store: ArtifactStore, spec: dict[str, Any], inputs: list[str]) -> Artifact:
    from .aggregation import default_aggregate, read_replicates

    options = spec["aggregation"]
    ctx = AggregateContext(
        analysis_name=spec["analysis"], condition_label=spec["condition"],
        settings=spec["settings"], settings_fingerprint=spec["settings_fingerprint"],
        replicates=read_replicates(store, spec, inputs), confidence=options["confidence"],
        artifact_store=store)
    plugin = resolve_analysis(spec["plugin"])()
    result = default_aggregate(ctx, options["min_replicates"], options["allow_partial"],
                               thresholds=options, plugin=plugin)
    if hasattr(plugin, "aggregate"):
        result = plugin.aggregate(ctx, result)
        _check_identity(result, ConditionArtifact, spec, f"analysis {spec['plugin']!r} aggregate")
    return result


def compute_compare(store: ArtifactStore, spec: dict[str, Any], inputs: list[str]) -> Artifact:
    from .comparison import build_comparison, read_conditions

    conditions = read_conditions(store, spec, inputs)
    result = build_comparison(store, spec, conditions)
    plugin = resolve_analysis(spec["plugin"])()
    if hasattr(plugin, "compare"):
        ctx = CompareContext(analysis_name=spec["analysis"], control=spec["control"],
                             settings=spec["settings"], conditions=conditions,
                             confidence=spec["confidence"], artifact_store=store)
        result = plugin.compare(ctx, result)
        _check_identity(result, ComparisonArtifact, spec, f"analysis {spec['plugin']!r} compare")
    return result


COMPUTE: dict[str, Callable[[ArtifactStore, dict[str, Any], list[str]], Artifact]] = {
    "run": compute_run, "collect": compute_collect, "aggregate": compute_aggregate,
    "compare": compute_compare,
}


# --- reproduce -------------------------------------------------------------------------
def spec_from_provenance(artifact: Artifact) -> dict[str, Any]:
    stage = artifact.provenance.get("stage")
    if stage not in SPEC_KEYS:
        raise AssayError(f"{artifact.artifact_type} artifact has no recorded stage; it was not "
                         "made by an assay workflow job and cannot be reproduced")
    missing = [k for k in SPEC_KEYS[stage] if k not in artifact.provenance]
    if missing:
        raise AssayError(f"provenance lacks {missing}; cannot reproduce")
    spec = {k: artifact.provenance[k] for k in SPEC_KEYS[stage]}
    for optional in OPTIONAL_SPEC_KEYS:
        if optional in artifact.provenance:
            spec[optional] = artifact.provenance[optional]
    return spec


def action_record_for(store: ArtifactStore, digest: str) -> dict[str, Any] | None:
    """The action record that published ``digest``: when, where and in which numeric
    environment it was computed. Looked up by the key its provenance gives; if assay's
    code changed since (another key), found by scanning the store's records."""
    try:
        artifact = store.read_artifact(digest)
        spec = spec_from_provenance(artifact)
        key = stage_action_key(spec, [item["digest"] for item in artifact.inputs])
    except AssayError:
        return None
    record = store.actions.read(key)
    if record is not None and record.get("digest") == digest:
        return record
    import json

    for path in reversed(store.actions.paths()):
        try:
            with open(path, "rb") as handle:
                found = json.loads(handle.read())
        except (OSError, ValueError):
            continue
        if isinstance(found, dict) and found.get("digest") == digest:
            return found
    return None


def copy_closure(source: ArtifactStore, digests: list[str], target: ArtifactStore) -> None:
    """Copy artifacts, their sidecars and their inputs (recursively) into another store."""
    pending, seen = list(digests), set()
    while pending:
        digest = pending.pop()
        if digest in seen:
            continue
        seen.add(digest)
        artifact = source.verify_artifact(digest, verify="stat")
        _, data = source.manifest_bytes(digest)
        target.objects.put_bytes(data)
        for sidecar in artifact.sidecars:
            target.objects.put_file(source.objects.path_for(sidecar.sha256), move=False)
        pending.extend(item["digest"] for item in artifact.inputs)


def recompute(store: ArtifactStore, digest: str, scratch: ArtifactStore) -> str:
    """Recompute an artifact from its recorded provenance inside ``scratch``; new digest."""
    artifact = store.read_artifact(digest)
    spec = spec_from_provenance(artifact)
    inputs = [item["digest"] for item in artifact.inputs]
    copy_closure(store, inputs, scratch)
    return execute(scratch, spec, inputs, use_cache=False)
