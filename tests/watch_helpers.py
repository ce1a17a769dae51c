"""Wait on a subprocess by what it does, not by the clock.

A loaded machine (the whole suite on 2 cores, CI beside other work) can make any step many
times slower, so "done within N s" fails runs that are only slow. `Watched` waits as long
as the process lives and something it does can be seen changing: a line of output, or a
file appearing, growing, being rewritten or removed under the directories it works in. It
fails only when the process ended before what is awaited, or when nothing at all changed
for ``STALL_SECONDS`` (a hang), and then says what it saw last.

Used by tests/test_openmm_workflow.py and tests/test_init.py.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Callable, Iterable, TypeVar

from workflow_helpers import REPO

T = TypeVar("T")

# How long nothing at all may change before a run counts as hung. Every sign of progress
# starts it again, so it bounds the quietest stretch of a run (Snakemake building its DAG,
# a job importing OpenMM and minimizing: a few seconds on an idle machine), not the run.
STALL_SECONDS = 300.0
POLL_SECONDS = 0.1          # how often the awaited condition (and the output) is checked
LOOK_SECONDS = 2.0          # how often the watched files are listed (a few ms each time)


def snakemake_command(workdir: Path, *args: str) -> list[str]:
    """The command line `workflow_helpers.snakemake` runs: the real Snakemake on the
    project's Snakefile, working in ``workdir``."""
    return [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "workflow" / "Snakefile"),
            "--directory", str(workdir), "--cores", "2", "--workflow-profile", "none",
            "--scheduler", "greedy", *args]


def _tail(text: str, limit: int = 3000) -> str:
    return text if len(text) <= limit else "..." + text[-limit:]


