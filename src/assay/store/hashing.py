"""SHA-256, spelled one way: ``sha256:<64 hex>`` for ids, bare hex for a sidecar's ``sha256``.

The two spellings meet only here: ``format_digest`` (hex -> id), ``parse_digest`` (id ->
hex, refusing anything else) and ``hex_of`` (id -> hex or None, for untrusted input).
Objects are named by hex; manifests, refs and action records speak ids.
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import re
import threading
from pathlib import Path
from typing import Any

from ..errors import ArtifactSchemaError

DIGEST_PREFIX = "sha256:"
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
READ_CHUNK = 8 * 1024 * 1024
SMALL_FILE = 1024 * 1024


def is_sha256_hex(value: object) -> bool:
    return isinstance(value, str) and _HEX64.fullmatch(value) is not None


def format_digest(hex_digest: str) -> str:
    if not is_sha256_hex(hex_digest):
        raise ArtifactSchemaError(f"not a sha256 hex digest: {hex_digest!r}")
    return DIGEST_PREFIX + hex_digest


def parse_digest(digest: str) -> str:
    """Return the bare hex of a ``sha256:<hex>`` id, refusing any other spelling."""
    if not isinstance(digest, str) or not digest.startswith(DIGEST_PREFIX):
        raise ArtifactSchemaError(
            f"artifact digest must be spelled 'sha256:<64 lowercase hex>', got {digest!r}"
        )
    hex_digest = digest[len(DIGEST_PREFIX):]
    if not is_sha256_hex(hex_digest):
        raise ArtifactSchemaError(
            f"artifact digest must be spelled 'sha256:<64 lowercase hex>', got {digest!r}"
        )
    return hex_digest


def hex_of(value: object) -> str | None:
    """The bare hex of a well-formed ``sha256:<hex>``, else None (for untrusted input)."""
    if isinstance(value, str) and value.startswith(DIGEST_PREFIX):
        hex_digest = value[len(DIGEST_PREFIX):]
        if is_sha256_hex(hex_digest):
            return hex_digest
    return None


def is_digest(value: object) -> bool:
    return (isinstance(value, str) and value.startswith(DIGEST_PREFIX)
            and is_sha256_hex(value[len(DIGEST_PREFIX):]))


def canonical_json(value: Any) -> bytes:
    """Sorted keys, no whitespace, no NaN: the same value always gives the same bytes."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def sha256_hex(data: bytes | memoryview) -> str:
    return hashlib.sha256(data).hexdigest()


def open_regular(path: str | os.PathLike[str]) -> int:
    """A read descriptor of a regular file, never through a link, never blocking.

    A store entry replaced by a FIFO hung every reader; by a link to /dev/zero, it read
    until memory ran out. Raises OSError naming what the path is instead.
    """
    import errno
    import stat

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise OSError(errno.ELOOP, "a symbolic link, not a file (never followed)",
                          os.fspath(path)) from None
        raise
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        kind = ("a directory" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode)
                else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
                else "a socket" if stat.S_ISSOCK(mode) else "not a regular file")
        raise OSError(errno.EINVAL, f"{kind}, not a regular file", os.fspath(path))
    return fd


def read_regular_owned(path: str | os.PathLike[str], limit: int) -> tuple[bytes, int]:
    """(a regular file's bytes, its owner's uid), read through ``open_regular`` and at most
    ``limit + 1`` bytes of it: ``limit + 1`` bytes back means the file is too big.

    The one bounded read of small files (refs, key files, records, spec files): never
    through a link, never blocking, never without bound.
    """
    fd = open_regular(path)
    try:
        owner = os.fstat(fd).st_uid
        chunks, total = [], 0
        while total <= limit:
            chunk = os.read(fd, min(1 << 20, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        return b"".join(chunks), owner
    finally:
        os.close(fd)


def read_regular(path: str | os.PathLike[str], limit: int) -> bytes:
    """A regular file's bytes, at most ``limit + 1`` (that many back means: too big)."""
    return read_regular_owned(path, limit)[0]


def hash_file(path: Path) -> tuple[str, int]:
    """Hex digest and size of a file, read in large chunks into one reused buffer."""
    digest = hashlib.sha256()
    size = 0
    with open(open_regular(path), "rb", buffering=0) as handle:
        if os.fstat(handle.fileno()).st_size <= SMALL_FILE:  # manifests: one read, no buffer
            data = handle.read()
            return hashlib.sha256(data).hexdigest(), len(data)
        buffer = bytearray(READ_CHUNK)
        view = memoryview(buffer)
        while True:
            n = handle.readinto(buffer)
            if not n:
                break
            digest.update(view[:n])
            size += n
    return digest.hexdigest(), size


class BackgroundHasher:
    """Hashes chunks on a second thread so SHA-256 overlaps the I/O of the caller.

    hashlib releases the GIL on large buffers, so the writer (or reader) and the hasher run
    on two cores. Chunks must be immutable (bytes) or not reused until ``hexdigest()``.
    Small chunks are batched to keep queue traffic low.
    """

    _SMALL = 64 * 1024
    _DEPTH = 4

    def __init__(self) -> None:
        self._digest = hashlib.sha256()
        # Bounded: a writer faster than SHA-256 waits instead of piling chunks in memory.
        self._queue: queue.Queue[bytes | memoryview | None] = queue.Queue(maxsize=self._DEPTH)
        self._pending = bytearray()
        self._thread = threading.Thread(target=self._run, name="assay-hasher", daemon=True)
        self._error: BaseException | None = None
        self._thread.start()
        self.size = 0

    def _run(self) -> None:
        try:
            while True:
                chunk = self._queue.get()
                if chunk is None:
                    return
                self._digest.update(chunk)
        except BaseException as exc:  # surfaced in hexdigest()
            self._error = exc

    def update(self, chunk: bytes | memoryview) -> None:
        n = len(chunk)
        self.size += n
        if n < self._SMALL:
            self._pending += chunk
            if len(self._pending) >= self._SMALL:
                self._queue.put(bytes(self._pending))
                self._pending.clear()
            return
        if self._pending:
            self._queue.put(bytes(self._pending))
            self._pending.clear()
        self._queue.put(chunk)

    def hexdigest(self) -> str:
        if self._pending:
            self._queue.put(bytes(self._pending))
            self._pending.clear()
        self._queue.put(None)
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._digest.hexdigest()

    def abandon(self) -> None:
        self._queue.put(None)
        self._thread.join()
