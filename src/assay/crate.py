"""A Workflow Run RO-Crate of a finished study: the Provenance Run Crate profile (0.5).

Other tools (ro-crate-py, roc-validator, WorkflowHub, a data repository) read what made
each figure and each artifact from this file, without assay. Layout of the zip::

    ro-crate-metadata.json    the JSON-LD graph (RO-Crate 1.1 context)
    workflow/                 assay's Snakefile, rules and config schema (mainEntity)
    config/<file>             the study config file(s) as Snakemake read them
    results/plots/<a>/<f>     the figures
    objects/<64 hex>          every manifest and sidecar the study's refs reach, named by
                              its SHA-256 (the bytes `assay export` would carry)

The crate carries the bytes, not only their digests: anyone can hash ``objects/X`` and
compare it with X, and with the ``sha256`` the metadata gives. Each job of the study is a
CreateAction (instrument: a tool per stage, plugin and code digest; object: the input
artifacts; result: the artifact and its sidecars; start and end from its action record),
each wrapped in a ControlAction of its stage's HowToStep, all under one OrganizeAction of
Snakemake. Everything is read through the study's refs and verified, as `assay export`
does: a damaged store, a missing artifact, a ref that names another artifact, or a figure
that its plot job's record does not vouch for stops the crate. The same store and config
give the same bytes (sorted entities and members, fixed zip times, no clock).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path, PurePosixPath
from typing import Any

from .errors import ArtifactIntegrityError, ArtifactStoreError, AssayError

CONTEXT = "https://w3id.org/ro/crate/1.1/context"
RO_CRATE = "https://w3id.org/ro/crate/1.1"
# The profile versions roc-validator checks; the newest that share RO-Crate 1.1's terms.
PROFILES = {
    "https://w3id.org/ro/wfrun/process/0.5": ("Process Run Crate", "0.5"),
    "https://w3id.org/ro/wfrun/workflow/0.5": ("Workflow Run Crate", "0.5"),
    "https://w3id.org/ro/wfrun/provenance/0.5": ("Provenance Run Crate", "0.5"),
    "https://w3id.org/workflowhub/workflow-ro-crate/1.0": ("Workflow RO-Crate", "1.0"),
}
# Terms RO-Crate 1.1's context lacks: sha256 as RO-Crate 1.2+ maps it, environment from the
# Workflow Run RO-Crate terms (Process Run Crate: an action's environment variables).
EXTRA_TERMS = {"sha256": "http://schema.org/sha256",
               "environment": "https://w3id.org/ro/terms/workflow-run#environment"}
METADATA = "ro-crate-metadata.json"
WORKFLOW = "workflow/Snakefile"
COMPLETED = "http://schema.org/CompletedActionStatus"
STAGES = ("run", "collect", "aggregate", "compare", "plot")
RULE_FILES = {"run": "run.smk", "collect": "collect.smk", "aggregate": "aggregate.smk",
              "compare": "compare.smk", "plot": "plot.smk"}
FIGURE_TYPES = {".png": "image/png", ".svg": "image/svg+xml", ".pdf": "application/pdf"}
# Config keys that are places on this machine, not parameters of the computation.
_PATH_KEYS = ("store", "results")


class CrateError(AssayError):
    """The study cannot be described truthfully (unfinished, damaged, stale figures)."""


@dataclass
class CrateSummary:
    path: Path
    jobs: int = 0
    artifacts: int = 0
    objects: int = 0
    bytes: int = 0
    figures: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"crate": str(self.path), "jobs": self.jobs, "artifacts": self.artifacts,
                "objects": self.objects, "bytes": self.bytes, "figures": self.figures}


# --- what the study holds --------------------------------------------------------------
@dataclass
class _Job:
    id: str                        # "#job/<ref or figure path under results/>"
    stage: str
    name: str
    description: str
    tool: str
    inputs: list[str]              # entity ids
    outputs: list[str]
    record: dict[str, Any] | None  # the action record: when, duration_s, numerics


def _ref_entries(plan: Any, study: Path, results: Path) -> list[Any]:
    from .inventory import expand_ref_args

    paths = [study / p for p in plan.all_refs()]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise CrateError(f"the study is not finished: {len(missing)} of its refs are missing "
                         f"(e.g. {os.path.relpath(missing[0], study)}); run snakemake first")
    entries = expand_ref_args(paths, results)
    for entry in entries:
        if entry.digest is None:
            raise CrateError(f"cannot read ref {entry.name}: {entry.problem}")
    return entries


def _check_identity(entry: Any, manifest: dict[str, Any]) -> None:
    from .proofs import describe, manifest_identity, mismatch, ref_path_identity

    actual = manifest_identity(manifest)
    for claimed in (ref_path_identity(entry.name) or {}, entry.identity):
        problem = mismatch(claimed, actual)
        if problem:
            raise CrateError(f"ref {entry.name} names {describe(actual)} ({entry.digest}): "
                             f"{problem}; run `assay verify`, then snakemake")


def _closure(store: Path, roots: list[str]) -> Any:
    from .artifacts import artifact_from_manifest
    from .inventory import walk_manifests

    graph = walk_manifests(store, roots, verify=True)
    for sha in sorted(graph.missing):
        raise ArtifactIntegrityError(f"cannot write the crate: artifact sha256:{sha} is "
                                     f"missing from the store {store}; run `assay verify`")
    for sha, problem in sorted({**graph.damaged, **graph.not_manifest}.items()):
        raise ArtifactIntegrityError(f"cannot write the crate: object sha256:{sha} {problem}; "
                                     "run `assay verify --repair`")
    for sha, manifest in graph.manifests.items():
        artifact_from_manifest(manifest, where=f"artifact sha256:{sha}")
    return graph


@dataclass(frozen=True)
class _Figure:
    id: str                        # its path in the crate: results/plots/<analysis>/<name>
    analysis: str
    data: bytes
    record: dict[str, Any]         # the plot job's action record
    comparison: str                # sha256 of the comparison it was drawn from
    spec: dict[str, Any]           # the plot job's spec (plugin, code digests)


def _figures(plan: Any, study: Path, store: Path, refs: dict[str, Any],
             wanted: list[str] | None) -> list[_Figure]:
    """Each figure, proven by its plot job's action record (keyed by the current plan's
    spec and the comparison's digest) to be what that job drew."""
    from .actions import ActionCache
    from .plotting import figure_action_key
    from .workflow import spec_json

    from .sharing import SharingPolicy

    cache = ActionCache.at(store, SharingPolicy.for_store(store, plan.sharing))
    out = []
    for analysis in plan.study.analyses:
        comparison = refs[_results_name(plan, plan.comparison_ref(analysis))]
        spec = spec_json(plan.spec("plot", _Wildcards(analysis)))
        for figure in plan.plots():
            if PurePosixPath(figure).parent.name != analysis or (
                    wanted is not None and figure not in wanted):
                continue
            path = study / figure
            try:
                data = path.read_bytes()
            except FileNotFoundError:
                raise CrateError(f"the study is not finished: {figure} is missing; run "
                                 "snakemake first") from None
            sha = hashlib.sha256(data).hexdigest()
            key = figure_action_key(spec, comparison.digest, Path(figure))
            record = cache.read(key, trusted_only=True)
            if record is None or record.get("digest") != f"sha256:{sha}":
                raise CrateError(
                    f"{figure} is not the figure its plot job recorded for "
                    f"{comparison.name} with the current code and config (stale, or "
                    "drawn elsewhere); run snakemake to redraw it, then `assay crate`")
            out.append(_Figure(_crate_path(plan, figure), analysis, data, record,
                               comparison.sha256, spec))
    return out


