"""A run job's children and signals: stream output, forward SIGTERM, wait a grace period.

SLURM ends a job at its walltime (and on ``scancel`` or preemption) with SIGTERM, then
SIGKILL some seconds later. A simulation that gets the SIGTERM in time writes its
checkpoint, so the next attempt resumes instead of starting over. The job therefore:

* starts each command in its own process group with the job's own stdout/stderr (the
  rule's log file): output reaches the log as it is written, never held in memory;
* under ``assay.pipeline.reaper``, so that nothing a command started outlives the job, even when
  the job itself is SIGKILLed;
* on SIGTERM sets ``stop_event`` (Python runners poll it), forwards the signal to every
  child group, and after ``grace_seconds`` kills what is left and exits.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Mapping

EXIT_TERMINATED = 128 + signal.SIGTERM


class Supervisor:
    def __init__(self, grace_seconds: float = 20.0) -> None:
        self.grace_seconds = grace_seconds
        self.stop_event = threading.Event()
        self._groups: set[int] = set()
        self._lock = threading.Lock()

    def run(self, command: str, *, cwd: Path, env: Mapping[str, str]) -> int:
        """Run a shell command to completion; its output goes straight to our stdout/stderr."""
        sys.stdout.flush()
        sys.stderr.flush()
        proc = subprocess.Popen(reaped(command, self.grace_seconds), cwd=cwd, env=dict(env),
                                start_new_session=True)
        with self._lock:
            self._groups.add(proc.pid)
        try:
            if self.stop_event.is_set():    # SIGTERM came while we were starting it
                self._signal_group(proc.pid, signal.SIGTERM)
            return proc.wait()
        except BaseException:
            self._signal_group(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
        finally:
            with self._lock:
                self._groups.discard(proc.pid)

    @staticmethod
    def _signal_group(pgid: int, signum: int) -> None:
        try:
            os.killpg(pgid, signum)
        except (ProcessLookupError, PermissionError):
            pass

    def request_stop(self, signum: int = signal.SIGTERM) -> None:
        """Ask everything to stop: runners see ``stop_event``, children get ``signum``."""
        first = not self.stop_event.is_set()
        self.stop_event.set()
        with self._lock:
            groups = list(self._groups)
        for pgid in groups:
            self._signal_group(pgid, signum)
        if first:
            threading.Thread(target=self._deadline, name="assay-grace", daemon=True).start()

    def _deadline(self) -> None:
        """After the grace period nothing may keep the job alive: the scheduler is about to
        SIGKILL it anyway, and a clean exit code beats being killed mid-write."""
        time.sleep(self.grace_seconds)
        with self._lock:
            groups = list(self._groups)
        for pgid in groups:
            self._signal_group(pgid, signal.SIGKILL)
        print(f"[assay] still running {self.grace_seconds:g}s after SIGTERM: stopped",
              file=sys.stderr, flush=True)
        time.sleep(min(2.0, self.grace_seconds))   # let a killed child's wait() return first
        os._exit(EXIT_TERMINATED)

    def install(self) -> None:
        """Route SIGTERM (and SIGINT) to ``request_stop``; only the main thread may do this."""
        def handler(signum: int, _frame: object) -> None:
            print(f"[assay] received signal {signum}: asking the run to checkpoint and stop "
                  f"(grace {self.grace_seconds:g}s)", file=sys.stderr, flush=True)
            self.request_stop(signal.SIGTERM)

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)


def reaped(command: str, grace_seconds: float) -> list[str]:
    """``command`` run under assay.pipeline.reaper: it dies with this process (SIGKILL included),
    and so does everything it starts. Isolated mode (-I) so the user's PYTHONPATH cannot
    shadow the reaper; the command itself gets the environment unchanged."""
    from ..deploy import LIBRARY_DIR

    library = str(LIBRARY_DIR)
    return [sys.executable, "-I", "-c",
            f"import sys; sys.path.insert(0, {library!r}); from assay.pipeline.reaper import main; "
            "sys.exit(main())",
            "--parent", str(os.getpid()), "--grace", f"{grace_seconds:g}", "--", command]


def log_tail(path: str | os.PathLike[str] | None, lines: int = 20, limit: int = 16384) -> str:
    """The last lines of a log file (for an error message that points at the log)."""
    if not path:
        return ""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - limit))
            data = handle.read()
    except OSError:
        return ""
    return "\n".join(data.decode("utf-8", "replace").splitlines()[-lines:])
