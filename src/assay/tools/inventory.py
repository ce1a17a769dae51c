"""Walking a study's results and what they reach: refs, action records, store stats.

Shared by the catalog, verify, gc, stats and export, so each of them agrees on what a ref
is. The store's own walks (objects, the manifest graph) are ``assay.store.manifests``,
re-exported here for the tools.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ArtifactStoreError
from ..pipeline.layout import REF_DIRS
from ..store.actions import ActionCache
from ..store.objects import ObjectStore
from ..store.hashing import hex_of, is_digest, is_sha256_hex, read_regular
from ..store.refs import MAX_REF_BYTES, Ref, read_ref
from ..store.manifests import (  # the store's walks; tools import them from here too
    ManifestGraph, Progress, check_object, default_jobs, hash_many, input_shas,
    looks_like_manifest, map_batched, no_progress, parse_manifest_bytes, read_or_error,
    read_small, scan_objects, sidecar_shas, sniff_manifests, stat_objects, walk_manifests,
)



# --- refs ------------------------------------------------------------------------------
@dataclass(frozen=True)
class RefEntry:
    path: str                   # the file
    name: str                   # its path relative to the results directory, for people
    digest: str | None          # None when the file could not be read as a ref
    identity: dict[str, Any] = field(default_factory=dict)
    problem: str | None = None

    @property
    def sha256(self) -> str | None:
        return hex_of(self.digest)

    @property
    def ref(self) -> Ref | None:
        return Ref(Path(self.path), self.digest, self.identity) if self.digest else None


def _walk_json(top: Path) -> Iterator[tuple[str, str]]:
    """(path, path relative to ``top``) of every *.json below, sorted, hidden files skipped."""
    top_s = os.fspath(top)
    for dirpath, dirnames, filenames in os.walk(top_s):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        rel = os.path.relpath(dirpath, top_s).replace(os.sep, "/")
        prefix = "" if rel == "." else rel + "/"
        for name in sorted(filenames):
            if name.endswith(".json") and not name.startswith("."):
                yield os.path.join(dirpath, name), prefix + name


def iter_ref_paths(results_dir: Path) -> Iterator[tuple[str, str]]:
    """(path, name relative to results/) of every ref file under results/."""
    results_dir = Path(results_dir)
    for sub in REF_DIRS:
        top = results_dir / sub
        if top.is_dir():
            for path, rel in _walk_json(top):
                yield path, f"{sub}/{rel}"


def _read_ref_entry(item: tuple[str, str], data: bytes | OSError | None = None) -> RefEntry:
    """Read a ref; the common case without pathlib, anything odd through ``read_ref``."""
    path, name = item
    if data is None:
        data = read_or_error(path, MAX_REF_BYTES)
    try:
        body = (json.loads(data) if not isinstance(data, OSError)
                and len(data) <= MAX_REF_BYTES else None)
    except (UnicodeDecodeError, ValueError, RecursionError):
        body = None
    if isinstance(body, dict) and is_digest(body.get("digest")):
        digest = body.pop("digest")
        return RefEntry(path, name, digest, body)
    try:
        ref = read_ref(path)  # for its error message; or it changed under us and now reads
    except ArtifactStoreError as exc:
        return RefEntry(path, name, None, {}, str(exc))
    return RefEntry(path, name, ref.digest, ref.identity)


def load_refs(results_dir: Path, *, jobs: int | None = None) -> list[RefEntry]:
    """Every ref under results/ (runs, replicates, conditions, comparisons), sorted."""
    items = list(iter_ref_paths(results_dir))
    raw = map_batched(lambda item: read_or_error(item[0], MAX_REF_BYTES), items, jobs=jobs)
    return [_read_ref_entry(item, data) for item, data in zip(items, raw)]


def expand_ref_args(paths: Iterable[str | os.PathLike[str]], results_dir: Path) -> list[RefEntry]:
    """Ref files, or directories of ref files, named on a command line (``--root``)."""
    items: list[tuple[str, str]] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            base = _name_base(path, results_dir)
            items.extend((p, f"{base}{rel}") for p, rel in _walk_json(path))
        elif path.is_file():
            items.append((os.fspath(path), _display_name(path, results_dir)))
        else:
            raise ArtifactStoreError(f"{path} is neither a ref file nor a directory of refs")
    return [_read_ref_entry(item) for item in items]


def _display_name(path: Path, results_dir: Path) -> str:
    try:
        return Path(path).resolve().relative_to(Path(results_dir).resolve()).as_posix()
    except ValueError:
        return str(path)


def _name_base(directory: Path, results_dir: Path) -> str:
    name = _display_name(directory, results_dir)
    return "" if name == "." else name.rstrip("/") + "/"


# --- action records --------------------------------------------------------------------
@dataclass(frozen=True)
class ActionEntry:
    key: str
    path: str
    record: dict[str, Any] | None   # None when the file is not a readable record
    raw: bytes = b""

    @property
    def sha256(self) -> str | None:
        digest = (self.record or {}).get("digest")
        return hex_of(digest)

    @property
    def artifact_sha256(self) -> str | None:
        """The manifest this record caches; None for a cached figure (plot stage)."""
        return None if (self.record or {}).get("stage") == "plot" else self.sha256


def _parse_action(path: str, data: bytes | OSError) -> ActionEntry:
    key = os.path.basename(path)[:-5]
    if isinstance(data, OSError):
        return ActionEntry(key, path, None, b"")
    try:
        value = json.loads(data)
    except (UnicodeDecodeError, ValueError, RecursionError):
        value = None
    record = value if isinstance(value, dict) and is_digest(value.get("digest")) else None
    return ActionEntry(key, path, record, data)


def action_paths(store_root: Path) -> list[str]:
    return ActionCache.at(store_root).paths()


def load_actions(store_root: Path, *, jobs: int | None = None) -> list[ActionEntry]:
    """Every action record (unreadable ones with ``record=None``), sorted by key."""
    paths = action_paths(store_root)
    raw = map_batched(lambda p: read_or_error(p, 1 << 20), paths, jobs=jobs)
    return [_parse_action(path, data) for path, data in zip(paths, raw)]


def load_study_actions(store_root: Path, results_dir: Path, refs: list[RefEntry], *,
                       jobs: int | None = None, matching_only: bool = True
                       ) -> list[ActionEntry]:
    """The action records behind a study's refs (``results/.keys``), never a scan of
    store/actions: what a per-study tool reads grows with the study, not with the store.
    A key file whose record names another digest than its ref (a ref imported or rewritten
    since) is skipped; ``matching_only=False`` keeps every record found, readable or not
    (verify reports the bad ones)."""
    from ..pipeline.layout import KEY_SUFFIX, KEYS_DIR, ref_of_key_path

    cache = ActionCache.at(store_root)
    digest_of = {entry.name.replace(os.sep, "/"): entry.digest for entry in refs}
    keys_root = Path(results_dir) / KEYS_DIR
    wanted: dict[str, str | None] = {}     # record path -> the digest of its job's ref
    for dirpath, _, filenames in os.walk(keys_root):   # never into links
        for name in filenames:
            if not name.endswith(KEY_SUFFIX):
                continue   # an atomic write's temp file, or anything else
            path = Path(dirpath) / name
            try:
                key = read_regular(path, 64).decode("ascii", "replace")
            except OSError:
                continue
            if is_sha256_hex(key):   # a job whose ref is gone still names its record
                wanted[str(cache.path_for(key))] = digest_of.get(
                    ref_of_key_path(path.relative_to(keys_root).as_posix()))
    paths = sorted(wanted)
    raw = map_batched(lambda p: read_or_error(p, 1 << 20), paths, jobs=jobs)
    out = []
    for path, data in zip(paths, raw):
        action = _parse_action(path, data)
        if isinstance(data, OSError) and isinstance(data, FileNotFoundError):
            continue
        if not matching_only or (action.record is not None and action.key == action.record.get(
                "key") and wanted[path] is not None and action.record.get("digest") == wanted[path]):
            out.append(action)
    return out


# --- dependents ------------------------------------------------------------------------
def parents_index(manifests: dict[str, dict[str, Any]]) -> dict[str, set[str]]:
    """object sha -> manifests that name it as a sidecar or an input."""
    parents: dict[str, set[str]] = {}
    for sha, manifest in manifests.items():
        for child, _ in sidecar_shas(manifest):
            parents.setdefault(child, set()).add(sha)
        for child in input_shas(manifest):
            parents.setdefault(child, set()).add(sha)
    return parents


def dependents(start: Iterable[str], parents: dict[str, set[str]]) -> set[str]:
    """Every manifest that depends on any of ``start``, directly or through inputs."""
    out: set[str] = set()
    pending = list(start)
    while pending:
        sha = pending.pop()
        for parent in parents.get(sha, ()):
            if parent not in out:
                out.add(parent)
                pending.append(parent)
    return out


# --- stats -----------------------------------------------------------------------------
def store_stats(store_root: Path, results_dir: Path, *, jobs: int | None = None,
                progress: Progress = no_progress, rescan: bool = False) -> dict[str, Any]:
    """Objects and bytes; artifacts by type; how much deduplication saves.

    ``dedup_ratio`` = bytes the artifacts name (each manifest plus each sidecar it lists,
    counted once per artifact) / bytes those objects take on disk, each stored once.

    Objects, their sizes and which are manifests come from the object index
    (assay.store.object_index): one read, not a stat and an open per object. Without an index
    (a store older than it) every object is listed and every JSON-looking one read, and
    ``note`` says so; ``rescan`` does that on purpose and writes the index from it.
    """
    from ..store import object_index
    from ..store.sharing import SharingPolicy

    store_root = Path(store_root)
    refs = load_refs(results_dir, jobs=jobs)
    actions = action_paths(store_root)
    graph = walk_manifests(store_root, [r.sha256 for r in refs if r.sha256], verify=False,
                           jobs=jobs, progress=progress, stage="stats")
    # sha -> (artifact type, sidecars); the reachable ones as read, the rest as found
    typed: dict[str, tuple[str, list[tuple[str, int | None]]]] = {
        sha: (str(m.get("artifact_type")), sidecar_shas(m)) for sha, m in graph.manifests.items()}
    known = set(typed)
    for _, sidecars in list(typed.values()):
        known.update(s for s, _ in sidecars)
    live = set(known)
    note = None
    sharing = SharingPolicy.for_store(store_root, check_world_writable=False)
    loaded, unusable = object_index.load_unless_rescan(store_root, sharing, rescan=rescan)
    if loaded is not None:
        source = "index"
        sizes = {sha: e.size for sha, e in loaded.entries.items()}
        for sha, entry in loaded.entries.items():
            if sha not in known and entry.kind == object_index.MANIFEST:
                typed[sha] = (str(entry.artifact_type), list(entry.sidecars))
        note = loaded.note()
    elif rescan:
        source = "rescan"
        entries, offsets = object_index.rebuild(
            store_root, ObjectStore(store_root).scan, jobs=jobs, progress=progress)
        sizes = {sha: e.size for sha, e in entries.items()}
        for sha, entry in entries.items():
            if sha not in known and entry.kind == object_index.MANIFEST:
                typed[sha] = (str(entry.artifact_type), list(entry.sidecars))
        try:
            with object_index.CompactionLock(store_root, sharing):
                object_index.compact(store_root, entries, offsets, sharing)
        except object_index.Busy as busy:
            note = f"the rebuilt index was not written: a gc holds {busy}; run it again"
        except OSError as exc:
            note = f"the rebuilt index was not written ({exc})"
    else:
        source = "scan"
        note = ("this store has no object index (it was written before assay kept one), so "
                "every object was listed and read; `assay gc --rescan` (or `assay stats "
                "--rescan`) builds the index once") if unusable is None else (
                f"the object index cannot be read ({unusable}), so every object was listed "
                "and read; `assay gc --rescan` rewrites it")
        objects = scan_objects(store_root)
        sizes = {sha: o.size_bytes for sha, o in objects.items()}
        for sha, (manifest, _) in sniff_manifests(
                [o for s, o in objects.items() if s not in known], jobs=jobs,
                progress=progress).items():
            typed[sha] = (str(manifest.get("artifact_type")), sidecar_shas(manifest))
    by_type: dict[str, int] = {}
    logical = 0
    named: set[str] = set()
    for sha, (kind, sidecars) in typed.items():
        by_type[kind] = by_type.get(kind, 0) + 1
        logical += sizes.get(sha, 0)
        named.add(sha)
        for child, size in sidecars:
            logical += size or 0
            named.add(child)
    physical = sum(sizes[s] for s in named if s in sizes)
    live_sizes = [size for s, size in sizes.items() if s in live]
    total = sum(sizes.values())
    return {
        "objects": len(sizes),
        "bytes": total,
        "artifacts": len(typed),
        "artifacts_by_type": dict(sorted(by_type.items())),
        "refs": len(refs),
        "broken_refs": sum(1 for r in refs if r.digest is None or r.sha256 in graph.missing),
        "action_records": len(actions),
        "live_objects": len(live_sizes),
        "live_bytes": sum(live_sizes),
        "unreferenced_objects": len(sizes) - len(live_sizes),
        "unreferenced_bytes": total - sum(live_sizes),
        "logical_bytes": logical,
        "physical_bytes": physical,
        "dedup_ratio": round(logical / physical, 4) if physical else 1.0,
        "objects_from": source,
        "note": note,
    }
