"""Helpers shared by the benchmark scripts: the machine, timing, page cache, RESULTS.md.

Import it from a script in this folder with ``sys.path.insert(0, str(Path(__file__).parent))``
then ``from common import ...``. Nothing here imports assay.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

HERE = Path(__file__).resolve().parent
RESULTS_MD = HERE / "RESULTS.md"
RESULTS_TITLE = "# Benchmark results"


# --- the machine ---------------------------------------------------------------------------
def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _ram_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024 / 1024
    except OSError:
        pass
    return None


def _filesystem(path: Path) -> str:
    """Filesystem type and device of ``path`` (from ``df``), best effort."""
    try:
        out = subprocess.run(["df", "-T", str(path)], capture_output=True, text=True,
                             check=True, timeout=10).stdout.splitlines()[-1].split()
        return f"{out[1]} on {out[0]}"
    except (OSError, subprocess.SubprocessError, IndexError):
        return "unknown"


def machine_description(scratch: Path | None = None,
                        packages: Iterable[str] = ("numpy",)) -> dict[str, str]:
    """What a reader needs to compare numbers across machines."""
    info = {
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": _cpu_model(),
        "cores": str(os.cpu_count()),
        "ram": f"{_ram_gib():.1f} GiB" if _ram_gib() else "unknown",
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
    }
    for name in packages:
        try:
            module = __import__(name)
            info[name] = getattr(module, "__version__", "?")
        except ImportError:
            info[name] = "not installed"
    if scratch is not None:
        info["scratch"] = f"{scratch} ({_filesystem(scratch)})"
    return info


def machine_markdown(info: dict[str, str]) -> str:
    return "\n".join(f"- {key}: {value}" for key, value in info.items())


# --- timing --------------------------------------------------------------------------------
@dataclass
class Timing:
    name: str
    times: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def spread(self) -> str:
        return f"{min(self.times):.3f}-{max(self.times):.3f}"


def time_once(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def median_time(fn: Callable[[], object], *, repeats: int = 5,
                setup: Callable[[], object] | None = None, name: str = "") -> Timing:
    """Median of ``repeats`` runs of ``fn``; ``setup`` runs before each, untimed."""
    timing = Timing(name or getattr(fn, "__name__", "fn"))
    for _ in range(repeats):
        if setup is not None:
            setup()
        timing.times.append(time_once(fn))
    return timing


def interleaved(cases: dict[str, tuple[Callable[[], object] | None, Callable[[], object]]],
                *, repeats: int = 5, progress: bool = True,
                max_other_cores: float | None = None, max_discards: int = 10,
                discarded: list[str] | None = None, rotate: bool = True,
                warmup: bool = True) -> dict[str, Timing]:
    """Time several (setup, fn) cases round-robin so drift (thermal, background writeback)
    hits every case alike; returns one Timing per case. With ``rotate`` each round starts
    at the next case, so no case is always first (first after a pause runs cold).

    With ``max_other_cores``, a round during which other processes used more than that many
    cores on average is thrown away and run again once the machine is quiet (at most
    ``max_discards`` times; the reason is appended to ``discarded``).
    With ``warmup``, one untimed round runs first and again after every such pause: on a
    VM the first round after idling is often several times slower.
    """
    timings = {name: Timing(name) for name in cases}
    done = discards = 0
    needs_warmup = warmup
    while done < repeats:
        if needs_warmup:
            for setup, fn in cases.values():
                if setup is not None:
                    setup()
                fn()
            needs_warmup = False
        times: dict[str, float] = {}
        names = list(cases)
        if rotate:
            shift = (done + discards) % len(names)
            names = names[shift:] + names[:shift]
        with OtherLoad() as others:
            for name in names:
                setup, fn = cases[name]
                if setup is not None:
                    setup()
                times[name] = time_once(fn)
        contended = (max_other_cores is not None and others.cores is not None
                     and others.cores > max_other_cores and discards < max_discards)
        if progress:
            print(f"  [{done + 1}/{repeats}] " + ", ".join(
                f"{name} {t:.3f}s" for name, t in times.items())
                + (f"  (others used {others.cores:.2f} cores: round discarded)"
                   if contended else ""), file=sys.stderr, flush=True)
        if contended:
            discards += 1
            if discarded is not None:
                discarded.append(f"{others.cores:.2f} cores used by other processes")
            wait_until_quiet(120.0)
            needs_warmup = warmup
            continue
        for name, t in times.items():
            timings[name].times.append(t)
        done += 1
    return timings


# --- other load on the machine -------------------------------------------------------------
def _cpu_times() -> tuple[int, int]:
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields), idle


def busy_cores(seconds: float = 1.0) -> float | None:
    """How many cores were busy (all processes) over ``seconds``; None off Linux."""
    try:
        total0, idle0 = _cpu_times()
        time.sleep(seconds)
        total1, idle1 = _cpu_times()
    except (OSError, IndexError, ValueError):
        return None
    total = total1 - total0
    return (os.cpu_count() or 1) * (1 - (idle1 - idle0) / total) if total else 0.0


def wait_until_quiet(max_wait_s: float, *, threshold: float = 0.3,
                     log: Callable[[str], None] | None = None) -> float | None:
    """Wait (up to ``max_wait_s``) until other processes use less than ``threshold`` cores,
    since ratios that need a second core mean nothing while someone else holds it.
    Returns the busy-core count seen last."""
    deadline = time.monotonic() + max_wait_s
    while True:
        busy = busy_cores(1.0)
        if busy is None or busy < threshold or time.monotonic() >= deadline:
            return busy
        if log is not None:
            log(f"machine busy ({busy:.2f} cores in use by other processes); waiting")
        time.sleep(4.0)


def process_stats() -> dict[int, tuple[int, int, bool]]:
    """pid -> (parent pid, CPU ticks used so far (user + system), is a kernel thread),
    from /proc/<pid>/stat; processes that vanish while read are left out."""
    out = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            text = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2:].split()
        out[int(entry.name)] = (int(fields[1]), int(fields[11]) + int(fields[12]),
                                bool(int(fields[6]) & 0x00200000))   # PF_KTHREAD
    return out


def _kernel_thread_ticks() -> int:
    """CPU ticks used so far by kernel threads (writeback, ext4 workers, ...)."""
    return sum(ticks for _, ticks, kernel in process_stats().values() if kernel)


class OtherLoad:
    """CPU used while the block runs by other user processes (``cores``, ``core_seconds``)
    and by kernel threads (``kernel_core_seconds``: mostly writeback our own writes cause).
    Short-lived processes are counted too: it is all busy time minus ours minus kthreads."""

    def __enter__(self) -> "OtherLoad":
        self.core_seconds = self.cores = self.kernel_core_seconds = None
        try:
            self._stat0 = _cpu_times()
            self._kthreads0 = _kernel_thread_ticks()
        except (OSError, IndexError, ValueError):
            self._stat0 = None
        self._own0 = os.times()
        self._t0 = time.monotonic()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._stat0 is None:
            return
        total1, idle1 = _cpu_times()
        hz = os.sysconf("SC_CLK_TCK")
        busy_all = ((total1 - self._stat0[0]) - (idle1 - self._stat0[1])) / hz
        self.kernel_core_seconds = (_kernel_thread_ticks() - self._kthreads0) / hz
        own1 = os.times()
        own = (own1.user - self._own0.user) + (own1.system - self._own0.system)
        self.core_seconds = max(busy_all - own - self.kernel_core_seconds, 0.0)
        elapsed = time.monotonic() - self._t0
        self.cores = self.core_seconds / elapsed if elapsed > 0 else 0.0


# --- the page cache ------------------------------------------------------------------------
def evict_from_page_cache(path: Path) -> None:
    """Flush ``path`` and ask the kernel to drop its cached pages (no root needed).

    POSIX_FADV_DONTNEED drops only clean pages, hence the fsync first. Other files stay
    cached; this is per-file, not a global drop_caches.
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def resident_fraction(path: Path) -> float | None:
    """Share of ``path``'s pages in the page cache, from util-linux ``fincore`` if present."""
    try:
        out = subprocess.run(["fincore", "--bytes", "--noheadings", "--output", "RES,SIZE",
                              str(path)], capture_output=True, text=True, check=True,
                             timeout=10).stdout.split()
        return int(out[0]) / max(int(out[1]), 1)
    except (OSError, subprocess.SubprocessError, IndexError, ValueError):
        return None


