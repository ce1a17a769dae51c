"""Check a store against its refs, and repair it so the workflow recomputes what is lost.

What is checked: every ref under results/ parses and names an artifact manifest; every
manifest reachable from a ref or an action record is intact and valid, and so is every
sidecar it names (size and SHA-256); where an artifact's plugin declares a
``check_consistency``, that its payload agrees with its intact sidecars (the OpenMM
runner: frames and atoms across payload, DCD, state table and PDB). ``full`` also hashes
every other object.

What ``repair`` removes, and why exactly that: the damaged objects; the refs of the
artifacts whose own bytes (manifest or sidecar) are damaged; their action records; and
the catalog (a stale index; the workflow's catalog rule depends on every ref, so without it
a plain ``snakemake`` notices the missing refs). ``snakemake <the removed refs>`` then
recomputes exactly those jobs (their action-cache lookups miss) and rewrites the refs with
the same bytes, so a later plain ``snakemake`` reruns nothing downstream but the catalog.
(A plain ``snakemake`` right away also recomputes them; it reruns their downstream jobs
too, as action-cache hits, because Snakemake schedules downstream of any job it runs.)

Until the workflow has run, the removed artifacts are still named as inputs downstream, so
verify reports them as missing, "awaiting recompute" (no ref and no action record names
them any more). Repair does nothing more for those: repeated repairs never cascade into
removing downstream refs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..store.artifacts import artifact_from_manifest
from ..store.actions import ActionCache
from ..errors import ArtifactSchemaError, ArtifactStoreError
from ..store.hashing import format_digest, parse_digest
from .inventory import (
    ActionEntry,
    Progress,
    RefEntry,
    check_object,
    dependents,
    hash_many,
    input_shas,
    load_actions,
    load_study_actions,
    load_refs,
    no_progress,
    parents_index,
    scan_objects,
    sidecar_shas,
    walk_manifests,
)
from ..store.objects import ObjectStore
from ..store.sharing import SharingPolicy, SharingSettings


@dataclass
class Damage:
    """One damaged object and everything that depends on it."""

    sha256: str
    problem: str
    role: str                                   # manifest | sidecar | object
    awaiting_recompute: bool = False            # missing, and nothing but inputs name it
    artifacts: list[str] = field(default_factory=list)   # digests, the owner(s) first
    refs: list[str] = field(default_factory=list)        # ref names under results/
    actions: list[str] = field(default_factory=list)     # action keys

    def to_dict(self) -> dict[str, Any]:
        return {"object": format_digest(self.sha256), "problem": self.problem,
                "role": self.role, "awaiting_recompute": self.awaiting_recompute,
                "artifacts": self.artifacts, "refs": self.refs, "actions": self.actions}


@dataclass
class Repair:
    objects: list[str] = field(default_factory=list)
    refs: list[str] = field(default_factory=list)      # names under results/
    actions: list[str] = field(default_factory=list)
    catalog: bool = False                               # results/catalog.duckdb removed

    def to_dict(self) -> dict[str, Any]:
        return {"objects": self.objects, "refs": self.refs, "actions": self.actions,
                "catalog": self.catalog}


@dataclass
class VerifyReport:
    full: bool
    refs_checked: int = 0
    artifacts_checked: int = 0
    objects_hashed: int = 0
    bytes_hashed: int = 0
    damaged: list[Damage] = field(default_factory=list)
    bad_refs: dict[str, str] = field(default_factory=dict)        # ref name -> problem
    bad_manifests: dict[str, str] = field(default_factory=dict)   # digest -> problem
    bad_actions: dict[str, str] = field(default_factory=dict)     # key -> problem
    untrusted_actions: dict[str, str] = field(default_factory=dict)  # key -> who wrote it
    labels: dict[str, str] = field(default_factory=dict)          # digest -> "type a/c/r"
    plan: Repair = field(default_factory=Repair)                  # what repair removes
    repaired: Repair | None = None

    @property
    def ok(self) -> bool:
        return not (self.damaged or self.bad_refs or self.bad_manifests or self.bad_actions
                    or self.untrusted_actions)

    @property
    def unrepaired(self) -> dict[str, str]:
        """Problems that repair does not touch (valid bytes this assay cannot read)."""
        return dict(self.bad_manifests)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok, "full": self.full, "refs_checked": self.refs_checked,
            "artifacts_checked": self.artifacts_checked,
            "objects_hashed": self.objects_hashed, "bytes_hashed": self.bytes_hashed,
            "damaged": [d.to_dict() for d in self.damaged], "bad_refs": self.bad_refs,
            "bad_manifests": self.bad_manifests, "bad_actions": self.bad_actions,
            "untrusted_actions": self.untrusted_actions,
            "labels": self.labels, "repair_plan": self.plan.to_dict(),
            "repaired": self.repaired.to_dict() if self.repaired else None,
        }


def _label(manifest: dict[str, Any]) -> str:
    parts = [str(manifest.get(k)) for k in ("analysis_name", "condition_label", "replicate")
             if manifest.get(k) is not None]
    return f"{manifest.get('artifact_type')} {'/'.join(parts)}"


def verify_store(store_root: str | os.PathLike[str], results_dir: str | os.PathLike[str], *,
                 full: bool = False, jobs: int | None = None,
                 progress: Progress = no_progress,
                 sharing: SharingSettings | None = None,
                 store_wide: bool = False) -> VerifyReport:
    """``sharing`` (default: from the environment) decides whose action records are
    trusted; records by anyone else are reported (jobs ignore them and recompute).

    By default the study's view: its refs, what they reach, and the action records behind
    them (results/.keys), at a cost that grows with the study. ``store_wide`` also checks
    every other action record of the store and the artifacts they name."""
    from ..store.store_root import check_store_root

    store_root, results_dir = Path(store_root), Path(results_dir)
    check_store_root(store_root, adopt=False)
    report = VerifyReport(full=full)
    policy = SharingPolicy.for_store(store_root, sharing, check_world_writable=False)
    refs = load_refs(results_dir)
    actions = (load_actions(store_root) if store_wide else
               load_study_actions(store_root, results_dir, refs, matching_only=False))
    report.refs_checked = len(refs)
    for entry in refs:
        if entry.digest is None:
            report.bad_refs[entry.name] = entry.problem or "unreadable"
    for action in actions:
        if os.path.islink(action.path):
            report.bad_actions[action.key] = ("is a symbolic link, not a record: jobs never "
                                              "follow it (it would serve another key's "
                                              "artifact)")
            continue
        if action.record is None:
            report.bad_actions[action.key] = "is not a readable action record"
            continue
        if action.record.get("key") != action.key:
            report.bad_actions[action.key] = (
                f"says it is the record of key {action.record.get('key')!r}, not of its own: "
                "copied from another key; jobs ignore it")
            continue
        try:
            uid = os.stat(action.path).st_uid
        except FileNotFoundError:
            continue
        if not policy.is_trusted(uid):
            report.untrusted_actions[action.key] = (
                f"written by {policy.writer(uid)}, who is not trusted (trusted: "
                f"{policy.trusted_description()}); jobs ignore it and recompute")

    roots = ([e.sha256 for e in refs if e.sha256]
             + [a.artifact_sha256 for a in actions if a.artifact_sha256])
    graph = walk_manifests(store_root, roots, verify=True, jobs=jobs, progress=progress,
                           stage="verify manifests")
    manifests: dict[str, dict[str, Any]] = {}
    for sha, manifest in graph.manifests.items():
        report.labels[format_digest(sha)] = _label(manifest)
        try:
            artifact_from_manifest(manifest, where=f"artifact {format_digest(sha)}")
        except ArtifactSchemaError as exc:
            report.bad_manifests[format_digest(sha)] = str(exc)
            continue
        manifests[sha] = manifest
    for entry in refs:
        manifest = manifests.get(entry.sha256 or "")
        problem = _ref_identity_problem(entry, manifest) if manifest is not None else None
        if problem:
            report.bad_refs[entry.name] = problem
    report.artifacts_checked = len(graph.manifests)
    report.objects_hashed = len(graph.manifests) + len(graph.damaged)
    report.bytes_hashed = sum(graph.raw_sizes.values())

    problems: dict[str, tuple[str, str]] = {}     # sha -> (role, problem)
    for sha in graph.missing:
        problems[sha] = ("manifest", "is missing")
    for sha, problem in graph.damaged.items():
        problems[sha] = ("manifest", problem)
    for entry in refs:
        if entry.sha256 in graph.not_manifest:
            report.bad_refs[entry.name] = (f"points to {entry.digest}, which "
                                           f"{graph.not_manifest[entry.sha256]}")
    for sha, manifest in manifests.items():
        for child in input_shas(manifest):
            if child in graph.not_manifest:
                report.bad_manifests[format_digest(sha)] = (
                    f"input sha256:{child} {graph.not_manifest[child]}")

    # Sidecars: hash each once, then compare with the size every manifest declares.
    declared: dict[str, list[tuple[str, int | None]]] = {}
    for sha, manifest in manifests.items():
        for child, size in sidecar_shas(manifest):
            declared.setdefault(child, []).append((sha, size))
    todo = sorted(s for s in declared if s not in graph.manifests and s not in problems)
    object_store = ObjectStore(store_root)
    sizes: dict[str, int] = {}
    for sha in todo:
        try:
            sizes[sha] = object_store.path_for(sha).stat().st_size
        except OSError:
            sizes[sha] = -1
    hashed = hash_many(((s, object_store.path_for(s), None) for s in todo), jobs=jobs,
                       progress=progress, stage="verify sidecars")
    report.objects_hashed += len(todo)
    report.bytes_hashed += sum(max(0, sizes[s]) for s in todo)
    for sha, problem in hashed.items():
        problems[sha] = ("sidecar", problem)
    for sha in todo:
        if sha in problems:
            continue
        for owner, size in declared[sha]:
            if size is not None and size != sizes[sha]:
                report.bad_manifests[format_digest(owner)] = (
                    f"declares {size} bytes for sidecar sha256:{sha}, which has {sizes[sha]}")

    if full:
        objects = scan_objects(store_root)
        rest = sorted(s for s in objects if s not in graph.manifests and s not in declared
                      and s not in problems)
        hashed = hash_many(((s, objects[s].path, None) for s in rest), jobs=jobs,
                           progress=progress, stage="verify objects")
        report.objects_hashed += len(rest)
        report.bytes_hashed += sum(objects[s].size_bytes for s in rest)
        for sha, problem in hashed.items():
            problems[sha] = ("object", problem)

    for sha, problem in _inconsistencies(manifests, problems, object_store).items():
        problems[sha] = ("consistency", problem)

    _attach_dependents(report, problems, manifests, refs, actions)
    return report


def _ref_identity_problem(entry: RefEntry, manifest: dict[str, Any]) -> str | None:
    """A ref must name the artifact its place says (runs/free/1.json: run free/1), and the
    identity it records must be that artifact's."""
    from ..pipeline.proofs import describe, manifest_identity, mismatch, ref_path_identity

    actual = manifest_identity(manifest)
    expected = ref_path_identity(entry.name.replace(os.sep, "/"))
    for claimed, by in ((expected, "its place under results/"), (entry.identity, "its content")):
        if claimed and mismatch(claimed, actual):
            return (f"names {entry.digest}, which is {describe(actual)}, but {by} says "
                    f"{describe(claimed)}: a forged or mismatched ref; jobs refuse it, and "
                    "--repair removes it so the workflow recomputes it")
    return None


