"""Store I/O against plain numpy, as ratios measured in the same run.

    python benchmarks/store.py                 # 800 MB, 5 repeats, writes "## Store"
    python benchmarks/store.py --size-mb 50 --repeats 3 --no-write

(a) write_npz_sidecar vs np.savez + os.fsync of the same file (the durable baseline, goal
    <= 1.3) and vs np.savez without fsync;
(b) load_npz_sidecar(verify="full") reading every array vs np.load reading every array
    (goal <= 1.3);
(c) a repeated load served by the stat cache (LRU cleared first) vs np.load (goal <= 1.05).

Loads are timed warm (the file is in the page cache, which is how a job reads what the job
before it just wrote) and cold (the file's pages dropped with fsync + POSIX_FADV_DONTNEED
before each run). Scratch files live under --scratch (default /tmp) and are removed at the end.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    RESULTS_MD,
    OtherLoad,
    Timing,
    evict_from_page_cache,
    interleaved,
    machine_description,
    machine_markdown,
    markdown_table,
    replace_section,
    resident_fraction,
    wait_until_quiet,
    warm,
)

from assay import ArtifactStore  # noqa: E402

GOALS = {"write": 1.3, "load_full": 1.3, "load_stat": 1.05}
MAX_OTHER_CORES = 0.25  # a round during which others used more is run again
SIDECAR = "sidecars/bench.npz"

_sink: list[object] = []  # holds loaded arrays so freeing them is not timed


def _drop_sink() -> None:
    _sink.clear()


def _remove(path: Path) -> None:
    try:
        os.chmod(path, 0o600)
        os.unlink(path)
    except FileNotFoundError:
        pass


def _savez_fsync(path: Path, array: np.ndarray) -> None:
    np.savez(path, a=array)
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _np_load_all(path: Path) -> None:
    with np.load(path) as data:
        _sink.extend(data[name] for name in data.files)


def _store_load_all(store: ArtifactStore, ref, verify: str) -> None:
    with store.load_npz_sidecar(ref, verify=verify) as data:
        _sink.extend(data[name] for name in data)


def _hash_only(path: Path) -> None:
    digest = hashlib.sha256()
    with open(path, "rb", buffering=0) as handle:
        while chunk := handle.read(8 * 1024 * 1024):
            digest.update(chunk)


def run(size_mb: int, repeats: int, scratch_parent: Path, cold: bool) -> tuple[dict, dict]:
    n_items = size_mb * 1_000_000 // 8
    array = np.random.default_rng(0).standard_normal(n_items)
    scratch = Path(tempfile.mkdtemp(prefix="assay-store-bench-", dir=scratch_parent))
    print(f"scratch {scratch}; array {array.nbytes / 1e6:.0f} MB float64", file=sys.stderr)
    discarded: list[str] = []
    try:
        store = ArtifactStore(scratch / "store")
        plain_fsync = scratch / "plain_fsync.npz"
        plain = scratch / "plain.npz"
        ref = store.write_npz_sidecar(SIDECAR, a=array)  # warm-up, and the ref for loads
        obj = store.objects.path_for(ref.sha256)

        def before_store_write() -> None:
            _remove(obj)
            os.sync()

        def before_plain_write(path: Path):
            def setup() -> None:
                _remove(path)
                os.sync()
            return setup

        print("(a) writes", file=sys.stderr)
        writes = interleaved({
            "np.savez + fsync": (before_plain_write(plain_fsync),
                                 lambda: _savez_fsync(plain_fsync, array)),
            "np.savez": (before_plain_write(plain), lambda: np.savez(plain, a=array)),
            "write_npz_sidecar": (before_store_write,
                                  lambda: store.write_npz_sidecar(SIDECAR, a=array)),
        }, repeats=repeats, max_other_cores=MAX_OTHER_CORES, discarded=discarded)
        os.sync()
        assert obj.is_file() and ref.size_bytes == obj.stat().st_size
        same_layout = plain_fsync.stat().st_size == obj.stat().st_size

        # Reads: all of the store's object, the same file for every case.
        def plain_setup() -> None:
            _drop_sink()
            if not cold_phase:
                warm(obj)  # keep it cached even if a pause let the kernel reclaim it

        def full_setup() -> None:
            plain_setup()
            store.clear_cache()

        def stat_setup() -> None:
            plain_setup()
            store.clear_cache()  # the LRU would serve it otherwise; the stat cache stays
            if not store.objects.is_stat_verified(ref.sha256):
                raise RuntimeError("the object is not in the stat cache; the benchmark is wrong")

        cold_phase = False

        print("(b, c) warm loads", file=sys.stderr)
        warm(obj)
        _store_load_all(store, ref, "full")  # verifies once: the stat cache now holds it
        _drop_sink()
        loads_warm = interleaved({
            "np.load": (plain_setup, lambda: _np_load_all(obj)),
            "load_npz_sidecar full": (full_setup, lambda: _store_load_all(store, ref, "full")),
            "load_npz_sidecar stat": (stat_setup, lambda: _store_load_all(store, ref, "stat")),
            "sha256 of the file": (plain_setup, lambda: _hash_only(obj)),
        }, repeats=repeats, max_other_cores=MAX_OTHER_CORES, discarded=discarded)
        resident_warm = resident_fraction(obj)

        loads_cold: dict[str, Timing] = {}
        resident_cold: list[float | None] = []
        if cold:
            def evicting(then):
                def setup() -> None:
                    then()
                    evict_from_page_cache(obj)
                    resident_cold.append(resident_fraction(obj))
                return setup

            print("(b, c) cold loads", file=sys.stderr)
            cold_phase = True
            loads_cold = interleaved({
                "np.load": (evicting(plain_setup), lambda: _np_load_all(obj)),
                "load_npz_sidecar full": (evicting(full_setup),
                                          lambda: _store_load_all(store, ref, "full")),
                "load_npz_sidecar stat": (evicting(stat_setup),
                                          lambda: _store_load_all(store, ref, "stat")),
            }, repeats=repeats, max_other_cores=MAX_OTHER_CORES, discarded=discarded)
        _drop_sink()
        facts = {"size_mb": array.nbytes / 1e6, "file_bytes": ref.size_bytes,
                 "same_layout": same_layout, "resident_warm": resident_warm,
                 "resident_cold": max((r for r in resident_cold if r is not None),
                                      default=None),
                 "scratch": scratch_parent, "discarded": discarded}
        return {"writes": writes, "warm": loads_warm, "cold": loads_cold}, facts
    finally:
        _drop_sink()
        shutil.rmtree(scratch, ignore_errors=True)


def _row(what: str, ours: Timing, base: Timing, goal: float | None) -> list[str]:
    ratio = ours.median / base.median
    verdict = "" if goal is None else ("yes" if ratio <= goal else "**no**")
    return [what, f"{ours.median:.3f} ({ours.spread})", base.name,
            f"{base.median:.3f} ({base.spread})", f"{ratio:.2f}",
            "" if goal is None else f"<= {goal}", verdict]


def report(results: dict, facts: dict, *, size_mb: int, repeats: int, cold: bool,
           info: dict[str, str]) -> str:
    w, warm_, cold_ = results["writes"], results["warm"], results["cold"]
    rows = [
        _row("(a) write_npz_sidecar", w["write_npz_sidecar"], w["np.savez + fsync"],
             GOALS["write"]),
        _row("(a) write_npz_sidecar", w["write_npz_sidecar"], w["np.savez"], None),
        _row("(a) np.savez + fsync (reference)", w["np.savez + fsync"], w["np.savez"], None),
        _row("(b) load_npz_sidecar(verify=\"full\"), warm", warm_["load_npz_sidecar full"],
             warm_["np.load"], GOALS["load_full"]),
        _row("(c) load_npz_sidecar, stat cache, warm", warm_["load_npz_sidecar stat"],
             warm_["np.load"], GOALS["load_stat"]),
        _row("sha256 of the file alone, warm (reference)", warm_["sha256 of the file"],
             warm_["np.load"], None),
    ]
    if cold:
        rows += [
            _row("(b) load_npz_sidecar(verify=\"full\"), cold", cold_["load_npz_sidecar full"],
                 cold_["np.load"], GOALS["load_full"]),
            _row("(c) load_npz_sidecar, stat cache, cold", cold_["load_npz_sidecar stat"],
                 cold_["np.load"], GOALS["load_stat"]),
        ]
    table = markdown_table(["operation", "assay median s (min-max)", "baseline",
                            "baseline median s (min-max)", "ratio", "goal", "met"], rows)

    def pct(value: float | None) -> str:
        return "not measured (no fincore)" if value is None else f"{100 * value:.0f}%"

    lines = [
        "## Store",
        "",
        f"`python benchmarks/store.py --size-mb {size_mb} --repeats {repeats}`: one float64 "
        f"array of {facts['size_mb']:.0f} MB (random values, so nothing compresses; NPZ "
        f"file {facts['file_bytes'] / 1e6:.1f} MB, stored, not compressed). Times are "
        f"medians of {repeats} runs in seconds; the cases of each group run round-robin "
        "in one process after one untimed warm-up round, each round starting at the next case, so drift hits them alike; ratio = assay median / baseline median.",
        "",
        machine_markdown(info),
        "",
        table,
        "",
        "How it is measured:",
        "",
        "- Writes: before each run the previous output is deleted and `os.sync()` flushes "
        "everything, so no run pays for an earlier run's writeback. `np.savez + fsync` "
        "is `np.savez(path)` then `os.fsync` of that file; `write_npz_sidecar` writes a "
        "tmp file in the store's `tmp/` while hashing on a second thread, fsyncs it and "
        "renames it into `objects/` (its object was deleted first, so it is really "
        "published each time). Written pages stay in the page cache in every case."
        + ("" if facts["same_layout"] else
           " (The store's NPZ is laid out as a stream, with data descriptors; its size "
           "differs slightly from `np.savez`'s.)"),
        "- Loads read every array of the store's object file, with `np.load` and with "
        "`load_npz_sidecar`, the same file for all cases. Arrays are kept until the next "
        "run's untimed setup, so freeing them is not timed. `store.clear_cache()` runs "
        "before each store load so the in-process LRU never serves it (it never holds an "
        "array over its 512 MB byte limit anyway); the stat cache is separate "
        "and is what case (c) measures: no hashing, only a `stat`.",
        f"- Warm: the file is in the page cache (read through once, untimed, before every "
        f"run; resident after the runs: {pct(facts['resident_warm'])}). This is the common case: a job reads "
        "what the job before it just wrote.",
    ]
    if cold:
        lines.append(
            "- Cold: before each run the file's pages are dropped with fsync + "
            "`posix_fadvise(POSIX_FADV_DONTNEED)` (per file; no global drop_caches, no "
            f"root needed); most resident afterwards: {pct(facts['resident_cold'])}. "
            "Cold times measure the disk of this VM as much as the code.")
    others = facts["others"]
    if others.cores is not None:
        before = facts["busy_before"]
        lines.append(
            f"- Other processes: {before:.2f} cores busy just before the run; during it they "
            f"used {others.core_seconds:.1f} core-seconds (on average {others.cores:.2f} of "
            f"{os.cpu_count()} cores; kernel threads, mostly writeback of our files, "
            f"{others.kernel_core_seconds:.1f}). The hashing overlaps I/O only if the second "
            f"core is free, so a round in which others used more than {MAX_OTHER_CORES} "
            f"cores was thrown away and run again: {len(facts['discarded'])} round(s)"
            + (f" ({'; '.join(facts['discarded'])})." if facts["discarded"] else "."))
    lines.append(f"- Scratch files under {facts['scratch']}, removed at the end.")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=800)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--scratch", type=Path, default=Path("/tmp"),
                        help="parent folder for scratch files (default /tmp)")
    parser.add_argument("--no-cold", action="store_true", help="skip the cold-cache loads")
    parser.add_argument("--no-write", action="store_true", help="do not update RESULTS.md")
    parser.add_argument("--results", type=Path, default=RESULTS_MD)
    parser.add_argument("--wait-quiet", type=float, default=600.0, metavar="SECONDS",
                        help="first wait up to this long for other processes to leave the "
                        "cores idle (the hashing needs the second core); default 600")
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.size_mb < 1:
        parser.error("--size-mb and --repeats must be >= 1")

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # still remove scratch files
    info = machine_description(args.scratch, packages=("numpy",))
    busy = wait_until_quiet(args.wait_quiet, log=lambda m: print(m, file=sys.stderr))
    with OtherLoad() as others:
        results, facts = run(args.size_mb, args.repeats, args.scratch, cold=not args.no_cold)
    facts["busy_before"] = busy
    facts["others"] = others
    text = report(results, facts, size_mb=args.size_mb, repeats=args.repeats,
                  cold=not args.no_cold, info=info)
    print(text)
    if not args.no_write:
        replace_section("Store", text, args.results)
        print(f"wrote the Store section of {args.results}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
