"""The store: bytes on disk, and nothing about studies.

Owns: hashing and canonical JSON, atomic writes, objects (``objects/``, ``tmp/``, origins),
the action cache (``actions/``), refs, run work directories (``work/``) and their claims,
the LRU of loaded artifacts, sharing policy (group stores, trusted writers, member roots),
the store root's marker and folder checks, payloads, NPZ and table sidecars, artifact
manifests, and ``ArtifactStore``, the facade over all of them.

May import: ``assay.errors`` and the standard library (numpy and pandas lazily, in npz and
tables). Never ``assay.pipeline``, ``assay.tools`` or the command line: a store can be read
and verified without knowing what a study is. Every folder and file name of a store is
spelled here and nowhere else.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ArtifactStore"]


def __getattr__(name: str) -> Any:
    """``from assay.store import ArtifactStore`` without loading the facade for every
    ``assay.store.hashing`` import."""
    if name == "ArtifactStore":
        from .artifact_store import ArtifactStore

        return ArtifactStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