def _inconsistencies(manifests: dict[str, dict[str, Any]],
                     problems: dict[str, tuple[str, str]],
                     objects: ObjectStore) -> dict[str, str]:
    """Artifacts whose payload and intact sidecars disagree, by the check their plugin
    declares (``check_consistency(payload, {sidecar stem: path}) -> [problem, ...]``):
    bytes that hash right can still be wrong, e.g. a DCD two attempts appended to."""
    from ..pipeline.plugins import resolve_analysis, resolve_runner

    out: dict[str, str] = {}
    checks: dict[tuple[str, str], Any] = {}
    for sha, manifest in manifests.items():
        kind = manifest.get("artifact_type")
        plugin = (manifest.get("provenance") or {}).get("plugin")
        if kind not in ("run", "replicate") or not isinstance(plugin, str):
            continue
        if (kind, plugin) not in checks:
            try:
                owner = resolve_runner(plugin) if kind == "run" else resolve_analysis(plugin)
                checks[kind, plugin] = getattr(owner, "check_consistency", None)
            except Exception:   # not importable here: nothing to check with
                checks[kind, plugin] = None
        check = checks[kind, plugin]
        if check is None or any(s in problems for s, _ in sidecar_shas(manifest)):
            continue
        paths = {Path(str(entry.get("path", ""))).stem: objects.path_for(entry["sha256"])
                 for entry in manifest.get("sidecars", []) if isinstance(entry, dict)
                 and isinstance(entry.get("sha256"), str)}
        try:
            found = check(manifest.get("payload") or {}, paths)
        except Exception as exc:   # a check that breaks says so; it does not hide damage
            found = [f"its consistency check failed: {type(exc).__name__}: {exc}"]
        if found:
            out[sha] = "payload and sidecars disagree: " + "; ".join(found)
    return out


