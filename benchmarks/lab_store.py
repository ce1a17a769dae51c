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

# (label, argv after `assay --store S --results R`, per-study?)
COMMANDS = [
    ("catalog build", ["catalog", "build"], True),
    ("verify", ["verify"], True),
    ("ls", ["ls"], True),
    ("status", ["status"], True),
    ("catalog build --store-wide", ["catalog", "build", "--store-wide"], False),
    ("stats", ["stats"], False),
    ("gc (dry run)", ["gc"], False),
]


def run_demo(study: Path) -> None:
    (study / "config").mkdir(parents=True)
    shutil.copy(REPO / "config" / "config.yaml", study / "config" / "config.yaml")
    subprocess.run([sys.executable, "-m", "snakemake", "--snakefile",
                    str(REPO / "workflow" / "Snakefile"), "--directory", str(study),
                    "--cores", "2", "--workflow-profile", "none", "--quiet"],
                   check=True, capture_output=True, text=True)


def add_foreign(store: Path, start: int, stop: int) -> None:
    """Objects ``start..stop-1`` of other studies: every 10th a run manifest, every 3rd
    with an action record (what a lab store holds besides this study)."""
    made: set[Path] = set()

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
        if i % 3 == 0:
            key = hashlib.sha256(f"key {i}".encode()).hexdigest()
            record = {"key": key, "digest": f"sha256:{sha}", "stage": "run", "plugin": "other"}
            write(store / "actions" / key[:2] / f"{key}.json",
                  json.dumps(record, sort_keys=True).encode(), 0o644)


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


def measure(study: Path, foreign: int, baseline: dict[str, int]) -> list[list[object]]:
    rows = []
    for label, args, per_study in COMMANDS:
        argv = [sys.executable, "-m", "assay.cli", "--store", str(study / "store"),
                "--results", str(study / "results"), *args]
        started = time.perf_counter()
        subprocess.run(argv, cwd=study, capture_output=True, text=True)
        local = time.perf_counter() - started
        counts = count_calls(argv, study)
        total = sum(counts.values())
        if foreign == 0:
            baseline[label] = total
        growth = (f"{total / baseline[label]:.2f}x" if baseline.get(label) else "-")
        rows.append([label, "study" if per_study else "store", f"{foreign:,}",
                     f"{counts['opens']:,}", f"{counts['stats']:,}",
                     f"{counts['dir reads']:,}", growth, f"{local:.2f} s",
                     *(f"{total * ms / 1000:.1f} s" for ms in LATENCIES_MS)])
        print(" | ".join(str(c) for c in rows[-1]), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[0, 100_000])
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
            add_foreign(study / "store", have, size)
            have = size
            rows += measure(study, size, baseline)
        headers = ["command", "scope", "foreign objects", "opens", "stats", "dir reads",
                   "ops vs empty store", "local time",
                   *(f"at {ms:g} ms/op" for ms in LATENCIES_MS)]
        body = "\n".join([
            "`python benchmarks/lab_store.py --sizes " + " ".join(map(str, sorted(args.sizes)))
            + "`: the demo study (real snakemake), then other studies' objects added to its "
            "store (every 10th a run manifest, every 3rd with an action record). Each command "
            "runs once for its local time and once under `strace -f -c` for the counts "
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
