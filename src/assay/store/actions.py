"""The input-addressed action cache: action key -> artifact digest, plus when/where/how long."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .artifacts import SCHEMA_VERSION
from .atomic import atomic_write_bytes
from ..errors import ArtifactSchemaError
from .hashing import canonical_json, is_digest, is_sha256_hex, sha256_hex
from .payload import strict_json_payload
from .sharing import PRIVATE, SharingPolicy, StorePermissionError, user_name


def action_key(*, stage: str, plugin: str, code_digest: str, settings: Any,
               inputs: list[str] | dict[str, Any] | None = None,
               schema_version: int = SCHEMA_VERSION, **extra: Any) -> str:
    """sha256 hex of everything that determines a job's result (never time or host)."""
    body = {"stage": stage, "plugin": plugin, "code_digest": code_digest,
            "settings": settings, "inputs": inputs or [], "schema_version": schema_version,
            **extra}
    return sha256_hex(canonical_json(strict_json_payload(body, analysis_name="action key",
                                                         max_array_items=1 << 20)))


def run_facts(started: float) -> dict[str, Any]:
    """When, where and how long a job ran: the action record holds these, never a manifest.

    ``started`` is a ``time.monotonic()`` reading taken when the work began.
    """
    import os
    import socket
    import time
    from datetime import datetime, timezone

    return {"when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "host": socket.gethostname(), "pid": os.getpid(),
            "duration_s": round(time.monotonic() - started, 6)}


ACTIONS_DIR = "actions"
RECORD_SUFFIX = ".json"


class RecordKeptError(StorePermissionError):
    """Another member's record stands in a sticky records folder: the result is published,
    but not cached under this key (the job logs this and goes on)."""


class ActionCache:
    """Owner of ``actions/<first 2 hex>/<key>.json``: one record per action key.

    A record's owner is who wrote it (records are replaced, never edited in place): the
    ``sharing`` policy decides whether that writer is trusted.
    """

    def __init__(self, actions_dir: Path, sharing: SharingPolicy = PRIVATE) -> None:
        self.dir = Path(actions_dir)
        self.sharing = sharing

    @classmethod
    def at(cls, store_root: str | os.PathLike[str],
           sharing: SharingPolicy = PRIVATE) -> "ActionCache":
        return cls(Path(store_root) / ACTIONS_DIR, sharing)

    def path_for(self, key: str) -> Path:
        if not is_sha256_hex(key):
            raise ArtifactSchemaError(f"action key must be 64 lowercase hex, got {key!r}")
        return self.dir / key[:2] / f"{key}{RECORD_SUFFIX}"

    def read(self, key: str, *, trusted_only: bool = False) -> dict[str, Any] | None:
        """The record, or None; with ``trusted_only`` also None when an untrusted writer
        wrote it (the job recomputes; `assay verify` reports it)."""
        import stat

        path = self.path_for(key)
        try:
            # Never followed: a record replaced by a link to another key's record would
            # serve that key's artifact under this one.
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
            with open(fd, "rb") as handle:
                st = os.fstat(handle.fileno())
                if not stat.S_ISREG(st.st_mode):
                    return None
                if trusted_only and not self.sharing.is_trusted(st.st_uid):
                    return None
                record = json.loads(handle.read(1 << 20))
        except FileNotFoundError:
            return None
        except OSError as exc:
            import errno

            if exc.errno in (errno.ELOOP, errno.ENXIO, errno.EISDIR):
                return None   # a link, a socket or a directory: not a record
            if isinstance(exc, PermissionError):
                raise self.sharing.reading_error(path, f"action record {key}") from None
            raise
        except (ValueError, RecursionError):
            return None  # a damaged record is a cache miss, never an error
        if not isinstance(record, dict) or not is_digest(record.get("digest")):
            return None
        if record.get("key") != key:
            return None   # a record copied or linked from another key proves nothing
        return record

    def untrusted_writer(self, key: str) -> int | None:
        """The uid that wrote this key's record if it is not trusted, else None."""
        try:
            uid = os.lstat(self.path_for(key)).st_uid   # a link's own writer, not its target's
        except FileNotFoundError:
            return None
        return None if self.sharing.is_trusted(uid) else uid

    def record(self, key: str, digest: str, **record: Any) -> Path:
        if not is_digest(digest):
            raise ArtifactSchemaError(f"action digest must be 'sha256:<hex>', got {digest!r}")
        body = {"key": key, "digest": digest,
                **strict_json_payload(record, analysis_name="action record")}
        path = self.path_for(key)
        try:
            atomic_write_bytes(path, canonical_json(body) + b"\n", sharing=self.sharing)
        except StorePermissionError:
            owner = self.sharing.kept_by_sticky(path)
            if owner is None:
                raise
            raise RecordKeptError(
                f"kept {user_name(owner)}'s action record {key[:12]}: the records folder is "
                "sticky (share-store --sticky-records), so only its owner (or root) replaces "
                "it; this result is not cached for the next run") from None
        return path

    def paths(self) -> list[str]:
        """Every record file (named ``<key>.json`` in its key's shard), sorted."""
        paths: list[str] = []
        try:
            with os.scandir(self.dir) as shards:
                shard_paths = sorted(e.path for e in shards
                                     if e.is_dir(follow_symlinks=False) and len(e.name) == 2)
        except (FileNotFoundError, NotADirectoryError):
            return paths
        for shard in shard_paths:
            with os.scandir(shard) as entries:
                paths.extend(e.path for e in entries
                             if e.name.endswith(RECORD_SUFFIX)
                             and is_sha256_hex(e.name[:-len(RECORD_SUFFIX)]))
        paths.sort()
        return paths
