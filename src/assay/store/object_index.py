"""An index of what ``objects/`` holds, kept as objects are written (issue 25).

Store-wide commands (``gc``, ``stats``) would otherwise list and stat every object, and
``stats`` open every one: on NFS or a parallel filesystem each of those is a round trip
to a metadata server. Instead:

* **Per-process logs.** Each process that publishes an object appends one line to its own
  file ``index/<host>.<pid>.<random>.log`` (``O_APPEND``, one ``write`` per line, no
  shared append across NFS clients): ``sha256 size kind time_ns [type sidecars]``, kind
  ``blob``, ``manifest`` (with its artifact type and the sidecars it names, what
  ``stats`` needs) or ``gone`` (deleted by ``gc``/``verify --repair``).
* **Snapshot.** ``index/snapshot.tsv`` holds the merged entries and, in its header, how
  far each log was read. ``gc --delete`` (and ``--rescan``) compacts: merge, write the
  snapshot atomically, remove logs read to the end and untouched for a day.
* **Authority.** The index is only used when the snapshot exists: a store made by this
  version starts with an empty one; an older store has none, and gc/stats scan (and say
  so) until ``gc --delete`` or ``--rescan`` builds it from a scan.
* **Safety.** A torn last line (a writer killed mid-append) is ignored; a lost line
  (killed between publishing and logging) only hides an object from gc, which then never
  deletes it: gc deletes only indexed candidates, after its own lstat and grace check.
  Lines of the same object are ordered by their time; ``gone`` only wins when newer.
"""

from __future__ import annotations

import json
import os
import re
import socket
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, NamedTuple

if TYPE_CHECKING:
    from .sharing import SharingPolicy

INDEX_DIR = "index"
SNAPSHOT = "snapshot.tsv"
LOG_SUFFIX = ".log"
LOCK = "compact.lock"
HEADER = "#assay-object-index 1"
BLOB, MANIFEST, GONE = "blob", "manifest", "gone"
LOG_MODE = 0o644
LOG_KEEP_SECONDS = 24 * 3600.0     # a consumed log this old is removed by compaction
REOPEN_SECONDS = 6 * 3600.0        # a writer starts a new log after this: see compaction
LOCK_STALE_SECONDS = 3600.0
MAX_CLASSIFY_BYTES = 64 * 1024 * 1024
# What classify says of an object: kind, artifact type, sidecars (sha, declared size).
Kind = tuple[str, "str | None", tuple[tuple[str, "int | None"], ...]]


class Entry(NamedTuple):
    """One object as the index knows it (a tuple: a million of them load in seconds)."""

    size: int
    kind: str                       # BLOB or MANIFEST
    time_ns: int
    artifact_type: str | None = None
    sidecars: tuple[tuple[str, int | None], ...] = ()


def index_dir(store_root: str | os.PathLike[str]) -> Path:
    return Path(store_root) / INDEX_DIR


def has_index(store_root: str | os.PathLike[str]) -> bool:
    """Whether the index is authoritative (a snapshot exists, as a file of its own)."""
    import stat

    try:
        return stat.S_ISREG(os.lstat(index_dir(store_root) / SNAPSHOT).st_mode)
    except OSError:
        return False


class IndexUnusable(Exception):
    """The snapshot cannot be read: callers scan objects/ instead and say why."""


# --- lines -----------------------------------------------------------------------------
def classify(data: bytes) -> Kind:
    """Kind, artifact type and sidecars of an object's bytes: the same test ``stats`` uses
    when it sniffs objects (a JSON object with the manifest envelope)."""
    from .reading import parse_manifest_bytes, sidecar_shas

    manifest = parse_manifest_bytes(data) if 2 <= len(data) <= MAX_CLASSIFY_BYTES else None
    if manifest is None:
        return BLOB, None, ()
    return MANIFEST, str(manifest.get("artifact_type")), tuple(sidecar_shas(manifest))


def classify_file(path: str | os.PathLike[str], size: int) -> Kind:
    """``classify`` for a file: only JSON-looking files of manifest size are read whole."""
    if not 2 <= size <= MAX_CLASSIFY_BYTES:
        return BLOB, None, ()
    from .reading import read_small

    data = read_small(os.fspath(path), MAX_CLASSIFY_BYTES)
    return classify(data) if data is not None else (BLOB, None, ())


