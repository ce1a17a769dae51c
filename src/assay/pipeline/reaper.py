"""The parent of every command a run job starts: nothing it started outlives the job.

A shell runner's command runs in a session of its own (so SIGTERM can be forwarded to its
whole group for a checkpoint). Without this process, ``kill -9`` of the job (a lost login
node, the OOM killer, a node failure) leaves the command running as an orphan that keeps
writing into the work directory while the next attempt starts beside it.

``python -m assay.pipeline.reaper --parent PID --grace S -- COMMAND`` runs COMMAND through the shell
and:

* asks Linux to signal it when the job dies (``PR_SET_PDEATHSIG``, SIGKILL included) and to
  become the parent of its orphaned descendants (``PR_SET_CHILD_SUBREAPER``), so even a
  process that left the group (``setsid``, a daemon) stays within reach;
* when the job dies: SIGTERM to every descendant (the grace for a checkpoint stays), then
  SIGKILL to what is left after ``--grace`` seconds, then exits;
* when the command ends: ends what it left running in the background the same way, and
  exits with the command's status (128 + N for a signal, like a shell).

SIGTERM forwarded by the job to the group reaches the command directly; this process
ignores it and keeps waiting. Stdlib only, so it starts in ~30 ms.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import signal
import subprocess
import sys
import time

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
JOB_DIED = signal.SIGUSR2


def _prctl(option: int, value: int) -> bool:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(option, value, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def descendants(root: int) -> list[int]:
    """Every live process below ``root`` (from /proc: parents may already be gone)."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as handle:
                stat = handle.read().decode("utf-8", "replace")
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] in ("Z", "X"):
            continue
        children.setdefault(int(fields[1]), []).append(int(name))
    out, pending = [], list(children.get(root, []))
    while pending:
        pid = pending.pop()
        out.append(pid)
        pending.extend(children.get(pid, []))
    return out


def _reap() -> None:
    """Collect exited children (as a subreaper, orphans' exit statuses come to us)."""
    while True:
        try:
            pid, _status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def end_all(grace: float, why: str) -> None:
    """SIGTERM every descendant, wait up to ``grace`` s, SIGKILL the rest."""
    me = os.getpid()
    targets = descendants(me)
    if not targets:
        return
    print(f"[assay] {why}: stopping {len(targets)} process(es) it started "
          f"(SIGTERM, SIGKILL after {grace:g}s)", file=sys.stderr, flush=True)
    for pid in targets:
        try:
            os.kill(pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            pass
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        _reap()
        if not descendants(me):
            return
        time.sleep(0.05)
    for pid in descendants(me):
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    for _ in range(100):
        _reap()
        if not descendants(me):
            return
        time.sleep(0.02)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m assay.pipeline.reaper")
    parser.add_argument("--parent", type=int, required=True, help="the job's pid")
    parser.add_argument("--grace", type=float, default=20.0)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command")

    def job_died(_signum: int, _frame: object) -> None:
        end_all(args.grace, "the job that started this command is gone")
        os._exit(128 + signal.SIGKILL)

    # Handlers, not SIG_IGN: the command must start with default dispositions (exec resets
    # handlers, but it would inherit an ignored signal).
    signal.signal(signal.SIGTERM, lambda *_: None)
    signal.signal(signal.SIGINT, lambda *_: None)
    signal.signal(JOB_DIED, job_died)
    _prctl(PR_SET_CHILD_SUBREAPER, 1)
    _prctl(PR_SET_PDEATHSIG, JOB_DIED)
    if os.getppid() != args.parent:   # the job died before the death signal was armed
        return 128 + signal.SIGKILL
    proc = subprocess.Popen(command[0] if len(command) == 1 else command,
                            shell=len(command) == 1)
    code = proc.wait()
    end_all(min(args.grace, 5.0), "the command exited and left processes running")
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(main())