class Watched:
    """A subprocess (in its own session, so its whole group can be killed) whose output and
    the files under ``watch`` are the signs that it is still getting somewhere.

    Use it as a context manager: leaving the block kills the process group if it still
    runs. ``describe`` (optional) tells the state of the run for failure messages."""

    def __init__(self, command: list[str], *, cwd: Path, watch: Iterable[Path],
                 env: dict[str, str] | None = None, stall: float = STALL_SECONDS,
                 describe: Callable[[], str] | None = None) -> None:
        self.command = [str(part) for part in command]
        self.watch = [Path(p) for p in watch]
        self.stall = stall
        self.describe = describe
        self._lock = threading.Lock()
        self._chunks: dict[str, list[str]] = {"stdout": [], "stderr": []}
        self._last_line = ""
        self.started = time.monotonic()
        self.proc = subprocess.Popen(self.command, cwd=cwd, env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, errors="replace",
                                     start_new_session=True)
        self._readers = [threading.Thread(target=self._read, args=(stream, name), daemon=True)
                         for stream, name in ((self.proc.stdout, "stdout"),
                                              (self.proc.stderr, "stderr"))]
        for reader in self._readers:
            reader.start()
        self._lines_seen = 0
        self._files = self._snapshot()
        self._looked = self._last_change = self.started
        self._last_seen = "the process started"

    # --- signs of progress ------------------------------------------------------------
    def _read(self, stream: IO[str], name: str) -> None:
        for line in stream:
            with self._lock:
                self._chunks[name].append(line)
                self._last_line = line.rstrip()

    def _snapshot(self) -> dict[str, tuple[int, int]]:
        """(size, mtime) of every file under the watched directories."""
        files: dict[str, tuple[int, int]] = {}
        for top in self.watch:
            for folder, _dirs, names in os.walk(top):
                for name in names:
                    path = os.path.join(folder, name)
                    try:
                        info = os.stat(path)
                    except OSError:           # removed meanwhile: the next look sees it
                        continue
                    files[path] = (info.st_size, info.st_mtime_ns)
        return files

    def _what_changed(self, before: dict[str, tuple[int, int]],
                      after: dict[str, tuple[int, int]]) -> str:
        def short(path: str) -> str:
            for top in self.watch:
                if path.startswith(str(top) + os.sep):
                    return os.path.relpath(path, top)
            return path

        for path, (size, mtime) in after.items():
            if path not in before:
                return f"{short(path)} appeared ({size} bytes)"
            if before[path] != (size, mtime):
                old = before[path][0]
                grew = f"grew to {size} bytes" if size > old else f"was rewritten ({size} bytes)"
                return f"{short(path)} {grew}"
        gone = next(iter(set(before) - set(after)))
        return f"{short(gone)} was removed"

    def _quiet_for(self) -> float:
        """Seconds since the last sign of progress (looking for one now)."""
        now = time.monotonic()
        with self._lock:
            lines = sum(len(chunk) for chunk in self._chunks.values())
            last_line = self._last_line
        if lines != self._lines_seen:
            self._lines_seen = lines
            self._last_change, self._last_seen = now, f"output line {last_line[:200]!r}"
        if now - self._looked >= LOOK_SECONDS:
            self._looked = now
            files = self._snapshot()
            if files != self._files:
                self._last_seen = self._what_changed(self._files, files)
                self._files, self._last_change = files, now
        return now - self._last_change

    # --- waiting ----------------------------------------------------------------------
    def wait_until(self, condition: Callable[[], T], what: str) -> T:
        """Poll ``condition`` until it returns something true and return that. Fails if the
        process ends first, or if nothing changes for ``stall`` seconds."""
        return self._wait(condition, what, end_fails=True)

    def _wait(self, condition: Callable[[], T], what: str, end_fails: bool) -> T:
        while True:
            value = condition()
            if value:
                return value
            if end_fails and self.proc.poll() is not None:
                value = condition()               # it may have come true just before
                if value:
                    return value
                self.fail(f"the process ended (exit code {self.proc.returncode}) before {what}")
            quiet = self._quiet_for()
            if quiet > self.stall:
                self.fail(f"no sign of progress for {quiet:.0f} s while waiting for {what} "
                          f"(a hang?)")
            time.sleep(POLL_SECONDS)

    def wait(self) -> subprocess.CompletedProcess:
        """Wait for the process to end and its output to close (as long as it progresses)."""
        def finished() -> bool:
            return (self.proc.poll() is not None
                    and not any(reader.is_alive() for reader in self._readers))

        self._wait(finished, "the process to end and close its output", end_fails=False)
        return subprocess.CompletedProcess(self.command, self.proc.returncode,
                                           self.stdout, self.stderr)

    @property
    def stdout(self) -> str:
        with self._lock:
            return "".join(self._chunks["stdout"])

    @property
    def stderr(self) -> str:
        with self._lock:
            return "".join(self._chunks["stderr"])

    def kill(self) -> None:
        """Kill the process's group: the process itself while it runs, or what it started
        that still holds its output open (the group's id stays taken while it has members)."""
        running = self.proc.poll() is None
        if running or any(reader.is_alive() for reader in self._readers):
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if running:
            self.proc.wait()

    def fail(self, why: str) -> None:
        """Kill the process group and raise an AssertionError that tells what was seen."""
        now = time.monotonic()
        state = ("still running" if self.proc.poll() is None
                 else f"had ended (exit code {self.proc.returncode})")
        lines = [f"{why}.",
                 f"After {now - self.started:.0f} s the process {state}; the last sign of "
                 f"progress, {now - self._last_change:.0f} s before: {self._last_seen}.",
                 f"Command: {' '.join(self.command)}"]
        if self.describe is not None:
            try:
                lines.append(f"State: {self.describe()}")
            except Exception as error:  # noqa: BLE001 - a message must not hide the failure
                lines.append(f"State: unknown ({error!r})")
        self.kill()
        for reader in self._readers:     # the rest of its output, for the message only
            reader.join(5)
        lines += [f"stdout:\n{_tail(self.stdout)}", f"stderr:\n{_tail(self.stderr, 6000)}"]
        raise AssertionError("\n".join(lines))

    def __enter__(self) -> "Watched":
        return self

    def __exit__(self, *_exc: object) -> None:
        self.kill()


def run_watched(command: list[str], *, cwd: Path, watch: Iterable[Path],
                env: dict[str, str] | None = None, check: bool = True,
                describe: Callable[[], str] | None = None) -> subprocess.CompletedProcess:
    """Run ``command`` to its end, waiting as long as it progresses (`Watched`); with
    ``check``, a non-zero exit code fails with the output's tails."""
    with Watched(command, cwd=cwd, watch=watch, env=env, describe=describe) as watched:
        proc = watched.wait()
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(proc.args)} failed ({proc.returncode}):\n"
                             f"{_tail(proc.stdout, 4000)}\n{_tail(proc.stderr, 6000)}")
    return proc


def snakemake_watched(workdir: Path, *args: str, check: bool = True,
                      env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`workflow_helpers.snakemake` without its wall-clock timeout: the run may take as long
    as it keeps progressing (output, or files changing under ``workdir``)."""
    return run_watched(snakemake_command(workdir, *args), cwd=workdir, watch=[workdir],
                       env={**os.environ, **(env or {})}, check=check)
