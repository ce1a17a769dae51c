"""The JSON-LD graph of a study's crate: pure functions of what `assay.tools.crate` gathered.

RO-Crate 1.1 context (the one the Provenance Run Crate 0.5 shapes are written against),
plus two terms it lacks. Entities are sorted by @id and lists by value, and no clock is
read, so the same study gives the same bytes.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import PurePosixPath
from typing import Any

from ...errors import AssayError
from ..bundle import OBJECTS_PREFIX

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
STAGES = ("run", "collect", "aggregate", "compare", "look", "plot")   # look: adaptive studies
RULE_FILES = {"run": "run.smk", "collect": "collect.smk", "aggregate": "aggregate.smk",
              "compare": "compare.smk", "plot": "plot.smk", "look": "look.smk"}
FIGURE_TYPES = {".png": "image/png", ".svg": "image/svg+xml", ".pdf": "application/pdf"}
# Config keys that are places on this machine, not parameters of the computation.
_PATH_KEYS = ("store", "results")


class CrateError(AssayError):
    """The study cannot be described truthfully (unfinished, damaged, stale figures)."""


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


@dataclass(frozen=True)
class _Figure:
    id: str                        # its path in the crate: results/plots/<analysis>/<name>
    analysis: str
    data: bytes
    record: dict[str, Any]         # the plot job's action record
    comparison: str                # sha256 of the comparison it was drawn from
    spec: dict[str, Any]           # the plot job's spec (plugin, code digests)


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
                         "name": "numeric environment (assay.pipeline.numerics)",
                         "propertyID": "assay-numerics",
                         "value": json.dumps(numerics, sort_keys=True)})]
        for name, value in sorted((numerics.get("env") or {}).items()):
            out.append(self.add({"@id": f"#env/{name}={value}", "@type": "PropertyValue",
                                 "name": name, "value": str(value)}))
        return _ids(out)


def _artifact_name(manifest: dict[str, Any]) -> str:
    from ...pipeline.proofs import describe, manifest_identity

    return describe(manifest_identity(manifest))


def build_metadata(*, plan: Any, config: dict[str, Any], config_files: list[str],
                   graph: Any, refs: list[Any], records: dict[str, dict[str, Any]],
                   figures: list[_Figure],
                   workflow_files: list[str], license: str | None,
                   author: str | None = None) -> dict[str, Any]:
    """The JSON-LD document (a dict): pure, so the same inputs give the same bytes."""
    from importlib.metadata import version

    from ..inventory import sidecar_shas

    g = _Graph()
    manifest_of = graph.manifests
    for sha, manifest in sorted(manifest_of.items()):
        name = _artifact_name(manifest)
        g.add({"@id": f"{OBJECTS_PREFIX}{sha}", "@type": "File",
               "name": f"{name} (manifest)", "encodingFormat": "application/json",
               "contentSize": str(graph.raw_sizes[sha]), "sha256": sha,
               "identifier": f"sha256:{sha}"})
        for side in manifest.get("sidecars") or []:
            g.add({"@id": f"{OBJECTS_PREFIX}{side['sha256']}", "@type": "File",
                   "name": f"{side['path']} of {name}",
                   "encodingFormat": side.get("media_type") or "application/octet-stream",
                   "contentSize": str(side["size_bytes"]), "sha256": side["sha256"],
                   "identifier": f"sha256:{side['sha256']}"})
    for entry in refs:   # the ref path is the artifact's name in results/
        entity = g.entities.get(f"{OBJECTS_PREFIX}{entry.sha256}")
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
        outputs = [f"{OBJECTS_PREFIX}{entry.sha256}"] + [f"{OBJECTS_PREFIX}{s}" for s, _ in
                                                 sidecar_shas(manifest)]
        inputs = [f"{OBJECTS_PREFIX}{s}" for s in sorted(_input_shas(manifest))]
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
                         [f"{OBJECTS_PREFIX}{fig.comparison}"], [fig.id], fig.record))

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
    final = sorted({f.id for f in figures} | {f"{OBJECTS_PREFIX}{e.sha256}" for e in refs
                   if e.name.startswith("comparisons/") and e.sha256 in manifest_of})
    outputs = []
    for item in final:
        name = item if not item.startswith(OBJECTS_PREFIX) else g.entities[item]["alternateName"]
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
    from ..inventory import input_shas

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

    from ...deploy import DISTRIBUTION

    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:
        return "unknown"
