"""Persistent work directories of run jobs: ``store/work/<action key>/``.

A simulation that outlives its walltime must not lose its checkpoints, so a run job works
in a directory named by its action key: the same job on its next attempt (a SLURM retry,
a rerun after a crash) finds what the last attempt left there. Nothing in it is ever part
of a digest. It is removed once the run's artifact is published; ``assay gc`` lists and
removes abandoned ones.

    work/<key>/files/          the runner's working directory (ctx.workdir, cwd of commands)
    work/<key>/state.json      identity (stage, condition, replicate), attempt, host, pid
    work/<key>/progress.json   done/total/message written by ctx.progress
    work/<key>/attempt-N.log   the log of attempt N, kept when it failed or was stopped
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from .atomic import atomic_write_bytes
from .hashing import canonical_json, is_sha256_hex
from .sharing import PRIVATE, SharingPolicy

WORK_DIR = "work"
FILES = "files"
STATE = "state.json"
PROGRESS = "progress.json"


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_bytes())
    except (FileNotFoundError, ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


@dataclass
class WorkDir:
    """One run job's persistent directory."""

    root: Path
    sharing: SharingPolicy = PRIVATE

    @property
    def key(self) -> str:
        return self.root.name

    @property
    def files(self) -> Path:
        return self.root / FILES

    def state(self) -> dict[str, Any]:
        return _read_json(self.root / STATE) or {}

    def progress(self) -> dict[str, Any] | None:
        return _read_json(self.root / PROGRESS)

    def has_files(self) -> bool:
        """True when an earlier attempt left something to resume from."""
        try:
            return any(os.scandir(self.files))
        except FileNotFoundError:
            return False

    def begin_attempt(self, identity: dict[str, Any], log_path: str | None = None) -> int:
        """Count this attempt and record who runs it; returns the attempt number (1-based)."""
        self.sharing.make_dirs(self.files)
        previous = self.state()
        attempt = int(previous.get("attempt", 0)) + 1
        state = {**identity, "attempt": attempt, "host": socket.gethostname(),
                 "pid": os.getpid(), "started": time.time(),
                 "first_started": previous.get("first_started", time.time()),
                 "log": log_path, "slurm_job_id": os.environ.get("SLURM_JOB_ID")}
        self._write(STATE, canonical_json(state) + b"\n")
        return attempt

    def remove_foreign_links(self) -> list[str]:
        """Remove symbolic links in ``files/`` that another user made: a member of a shared
        store could plant ``files/out.txt -> ~/.bashrc``, and the next attempt would write
        through it. (The runner's own links, made by this user, stay.)"""
        removed = []
        me = os.getuid()
        for base, dirs, names in os.walk(self.files):
            for name in (*dirs, *names):
                path = os.path.join(base, name)
                try:
                    st = os.lstat(path)
                except FileNotFoundError:
                    continue
                if stat.S_ISLNK(st.st_mode) and st.st_uid != me:
                    target = os.readlink(path)
                    os.unlink(path)
                    removed.append(f"{os.path.relpath(path, self.files)} -> {target} "
                                   f"(made by uid {st.st_uid})")
        return removed

    def write_progress(self, done: float, total: float | None, message: str = "") -> None:
        body = {"done": done, "total": total, "message": str(message), "time": time.time()}
        self._write(PROGRESS, canonical_json(body) + b"\n")

    def _write(self, name: str, data: bytes) -> None:
        """A small state file; if a twin job of the same key (another workflow on this
        store) finished and removed the directory meanwhile, it is made again."""
        try:
            atomic_write_bytes(self.root / name, data, sharing=self.sharing)
        except FileNotFoundError:
            self.sharing.make_dirs(self.files)
            atomic_write_bytes(self.root / name, data, sharing=self.sharing)

    def is_ours(self) -> bool:
        """No other attempt is using this directory: its state names this process, a
        process of this host that is gone, or nobody."""
        state = self.state()
        pid, host = state.get("pid"), state.get("host")
        if pid is None or (pid == os.getpid() and host == socket.gethostname()):
            return True
        if host != socket.gethostname() or not isinstance(pid, int):
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:   # alive, another user's
            return False
        return False

    def remove_if_ours(self) -> bool:
        """Remove the directory once the result is published, unless another attempt of
        the same key (a twin job of another workflow) is working in it now: then `assay gc`
        removes it later (its result is published)."""
        if not self.is_ours():
            return False
        self.remove()
        return True

    def untrusted_writer(self) -> int | None:
        """The uid of an untrusted writer of the last attempt's state, if any: its files
        must not be resumed from."""
        try:
            uid = os.stat(self.root / STATE).st_uid
        except FileNotFoundError:
            return None
        return None if self.sharing.is_trusted(uid) else uid

    def mtime(self) -> float:
        """Newest modification under the directory: when it was last worked in."""
        newest = 0.0
        for base, dirs, files in os.walk(self.root):
            for name in (*dirs, *files):
                try:
                    newest = max(newest, os.lstat(os.path.join(base, name)).st_mtime)
                except FileNotFoundError:
                    continue
        return newest or self.root.stat().st_mtime

    def size_bytes(self) -> int:
        total = 0
        for base, _dirs, files in os.walk(self.root):
            for name in files:
                try:
                    total += os.lstat(os.path.join(base, name)).st_size
                except FileNotFoundError:
                    continue
        return total

    def keep_log(self, attempt: int, log_path: Path) -> None:
        """Copy a failed or interrupted attempt's log here: Snakemake deletes the rule's log
        before the next attempt starts, and with it what the killed engine said."""
        try:
            data = Path(log_path).read_bytes()
        except OSError:
            return
        atomic_write_bytes(self.root / f"attempt-{attempt}.log", data, sharing=self.sharing)

    def kept_logs(self) -> list[Path]:
        return sorted(self.root.glob("attempt-*.log"),
                      key=lambda p: int(p.stem.split("-")[-1]))

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


class WorkDirs:
    """Owner of the ``work/`` layout: one directory per run action key."""

    def __init__(self, root: Path, sharing: SharingPolicy = PRIVATE) -> None:
        self.root = Path(root)
        self.sharing = sharing

    def for_key(self, key: str) -> WorkDir:
        """The key's work directory; one an untrusted writer left is removed first (a run
        never resumes from files it cannot trust)."""
        if not is_sha256_hex(key):
            raise ValueError(f"work directory key must be 64 lowercase hex, got {key!r}")
        work = WorkDir(self.root / key, self.sharing)
        if work.untrusted_writer() is not None:
            work.remove()
            if work.root.exists():
                raise self.sharing.permission_error(work.root / STATE)
        return work

    def __iter__(self) -> Iterator[WorkDir]:
        try:
            entries = sorted(os.scandir(self.root), key=lambda e: e.name)
        except FileNotFoundError:
            return
        for entry in entries:
            if is_sha256_hex(entry.name) and entry.is_dir(follow_symlinks=False):
                yield WorkDir(Path(entry.path), self.sharing)
