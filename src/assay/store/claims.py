"""One live attempt per action key: the claim a job holds while it works on a key.

Two attempts of one run (a second ``snakemake`` after ``--unlock`` while the first still
runs, a SLURM job resubmitted while its earlier attempt lives, two lab members starting
the same study on a shared store) would otherwise work in the same
``store/work/<key>/`` and both append to its files. So a job claims its key first:

* **The lock**: ``store/claims/<key>.lock``, flufl.lock's NFS-safe hard-link lock
  (``link(2)`` is atomic on NFS, where ``flock`` may be node-local or switched off; the
  same choice DVC made for its NFS lock). Beside it ``<key>.who`` names the holder: host,
  pid, SLURM job, user, since when.
* **The lease**: a holder renews its claim every ``LEASE_SECONDS / 4`` from a heartbeat
  thread; the lock file's mtime says until when the claim holds.
* **Breaking a dead holder's claim**, and nothing else: at once when the holder ran on
  this machine (same boot id and pid namespace) and its pid is gone or a zombie (kill -9,
  the OOM killer); otherwise when its lease ran out (``LEASE_SECONDS`` plus flufl's 10 s
  clock slop without renewal: a lost node, a frozen process). A renewing holder is never
  broken. Every break is logged with whom it took over from.
* **A holder that lost its claim** (frozen past its lease, then taken over) is told by
  its heartbeat, stops its runner, and publishes nothing.

A second attempt waits for the holder up to ``wait_seconds`` (``runner.claim_wait_seconds``
for runs), then stops with a message naming the holder and what to type; after waiting it
looks in the action cache again, so a twin's result is a cache hit, not a recomputation.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from ..errors import AssayError

CLAIMS_DIR = "claims"
LEASE_SECONDS = 60.0
POLL_SECONDS = 2.0
LOG_EVERY_SECONDS = 30.0


class ClaimHeld(AssayError):
    """Another live attempt holds this action key."""


class ClaimLost(AssayError):
    """This attempt's claim ran out and was taken over: it must not publish."""


def _read_text(path: Path, limit: int = 1 << 16) -> str | None:
    from .hashing import open_regular

    try:
        fd = open_regular(path)
    except OSError:
        return None
    try:
        return os.read(fd, limit).decode("utf-8", "replace")
    finally:
        os.close(fd)


def host_identity() -> str:
    """What makes two processes 'on the same machine' for pid checks: the kernel's boot id
    and the pid namespace (host names repeat: many nodes resolve to ``localhost``)."""
    boot = (_read_text(Path("/proc/sys/kernel/random/boot_id")) or "").strip()
    try:
        pidns = os.readlink("/proc/self/ns/pid")
    except OSError:
        pidns = ""
    return f"{boot}/{pidns}" if boot else socket.gethostname()