@dataclass(frozen=True)
class _Wildcards:
    analysis: str


def _crate_path(plan: Any, path: str) -> str:
    """A path under the study's results directory, as the crate names it: under
    ``results/`` whatever the study calls that directory (never an absolute path)."""
    return f"results/{_results_name(plan, path)}"


def _results_name(plan: Any, ref_path: str) -> str:
    """``results/runs/free/1.json`` -> ``runs/free/1.json`` (a RefEntry's name)."""
    return PurePosixPath(ref_path).relative_to(PurePosixPath(plan.results)).as_posix()


# --- building the graph ----------------------------------------------------------------
def _id(value: str) -> dict[str, str]:
    return {"@id": value}


def _ids(values: Any) -> list[dict[str, str]] | dict[str, str]:
    """Sorted references; one alone is given as itself (RO-Crate 1.1's recommendation)."""
    out = [_id(v) for v in sorted(set(values))]
    return out[0] if len(out) == 1 else out


def _times(record: dict[str, Any] | None) -> dict[str, str]:
    """startTime/endTime from an action record: ``when`` is written as the job ends
    (seconds), ``duration_s`` is how long it took."""
    if not record or not isinstance(record.get("when"), str):
        return {}
    try:
        end = datetime.fromisoformat(record["when"])
        start = end - timedelta(seconds=float(record.get("duration_s") or 0))
    except (TypeError, ValueError):
        return {}
    return {"startTime": start.isoformat(timespec="seconds"),
            "endTime": end.isoformat(timespec="seconds")}


