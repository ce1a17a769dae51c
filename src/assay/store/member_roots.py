"""Results directories registered in a shared store (``roots/``): every member's gc marks
from every member's refs. Kept apart from ``assay.store.sharing`` (the permission model) so that
the store's lowest layers import no writer: this module writes through ``assay.store.atomic``."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .atomic import atomic_write_bytes
from .hashing import canonical_json, read_regular_owned, sha256_hex
from .sharing import SharingPolicy, _me

ROOTS_DIR = "roots"


def register_results(policy: SharingPolicy, results_dir: str | os.PathLike[str]) -> None:
    """Record a results directory whose refs gc must keep (one small file, once); only in
    a shared store."""
    if not policy.shared or policy.root is None:
        return
    results = os.path.realpath(results_dir)
    path = policy.root / ROOTS_DIR / f"{sha256_hex(results.encode())}.json"
    if path.exists():
        return
    body = {"results": results, "user": _me(), "uid": os.geteuid()}
    atomic_write_bytes(path, canonical_json(body) + b"\n", sharing=policy)


MAX_ROOTS_RECORD_BYTES = 64 * 1024


def registered_results(store_root: str | os.PathLike[str]) -> list[tuple[Path, dict[str, Any]]]:
    """(registry file, record) of every results directory registered in the store.

    Each record carries ``owner_uid``, the uid that owns the file (not what it claims), so
    gc can ignore records planted by writers the store does not trust. Links, FIFOs and
    oversized files are skipped: a record is never followed or read without bound."""
    folder = Path(store_root) / ROOTS_DIR
    out = []
    try:
        names = sorted(os.listdir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return out
    for name in names:
        if not name.endswith(".json") or name.startswith("."):
            continue
        try:
            data, owner = read_regular_owned(folder / name, MAX_ROOTS_RECORD_BYTES)
            if len(data) > MAX_ROOTS_RECORD_BYTES:
                continue
            record = json.loads(data)
        except (OSError, ValueError, RecursionError):
            continue
        if isinstance(record, dict) and isinstance(record.get("results"), str):
            out.append((folder / name, {**record, "owner_uid": owner}))
    return out