def _attach_dependents(report: VerifyReport, problems: dict[str, tuple[str, str]],
                       manifests: dict[str, dict[str, Any]], refs: list[RefEntry],
                       actions: list[ActionEntry]) -> None:
    parents = parents_index(manifests)
    refs_by_sha: dict[str, list[str]] = {}
    for entry in refs:
        if entry.sha256:
            refs_by_sha.setdefault(entry.sha256, []).append(entry.name)
    actions_by_sha: dict[str, list[str]] = {}
    for action in actions:
        if action.sha256:
            actions_by_sha.setdefault(action.sha256, []).append(action.key)

    direct: set[str] = set()      # artifacts whose own bytes are damaged
    for sha in sorted(problems):
        role, problem = problems[sha]
        if role in ("manifest", "consistency"):
            owners = {sha}
        else:
            owners = {p for p in parents.get(sha, ())
                      if sha in {s for s, _ in sidecar_shas(manifests[p])}}
        direct |= owners
        # Users of a damaged artifact (through inputs) depend on it too.
        affected = owners | dependents(owners, parents)
        ordered = sorted(owners) + sorted(affected - owners)
        awaiting = (problem == "is missing" and bool(owners) and not any(
            refs_by_sha.get(o) or actions_by_sha.get(o) for o in owners))
        report.damaged.append(Damage(
            sha, problem, role, awaiting,
            artifacts=[format_digest(a) for a in ordered],
            refs=sorted({r for a in ordered for r in refs_by_sha.get(a, ())}),
            actions=sorted({k for a in ordered for k in actions_by_sha.get(a, ())})))

    plan = report.plan
    plan.objects = sorted(format_digest(s) for s, (role, p) in problems.items()
                          if p != "is missing" and role != "consistency")
    plan.refs = sorted({r for a in direct for r in refs_by_sha.get(a, ())} | set(report.bad_refs))
    plan.actions = sorted({k for a in direct for k in actions_by_sha.get(a, ())}
                          | set(report.bad_actions) | set(report.untrusted_actions))


