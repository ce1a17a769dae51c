"""Reading small files of a store, and what a manifest's bytes say: bounded reads on a
few threads, the manifest envelope, the digests its inputs and sidecars name.

A leaf of the store package (it knows no object paths), so the object index, which
``objects`` writes to as it publishes, can use it without a cycle.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .hashing import hex_of, open_regular

MAX_MANIFEST_BYTES = 64 * 1024 * 1024  # a manifest is compact JSON; more is not one
Progress = Callable[[str, int, "int | None"], None]
_HEX64 = re.compile(r"[0-9a-f]{64}")


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
