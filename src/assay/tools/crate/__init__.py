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
from pathlib import Path, PurePosixPath
from typing import Any

from ...errors import ArtifactIntegrityError, ArtifactStoreError
from .metadata import (CrateError, METADATA, WORKFLOW, _Figure, build_metadata)

__all__ = ["CrateError", "CrateSummary", "write_crate", "workflow_members"]


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
def _ref_entries(plan: Any, study: Path, results: Path) -> list[Any]:
    from ..inventory import expand_ref_args

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
    from ...pipeline.proofs import describe, manifest_identity, mismatch, ref_path_identity

    actual = manifest_identity(manifest)
    for claimed in (ref_path_identity(entry.name) or {}, entry.identity):
        problem = mismatch(claimed, actual)
        if problem:
            raise CrateError(f"ref {entry.name} names {describe(actual)} ({entry.digest}): "
                             f"{problem}; run `assay verify`, then snakemake")


def _closure(store: Path, roots: list[str]) -> Any:
    from ...store.artifacts import artifact_from_manifest
    from ..inventory import walk_manifests

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


def _figures(plan: Any, study: Path, store: Path, refs: dict[str, Any],
             wanted: list[str] | None) -> list[_Figure]:
    """Each figure, proven by its plot job's action record (keyed by the current plan's
    spec and the comparison's digest) to be what that job drew."""
    from ...store.actions import ActionCache
    from ...pipeline.plotting import figure_action_key, with_looks
    from ...pipeline.workflow import spec_json

    from ...store.sharing import SharingPolicy

    cache = ActionCache.at(store, SharingPolicy.for_store(store, plan.sharing))
    out = []
    for analysis in plan.study.analyses:
        comparison = refs[_results_name(plan, plan.comparison_ref(analysis))]
        # an adaptive study's figures are keyed with its look decisions, as the plot job did
        spec = with_looks(spec_json(plan.spec("plot", _Wildcards(analysis))),
                          plan.decided_look_paths())
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


# --- writing ---------------------------------------------------------------------------
def workflow_members() -> list[tuple[str, bytes]]:
    """(crate path, bytes) of the installed workflow: Snakefile, rules, config schema."""
    from ...deploy import WORKFLOW_DIR

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

    from ...store.atomic import atomic_path
    from ..bundle import copy_object_into_zip, zip_member_info
    from ..inventory import load_study_actions
    from ..status import DEFAULT_CONFIGFILE, load_study_config
    from ...pipeline.workflow import WorkflowPlan

    study, output = Path(study), Path(output)
    config = load_study_config(configfiles, study, replace=replace_config)
    plan = WorkflowPlan(config, workdir=study)
    store, results = study / plan.store, study / plan.results
    from ...store.store_root import check_store_root, has_objects

    if not has_objects(store):
        raise ArtifactStoreError(f"no store at {store}; run `assay crate` in the study "
                                 "directory (or pass -d DIR)")

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

    from ..inventory import sidecar_shas

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
                archive.writestr(zip_member_info(name, len(data), True), data)
            for sha, role, size in objects:   # hashed while copied: damage stops here
                try:
                    summary.bytes += copy_object_into_zip(archive, store, sha, role, size)
                except ArtifactIntegrityError as exc:   # export's words, this command's
                    raise ArtifactIntegrityError(str(exc).replace(
                        "cannot export:", "cannot write the crate:")) from None
    return summary
