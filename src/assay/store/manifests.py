"""Walking a store's bytes: objects and the graph of manifests their inputs draw.

What every store-wide and per-study walk shares (verify, gc, stats, the catalog, export,
the object index), so each agrees on what a manifest is and what an artifact depends on.
Studies (refs, results folders) are ``assay.tools.inventory``'s.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .hashing import hash_file, hex_of, read_regular
from .objects import ObjectInfo, ObjectStore
from .reading import (  # re-exported: the walks and the index share them
    MAX_MANIFEST_BYTES, Progress, default_jobs, input_shas, looks_like_manifest,
    map_batched, no_progress, parse_manifest_bytes, read_small, sidecar_shas,
)



def scan_objects(store_root: Path) -> dict[str, ObjectInfo]:
    return ObjectStore(store_root).scan()


def stat_objects(store_root: Path, shas: list[str]) -> dict[str, ObjectInfo]:
    return ObjectStore(store_root).stat_some(shas)


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
