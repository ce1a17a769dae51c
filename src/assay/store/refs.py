"""Refs: the small deterministic JSON files that Snakemake rules output.

The same digest and identity always give the same bytes, so a rerun that reproduces an
artifact leaves downstream rules alone (Snakemake compares checksums of small inputs).
"""

from __future__ import annotations

import errno
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .atomic import atomic_write_bytes
from ..errors import ArtifactSchemaError, ArtifactStoreError
from .hashing import canonical_json, is_digest, read_regular
from .payload import strict_json_payload

MAX_REF_BYTES = 64 * 1024


@dataclass(frozen=True)
class Ref:
    path: Path
    digest: str
    identity: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, key: str) -> Any:
        return self.digest if key == "digest" else self.identity[key]


def ref_bytes(digest: str, identity: dict[str, Any]) -> bytes:
    if not is_digest(digest):
        raise ArtifactSchemaError(f"ref digest must be 'sha256:<64 hex>', got {digest!r}")
    if "digest" in identity:
        raise ArtifactSchemaError("ref identity may not contain a 'digest' key")
    body = {"digest": digest, **strict_json_payload(identity, analysis_name="ref")}
    return canonical_json(body) + b"\n"


def write_ref(path: str | Path, digest: str, **identity: Any) -> Ref:
    """Atomically write a ref; rewriting the same ref yields byte-identical content."""
    path = Path(path)
    data = ref_bytes(digest, identity)
    try:
        if path.read_bytes() == data:
            return Ref(path, digest, identity)
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        pass
    atomic_write_bytes(path, data)
    return Ref(path, digest, identity)


def _brief(exc: BaseException) -> str:
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    return str(exc)


def read_ref(path: str | Path) -> Ref:
    path = Path(path)
    try:
        raw = read_regular(path, MAX_REF_BYTES)
    except FileNotFoundError:
        raise ArtifactStoreError(f"ref {path} does not exist; run the workflow "
                                 "(snakemake) that produces it") from None
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.EINVAL):   # a link, a directory, a FIFO, a device
            raise ArtifactStoreError(f"ref {path} is {exc.strerror}; delete it and rerun "
                                     "the job that writes it") from None
        raise ArtifactStoreError(f"cannot read ref {path}: {exc.strerror}") from None
    if len(raw) > MAX_REF_BYTES:
        raise ArtifactSchemaError(f"ref {path} is larger than {MAX_REF_BYTES} bytes; "
                                  "not a ref file")
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError) as exc:   # ValueError: also bad UTF-8, huge ints
        raise ArtifactSchemaError(f"ref {path} is not valid JSON ({_brief(exc)}); delete it "
                                  "and rerun the job that writes it") from None
    if not isinstance(body, dict) or not is_digest(body.get("digest")):
        raise ArtifactSchemaError(f"ref {path} has no valid 'digest' ('sha256:<64 hex>')")
    digest = body.pop("digest")
    return Ref(path, digest, body)