def warm(path: Path, chunk: int = 16 * 1024 * 1024) -> None:
    """Read a file once so its pages are cached."""
    with open(path, "rb", buffering=0) as handle:
        while handle.read(chunk):
            pass


# --- RESULTS.md ----------------------------------------------------------------------------
def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(headers) + " |",
             "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _heading(title: str) -> str:
    title = title.strip()
    return title if title.startswith("## ") else f"## {title}"


def replace_section(title: str, body: str, path: Path | str = RESULTS_MD) -> Path:
    """Replace the ``## title`` section of RESULTS.md (or append it), keeping the others.

    ``body`` may start with the heading line or not. The file is rewritten atomically under
    an flock on the folder, so two benchmark scripts finishing at once do not lose each other's section.
    """
    path = Path(path)
    heading = _heading(title)
    body = body.strip("\n")
    if body.splitlines()[0].strip() != heading:
        body = f"{heading}\n\n{body}"
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = os.open(path.parent, os.O_RDONLY)  # lock the folder: the file itself is replaced
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        text = path.read_text(encoding="utf-8") if path.exists() else f"{RESULTS_TITLE}\n"
        text = splice_section(text, heading, body)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    finally:
        os.close(lock)  # releases the flock
    return path


def splice_section(text: str, heading: str, body: str) -> str:
    """Pure helper behind ``replace_section``: a section runs to the next ``## `` heading."""
    out: list[str] = []
    lines = text.splitlines()
    i, done = 0, False
    while i < len(lines):
        if lines[i].strip() == heading:
            i += 1
            while i < len(lines) and not lines[i].startswith("## "):
                i += 1
            if not done:
                out += body.splitlines() + [""]
                done = True
            continue
        out.append(lines[i])
        i += 1
    if not done:
        while out and not out[-1].strip():
            out.pop()
        out += ["", *body.splitlines(), ""]
    while out and not out[-1].strip():
        out.pop()
    return "\n".join(out) + "\n"