def pid_alive(pid: int) -> bool:
    """True unless this pid is gone or a zombie (killed, not yet reaped) on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass   # alive, another user's
    stat = _read_text(Path(f"/proc/{pid}/stat"), 512)
    if stat and ")" in stat:
        return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    return True


@dataclass
class Claim:
    """The claim on one action key; use as a context manager around the work on it."""

    root: Path                      # the store's root
    key: str
    what: str = ""                  # e.g. "run T400/1", for messages
    wait_seconds: float = 300.0
    log: Callable[[str], None] = lambda _m: None
    on_lost: Callable[[], None] | None = None
    lease_seconds: float = LEASE_SECONDS
    sharing: Any = None             # the store's SharingPolicy: modes of what we create
    _lock: Any = field(default=None, init=False, repr=False)
    _stop: threading.Event = field(default_factory=threading.Event, init=False, repr=False)
    _lost: bool = field(default=False, init=False, repr=False)

    @property
    def dir(self) -> Path:
        return Path(self.root) / CLAIMS_DIR

    @property
    def lock_path(self) -> Path:
        return self.dir / f"{self.key}.lock"

    @property
    def who_path(self) -> Path:
        return self.dir / f"{self.key}.who"

    # --- the holder ------------------------------------------------------------------
    def holder(self) -> dict[str, Any] | None:
        """Who holds the claim now (from ``<key>.who``), if it matches the lock."""
        lock_text = _read_text(self.lock_path)
        who_text = _read_text(self.who_path)
        if not lock_text or not who_text:
            return None
        try:
            who = json.loads(who_text)
        except ValueError:
            return None
        if not isinstance(who, dict) or who.get("claim") != lock_text.strip():
            return None
        return who

    def describe_holder(self, who: dict[str, Any] | None) -> str:
        if who is None:
            return "another attempt (its details are not written yet, or it died before)"
        since = who.get("since")
        slurm = f", SLURM job {who['slurm_job_id']}" if who.get("slurm_job_id") else ""
        return (f"{who.get('what') or 'an attempt'} by {who.get('user', '?')} on host "
                f"{who.get('host', '?')}, pid {who.get('pid', '?')}{slurm}, since {since}")

    def _break_if_dead_here(self) -> None:
        """Expire the claim of a holder that ran on this machine and is gone.

        Sets the lock file's mtime (its lease) into the past through a descriptor of the
        very inode whose holder was checked, so a claim re-taken meanwhile is untouched;
        flufl.lock then breaks the expired lock by its own rule.
        """
        try:
            fd = os.open(self.lock_path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            return
        try:
            content = os.read(fd, 4096).decode("utf-8", "replace").strip()
            who = self.holder()
            if who is None or who.get("claim") != content:
                return
            if who.get("host_id") != host_identity() or not isinstance(who.get("pid"), int):
                return
            if pid_alive(who["pid"]):
                return
            try:
                os.utime(fd, (0, 0))
            except PermissionError:
                return   # another user's: its lease runs out instead
            self.log(f"claim on {self.what or self.key[:12]}: its holder "
                     f"({self.describe_holder(who)}) is gone; taking it over")
        finally:
            os.close(fd)

    # --- acquire / release -----------------------------------------------------------
    def acquire(self) -> None:
        try:
            self._acquire()
        except PermissionError as exc:
            if self.sharing is None:
                raise
            raise self.sharing.permission_error(exc.filename or self.dir) from None

    def _acquire(self) -> None:
        from datetime import timedelta

        from flufl.lock import AlreadyLockedError, Lock, TimeOutError

        if self.sharing is not None:
            self.sharing.make_dirs(self.dir)
        else:
            self.dir.mkdir(parents=True, exist_ok=True)
        self._lock = Lock(str(self.lock_path), lifetime=timedelta(seconds=self.lease_seconds))
        deadline = time.monotonic() + max(0.0, self.wait_seconds)
        next_note = 0.0
        before = None
        while True:
            self._break_if_dead_here()
            try:
                self._lock.lock(timeout=timedelta(seconds=POLL_SECONDS))
                break
            except AlreadyLockedError:
                break
            except TimeOutError:
                pass
            who = self.holder()
            now = time.monotonic()
            if before is None:
                before = who
            if now >= deadline:
                raise ClaimHeld(
                    f"{self.what or 'this job'} is being computed by another live attempt: "
                    f"{self.describe_holder(who)}. It was not started twice. Wait for that "
                    "attempt (its result is then a cache hit), or stop it if it is a "
                    "leftover (kill the pid, or `scancel` the job) and run again; "
                    "`runner.claim_wait_seconds` sets how long a second attempt waits "
                    f"(waited {self.wait_seconds:g} s). Claim file: {self.lock_path}")
            if now >= next_note:
                self.log(f"waiting for {self.describe_holder(who)}, which holds "
                         f"{self.what or self.key[:12]} (up to {self.wait_seconds:g} s)")
                next_note = now + LOG_EVERY_SECONDS
        if before is not None and before.get("pid") is not None:
            self.log(f"claimed {self.what or self.key[:12]} after its holder "
                     f"({self.describe_holder(before)}) released it or was found dead")
        self._write_who()
        threading.Thread(target=self._heartbeat, name="assay-claim", daemon=True).start()

    def _write_who(self) -> None:
        import getpass

        try:
            user = getpass.getuser()
        except Exception:   # no passwd entry (containers)
            user = str(os.getuid())
        who = {"claim": self._lock.claimfile, "what": self.what, "host": socket.gethostname(),
               "host_id": host_identity(), "pid": os.getpid(), "user": user,
               "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
               "since": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        # Advisory (messages, same-machine liveness), never a result: renamed into place so
        # it is whole, but not fsynced (a crash loses only the holder it described).
        tmp = self.dir / f".{self.key}.who.{os.getpid()}.tmp"
        with open(tmp, "wb") as handle:
            handle.write(json.dumps(who, sort_keys=True).encode() + b"\n")
        os.replace(tmp, self.who_path)

    def _heartbeat(self) -> None:
        from flufl.lock import NotLockedError

        while not self._stop.wait(self.lease_seconds / 4):
            try:
                self._lock.refresh()
            except (NotLockedError, OSError):
                self._lost = True
                self.log(f"lost the claim on {self.what or self.key[:12]} (this attempt was "
                         f"not heard from for over {self.lease_seconds:g} s and another one "
                         f"took over: {self.describe_holder(self.holder())}); stopping, "
                         "nothing will be published")
                if self.on_lost is not None:
                    self.on_lost()
                return

    def check(self) -> None:
        """Raise ClaimLost unless this attempt still holds its claim (call before publishing)."""
        if self._lost or self._lock is None or not self._lock.is_locked:
            self._lost = True
            raise ClaimLost(
                f"{self.what or 'this job'} lost its claim ({self.describe_holder(self.holder())} "
                "holds it now): this attempt publishes nothing; the holder's result counts")

    def release(self) -> None:
        self._stop.set()
        if self._lock is None:
            return
        from flufl.lock import NotLockedError

        try:
            if self._lock.is_locked:
                who = self.holder()
                if who is not None and who.get("claim") == self._lock.claimfile:
                    try:
                        os.unlink(self.who_path)
                    except FileNotFoundError:
                        pass
            self._lock.unlock(unconditionally=True)
        except (NotLockedError, OSError):
            pass

    def __enter__(self) -> "Claim":
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