def format_line(sha: str, size: int, kind: str, time_ns: int, artifact_type: str | None = None,
                sidecars: Iterable[tuple[str, int | None]] = ()) -> bytes:
    fields = [sha, str(int(size)), kind, str(int(time_ns))]
    if kind == MANIFEST:
        fields.append(json.dumps(artifact_type))   # no tab or newline survives json.dumps
        fields.append(",".join(f"{s}:{'' if n is None else int(n)}" for s, n in sidecars))
    return ("\t".join(fields) + "\n").encode()


_HEX64 = re.compile(r"[0-9a-f]{64}")


def _is_hex64(text: str) -> bool:
    return _HEX64.fullmatch(text) is not None


_SIMPLE_LINE = re.compile(r"([0-9a-f]{64})\t([0-9]{1,19})\t(blob|gone)\t([0-9]{1,20})")


def parse_line(line: str) -> tuple[str, str, Entry] | None:
    """(sha, kind, entry) of a well-formed line, else None (a torn or foreign line)."""
    simple = _SIMPLE_LINE.fullmatch(line)
    if simple is not None:   # the common case, in one regex
        sha, size, kind, when = simple.groups()
        return sha, kind, Entry(int(size), kind, int(when))
    fields = line.split("\t")
    if len(fields) < 4 or not _is_hex64(fields[0]):
        return None
    try:
        size, when = int(fields[1]), int(fields[3])
    except ValueError:
        return None
    kind = fields[2]
    if kind == MANIFEST:
        if len(fields) != 6:
            return None
        try:
            artifact_type = json.loads(fields[4])
            sidecars = tuple((s, int(n) if n else None) for s, _, n in
                             (item.partition(":") for item in fields[5].split(",") if item))
        except ValueError:
            return None
        if not all(_is_hex64(s) for s, _ in sidecars):
            return None
        return fields[0], kind, Entry(size, kind, when, artifact_type, sidecars)
    if kind not in (BLOB, GONE) or len(fields) != 4:
        return None
    return fields[0], kind, Entry(size, kind, when)


# --- writing ---------------------------------------------------------------------------
class IndexLog:
    """This process's log in one store: opened on first use, reopened after a fork (a
    child never appends to its parent's file) or after REOPEN_SECONDS."""

    _lock = threading.Lock()
    _open: dict[str, tuple[int, int, float]] = {}     # index dir -> (fd, pid, opened at)
    _warned: set[str] = set()

    @classmethod
    def append(cls, store_root: Path, lines: list[bytes],
               sharing: "SharingPolicy | None" = None) -> None:
        """Append whole lines. A failure only costs the index those
        lines (gc then keeps the objects); it is said once per process, never raised."""
        directory = os.fspath(index_dir(store_root))
        try:
            with cls._lock:
                fd = cls._fd(directory, sharing)
                for start in range(0, len(lines), 256):
                    # O_APPEND, whole lines per write: a kill leaves at most one torn line
                    # at the end, and nothing of another process's lines in between.
                    data = memoryview(b"".join(lines[start:start + 256]))
                    while data:
                        data = data[os.write(fd, data):]
        except OSError as exc:
            if directory not in cls._warned:
                cls._warned.add(directory)
                print(f"assay: warning: cannot append to the object index in {directory} "
                      f"({exc.strerror or exc}); `assay stats` may undercount until "
                      "`assay gc --rescan`, and gc keeps the objects this process wrote",
                      file=sys.stderr)

    @classmethod
    def _fd(cls, directory: str, sharing: "SharingPolicy | None") -> int:
        now = time.monotonic()
        held = cls._open.get(directory)
        if held is not None:
            fd, pid, opened = held
            if pid == os.getpid() and now - opened < REOPEN_SECONDS:
                return fd
            if pid == os.getpid():
                os.close(fd)
            cls._open.pop(directory, None)
        if sharing is not None:
            sharing.make_dirs(directory)
        else:
            os.makedirs(directory, exist_ok=True)
        name = f"{socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex[:12]}{LOG_SUFFIX}"
        fd = os.open(os.path.join(directory, name),
                     os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL, LOG_MODE)
        try:
            os.fchmod(fd, LOG_MODE)   # not narrowed by the umask: the group reads it
        except OSError:
            pass
        cls._open[directory] = (fd, os.getpid(), now)
        return fd


