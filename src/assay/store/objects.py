"""Immutable blobs named by the SHA-256 of their bytes: ``objects/<2 hex>/<64 hex>``."""

from __future__ import annotations

import os
import stat
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from . import object_index
from .atomic import fsync_and_close, publish, write_all
from ..errors import ArtifactIntegrityError
from .hashing import (
    BackgroundHasher,
    format_digest,
    hash_file,
    is_sha256_hex,
    open_regular,
    sha256_hex,
)
from .sharing import SharingPolicy, StorePermissionError, is_fresh

OBJECT_MODE = 0o444
MAX_SMALL_OBJECT = 256 * 1024 * 1024   # read_bytes without a declared size (manifests, figures)
TMP_SUFFIX = ".part"


OBJECTS_DIR, TMP_DIR = "objects", "tmp"
ORIGINS_DIR = "origins"   # objects/<sha> that came from a bundle: their origin


@dataclass(frozen=True)
class ObjectInfo:
    sha256: str
    size_bytes: int
    mtime_ns: int
    path: str


@dataclass(frozen=True)
class StoredObject:
    sha256: str
    size_bytes: int
    fresh: bool = False  # True when these bytes were just published (so known good)

    @property
    def digest(self) -> str:
        """The id that manifests, refs and action records use for these bytes."""
        return format_digest(self.sha256)


def _signature(st: os.stat_result) -> tuple[int, int, int, int]:
    """What must be unchanged for a verified object to be trusted without re-hashing.

    ctime is included because it cannot be set back: an edit that restores the mtime
    still changes it.
    """
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


_FICLONE = 0x40049409   # linux/fs.h: share the source's extents copy-on-write


def _clone_or_copy(src_fd: int, dst_fd: int, dst_path: Path) -> tuple[str, int]:
    """Fill ``dst_fd`` with ``src_fd``'s bytes; the hex digest and size of what it holds.

    A reflink clone (XFS, btrfs) costs no copy: later writes to either file go to other
    blocks. Otherwise the bytes are copied and hashed in one pass.
    """
    import fcntl

    try:
        fcntl.ioctl(dst_fd, _FICLONE, src_fd)
    except OSError:
        pass
    else:
        from .hashing import hash_file

        return hash_file(dst_path)   # the clone's own bytes: nothing else writes it
    hasher = BackgroundHasher()
    try:
        while chunk := os.read(src_fd, 8 * 1024 * 1024):
            hasher.update(chunk)
            write_all(dst_fd, chunk)
    except BaseException:
        hasher.abandon()
        raise
    return hasher.hexdigest(), hasher.size


class HashingFileWriter:
    """A write-only, non-seekable file that hashes on a second thread while it writes.

    It is deliberately not seekable: writers such as zipfile then stream (data descriptors)
    instead of seeking back, which is what lets one pass both write and hash the bytes.
    """

    def __init__(self, path: Path, mode: int = 0o600) -> None:
        self.path = path
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        self._hasher = BackgroundHasher()
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> int:
        if not isinstance(data, bytes):
            data = bytes(data)  # the hasher thread must see bytes nobody will mutate
        self._hasher.update(data)
        write_all(self._fd, data)
        return len(data)

    def flush(self) -> None:
        pass

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def tell(self) -> int:
        return self._hasher.size  # append-only: the position is the bytes written so far

    def seek(self, *args: object) -> int:
        raise OSError("HashingFileWriter is not seekable")

    def finish(self) -> StoredObject:
        """fsync, close and return the digest; the file stays at ``self.path``."""
        fsync_and_close(self._fd)
        self.closed = True
        return StoredObject(self._hasher.hexdigest(), self._hasher.size)

    def abort(self) -> None:
        if not self.closed:
            os.close(self._fd)
            self.closed = True
            self._hasher.abandon()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


