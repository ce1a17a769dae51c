"""Deterministic NPZ bytes, and an NPZ reader that hands out arrays only once verified."""

from __future__ import annotations

import threading
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..errors import ArtifactStoreError
from .hashing import hash_file

_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


def write_npz_stream(handle: Any, arrays: Mapping[str, Any], *, compress: bool) -> None:
    """Sorted members, fixed 1980 zip timestamps, no pickles: same arrays -> same bytes.

    ``handle`` is non-seekable, so zipfile streams each member with a data descriptor and
    never seeks back; that is what lets the store hash the bytes as they are written. The
    result is a regular NPZ that ``np.load`` reads.
    """
    ordered = {name: np.asanyarray(arrays[name]) for name in sorted(arrays)}
    for name, array in ordered.items():
        if array.dtype.hasobject:
            raise ArtifactStoreError(f"array {name!r} has dtype object; NPZ sidecars never "
                                     "pickle: convert it to a numeric or string dtype")
    compression = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(handle, mode="w", compression=compression, allowZip64=True) as archive:
        for name, array in ordered.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_EPOCH)
            info.compress_type = compression
            info.external_attr = 0o644 << 16
            with archive.open(info, "w", force_zip64=True) as member:
                np.lib.format.write_array(member, array, allow_pickle=False)


class VerifiedNpz(Mapping[str, np.ndarray]):
    """Lazy NPZ mapping; hashing runs on a second thread while arrays are read.

    ``data[name]`` returns only after the whole file's digest has been checked, so no
    array from unverified bytes ever reaches the caller.
    """

    def __init__(self, path: Path, *, expected_sha256: str | None,
                 on_mismatch: Callable[[str], Exception],
                 on_verified: Callable[[], None] | None = None,
                 cache_get: Callable[[str], Any] | None = None,
                 cache_put: Callable[[str, np.ndarray], None] | None = None) -> None:
        self.path = path
        self._expected = expected_sha256
        self._on_mismatch = on_mismatch
        self._on_verified = on_verified
        self._cache_get = cache_get
        self._cache_put = cache_put
        self._result: str | None = None
        self._error: BaseException | None = None
        self._failure: Exception | None = None
        self._thread: threading.Thread | None = None
        if expected_sha256 is not None:
            self._thread = threading.Thread(target=self._hash, daemon=True,
                                            name="assay-npz-verify")
            self._thread.start()
        try:
            self._npz = np.load(path, allow_pickle=False)
        except Exception:
            self.wait_verified()  # damaged bytes: report integrity, not a zip error
            raise

    def _hash(self) -> None:
        try:
            self._result = hash_file(self.path)[0]
        except BaseException as exc:
            self._error = exc

    def wait_verified(self) -> None:
        """Block until the digest is checked; a failure is sticky for this handle."""
        if self._failure is not None:
            raise self._failure
        if self._thread is None:
            return
        self._thread.join()
        self._thread = None
        if self._error is not None:
            self._failure = self._error if isinstance(self._error, Exception) else None
            raise self._error
        if self._result != self._expected:
            self._failure = self._on_mismatch(self._result or "")
            raise self._failure
        if self._on_verified is not None:
            self._on_verified()

    def __getitem__(self, name: str) -> np.ndarray:
        if self._cache_get is not None:
            cached = self._cache_get(name)
            if cached is not None:
                return cached
        try:
            array = self._npz[name]
        except Exception:
            self.wait_verified()  # a damaged member is an integrity error first
            raise
        self.wait_verified()
        array.flags.writeable = False  # shared with the cache: callers copy to modify
        if self._cache_put is not None:
            self._cache_put(name, array)
        return array

    def __iter__(self) -> Iterator[str]:
        return iter(self._npz.files)

    def __len__(self) -> int:
        return len(self._npz.files)

    @property
    def files(self) -> list[str]:
        return list(self._npz.files)

    def close(self) -> None:
        if self._thread is not None:
            self._thread.join()
        if hasattr(self, "_npz"):
            self._npz.close()

    def __enter__(self) -> "VerifiedNpz":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
