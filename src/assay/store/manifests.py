"""Walking a store's bytes: objects and the graph of manifests their inputs draw.

What every store-wide and per-study walk shares (verify, gc, stats, the catalog, export,
the object index), so each agrees on what a manifest is and what an artifact depends on.
Studies (refs, results folders) are ``assay.tools.inventory``'s.
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

from .hashing import hash_file, hex_of, open_regular, read_regular
from .objects import MAX_MANIFEST_BYTES, ObjectInfo, ObjectStore

Progress = Callable[[str, int, "int | None"], None]


def default_jobs() -> int:
    """Threads for hashing: hashlib releases the GIL, so one per core pays off."""
    return max(1, min(32, os.cpu_count() or 1))


# Reader threads only open and read (the GIL is released in each syscall); parsing stays on
# the calling thread. With the page cache warm they cost nothing (100,000 refs: 0.6 s inline
# or with 1-4 threads); cold, or on a network filesystem, they overlap the waits. Threads
# that also parse JSON only pass the GIL back and forth (measured: twice as slow).
DEFAULT_READ_JOBS = 4
BATCH = 256


def map_batched(fn: Callable[[Any], Any], items: list[Any], *, jobs: int | None,
                batch: int = BATCH) -> Iterator[Any]:
    """``fn`` over ``items`` on a thread pool, in order, one future per batch of items.

    (``ThreadPoolExecutor.map`` ignores ``chunksize`` and makes a future per item, which
    costs more than reading a small file.)
    """
    if not items:
        return
    if (jobs or DEFAULT_READ_JOBS) <= 1:
        for item in items:
            yield fn(item)
        return
    batches = [items[i:i + batch] for i in range(0, len(items), batch)]
    with ThreadPoolExecutor(max_workers=jobs or DEFAULT_READ_JOBS) as pool:
        for result in pool.map(lambda batch: [fn(item) for item in batch], batches):
            yield from result


def no_progress(stage: str, done: int, total: int | None) -> None:
    pass


# --- objects ---------------------------------------------------------------------------
def scan_objects(store_root: Path) -> dict[str, ObjectInfo]:
    return ObjectStore(store_root).scan()


def stat_objects(store_root: Path, shas: list[str]) -> dict[str, ObjectInfo]:
    return ObjectStore(store_root).stat_some(shas)


def _read_rest(fd: int, head: bytes, limit: int) -> bytes:
    """``head`` plus the rest of the file, stopping once more than ``limit`` bytes are read."""
    if len(head) < 65536:
        return head
    chunks, total = [head], len(head)
    while total <= limit:
        chunk = os.read(fd, min(1 << 20, limit + 1 - total))
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    return b"".join(chunks)


def check_object(path: Path | str, sha256: str, size: int | None = None) -> str | None:
    """None if the object is intact, else what is wrong with it (missing, size, bytes)."""
    try:
        actual, actual_size = hash_file(path)
    except FileNotFoundError:
        return "is missing"
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    if size is not None and actual_size != size:
        return f"has {actual_size} bytes, expected {size}"
    if actual != sha256:
        return f"has different bytes (sha256:{actual})"
    return None


def hash_many(items: Iterable[tuple[str, Path | str, int | None]], *, jobs: int | None = None,
              progress: Progress = no_progress, stage: str = "hash") -> dict[str, str]:
    """Check many objects in parallel (hashlib releases the GIL); {sha256: problem}."""
    todo = list(items)
    problems: dict[str, str] = {}
    results = map_batched(lambda item: check_object(item[1], item[0], item[2]), todo,
                          jobs=jobs or default_jobs(), batch=16)
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
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    return value if looks_like_manifest(value) else None


def read_small(path: str, limit: int = MAX_MANIFEST_BYTES) -> bytes | None:
    """The bytes of a file if it is at most ``limit`` bytes and starts like JSON."""
    try:
        fd = open_regular(path)
    except OSError:
        return None
    try:
        head = os.read(fd, 65536)
        if not head.startswith(b"{"):
            return None
        data = _read_rest(fd, head, limit)
    except OSError:
        return None
    finally:
        os.close(fd)
    return None if len(data) > limit else data


def sidecar_shas(manifest: dict[str, Any]) -> list[tuple[str, int | None]]:
    out = []
    for item in manifest.get("sidecars") or ():
        if isinstance(item, dict):
            sha = item.get("sha256")
            if isinstance(sha, str) and _HEX64.fullmatch(sha):
                size = item.get("size_bytes")
                out.append((sha, size if isinstance(size, int) else None))
    return out


def input_shas(manifest: dict[str, Any]) -> list[str]:
    out = []
    for item in manifest.get("inputs") or ():
        digest = item.get("digest") if isinstance(item, dict) else item
        hex_digest = hex_of(digest)   # also what keeps '../' out of object paths
        if hex_digest is not None:
            out.append(hex_digest)
    return out


@dataclass
class ManifestGraph:
    """Manifests reachable from some roots, following inputs; what could not be read."""

    manifests: dict[str, dict[str, Any]] = field(default_factory=dict)
    raw: dict[str, bytes] = field(default_factory=dict)     # the manifest bytes, verified
    raw_sizes: dict[str, int] = field(default_factory=dict)
    missing: set[str] = field(default_factory=set)          # no object with this name
    not_manifest: dict[str, str] = field(default_factory=dict)  # object is there, not a manifest
    damaged: dict[str, str] = field(default_factory=dict)   # bytes do not match the name



def read_or_error(path: str, limit: int) -> bytes | OSError:
    """For reader threads: the bytes, or the error to handle on the calling thread."""
    try:
        return read_regular(path, limit)
    except OSError as exc:
        return exc


def _load_one(sha256: str, data: bytes | OSError, verify: bool) -> tuple[str, Any, int]:
    if isinstance(data, FileNotFoundError):
        return "missing", None, 0
    if isinstance(data, OSError):
        return "not_manifest", f"cannot be read ({data.strerror or data})", 0
    if len(data) > MAX_MANIFEST_BYTES:
        return "not_manifest", f"is larger than {MAX_MANIFEST_BYTES} bytes", len(data)
    if verify:
        actual = hashlib.sha256(data).hexdigest()
        if actual != sha256:
            return "damaged", f"has different bytes (sha256:{actual})", len(data)
    return "data", data, len(data)


def walk_manifests(store_root: Path, roots: Iterable[str], *, verify: bool = True,
                   keep_raw: bool = False, jobs: int | None = None,
                   progress: Progress = no_progress,
                   stage: str = "read manifests") -> ManifestGraph:
    """Breadth-first from root digests (``sha256:<hex>`` or hex) through manifest inputs.

    Files are read on reader threads; hashing and parsing happen on the calling thread.
    """
    graph = ManifestGraph()
    path_str = ObjectStore(store_root).path_str
    frontier = sorted({hex_of(r) or r for r in roots})
    seen: set[str] = set(frontier)
    done = 0
    while frontier:
        next_frontier: list[str] = []
        raw = map_batched(lambda s: read_or_error(path_str(s),
                                                   MAX_MANIFEST_BYTES), frontier, jobs=jobs)
        for sha, data in zip(frontier, raw):
            status, value, size = _load_one(sha, data, verify)
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
            if keep_raw:
                graph.raw[sha] = value
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
                    stage: str = "scan objects") -> dict[str, tuple[dict[str, Any], bytes]]:
    """Which of these objects are manifests (by content: a JSON object with the envelope)."""
    todo = [c for c in candidates if 2 <= c.size_bytes <= MAX_MANIFEST_BYTES]
    found: dict[str, tuple[dict[str, Any], bytes]] = {}
    for i, (info, data) in enumerate(
            zip(todo, map_batched(lambda c: read_small(c.path), todo, jobs=jobs)), 1):
        if data is not None:
            manifest = parse_manifest_bytes(data)
            if manifest is not None and hashlib.sha256(data).hexdigest() == info.sha256:
                found[info.sha256] = (manifest, data)
        if i % 1024 == 0:
            progress(stage, i, len(todo))
    progress(stage, len(todo), len(todo))
    return found
