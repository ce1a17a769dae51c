"""Every write in assay: temp file -> write all -> fsync -> rename -> fsync the directory.

Readers see the old file or the new one, never a torn one; after a power loss the new
name survives too, because the directory entry made by the rename is fsynced. Objects
(staged in ``store/tmp``, named only once hashed) use ``publish``; every other file
(refs, action records, figures, the catalog, bundles, copies) uses ``atomic_file`` or
``atomic_write_bytes``, which stage beside the target.

Directories and modes come from a ``sharing.SharingPolicy`` (a shared store creates
group-writable setgid directories); a refused write raises its ``StorePermissionError``.
"""

from __future__ import annotations

import os
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Iterator

from .sharing import PRIVATE, SharingPolicy, StorePermissionError


def write_all(fd: int, data: bytes | bytearray | memoryview) -> None:
    """os.write until every byte is written (os.write may write fewer)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def fsync_and_close(fd: int) -> None:
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_path(path: str | os.PathLike[str]) -> None:
    """fsync a file someone else wrote (DuckDB, zipfile, matplotlib) before it is renamed."""
    fsync_and_close(os.open(path, os.O_RDONLY))


def fsync_dir(directory: str | os.PathLike[str]) -> None:
    """Make a rename in ``directory`` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:   # some filesystems refuse fsync on a directory; the rename still holds
        pass
    finally:
        os.close(fd)


def publish(tmp: str | os.PathLike[str], target: str | os.PathLike[str]) -> None:
    """Rename an already fsynced ``tmp`` onto ``target`` and make the new name durable."""
    os.replace(tmp, target)
    fsync_dir(Path(target).parent)


def temp_beside(target: Path) -> Path:
    """A unique hidden temp name in the target's directory (same filesystem: rename is atomic).

    ``assay gc`` recognises these (``.NAME.<hex>.tmp``) when a crash leaves one behind.
    """
    return target.parent / f".{target.name}.{uuid.uuid4().hex}.tmp"


@contextmanager
def atomic_path(target: str | os.PathLike[str], *, mode: int | None = None,
                sharing: SharingPolicy = PRIVATE) -> Iterator[Path]:
    """A temp path for a writer that insists on a file name (DuckDB, zipfile, savefig).

    On a clean exit the temp file is fsynced, given ``mode`` and published; on an error
    it is removed and the target is untouched.
    """
    target = Path(target)
    sharing.make_dirs(target.parent)
    tmp = temp_beside(target)
    try:
        try:
            yield tmp
        except StorePermissionError:
            raise
        except PermissionError as exc:   # the writer could not create the temp file
            if exc.filename is None or Path(exc.filename).parent != tmp.parent:
                raise
            raise sharing.permission_error(tmp) from None
        try:
            if mode is not None:
                os.chmod(tmp, mode)
            fsync_path(tmp)
            publish(tmp, target)
        except PermissionError as exc:
            raise sharing.permission_error(exc.filename or tmp) from None
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def atomic_file(target: str | os.PathLike[str], *, mode: int = 0o644,
                sharing: SharingPolicy = PRIVATE) -> Iterator[BinaryIO]:
    """An open binary file whose bytes replace ``target`` atomically on a clean exit."""
    with atomic_path(target, mode=mode, sharing=sharing) as tmp:
        with open(tmp, "xb") as handle:
            yield handle


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, *, mode: int = 0o644,
                       sharing: SharingPolicy = PRIVATE) -> None:
    """Small files (refs, action records, state files) in one call."""
    with atomic_path(path, mode=mode, sharing=sharing) as tmp:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            write_all(fd, data)
        finally:
            os.close(fd)