def _short(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]


class _Graph:
    def __init__(self) -> None:
        self.entities: dict[str, dict[str, Any]] = {}

    def add(self, entity: dict[str, Any]) -> str:
        self.entities.setdefault(entity["@id"], entity)
        return entity["@id"]

    def software(self, name: str, version: str) -> str:
        return self.add({"@id": f"#software/{name}-{version}", "@type": "SoftwareApplication",
                         "name": name, "softwareVersion": str(version)})

    def tool(self, stage: str, provenance: dict[str, Any], extra: dict[str, str]) -> str:
        plugin, code = provenance.get("plugin"), provenance.get("code_digest")
        versions = {**(provenance.get("versions") or {}), **extra}
        ident = f"#tool/{stage}/{plugin}/{_short([code, provenance.get('stage_code'), versions])}"
        parts = [f"plugin {plugin}, code {code}"]
        if provenance.get("stage_code"):
            parts.append(f"framework code of the {stage} stage {provenance['stage_code']}")
        return self.add({
            "@id": ident, "@type": "SoftwareApplication", "name": f"{stage}: {plugin}",
            "identifier": code, "description": "; ".join(parts),
            "isBasedOn": _id(f"workflow/rules/{RULE_FILES[stage]}"),
            "softwareRequirements": _ids(self.software(n, v) for n, v in versions.items()),
        })

    def environment(self, record: dict[str, Any] | None) -> list[dict[str, str]]:
        numerics = (record or {}).get("numerics")
        if not isinstance(numerics, dict):
            return []
        out = [self.add({"@id": f"#numerics/{_short(numerics)}", "@type": "PropertyValue",
                         "name": "numeric environment (assay.numerics)",
                         "propertyID": "assay-numerics",
                         "value": json.dumps(numerics, sort_keys=True)})]
        for name, value in sorted((numerics.get("env") or {}).items()):
            out.append(self.add({"@id": f"#env/{name}={value}", "@type": "PropertyValue",
                                 "name": name, "value": str(value)}))
        return _ids(out)


def _artifact_name(manifest: dict[str, Any]) -> str:
    from .proofs import describe, manifest_identity

    return describe(manifest_identity(manifest))


