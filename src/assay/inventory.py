"""Walking a store and its results: refs, action records, objects and the manifest graph.

Shared by the catalog, verify, gc, stats and export, so each of them agrees on what a
ref is, what a manifest is and what an artifact depends on.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ArtifactStoreError
from .hashing import DIGEST_PREFIX, is_digest, is_sha256_hex
from .refs import Ref, read_ref

# The directories under results/ whose *.json files are refs (plots/ and the catalog are not).
REF_DIRS = ("runs", "replicates", "conditions", "comparisons")
MAX_MANIFEST_BYTES = 64 * 1024 * 1024
SMALL_OBJECT = 1 << 20
HASH_CHUNK = 1 << 20

Progress = Callable[[str, int, "int | None"], None]


def default_jobs() -> int:
    return min(32, (os.cpu_count() or 1) * 4)


def no_progress(stage: str, done: int, total: int | None) -> None:
    pass


# --- objects ---------------------------------------------------------------------------
@dataclass(frozen=True)
class ObjectInfo:
    sha256: str
    size_bytes: int
    mtime_ns: int
    path: Path


def scan_objects(store_root: Path) -> dict[str, ObjectInfo]:
    """Every file under objects/ named by its digest, with size and mtime (one stat each)."""
    objects_dir = Path(store_root) / "objects"
    found: dict[str, ObjectInfo] = {}
    if not objects_dir.is_dir():
        return found
    with os.scandir(objects_dir) as shards:
        shard_paths = sorted((e.name, e.path) for e in shards
                             if e.is_dir(follow_symlinks=False) and len(e.name) == 2)
    for shard_name, shard_path in shard_paths:
        with os.scandir(shard_path) as entries:
            for entry in entries:
                name = entry.name
                if name[:2] != shard_name or not is_sha256_hex(name):
                    continue
                st = entry.stat(follow_symlinks=False)
                found[name] = ObjectInfo(name, st.st_size, st.st_mtime_ns, Path(entry.path))
    return found


def object_path(store_root: Path, sha256: str) -> Path:
    return Path(store_root) / "objects" / sha256[:2] / sha256


def hash_path(path: Path) -> tuple[str, int]:
    """SHA-256 hex and size. Small files in one read (no big buffer to allocate per call)."""
    with open(path, "rb", buffering=0) as handle:
        data = handle.read(SMALL_OBJECT + 1)
        digest = hashlib.sha256(data)
        size = len(data)
        if size > SMALL_OBJECT:
            buffer = bytearray(HASH_CHUNK)
            view = memoryview(buffer)
            while n := handle.readinto(buffer):
                digest.update(view[:n])
                size += n
    return digest.hexdigest(), size


def check_object(path: Path, sha256: str, size: int | None = None) -> str | None:
    """None if the object is intact, else what is wrong with it (missing, size, bytes)."""
    try:
        actual, actual_size = hash_path(path)
    except FileNotFoundError:
        return "is missing"
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    if size is not None and actual_size != size:
        return f"has {actual_size} bytes, expected {size}"
    if actual != sha256:
        return f"has different bytes (sha256:{actual})"
    return None


def hash_many(items: Iterable[tuple[str, Path, int | None]], *, jobs: int | None = None,
              progress: Progress = no_progress, stage: str = "hash") -> dict[str, str]:
    """Check many objects in parallel (hashlib releases the GIL); {sha256: problem}."""
    todo = list(items)
    problems: dict[str, str] = {}
    if not todo:
        return problems
    with ThreadPoolExecutor(max_workers=jobs or default_jobs()) as pool:
        results = pool.map(lambda item: check_object(item[1], item[0], item[2]), todo,
                           chunksize=64)
        for i, (item, problem) in enumerate(zip(todo, results), 1):
            if problem is not None:
                problems[item[0]] = problem
            if i % 256 == 0 or i == len(todo):
                progress(stage, i, len(todo))
    return problems


# --- manifests -------------------------------------------------------------------------
def looks_like_manifest(value: Any) -> bool:
    return isinstance(value, dict) and "schema_version" in value and "artifact_type" in value


def parse_manifest_bytes(data: bytes) -> dict[str, Any] | None:
    """The decoded manifest, or None if these bytes are not one (a sidecar, say)."""
    if not data.startswith(b"{"):
        return None
    try:
        value = json.loads(data)
    except (UnicodeDecodeError, ValueError):
        return None
    return value if looks_like_manifest(value) else None


def read_small(path: Path, limit: int = MAX_MANIFEST_BYTES) -> bytes | None:
    """The bytes of a file if it is at most ``limit`` bytes and starts like JSON."""
    try:
        with open(path, "rb", buffering=0) as handle:
            head = handle.read(65536)
            if not head.startswith(b"{"):
                return None
            if len(head) < 65536:
                return head
            rest = handle.read(limit + 1 - len(head))
    except (FileNotFoundError, IsADirectoryError):
        return None
    data = head + rest
    return None if len(data) > limit else data


def sidecar_shas(manifest: dict[str, Any]) -> list[tuple[str, int | None]]:
    out = []
    for item in manifest.get("sidecars") or []:
        if isinstance(item, dict) and is_sha256_hex(item.get("sha256")):
            size = item.get("size_bytes")
            out.append((item["sha256"], size if isinstance(size, int) else None))
    return out


def input_shas(manifest: dict[str, Any]) -> list[str]:
    out = []
    for item in manifest.get("inputs") or []:
        digest = item.get("digest") if isinstance(item, dict) else item
        if is_digest(digest):
            out.append(digest[len(DIGEST_PREFIX):])
    return out


@dataclass
class ManifestGraph:
    """Manifests reachable from some roots, following inputs; what could not be read."""

    manifests: dict[str, dict[str, Any]] = field(default_factory=dict)
    raw_sizes: dict[str, int] = field(default_factory=dict)
    missing: set[str] = field(default_factory=set)          # no object with this name
    not_manifest: dict[str, str] = field(default_factory=dict)  # object is there, not a manifest
    damaged: dict[str, str] = field(default_factory=dict)   # bytes do not match the name

    def children(self, sha256: str) -> list[str]:
        manifest = self.manifests.get(sha256)
        if manifest is None:
            return []
        return [s for s, _ in sidecar_shas(manifest)] + input_shas(manifest)


def _load_one(store_root: Path, sha256: str, verify: bool) -> tuple[str, Any, int]:
    path = object_path(store_root, sha256)
    try:
        with open(path, "rb", buffering=0) as handle:
            data = handle.read(MAX_MANIFEST_BYTES + 1)
    except FileNotFoundError:
        return "missing", None, 0
    except (IsADirectoryError, PermissionError) as exc:
        return "not_manifest", f"cannot be read ({exc})", 0
    if len(data) > MAX_MANIFEST_BYTES:
        return "not_manifest", f"is larger than {MAX_MANIFEST_BYTES} bytes", len(data)
    if verify:
        actual = hashlib.sha256(data).hexdigest()
        if actual != sha256:
            return "damaged", f"has different bytes (sha256:{actual})", len(data)
    return "data", data, len(data)


def walk_manifests(store_root: Path, roots: Iterable[str], *, verify: bool = True,
                   jobs: int | None = None, progress: Progress = no_progress,
                   stage: str = "read manifests") -> ManifestGraph:
    """Breadth-first from root digests (``sha256:<hex>`` or hex) through manifest inputs.

    Reads happen on a thread pool; JSON is parsed on the calling thread.
    """
    graph = ManifestGraph()
    frontier = sorted({r[len(DIGEST_PREFIX):] if r.startswith(DIGEST_PREFIX) else r
                       for r in roots})
    seen: set[str] = set(frontier)
    done = 0
    with ThreadPoolExecutor(max_workers=jobs or default_jobs()) as pool:
        while frontier:
            next_frontier: list[str] = []
            loaded = pool.map(lambda s: _load_one(store_root, s, verify), frontier, chunksize=64)
            for sha, (status, value, size) in zip(frontier, loaded):
                done += 1
                if status == "missing":
                    graph.missing.add(sha)
                    continue
                if status == "damaged":
                    graph.damaged[sha] = value
                    continue
                if status == "not_manifest":
                    graph.not_manifest[sha] = value
                    continue
                manifest = parse_manifest_bytes(value)
                if manifest is None:
                    graph.not_manifest[sha] = "is not a JSON manifest"
                    continue
                graph.manifests[sha] = manifest
                graph.raw_sizes[sha] = size
                for child in input_shas(manifest):
                    if child not in seen:
                        seen.add(child)
                        next_frontier.append(child)
                if done % 512 == 0:
                    progress(stage, done, None)
            frontier = sorted(next_frontier)
    progress(stage, done, done)
    return graph


def sniff_manifests(candidates: Iterable[ObjectInfo], *, jobs: int | None = None,
                    progress: Progress = no_progress,
                    stage: str = "scan objects") -> dict[str, tuple[dict[str, Any], int]]:
    """Which of these objects are manifests (by content: a JSON object with the envelope)."""
    todo = [c for c in candidates if 2 <= c.size_bytes <= MAX_MANIFEST_BYTES]
    found: dict[str, tuple[dict[str, Any], int]] = {}
    with ThreadPoolExecutor(max_workers=jobs or default_jobs()) as pool:
        for i, (info, data) in enumerate(
                zip(todo, pool.map(lambda c: read_small(c.path), todo, chunksize=64)), 1):
            if data is not None:
                manifest = parse_manifest_bytes(data)
                if manifest is not None:
                    found[info.sha256] = (manifest, len(data))
            if i % 1024 == 0:
                progress(stage, i, len(todo))
    progress(stage, len(todo), len(todo))
    return found


# --- refs ------------------------------------------------------------------------------
@dataclass(frozen=True)
class RefEntry:
    path: Path          # the file
    name: str           # its path relative to the results directory (POSIX), for people
    ref: Ref | None     # None when the file could not be read as a ref
    problem: str | None = None

    @property
    def sha256(self) -> str | None:
        return self.ref.digest[len(DIGEST_PREFIX):] if self.ref is not None else None


def _walk_json(top: Path) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.endswith(".json") and not name.startswith("."):
                yield Path(dirpath) / name


def iter_ref_paths(results_dir: Path) -> Iterator[Path]:
    results_dir = Path(results_dir)
    for sub in REF_DIRS:
        top = results_dir / sub
        if top.is_dir():
            yield from _walk_json(top)


def _entry(path: Path, base: Path | None) -> RefEntry:
    try:
        name = path.relative_to(base).as_posix() if base is not None else str(path)
    except ValueError:
        name = str(path)
    try:
        return RefEntry(path, name, read_ref(path))
    except ArtifactStoreError as exc:
        return RefEntry(path, name, None, str(exc))


def load_refs(results_dir: Path) -> list[RefEntry]:
    """Every ref under results/ (runs, replicates, conditions, comparisons), sorted."""
    results_dir = Path(results_dir)
    return [_entry(p, results_dir) for p in iter_ref_paths(results_dir)]


def expand_ref_args(paths: Iterable[str | os.PathLike[str]], results_dir: Path) -> list[RefEntry]:
    """Ref files, or directories of ref files, named on a command line (``--root``)."""
    out = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            out.extend(_entry(p, results_dir if _inside(p, results_dir) else path)
                       for p in _walk_json(path))
        elif path.is_file():
            out.append(_entry(path, results_dir if _inside(path, results_dir) else None))
        else:
            raise ArtifactStoreError(f"{path} is neither a ref file nor a directory of refs")
    return out


def _inside(path: Path, base: Path) -> bool:
    try:
        Path(path).resolve().relative_to(Path(base).resolve())
        return True
    except ValueError:
        return False


# --- action records --------------------------------------------------------------------
@dataclass(frozen=True)
class ActionEntry:
    key: str
    path: Path
    record: dict[str, Any] | None   # None when the file is not a readable record

    @property
    def sha256(self) -> str | None:
        digest = (self.record or {}).get("digest")
        return digest[len(DIGEST_PREFIX):] if is_digest(digest) else None


def load_actions(store_root: Path, *, jobs: int | None = None) -> list[ActionEntry]:
    actions_dir = Path(store_root) / "actions"
    paths: list[Path] = []
    if actions_dir.is_dir():
        with os.scandir(actions_dir) as shards:
            shard_paths = sorted(e.path for e in shards
                                 if e.is_dir(follow_symlinks=False) and len(e.name) == 2)
        for shard in shard_paths:
            with os.scandir(shard) as entries:
                paths.extend(Path(e.path) for e in entries
                             if e.name.endswith(".json") and is_sha256_hex(e.name[:-5]))
    paths.sort()

    def read(path: Path) -> bytes | None:
        try:
            return path.read_bytes()
        except OSError:
            return None

    out = []
    with ThreadPoolExecutor(max_workers=jobs or default_jobs()) as pool:
        for path, data in zip(paths, pool.map(read, paths, chunksize=128)):
            record = None
            if data is not None:
                try:
                    value = json.loads(data)
                except (UnicodeDecodeError, ValueError):
                    value = None
                if isinstance(value, dict) and is_digest(value.get("digest")):
                    record = value
            out.append(ActionEntry(path.name[:-5], path, record))
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
