"""Lab-scale store: what each command costs in metadata operations as other studies fill
the store (issue 25).

On NFS or a parallel filesystem every open, stat and directory read is a round trip to a
metadata server (0.2-1 ms under load), so the count of those operations, not local time,
decides how a command scales. This script runs the demo study once (real snakemake), then
adds the objects, manifests and action records of "other studies" straight into the store
layout (no fsync: a fixture, not a write path) and, at each size, runs every command under
``strace -f -c`` to count openat/open, stat-family calls and getdents64, plus once without
strace for the local time. It converts the counts to time at 0.2 and 1 ms per operation and
writes the "## Lab-scale store" section of benchmarks/RESULTS.md.

    python benchmarks/lab_store.py                       # 0 and 100,000 foreign objects
    python benchmarks/lab_store.py --sizes 0 100000 1000000
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

from common import machine_description, machine_markdown, markdown_table, replace_section  # noqa: E402

OPEN_CALLS = ("openat", "open", "openat2")
STAT_CALLS = ("stat", "lstat", "newfstatat", "statx", "fstatat64", "access", "faccessat",
              "faccessat2", "readlink", "readlinkat")
DIR_CALLS = ("getdents64", "getdents")
LATENCIES_MS = (0.2, 1.0)

# The mark phase of gc alone: the refs, the manifests they reach, the object index merged,
# the candidates (indexed, unmarked) named; no lstat, no sweep. What `assay gc` does before
# it looks at its candidates (assay.tools.gc.collect_garbage).
GC_MARK = """
import sys, time
from pathlib import Path
from assay.store import object_index
from assay.tools.inventory import input_shas, load_refs, sidecar_shas, walk_manifests
store, results = Path(sys.argv[1]), Path(sys.argv[2])
started = time.perf_counter()
refs = load_refs(results)
graph = walk_manifests(store, [r.sha256 for r in refs if r.sha256], verify=False)
marked = set(graph.manifests)
for m in graph.manifests.values():
    marked.update(s for s, _ in sidecar_shas(m))
    marked.update(input_shas(m))
entries = object_index.load(store).entries
candidates = [s for s in entries if s not in marked]
print(len(entries), len(marked), len(candidates), f"{time.perf_counter() - started:.2f}")
"""

# (label, argv after `assay --store S --results R` (or a python script), scope)
# scope: "study" per-study command; "store" store-wide from the object index; "scan" a
# store-wide command as it runs without an index (index/ moved aside), for comparison.
COMMANDS = [
    ("catalog build", ["catalog", "build"], "study"),
    ("verify", ["verify"], "study"),
    ("ls", ["ls"], "study"),
    ("status", ["status"], "study"),
    ("catalog build --store-wide", ["catalog", "build", "--store-wide"], "scan"),
    ("stats", ["stats"], "store"),
    ("gc mark phase", ["-c", GC_MARK], "store"),
    ("gc (dry run)", ["gc"], "store"),
    ("stats (no index: scan)", ["stats"], "scan"),
    ("gc (dry run, no index: scan)", ["gc"], "scan"),
]


def run_demo(study: Path) -> None:
    (study / "config").mkdir(parents=True)
    shutil.copy(REPO / "config" / "config.yaml", study / "config" / "config.yaml")
    subprocess.run([sys.executable, "-m", "snakemake", "--snakefile",
                    str(REPO / "workflow" / "Snakefile"), "--directory", str(study),
                    "--cores", "2", "--workflow-profile", "none", "--quiet"],
                   check=True, capture_output=True, text=True)


FOREIGN_PER_LOG = 1000   # objects per writer log: a batch of other studies' jobs


def add_foreign(store: Path, start: int, stop: int) -> None:
    """Objects ``start..stop-1`` of other studies: every 10th a run manifest, every 3rd
    with an action record (what a lab store holds besides this study). Each is logged in
    the object index as its writer would log it (one log per FOREIGN_PER_LOG objects);
    ``compact_index`` then folds the logs into the snapshot, as `gc --delete` does."""
    from assay.store import object_index

    made: set[Path] = set()
    log = None
    index = store / object_index.INDEX_DIR

    def write(path: Path, data: bytes, mode: int) -> None:
        if path.parent not in made:
            path.parent.mkdir(parents=True, exist_ok=True)
            made.add(path.parent)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)

    for i in range(start, stop):
        if i % 10 == 0:
            body = {"schema_version": 1, "artifact_type": "run", "analysis_name": "other",
                    "condition_label": f"c{i}", "replicate": 1, "payload": {"n": i},
                    "sidecars": [], "inputs": [], "provenance": {"stage": "run"}}
            data = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
        else:
            data = f"other study object {i}\n".encode() * 8
        sha = hashlib.sha256(data).hexdigest()
        write(store / "objects" / sha[:2] / sha, data, 0o444)
        if log is None or i % FOREIGN_PER_LOG == 0:
            if log is not None:
                log.close()
            log = open(index / f"foreign.{i // FOREIGN_PER_LOG}{object_index.LOG_SUFFIX}",
                       "ab")
        kind = object_index.classify(data)
        log.write(object_index.format_line(sha, len(data), kind[0], time.time_ns(),
                                           kind[1], kind[2]))
        if i % 3 == 0:
            key = hashlib.sha256(f"key {i}".encode()).hexdigest()
            record = {"key": key, "digest": f"sha256:{sha}", "stage": "run", "plugin": "other"}
            write(store / "actions" / key[:2] / f"{key}.json",
                  json.dumps(record, sort_keys=True).encode(), 0o644)
    if log is not None:
        log.close()


def compact_index(store: Path) -> None:
    """Fold every log into the snapshot (what `assay gc --delete` leaves), removing the
    benchmark's own logs (gc removes a log once it is read to its end and a day old)."""
    from assay.store import object_index

    loaded = object_index.load(store)
    with object_index.CompactionLock(store, None):
        object_index.compact(store, loaded.entries, loaded.consumed)
    for log in (store / object_index.INDEX_DIR).glob("foreign.*"):
        log.unlink()