def _after_fork_in_child() -> None:
    """A forked child starts its own log (never appends to its parent's), and a lock held
    by another thread of the parent at the fork must not block it forever."""
    IndexLog._lock = threading.Lock()
    IndexLog._open = {}


os.register_at_fork(after_in_child=_after_fork_in_child)


def note_published(store_root: Path, sha: str, size: int, kind: str,
                   artifact_type: str | None = None,
                   sidecars: Iterable[tuple[str, int | None]] = (),
                   sharing: "SharingPolicy | None" = None) -> None:
    IndexLog.append(store_root, [format_line(sha, size, kind, time.time_ns(), artifact_type,
                                             sidecars)], sharing)


def note_gone(store_root: Path, shas: Iterable[str],
              sharing: "SharingPolicy | None" = None) -> None:
    now = time.time_ns()
    note_gone_at(store_root, [(sha, now) for sha in shas], sharing)


def note_gone_at(store_root: Path, gone: Iterable[tuple[str, int]],
                 sharing: "SharingPolicy | None" = None) -> None:
    """Objects deleted (or found missing) at these times: a line of the same object
    written later (published again) wins over them."""
    lines = [format_line(sha, 0, GONE, when) for sha, when in gone]
    if lines:
        IndexLog.append(store_root, lines, sharing)


def create_empty(store_root: Path, sharing: "SharingPolicy | None" = None) -> None:
    """A new store's index: empty and complete (every object it will hold is logged)."""
    _write_snapshot(Path(store_root), {}, {}, sharing)


# --- reading ---------------------------------------------------------------------------
@dataclass
class Loaded:
    entries: dict[str, Entry]
    consumed: dict[str, int]        # log name -> bytes read (whole lines)
    logs_read: int = 0
    untrusted_logs: int = 0
    unreadable_logs: int = 0
    # Objects only logs of users the store does not trust name (never their `gone` lines:
    # an outsider must not hide garbage from gc). gc takes them as candidates (it decides
    # by lstat, as a scan would); stats and the snapshot leave them out.
    untrusted_entries: dict[str, Entry] = field(default_factory=dict)

    def note(self) -> str | None:
        """What the counts leave out, if anything (those objects are kept by gc)."""
        parts = []
        if self.untrusted_logs:
            parts.append(f"{self.untrusted_logs} index log(s) written by users the store "
                         "does not trust were not counted")
        if self.unreadable_logs:
            parts.append(f"{self.unreadable_logs} index log(s) could not be read (not a "
                         "regular file, or not readable)")
        if not parts:
            return None
        return "; ".join(parts) + ": counts may miss their objects (`assay gc --rescan`)"


def _read_lines(data: bytes, merged: dict[str, tuple[str, Entry]], *,
                gone: bool = True) -> int:
    """Merge whole lines into ``merged`` (``gone=False``: not the deletions); the number
    of bytes up to the last newline."""
    end = data.rfind(b"\n") + 1
    # (a byte that is not ASCII becomes U+FFFD: its line then matches nothing, is skipped)
    for line in data[:end].decode("ascii", "replace").split("\n"):
        parsed = parse_line(line) if line else None
        if parsed is None:
            continue
        sha, kind, entry = parsed
        if kind == GONE and not gone:
            continue
        old = merged.get(sha)
        if old is None or entry.time_ns >= old[1].time_ns:
            merged[sha] = (kind, entry)
    return end