def build_metadata(*, plan: Any, config: dict[str, Any], config_files: list[str],
                   graph: Any, refs: list[Any], records: dict[str, dict[str, Any]],
                   figures: list[_Figure],
                   workflow_files: list[str], license: str | None,
                   author: str | None = None) -> dict[str, Any]:
    """The JSON-LD document (a dict): pure, so the same inputs give the same bytes."""
    from importlib.metadata import version

    from .inventory import sidecar_shas

    g = _Graph()
    manifest_of = graph.manifests
    sizes: dict[str, int] = {}
    for sha, manifest in sorted(manifest_of.items()):
        name = _artifact_name(manifest)
        g.add({"@id": f"objects/{sha}", "@type": "File",
               "name": f"{name} (manifest)", "encodingFormat": "application/json",
               "contentSize": str(graph.raw_sizes[sha]), "sha256": sha,
               "identifier": f"sha256:{sha}"})
        for side in manifest.get("sidecars") or []:
            sizes[side["sha256"]] = side["size_bytes"]
            g.add({"@id": f"objects/{side['sha256']}", "@type": "File",
                   "name": f"{side['path']} of {name}",
                   "encodingFormat": side.get("media_type") or "application/octet-stream",
                   "contentSize": str(side["size_bytes"]), "sha256": side["sha256"],
                   "identifier": f"sha256:{side['sha256']}"})
    for entry in refs:   # the ref path is the artifact's name in results/
        entity = g.entities.get(f"objects/{entry.sha256}")
        if entity is not None:
            entity["alternateName"] = f"results/{entry.name}"

    jobs: list[_Job] = []
    for entry in sorted(refs, key=lambda e: e.name):
        manifest = manifest_of.get(entry.sha256)
        if manifest is None:
            continue
        provenance = manifest.get("provenance") or {}
        stage = provenance.get("stage")
        if stage not in RULE_FILES:
            raise CrateError(f"artifact {entry.digest} ({entry.name}) records no known stage "
                             f"({stage!r}); it was not made by this workflow")
        record = records.get(entry.sha256)
        outputs = [f"objects/{entry.sha256}"] + [f"objects/{s}" for s, _ in
                                                 sidecar_shas(manifest)]
        inputs = [f"objects/{s}" for s in sorted(_input_shas(manifest))]
        if stage == "run":
            inputs += [f"config/{PurePosixPath(f).name}" for f in config_files]
        jobs.append(_Job(f"#job/{entry.name}", stage, f"{stage} {entry.name}",
                         f"the {stage} job that made {_artifact_name(manifest)}",
                         g.tool(stage, provenance, {}), inputs, outputs, record))
    matplotlib = version("matplotlib")
    for fig in figures:
        path, sha = PurePosixPath(fig.id), hashlib.sha256(fig.data).hexdigest()
        g.add({"@id": fig.id, "@type": ["File", "ImageObject"],
               "name": f"{path.stem} figure of {fig.analysis}",
               "encodingFormat": FIGURE_TYPES.get(path.suffix, "application/octet-stream"),
               "contentSize": str(len(fig.data)), "sha256": sha,
               "identifier": f"sha256:{sha}"})
        versions = (manifest_of[fig.comparison].get("provenance") or {}).get("versions")
        tool = g.tool("plot", {**fig.spec, "versions": versions}, {"matplotlib": matplotlib})
        jobs.append(_Job(f"#job/{fig.id}", "plot", f"plot {fig.id}",
                         f"the plot job that drew {fig.id} from the comparison", tool,
                         [f"objects/{fig.comparison}"], [fig.id], fig.record))

    # Steps, control actions, the run of the workflow and Snakemake's organizing action.
    steps = {}
    for position, stage in enumerate(STAGES):
        tools = sorted({j.tool for j in jobs if j.stage == stage})
        if tools:
            steps[stage] = g.add({"@id": f"#step/{stage}", "@type": "HowToStep",
                                  "name": stage, "position": str(position),
                                  "workExample": _ids(tools)})
    agent = {}
    if author:   # who ran the study, as they say (the action records name no person)
        agent = {"agent": _id(g.add({"@id": author if "://" in author else f"#person/{author}",
                                     "@type": "Person", "name": author}))}
    controls = []
    for job in jobs:
        action = {"@id": job.id, "@type": "CreateAction", "name": job.name,
                  "description": job.description,
                  "actionStatus": COMPLETED,
                  "instrument": _id(job.tool), "object": _ids(job.inputs),
                  "result": _ids(job.outputs), **_times(job.record), **agent}
        environment = g.environment(job.record)
        if environment:
            action["environment"] = environment
        g.add(action)
        controls.append(g.add({"@id": f"#control/{job.id[len('#job/'):]}",
                               "@type": "ControlAction", "name": f"orchestrate {job.name}",
                               "instrument": _id(steps[job.stage]), "object": _id(job.id)}))

    inputs, values = _parameters(g, config, config_files)
    final = sorted({f.id for f in figures} | {f"objects/{e.sha256}" for e in refs
                   if e.name.startswith("comparisons/") and e.sha256 in manifest_of})
    outputs = []
    for item in final:
        name = item if not item.startswith("objects/") else g.entities[item]["alternateName"]
        outputs.append(g.add({"@id": f"#param/output/{name}", "@type": "FormalParameter",
                              "name": name, "additionalType": "File",
                              "workExample": _id(item)}))
    times = [t for j in jobs for t in [_times(j.record)] if t]
    span = ({"startTime": min(t["startTime"] for t in times),
             "endTime": max(t["endTime"] for t in times)} if times else {})
    g.add({"@id": "#workflow-run", "@type": "CreateAction",
           "name": "run of the assay workflow on this study's config",
           "actionStatus": COMPLETED,
           "instrument": _id(WORKFLOW), "object": _ids(values), "result": _ids(final), **span,
           **agent})
    g.add({"@id": "#snakemake", "@type": "SoftwareApplication", "name": "Snakemake",
           "url": _id("https://snakemake.github.io")})
    g.add({"@id": "#snakemake-language", "@type": "ComputerLanguage", "name": "Snakemake",
           "url": _id("https://snakemake.github.io")})
    g.add({"@id": "#engine-run", "@type": "OrganizeAction",
           "name": "Snakemake scheduling the study's jobs", "instrument": _id("#snakemake"),
           "object": _ids(controls), "result": _id("#workflow-run"), **span})
    g.add({"@id": WORKFLOW,
           "@type": ["File", "SoftwareSourceCode", "ComputationalWorkflow", "HowTo"],
           "name": "assay workflow", "version": version_of_assay(),
           "programmingLanguage": _id("#snakemake-language"), "encodingFormat": "text/plain",
           "hasPart": _ids(j.tool for j in jobs), "step": _ids(steps.values()),
           "input": _ids(inputs), "output": _ids(outputs)})
    for path in workflow_files:
        if path != WORKFLOW:
            g.add({"@id": path, "@type": "File", "name": PurePosixPath(path).name,
                   "encodingFormat": "text/plain"})
    if license and "://" in license:
        g.add({"@id": license, "@type": "CreativeWork", "name": license.rsplit("/", 1)[-1]})
    for uri, (name, ver) in PROFILES.items():
        g.add({"@id": uri, "@type": "CreativeWork", "name": name, "version": ver})

    files = sorted(i for i, e in g.entities.items() if e["@type"] == "File"
                   or "File" in e["@type"])
    ends = [t["endTime"] for t in times]
    root = {"@id": "./", "@type": "Dataset",
            "name": f"assay study: {', '.join(plan.study.analyses)} across "
                    f"{', '.join(plan.study.conditions)}",
            "description": "Provenance of a study run by assay's Snakemake workflow: every "
                           "job is a CreateAction linking its input artifacts to its "
                           "output artifacts and figures; objects/<sha256> holds each "
                           "manifest and sidecar under the SHA-256 of its bytes.",
            "datePublished": max(ends) if ends else "1970-01-01T00:00:00+00:00",
            "license": _id(license) if license and "://" in license else (
                license or "not stated: pass `assay crate --license` before publishing"),
            "conformsTo": _ids(PROFILES), "mainEntity": _id(WORKFLOW),
            "hasPart": _ids(files), "mentions": _ids(["#workflow-run", "#engine-run"]),
            **({"author": agent["agent"]} if agent else {})}
    descriptor = {"@id": METADATA, "@type": "CreativeWork", "conformsTo": _id(RO_CRATE),
                  "about": _id("./")}
    return {"@context": [CONTEXT, EXTRA_TERMS],
            "@graph": [descriptor, root, *(g.entities[i] for i in sorted(g.entities))]}