def repair_store(store_root: str | os.PathLike[str], results_dir: str | os.PathLike[str],
                 report: VerifyReport) -> Repair:
    """Carry out ``report.plan``: action records first, then refs, then objects.

    Action records go first so that a job starting meanwhile never takes a cache hit on
    an artifact whose bytes are about to disappear.
    """
    store_root, results_dir = Path(store_root), Path(results_dir)
    done = Repair()
    objects = ObjectStore(store_root)
    actions = ActionCache.at(store_root, objects.sharing)
    for key in report.plan.actions:
        with objects.sharing.writing(actions.path_for(key)):
            removed = _unlink(actions.path_for(key), store_root)
        if removed:
            done.actions.append(key)
    for name in report.plan.refs:
        if _unlink(results_dir / name, results_dir):
            done.refs.append(name)
    for digest in report.plan.objects:
        sha = parse_digest(digest)
        path = objects.path_for(sha)
        if check_object(path, sha) is None:
            continue  # replaced by an intact copy since the check (a job rewrote it)
        with objects.sharing.writing(path):
            removed = _unlink(path, store_root)
        if removed:
            done.objects.append(digest)
            from ..store.object_index import note_gone

            note_gone(store_root, [sha], objects.sharing)
    if done.refs or done.objects:
        from .catalog import CATALOG_NAME

        done.catalog = _unlink(results_dir / CATALOG_NAME, results_dir)
    report.repaired = done
    return done


def _unlink(path: Path, base: Path) -> bool:
    """Remove a damaged file, never through a link: every folder from ``base`` down to it
    must be a real directory. A directory in its place is left (named, not removed)."""
    import stat

    folder = path.parent
    while True:
        try:
            if not stat.S_ISDIR(os.lstat(folder).st_mode):
                return False   # a link or a file in place of a folder: nothing of ours in it
        except FileNotFoundError:
            return False
        if folder == base or folder == folder.parent:
            break
        folder = folder.parent
    try:
        path.unlink()
        return True
    except (FileNotFoundError, NotADirectoryError):
        return False
    except IsADirectoryError:
        raise ArtifactStoreError(f"{path} is a directory where assay keeps a file; remove it "
                                 f"by hand (rm -r {path}) and run `assay verify --repair` again"
                                 ) from None