def load(store_root: str | os.PathLike[str], sharing: "SharingPolicy | None" = None) -> Loaded:
    """The snapshot plus every log past what the snapshot read. Needs ``has_index``."""
    from .hashing import open_regular

    directory = index_dir(store_root)
    merged: dict[str, tuple[str, Entry]] = {}
    problem = None
    try:
        with open(open_regular(directory / SNAPSHOT), "rb") as handle:
            owner = os.fstat(handle.fileno()).st_uid
            data = handle.read()
    except OSError as exc:   # never through a link, never a FIFO
        raise IndexUnusable(f"{directory / SNAPSHOT}: {exc.strerror or exc}") from None
    header, _, body = data.partition(b"\n")
    text = header.decode("ascii", "replace")
    try:
        if not text.startswith(HEADER + "\t"):
            raise ValueError
        consumed = json.loads(text[len(HEADER) + 1:])["consumed"]
        if not (isinstance(consumed, dict) and all(
                isinstance(k, str) and type(v) is int for k, v in consumed.items())):
            raise ValueError
    except (ValueError, KeyError, TypeError):
        problem = "not an object index snapshot"
    if problem is not None:
        raise IndexUnusable(f"{directory / SNAPSHOT} is {problem}")
    if sharing is not None and not sharing.is_trusted(owner):
        # it could hide objects from gc (keeping garbage alive) or skew stats
        raise IndexUnusable(f"{directory / SNAPSHOT} was written by {sharing.writer(owner)}, "
                            "whom the store does not trust")
    _read_lines(body, merged)
    loaded = Loaded({}, dict(consumed))
    outsiders: dict[str, tuple[str, Entry]] = {}
    for entry in sorted(os.scandir(directory), key=lambda e: e.name):
        if not entry.name.endswith(LOG_SUFFIX):
            continue
        try:
            st = entry.stat(follow_symlinks=False)
        except FileNotFoundError:
            continue
        done = consumed.get(entry.name, 0)
        if st.st_size <= done:
            continue
        trusted = sharing is None or sharing.is_trusted(st.st_uid)
        try:
            with open(open_regular(entry.path), "rb") as handle:
                handle.seek(done)
                chunk = handle.read()
        except FileNotFoundError:
            continue
        except OSError:   # a link, a FIFO, unreadable: its lines only keep objects alive
            loaded.unreadable_logs += 1
            continue
        if not trusted:   # never consumed: read again each time, never compacted
            loaded.untrusted_logs += 1
            _read_lines(chunk, outsiders, gone=False)
            continue
        loaded.consumed[entry.name] = done + _read_lines(chunk, merged)
        loaded.logs_read += 1
    loaded.entries = {sha: e for sha, (kind, e) in merged.items() if kind != GONE}
    loaded.untrusted_entries = {sha: e for sha, (_, e) in outsiders.items()
                                if sha not in loaded.entries}
    return loaded



def load_unless_rescan(store_root: str | os.PathLike[str], sharing: "SharingPolicy | None",
                       *, rescan: bool) -> tuple[Loaded | None, str | None]:
    """(the index, or None: there is none, a rescan was asked, or it cannot be read; why it
    cannot be read). gc and stats both start here, and scan when they get None."""
    if rescan or not has_index(store_root):
        return None, None
    try:
        return load(store_root, sharing), None
    except IndexUnusable as exc:
        return None, str(exc)


def log_offsets(store_root: str | os.PathLike[str]) -> dict[str, int]:
    """How far each log reaches now (before a rescan: lines past this are read later)."""
    out: dict[str, int] = {}
    try:
        with os.scandir(index_dir(store_root)) as entries:
            for entry in entries:
                if entry.name.endswith(LOG_SUFFIX):
                    try:
                        out[entry.name] = entry.stat(follow_symlinks=False).st_size
                    except FileNotFoundError:
                        continue
    except FileNotFoundError:
        pass
    return out