def _input_shas(manifest: dict[str, Any]) -> list[str]:
    from .inventory import input_shas

    return input_shas(manifest)


def _parameters(g: _Graph, config: dict[str, Any], config_files: list[str]
                ) -> tuple[list[str], list[str]]:
    """The workflow's inputs: the config file(s) and each top-level config value."""
    inputs, values = [], []
    for path in config_files:
        name = f"config/{PurePosixPath(path).name}"
        g.add({"@id": name, "@type": "File", "name": PurePosixPath(path).name,
               "encodingFormat": "application/yaml"})
        values.append(name)
        inputs.append(g.add({"@id": f"#param/configfile/{PurePosixPath(path).name}",
                             "@type": "FormalParameter", "name": "configfile",
                             "additionalType": "File", "workExample": _id(name)}))
    for key in sorted(config):
        if key in _PATH_KEYS:
            continue
        value = config[key]
        kind = ("Boolean" if isinstance(value, bool) else "Integer" if isinstance(value, int)
                else "Float" if isinstance(value, float) else "Text" if isinstance(value, str)
                else "PropertyValue")
        text = value if isinstance(value, (str, bool, int, float)) else json.dumps(
            value, sort_keys=True)
        pv = g.add({"@id": f"#value/{key}", "@type": "PropertyValue", "name": key,
                    "value": text, "exampleOfWork": _id(f"#param/{key}")})
        values.append(pv)
        inputs.append(g.add({"@id": f"#param/{key}", "@type": "FormalParameter", "name": key,
                             "additionalType": kind, "workExample": _id(pv)}))
    return inputs, values


def version_of_assay() -> str:
    from importlib.metadata import PackageNotFoundError, version

    from .deploy import DISTRIBUTION

    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:
        return "unknown"


# --- writing ---------------------------------------------------------------------------
def workflow_members() -> list[tuple[str, bytes]]:
    """(crate path, bytes) of the installed workflow: Snakefile, rules, config schema."""
    from .deploy import WORKFLOW_DIR

    out = [(WORKFLOW, (WORKFLOW_DIR / "Snakefile").read_bytes())]
    for sub, pattern in (("rules", "*.smk"), ("schemas", "*.yaml")):
        for path in sorted((WORKFLOW_DIR / sub).glob(pattern)):
            out.append((f"workflow/{sub}/{path.name}", path.read_bytes()))
    return out


