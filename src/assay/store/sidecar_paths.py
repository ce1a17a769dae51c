"""Sidecar paths are artifact-relative POSIX paths; anything that could escape is refused."""

from __future__ import annotations

from pathlib import PurePosixPath

from ..errors import SidecarPathError

_MEDIA_TYPES = {
    ".npz": "application/x-npz",
    ".npy": "application/x-npy",
    ".csv": "text/csv",
    ".tsv": "text/tab-separated-values",
    ".parquet": "application/vnd.apache.parquet",
    ".json": "application/json",
    ".joblib": "application/x-joblib",
    ".png": "image/png",
    ".svg": "image/svg+xml",
    ".pdf": "application/pdf",
    ".txt": "text/plain",
}


def check_sidecar_path(path: str) -> str:
    """Return the path unchanged if it is safe, else raise naming the problem."""
    if not isinstance(path, str):
        raise SidecarPathError(f"sidecar path must be a string, got {type(path).__name__}")
    if not path:
        raise SidecarPathError("sidecar path is empty")
    if "\\" in path:
        raise SidecarPathError(f"sidecar path {path!r} contains a backslash; use '/'")
    if "\x00" in path:
        raise SidecarPathError(f"sidecar path {path!r} contains a NUL byte")
    if not path.isascii():
        try:
            path.encode("utf-8")
        except UnicodeEncodeError:
            raise SidecarPathError(f"sidecar path {path!r} is not valid Unicode text (it "
                                   "holds a lone surrogate)") from None
    if path.startswith("/"):
        raise SidecarPathError(f"sidecar path {path!r} is absolute; use a relative path "
                               "such as 'sidecars/name.npz'")
    if len(path) >= 2 and path[1] == ":":
        raise SidecarPathError(f"sidecar path {path!r} looks like a drive path")
    for part in path.split("/"):
        if part in ("", ".", ".."):
            raise SidecarPathError(f"sidecar path {path!r} has an empty, '.' or '..' part")
    return path


def guess_media_type(path: str) -> str:
    return _MEDIA_TYPES.get(PurePosixPath(path).suffix.lower(), "application/octet-stream")