def rebuild(store_root: str | os.PathLike[str], scan: Callable[[], dict[str, Any]], *,
            jobs: int | None = None, progress: Any = None
            ) -> tuple[dict[str, Entry], dict[str, int]]:
    """Entries from ``scan()`` of ``objects/`` (``ObjectStore.scan``; every JSON-looking
    object read to classify it), and the log offsets taken before the scan: the logs' later
    lines complete it. (The scan is passed in: ``objects`` writes to this index, so the
    index does not import it back.)"""
    from .reading import map_batched, no_progress, read_small

    offsets = log_offsets(store_root)
    scanned = scan()
    small = [o for o in scanned.values() if 2 <= o.size_bytes <= MAX_CLASSIFY_BYTES]
    kinds: dict[str, tuple[str, str | None, tuple]] = {}
    report = progress or no_progress
    for i, (info, data) in enumerate(zip(small, map_batched(
            lambda o: read_small(o.path, MAX_CLASSIFY_BYTES), small, jobs=jobs)), 1):
        if data is not None:
            import hashlib

            if hashlib.sha256(data).hexdigest() == info.sha256:
                kinds[info.sha256] = classify(data)
        if i % 1024 == 0:
            report("index rebuild", i, len(small))
    entries = {}
    for sha, info in scanned.items():
        kind, artifact_type, sidecars = kinds.get(sha, (BLOB, None, ()))
        entries[sha] = Entry(info.size_bytes, kind, info.mtime_ns, artifact_type, sidecars)
    return entries, offsets


# --- compaction ------------------------------------------------------------------------
def _write_snapshot(store_root: Path, entries: dict[str, Entry], consumed: dict[str, int],
                    sharing: "SharingPolicy | None") -> None:
    from .atomic import atomic_write_bytes
    from .sharing import PRIVATE

    lines = [f"{HEADER}\t{json.dumps({'consumed': consumed}, sort_keys=True)}\n".encode()]
    lines += [format_line(sha, e.size, e.kind, e.time_ns, e.artifact_type, e.sidecars)
              for sha, e in sorted(entries.items())]
    policy = sharing if sharing is not None else PRIVATE
    policy.make_dirs(index_dir(store_root))
    atomic_write_bytes(index_dir(store_root) / SNAPSHOT, b"".join(lines), mode=0o644,
                       sharing=policy)


class Busy(Exception):
    """Another process compacts the index right now."""


class CompactionLock:
    """``index/compact.lock`` (O_EXCL, works on NFSv3+): one compaction at a time, so no
    snapshot is written from a base that another compaction already replaced and whose
    logs it removed. A lock untouched for an hour is a dead holder's and is taken over."""

    def __init__(self, store_root: Path, sharing: "SharingPolicy | None") -> None:
        self.path = index_dir(store_root) / LOCK
        self.sharing = sharing

    def __enter__(self) -> "CompactionLock":
        if self.sharing is not None:
            self.sharing.make_dirs(self.path.parent)
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                try:
                    if time.time() - os.lstat(self.path).st_mtime < LOCK_STALE_SECONDS:
                        raise Busy(str(self.path)) from None
                    os.unlink(self.path)
                except FileNotFoundError:
                    pass
                except OSError as exc:   # a directory in its place, not ours to remove
                    raise Busy(f"{self.path} ({exc.strerror})") from None
                continue
            except OSError as exc:
                raise Busy(f"{self.path} ({exc.strerror})") from None
            os.write(fd, f"{socket.gethostname()} {os.getpid()}\n".encode())
            os.close(fd)
            return self
        raise Busy(str(self.path))

    def __exit__(self, *exc: object) -> None:
        try:
            os.unlink(self.path)
        except OSError:
            pass


def compact(store_root: str | os.PathLike[str], entries: dict[str, Entry],
            consumed: dict[str, int], sharing: "SharingPolicy | None" = None) -> int:
    """Write ``entries`` (merged up to ``consumed``) as the snapshot, then remove logs read
    to their end and untouched for LOG_KEEP_SECONDS (their writer has moved to a new log:
    REOPEN_SECONDS). The caller holds the CompactionLock. Returns the logs removed."""
    store_root = Path(store_root)
    live_logs = log_offsets(store_root)
    consumed = {name: n for name, n in consumed.items() if name in live_logs}
    _write_snapshot(store_root, entries, consumed, sharing)
    removed = 0
    now = time.time()
    for name, size in live_logs.items():
        if consumed.get(name) != size:
            continue
        path = index_dir(store_root) / name
        try:
            if now - os.lstat(path).st_mtime < LOG_KEEP_SECONDS:
                continue
            os.unlink(path)   # its lines are in the snapshot; the header forgets it next time
            removed += 1
        except OSError:
            continue          # another member's, in a sticky folder: read past, kept
    return removed