class ObjectStore:
    """Writes and verifies content-addressed blobs; knows nothing about artifacts.

    Its ``sharing`` policy gives the modes of what it creates, decides whose objects may
    be reused, and turns a refused read or write into a clear error.
    """

    def __init__(self, root: Path, sharing: SharingPolicy | None = None) -> None:
        self.root = Path(root)
        self._sharing = sharing
        self.objects_dir = self.root / OBJECTS_DIR
        self.tmp_dir = self.root / TMP_DIR
        self._objects_str = str(self.objects_dir)
        self._verified: dict[str, tuple[int, int, int, int]] = {}
        self._lock = threading.Lock()

    @property
    def sharing(self) -> SharingPolicy:
        """The store's policy (made on first use when this ObjectStore stands alone, as in
        gc and verify, which mostly only need paths)."""
        if self._sharing is None:
            self._sharing = SharingPolicy.for_store(self.root, check_world_writable=False)
        return self._sharing

    # paths -------------------------------------------------------------
    # The one place the sharding is spelled: objects/<first 2 hex>/<64 hex>.
    def path_str(self, sha256: str) -> str:
        """Hot loops build object paths as strings: a Path costs more than a small read."""
        return f"{self._objects_str}/{sha256[:2]}/{sha256}"

    def path_for(self, sha256: str) -> Path:
        return Path(self.path_str(sha256))

    @staticmethod
    def _in_shard(name: str, shard: str) -> bool:
        return is_sha256_hex(name) and name[:2] == shard

    def with_prefix(self, prefix: str) -> list[str]:
        """Digests of stored objects starting with ``prefix`` (at least 2 hex)."""
        shard = self.objects_dir / prefix[:2]
        try:
            names = os.listdir(shard)
        except (FileNotFoundError, NotADirectoryError):
            return []
        return sorted(n for n in names if n.startswith(prefix) and self._in_shard(n, prefix[:2]))

    def new_tmp_path(self) -> Path:
        self.sharing.make_dirs(self.tmp_dir)
        return self.tmp_dir / f"{uuid.uuid4().hex}{TMP_SUFFIX}"

    def _open_tmp(self) -> tuple[Path, int]:
        tmp = self.new_tmp_path()
        with self.sharing.writing(tmp):
            return tmp, os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, self.sharing.tmp_mode)

    # writes ------------------------------------------------------------
    def _reusable(self, sha256: str, size: int) -> bool:
        """An intact object with these bytes exists, a trusted writer stored it, and its
        mtime was refreshed: a writer of the same bytes may drop its own copy.

        Intact means hashed, not only sized: damage that keeps the size (a flipped byte)
        would otherwise survive every rerun, since the rerun's good copy was dropped. A
        stat-cache hit (hashed earlier by this process, unchanged since) skips the read.
        """
        path = self.path_for(sha256)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return False
        if not (stat.S_ISREG(st.st_mode) and st.st_size == size
                and self.sharing.is_trusted(st.st_uid)):
            return False
        if self._verified.get(sha256) != _signature(st):
            try:
                actual, _ = hash_file(path)
            except OSError:
                return False
            if actual != sha256:
                self.forget(sha256)
                return False
            self.mark_verified(sha256, path)
        return self.touch(sha256, st)

    def publish(self, tmp_path: Path, sha256: str, size: int, *,
                kind: "object_index.Kind | None" = None) -> StoredObject:
        """Move a finished, fsynced tmp file into place unless an intact twin already exists.

        Two writers of the same bytes both succeed: the loser finds the object, refreshes its
        mtime (see ``touch``) and drops its tmp file. An existing object with the wrong size is
        damaged and is replaced; so is one whose mtime cannot be refreshed (another member's,
        read-only) or that an untrusted writer stored.
        """
        dest = self.path_for(sha256)
        if kind is None:
            kind = object_index.classify_file(tmp_path, size)
        if self._reusable(sha256, size):   # already in place, so already in the index
            os.unlink(tmp_path)
            return StoredObject(sha256, size)
        self.sharing.make_dirs(dest.parent)
        with self.sharing.writing(dest):
            os.chmod(tmp_path, OBJECT_MODE)
            publish(tmp_path, dest)
        self._index(sha256, size, kind)
        return StoredObject(sha256, size, fresh=True)

    def _index(self, sha256: str, size: int, kind: "object_index.Kind") -> None:
        """Log the object in this process's index file, after it is in place (a line lost
        to a crash here only keeps the object out of gc's reach, never the reverse)."""
        object_index.note_published(self.root, sha256, size, kind[0], kind[1], kind[2],
                                    sharing=self.sharing)

    def put_bytes(self, data: bytes) -> StoredObject:
        sha = sha256_hex(data)
        kind = object_index.classify(data)
        if self._reusable(sha, len(data)):
            return StoredObject(sha, len(data))
        tmp, fd = self._open_tmp()
        try:
            write_all(fd, data)
        except BaseException:
            os.close(fd)
            os.unlink(tmp)
            raise
        fsync_and_close(fd)
        return self.publish(tmp, sha, len(data), kind=kind)

    def put_stream(self, produce: Callable[[HashingFileWriter], None]) -> StoredObject:
        """Let ``produce`` write into a hashing tmp file, then publish it under its digest."""
        tmp = self.new_tmp_path()
        with self.sharing.writing(tmp):
            writer = HashingFileWriter(tmp, self.sharing.tmp_mode)
        try:
            produce(writer)
            stored = writer.finish()
        except BaseException:
            writer.abort()
            raise
        return self.publish(writer.path, stored.sha256, stored.size_bytes)

    def put_file(self, source: Path, *, move: bool) -> StoredObject:
        """Ingest an existing file as a new inode of our own, hashing the bytes we copy.

        Never a rename or a hard link of ``source``: a process that opened it before (a
        runner's orphan, a twin attempt, a writer elsewhere) could go on writing into the
        published object through that descriptor. A reflink clone (where the filesystem
        has one) or a copy is an inode no one else holds. A source that changed while it
        was copied is refused, nothing stored. ``move`` then removes the source.
        """
        tmp, fd = self._open_tmp()
        try:
            with open(source, "rb", buffering=0) as src:
                before = os.fstat(src.fileno())
                sha, size = _clone_or_copy(src.fileno(), fd, tmp)
                after = os.fstat(src.fileno())
        except BaseException:
            os.close(fd)
            os.unlink(tmp)
            raise
        fsync_and_close(fd)
        if (size != after.st_size or (before.st_size, before.st_mtime_ns, before.st_ctime_ns)
                != (after.st_size, after.st_mtime_ns, after.st_ctime_ns)):
            os.unlink(tmp)
            raise ArtifactIntegrityError(
                f"{source} changed while it was being stored ({before.st_size} bytes when "
                f"the copy began, {after.st_size} after): some process still writes it. "
                "Nothing was stored; stop that writer (a second attempt of the same run?) "
                "and retry")
        if move:
            os.unlink(source)
        return self.publish(tmp, sha, size)

    def link_file(self, source: Path) -> StoredObject | None:
        """Hard-link a file in (no second copy), hashing the linked inode once.

        None when the filesystem refuses the link (e.g. another device); the caller copies.
        Hashing after linking, not before, means the digest is of the very inode published.
        """
        tmp = self.new_tmp_path()
        try:
            os.link(source, tmp)
        except OSError:   # another device, or not ours to link (protected_hardlinks)
            return None
        try:
            sha, size = hash_file(tmp)
        except BaseException:
            os.unlink(tmp)
            raise
        return self.publish(tmp, sha, size)

    # origins -----------------------------------------------------------
    def origin_path(self, sha256: str) -> Path:
        return self.root / ORIGINS_DIR / sha256[:2] / f"{sha256}.json"

    def record_origin(self, sha256: str, origin: dict) -> None:
        """Note that these bytes came from elsewhere (a bundle), not from this store's
        own computations: data, never authority (no unpickling, no trust)."""
        import json

        from .atomic import atomic_write_bytes

        path = self.origin_path(sha256)
        self.sharing.make_dirs(path.parent)
        atomic_write_bytes(path, json.dumps(origin, sort_keys=True).encode() + b"\n",
                           sharing=self.sharing)

    def origin(self, sha256: str) -> dict | None:
        import json

        try:
            fd = open_regular(self.origin_path(sha256))
        except FileNotFoundError:
            return None
        except OSError:
            return {"origin": "unreadable origin record"}   # fail closed
        with open(fd, "rb") as handle:
            try:
                value = json.loads(handle.read(1 << 16))
            except ValueError:
                value = None
        return value if isinstance(value, dict) else {"origin": "unreadable origin record"}

    def forget_origin(self, sha256: str) -> None:
        try:
            os.unlink(self.origin_path(sha256))
        except FileNotFoundError:
            pass

    # reads -------------------------------------------------------------
    def _damaged(self, sha256: str, what: str, problem: str) -> ArtifactIntegrityError:
        return ArtifactIntegrityError(
            f"{what}: object sha256:{sha256} {problem} (at {self.path_for(sha256)}). "
            "Run `assay verify --repair` and rerun the workflow to recompute it.")

    def unreadable(self, sha256: str, what: str) -> StorePermissionError:
        return self.sharing.reading_error(self.path_for(sha256), f"{what}: object sha256:{sha256}")

    def verify(self, sha256: str, size: int | None, *, what: str, full: bool = False) -> Path:
        """Check an object's size and digest; a stat-cache hit skips re-hashing."""
        if not is_sha256_hex(sha256):
            raise ArtifactIntegrityError(f"{what}: {sha256!r} is not a sha256 hex digest")
        path = self.path_for(sha256)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            raise self._damaged(sha256, what, "is missing") from None
        except PermissionError:
            raise self.unreadable(sha256, what) from None
        if not stat.S_ISREG(st.st_mode):
            self.forget(sha256)
            raise self._damaged(sha256, what, "is not a regular file (a link, FIFO or "
                                              "device put in its place)")
        if size is not None and st.st_size != size:
            self.forget(sha256)
            raise self._damaged(sha256, what, f"has {st.st_size} bytes, expected {size}")
        signature = _signature(st)
        if not full and self._verified.get(sha256) == signature:
            return path
        try:
            actual, _ = hash_file(path)
        except PermissionError:
            raise self.unreadable(sha256, what) from None
        except FileNotFoundError:
            raise self._damaged(sha256, what, "is missing") from None
        except OSError as exc:
            raise self._damaged(sha256, what, f"is {exc.strerror}") from None
        if actual != sha256:
            self.forget(sha256)
            raise self._damaged(sha256, what, f"has different bytes (sha256:{actual})")
        with self._lock:
            self._verified[sha256] = signature
        return path

    def refresh(self, sha256: str) -> bool:
        """Before a cache hit names an object from a new ref: make it young for gc (see
        ``touch``) and make sure a trusted writer stored it. False if it is missing.

        In a shared store another member's object is read-only to us: if it was not used
        within the last minute, our own copy (hashed while copied, so verified) replaces it;
        so does an untrusted writer's. Without write access the object is served as it is
        (protected by gc's grace period only).
        """
        path = self.path_str(sha256)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return False
        except PermissionError:
            raise self.unreadable(sha256, f"object sha256:{sha256}") from None
        trusted = self.sharing.is_trusted(st.st_uid)
        if trusted and (self.touch(sha256, st) or not self.sharing.shared or is_fresh(st)):
            return True
        try:
            return self._replace_with_copy(sha256, Path(path)) or trusted
        except StorePermissionError:
            return trusted

    def _replace_with_copy(self, sha256: str, path: Path) -> bool:
        """Publish our own verified copy of an existing object over it (it becomes ours)."""
        tmp, fd = self._open_tmp()
        hasher = BackgroundHasher()
        try:
            with open(path, "rb") as src:
                while chunk := src.read(8 * 1024 * 1024):
                    hasher.update(chunk)
                    write_all(fd, chunk)
        except BaseException:
            os.close(fd)
            hasher.abandon()
            os.unlink(tmp)
            raise
        fsync_and_close(fd)
        if hasher.hexdigest() != sha256:   # damaged: leave it for verify to report
            os.unlink(tmp)
            return False
        with self.sharing.writing(path):
            os.chmod(tmp, OBJECT_MODE)
            publish(tmp, path)
        self.mark_verified(sha256, path)
        return True

    def touch(self, sha256: str, st: os.stat_result | None = None) -> bool:
        """Set an existing object's mtime to now; False if it is gone or not ours to touch.

        A writer that finds its bytes already stored (deduplication) or reuses an artifact
        from the action cache is about to name old objects from a new ref. `assay gc` keeps
        unreferenced objects younger than its grace period and re-checks the mtime just
        before it deletes, so this is what keeps a concurrent gc from sweeping them.
        ``st``: the object's stat, if the caller just took it.
        """
        path = self.path_for(sha256)
        was_verified = (self.is_stat_verified(sha256) if st is None
                        else self._verified.get(sha256) == _signature(st))
        try:
            os.utime(path)
        except OSError:   # missing (swept meanwhile), or another user's read-only object
            return False
        if was_verified:
            self.mark_verified(sha256, path)
        return True

    def mark_verified(self, sha256: str, path: Path) -> None:
        st = path.stat()
        with self._lock:
            self._verified[sha256] = _signature(st)

    def is_stat_verified(self, sha256: str) -> bool:
        try:
            st = self.path_for(sha256).stat()
        except FileNotFoundError:
            return False
        return self._verified.get(sha256) == _signature(st)

    def forget(self, sha256: str) -> None:
        with self._lock:
            self._verified.pop(sha256, None)

    def read_bytes(self, sha256: str, size: int | None, *, what: str) -> bytes:
        """Whole small object, always hashed (manifests are small; hashing them is cheap)."""
        path = self.path_for(sha256)
        try:
            fd = open_regular(path)
        except FileNotFoundError:
            raise self._damaged(sha256, what, "is missing") from None
        except PermissionError:
            raise self.unreadable(sha256, what) from None
        except OSError as exc:
            raise self._damaged(sha256, what, f"is {exc.strerror}") from None
        limit = size if size is not None else MAX_SMALL_OBJECT
        with open(fd, "rb") as handle:   # never more than declared: no unbounded read
            data = handle.read(limit + 1)
        if len(data) > limit and size is None:
            raise self._damaged(sha256, what, f"is larger than {limit} bytes")
        if size is not None and len(data) != size:
            raise self._damaged(sha256, what, f"has {len(data)} bytes, expected {size}")
        actual = sha256_hex(data)
        if actual != sha256:
            raise self._damaged(sha256, what, f"has different bytes (sha256:{actual})")
        return data

    def exists(self, sha256: str) -> bool:
        return self.path_for(sha256).exists()

    def iter_objects(self):
        """Yield (sha256, path) of every object file, skipping anything not named by a digest."""
        for info in self.scan().values():
            yield info.sha256, Path(info.path)

    def stat_some(self, shas: list[str]) -> dict[str, ObjectInfo]:
        """Size and mtime of the named objects that exist as regular files (one lstat each):
        what a per-study tool needs, without listing objects/."""
        found: dict[str, ObjectInfo] = {}
        for sha in shas:
            path = self.path_str(sha)
            try:
                st = os.lstat(path)
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode):
                found[sha] = ObjectInfo(sha, st.st_size, st.st_mtime_ns, path)
        return found

    def scan(self) -> dict[str, ObjectInfo]:
        """Every file under objects/ named by its digest, with size and mtime (one stat each)."""
        found: dict[str, ObjectInfo] = {}
        try:
            with os.scandir(self.objects_dir) as shards:
                shard_paths = sorted((e.name, e.path) for e in shards
                                     if e.is_dir(follow_symlinks=False) and len(e.name) == 2)
        except (FileNotFoundError, NotADirectoryError):
            return found
        for shard_name, shard_path in shard_paths:
            with os.scandir(shard_path) as entries:
                for entry in sorted(entries, key=lambda e: e.name):
                    if not self._in_shard(entry.name, shard_name):
                        continue
                    st = entry.stat(follow_symlinks=False)
                    found[entry.name] = ObjectInfo(entry.name, st.st_size, st.st_mtime_ns,
                                                   entry.path)
        return found