def write_crate(study: str | os.PathLike[str], output: str | os.PathLike[str], *,
                configfiles: list[str] = (), replace_config: bool = False,
                license: str | None = None, author: str | None = None,
                figures: list[str] | None = None) -> CrateSummary:
    """Describe the finished study in ``study`` as a Provenance Run Crate zip at ``output``.

    ``figures`` (paths like ``results/plots/contacts/summary.png``) limits the crate to
    the lineage of those figures.
    """
    import zipfile

    from .atomic import atomic_path
    from .bundle import _copy_object_in, _zip_info
    from .inventory import load_study_actions
    from .status import DEFAULT_CONFIGFILE, load_study_config
    from .workflow import WorkflowPlan

    study, output = Path(study), Path(output)
    config = load_study_config(configfiles, study, replace=replace_config)
    plan = WorkflowPlan(config, workdir=study)
    store, results = study / plan.store, study / plan.results
    if not (store / "objects").is_dir():
        raise ArtifactStoreError(f"no store at {store}; run `assay crate` in the study "
                                 "directory (or pass -d DIR)")
    from .store_root import check_store_root

    check_store_root(store, adopt=False)   # never read what is not a store
    config_paths = [Path(f) for f in configfiles]
    if not configfiles or ((study / DEFAULT_CONFIGFILE).is_file() and not replace_config):
        config_paths.insert(0, study / DEFAULT_CONFIGFILE)
    names = [PurePosixPath(p.name).as_posix() for p in config_paths]
    if len(set(names)) != len(names):
        raise CrateError(f"two config files share a name ({names}); rename one")

    entries = _ref_entries(plan, study, results)
    by_name = {e.name: e for e in entries}
    if figures is not None:
        known = {os.path.normpath(p): p for p in plan.plots()}
        known.update({os.path.normpath(_crate_path(plan, p)): p for p in plan.plots()})
        unknown = [f for f in figures if os.path.normpath(f) not in known]
        if unknown:
            raise CrateError(f"{unknown[0]} is not a figure of this study; its figures: "
                             f"{', '.join(plan.plots())}")
        figures = [known[os.path.normpath(f)] for f in figures]
    shown = _figures(plan, study, store, by_name, figures)
    roots = sorted({e.sha256 for e in entries} if figures is None
                   else {f.comparison for f in shown})
    graph = _closure(store, roots)
    for entry in entries:
        if entry.sha256 in graph.manifests:
            _check_identity(entry, graph.manifests[entry.sha256])
    kept = [e for e in entries if e.sha256 in graph.manifests]
    records = {}
    for action in load_study_actions(store, results, kept):
        records[action.sha256] = action.record
    workflow = workflow_members()
    document = build_metadata(plan=plan, config=config, config_files=names, graph=graph,
                              refs=kept, records=records, figures=shown,
                              workflow_files=[p for p, _ in workflow], license=license,
                              author=author)
    metadata = json.dumps(document, indent=1, sort_keys=False, ensure_ascii=False
                          ).encode() + b"\n"

    from .inventory import sidecar_shas

    objects = [(sha, "manifest", graph.raw_sizes[sha]) for sha in sorted(graph.manifests)]
    sidecars = {s: n for m in graph.manifests.values() for s, n in sidecar_shas(m)}
    objects += [(s, "sidecar", sidecars[s]) for s in sorted(sidecars) if s not in graph.manifests]
    members = [(METADATA, metadata), *workflow,
               *((f"config/{n}", p.read_bytes()) for n, p in zip(names, config_paths)),
               *((f.id, f.data) for f in shown)]
    summary = CrateSummary(output, jobs=len(kept) + len(shown), artifacts=len(graph.manifests),
                           objects=len(objects), figures=[f.id for f in shown])
    with atomic_path(output) as tmp:
        with zipfile.ZipFile(tmp, "w", allowZip64=True) as archive:
            for name, data in members:
                archive.writestr(_zip_info(name, len(data), True), data)
            for sha, role, size in objects:   # hashed while copied: damage stops here
                try:
                    summary.bytes += _copy_object_in(archive, store, sha, role, size)
                except ArtifactIntegrityError as exc:   # export's words, this command's
                    raise ArtifactIntegrityError(str(exc).replace(
                        "cannot export:", "cannot write the crate:")) from None
    return summary