def count_calls(argv: list[str], cwd: Path) -> dict[str, int]:
    with tempfile.NamedTemporaryFile(suffix=".strace") as out:
        subprocess.run(["strace", "-f", "-c", "-o", out.name, *argv], cwd=cwd,
                       capture_output=True, text=True)
        counts = {"opens": 0, "stats": 0, "dir reads": 0}
        for line in Path(out.name).read_text().splitlines():
            parts = line.split()
            if len(parts) < 5 or not parts[-1].isidentifier():
                continue
            name, calls = parts[-1], parts[3]
            if not calls.isdigit():
                continue
            if name in OPEN_CALLS:
                counts["opens"] += int(calls)
            elif name in STAT_CALLS:
                counts["stats"] += int(calls)
            elif name in DIR_CALLS:
                counts["dir reads"] += int(calls)
        return counts


def measure(study: Path, foreign: int, baseline: dict[str, int],
            scan_up_to: int) -> list[list[object]]:
    rows = []
    store, results = study / "store", study / "results"
    for label, args, scope in COMMANDS:
        if scope == "scan" and foreign > scan_up_to:
            continue
        if args[0] == "-c":
            argv = [sys.executable, *args, str(store), str(results)]
        else:
            argv = [sys.executable, "-m", "assay.cli", "--store", str(store),
                    "--results", str(results), *args]
        aside = store / "index.aside"
        if scope == "scan":
            os.rename(store / "index", aside)
        try:
            started = time.perf_counter()
            proc = subprocess.run(argv, cwd=study, capture_output=True, text=True)
            local = time.perf_counter() - started
            if proc.returncode != 0:   # catalog build --store-wide: the fixture's action
                print(f"({label}: exit {proc.returncode})", flush=True)   # records name blobs
            counts = count_calls(argv, study)
        finally:
            if scope == "scan":
                shutil.rmtree(store / "index", ignore_errors=True)   # gc's own note log
                os.rename(aside, store / "index")
        total = sum(counts.values())
        if foreign == 0:
            baseline[label] = total
        growth = (f"{total / baseline[label]:.2f}x" if baseline.get(label) else "-")
        rows.append([label, scope, f"{foreign:,}",
                     f"{counts['opens']:,}", f"{counts['stats']:,}",
                     f"{counts['dir reads']:,}", growth, f"{local:.2f} s",
                     *(f"{total * ms / 1000:.1f} s" for ms in LATENCIES_MS)])
        print(" | ".join(str(c) for c in rows[-1]), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[0, 100_000])
    parser.add_argument("--scan-up-to", type=int, default=100_000, metavar="N",
                        help="run the scan rows (no index) only up to N foreign objects")
    parser.add_argument("--keep", type=Path, help="work here and keep it (default: temp dir)")
    parser.add_argument("--no-write", action="store_true", help="print, do not write RESULTS.md")
    args = parser.parse_args()
    if shutil.which("strace") is None:
        raise SystemExit("needs strace (apt-get install strace)")
    root = args.keep or Path(tempfile.mkdtemp(prefix="assay-lab-store-"))
    study = root / "study"
    try:
        print(f"demo study in {study} ...", flush=True)
        run_demo(study)
        rows: list[list[object]] = []
        baseline: dict[str, int] = {}
        have = 0
        for size in sorted(args.sizes):
            started = time.perf_counter()
            add_foreign(study / "store", have, size)
            compact_index(study / "store")
            print(f"{size:,} foreign objects made in {time.perf_counter() - started:.0f} s",
                  flush=True)
            have = size
            rows += measure(study, size, baseline, args.scan_up_to)
        headers = ["command", "scope", "foreign objects", "opens", "stats", "dir reads",
                   "ops vs empty store", "local time",
                   *(f"at {ms:g} ms/op" for ms in LATENCIES_MS)]
        body = "\n".join([
            "`python benchmarks/lab_store.py --sizes " + " ".join(map(str, sorted(args.sizes)))
            + "`: the demo study (real snakemake), then other studies' objects added to its "
            "store (every 10th a run manifest, every 3rd with an action record), each logged "
            "in the object index as its writer would (assay.store.object_index; one log per "
            f"{FOREIGN_PER_LOG:,} objects) and the logs then compacted into the snapshot, as "
            "`gc --delete` leaves them. Scope: 'study' is a per-study command; 'store' a "
            "store-wide one reading the object index; 'scan' the same store-wide command on "
            "the store with index/ moved aside (a store written before the index: it lists "
            "objects/, and stats opens every object), or one that has no index path yet "
            "(catalog build --store-wide). 'gc mark phase' is gc up to its candidates: refs, "
            "the manifests they reach, the index merged, the candidates named (no lstat); "
            "`gc (dry run)` then lstats each candidate (the grace check needs its real mtime: "
            "here every foreign object is an unreferenced candidate). Each command runs once "
            "for its local time and once under `strace -f -c` for the counts "
            "(opens: openat; stats: the stat family, access, readlink; dir reads: getdents64, "
            "each returning up to ~32 KiB of entries). 'ops vs empty store' is the command's "
            "operations divided by its own count with no foreign objects: 1.00x means it "
            "costs what the study costs. The last columns convert all operations to time on a "
            "filesystem where each one is a metadata round trip of 0.2 or 1 ms.",
            "",
            machine_markdown(machine_description(root)),
            "",
            markdown_table(headers, rows),
        ])
        if not args.no_write:
            print(f"wrote {replace_section('Lab-scale store', body)}")
        else:
            print(body)
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
