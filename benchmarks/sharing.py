"""What the shared-store permission model costs a single user: small store operations,
before and after it, in one run.

    python benchmarks/sharing.py                       # baseline: the commit before it
    python benchmarks/sharing.py --baseline-ref main --ops 500 --repeats 5

The 800 MB write of ``benchmarks/store.py`` is dominated by I/O; the permission model adds
a few system calls per operation (a stat of the store root when it is opened, the owner of
an action record, one more stat per object of a cache hit), which only small operations can
show. Each case runs in a fresh interpreter on a fresh store under ``--scratch``:

* open: ``ArtifactStore(root)`` on an existing store;
* put: ``put_bytes`` of a new 1 KiB object (tmp file, fsync, rename, fsync of the shard);
* put again: the same bytes once more (deduplicated: stat, owner, mtime refresh);
* record: ``record_action`` (atomic write of a small JSON file);
* hit: ``lookup_action`` of a recorded artifact with one sidecar, in a fresh store object
  (record read and its owner checked, manifest and sidecar refreshed and hashed).

Cases: the baseline code (``git archive`` of ``--baseline-ref``), this code on a private
store (the single-user path), this code on a shared store (root ``drwxrwsr-x``). Rounds run
the three round-robin, each starting at the next case (six rounds: each case is first,
second and third twice), after an ``os.sync()``. Writes that fsync get slower over a run
as the filesystem's journal fills, so a ratio is the median over rounds of that round's
after/before ratio, not a ratio of medians.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import (  # noqa: E402
    RESULTS_MD,
    machine_description,
    machine_markdown,
    markdown_table,
    replace_section,
)

REPO = Path(__file__).resolve().parents[1]
BASELINE_REF = "59c985d"   # the last commit before assay.store.sharing
OPS = ("open", "put", "put again", "record", "hit")

WORKER = r'''
import json, os, sys, time
root, ops, shared = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "shared"
os.makedirs(root)
if shared:
    os.chmod(root, 0o2775)
from assay import ArtifactStore, RunArtifact, action_key
out = {}
store = ArtifactStore(root)
t = time.perf_counter()
for _ in range(ops):
    ArtifactStore(root)
out["open"] = (time.perf_counter() - t) / ops
blobs = [os.urandom(1024) for _ in range(ops)]
t = time.perf_counter()
for blob in blobs:
    store.objects.put_bytes(blob)
out["put"] = (time.perf_counter() - t) / ops
t = time.perf_counter()
for blob in blobs:
    store.objects.put_bytes(blob)
out["put again"] = (time.perf_counter() - t) / ops
keys = []
digests = []
for i in range(ops):
    sidecar = store.write_bytes_sidecar("x.bin", blobs[i])
    digests.append(store.write_artifact(RunArtifact(analysis_name="b", condition_label="c",
                                                    replicate=i + 1, sidecars=[sidecar])))
    keys.append(action_key(stage="run", plugin="b", code_digest="c", settings={"i": i}))
t = time.perf_counter()
for key, digest in zip(keys, digests):
    store.record_action(key, digest, stage="run", plugin="b")
out["record"] = (time.perf_counter() - t) / ops
fresh = ArtifactStore(root)
t = time.perf_counter()
for key, digest in zip(keys, digests):
    assert fresh.lookup_action(key) == digest
out["hit"] = (time.perf_counter() - t) / ops
print(json.dumps(out))
'''


def baseline_src(ref: str, scratch: Path) -> Path:
    target = scratch / "baseline"
    target.mkdir()
    archive = subprocess.run(["git", "-C", str(REPO), "archive", ref, "src"], check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return target / "src"


def run_case(src: Path, shared: bool, ops: int, scratch: Path, n: int) -> dict[str, float]:
    root = scratch / f"store-{n}"
    env = {**os.environ, "PYTHONPATH": str(src)}
    env.pop("ASSAY_STORE_SHARING", None)
    proc = subprocess.run([sys.executable, "-c", WORKER, str(root), str(ops),
                           "shared" if shared else "private"], env=env, capture_output=True,
                          text=True, check=True)
    shutil.rmtree(root)
    return json.loads(proc.stdout)


def measure(scratch_parent: Path, ref: str, ops: int, repeats: int
            ) -> tuple[list[str], dict[str, dict[str, list[float]]]]:
    scratch = Path(tempfile.mkdtemp(prefix="assay-sharing-bench-", dir=scratch_parent))
    try:
        cases = {f"before ({ref})": (baseline_src(ref, scratch), False),
                 "after, private store": (REPO / "src", False),
                 "after, shared store": (REPO / "src", True)}
        names = list(cases)
        samples: dict[str, dict[str, list[float]]] = {n: {op: [] for op in OPS} for n in names}
        counter = 0
        for round_ in range(repeats):
            for i in range(len(names)):
                name = names[(round_ + i) % len(names)]
                src, shared = cases[name]
                counter += 1
                os.sync()   # no case pays for the writeback of the one before it
                result = run_case(src, shared, ops, scratch, counter)
                for op in OPS:
                    samples[name][op].append(result[op])
                print(f"{scratch_parent} [{round_ + 1}/{repeats}] {name}: "
                      + ", ".join(f"{op} {1e6 * result[op]:.1f} us" for op in OPS),
                      file=sys.stderr)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return names, samples


def table(names: list[str], samples: dict[str, dict[str, list[float]]]) -> str:
    med = {n: {op: statistics.median(v) for op, v in ops.items()} for n, ops in samples.items()}
    before, private, shared = names

    def ratio(case: str, op: str) -> str:
        per_round = [a / b for a, b in zip(samples[case][op], samples[before][op])]
        return f"{statistics.median(per_round):.2f} ({min(per_round):.2f}-{max(per_round):.2f})"

    rows = [[op, f"{1e6 * med[before][op]:.1f}", f"{1e6 * med[private][op]:.1f}",
             ratio(private, op), f"{1e6 * med[shared][op]:.1f}", ratio(shared, op)]
            for op in OPS]
    return markdown_table(["operation", "before, us", "after private, us",
                           "ratio private/before (min-max)", "after shared, us",
                           "ratio shared/before (min-max)"], rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline-ref", default=BASELINE_REF)
    parser.add_argument("--ops", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=6)
    parser.add_argument("--scratch", type=Path, action="append",
                        help="parent folder for the stores, repeatable (default: /tmp, and "
                             "/dev/shm where it exists: memory, so no fsync cost and only the "
                             "code's own overhead shows)")
    parser.add_argument("--no-write", action="store_true", help="do not update RESULTS.md")
    parser.add_argument("--quick", action="store_true", help="--ops 200 --repeats 3")
    args = parser.parse_args(argv)
    if args.quick:
        args.ops, args.repeats = 200, 3
    scratches = args.scratch or [Path("/tmp")] + (
        [Path("/dev/shm")] if Path("/dev/shm").is_dir() else [])

    parts = []
    for scratch in scratches:
        names, samples = measure(scratch, args.baseline_ref, args.ops, args.repeats)
        where = machine_description(scratch)["scratch"]
        parts += [f"Stores under {where}:", "", table(names, samples), ""]
    text = "\n".join([
        "## Shared-store permissions",
        "",
        f"`python benchmarks/sharing.py --ops {args.ops} --repeats {args.repeats}`: the cost "
        "of `assay.store.sharing` for small store operations, against the code before it "
        f"(`{args.baseline_ref}`), each case in a fresh interpreter on a fresh store; "
        f"microseconds per operation, median of {args.repeats} rounds of {args.ops} "
        "operations (cases round-robin, `os.sync()` before each); a ratio is the median "
        "over rounds of the round's after/before ratio, with its range (fsync costs drift "
        "during a run and other work on the disk shows in single rounds).",
        "",
        machine_markdown(machine_description(scratches[0])),
        "",
        *parts,
        "- open: `ArtifactStore(root)` on an existing store; put: a new 1 KiB object "
        "(two fsyncs on a disk); put again: the same bytes (deduplicated); record: "
        "`record_action` of new keys (new shard directories too); hit: `lookup_action` of "
        "an artifact with one sidecar from a fresh store object.",
        "- The shared store's writes also give every directory they create the store's "
        "group and mode (a few hundred shards here) and check owners against the trust "
        "rule; on a disk that is lost in the fsyncs.",
    ]) + "\n"
    print(text)
    if not args.no_write:
        replace_section("Shared-store permissions", text, RESULTS_MD)
        print(f"wrote the Shared-store permissions section of {RESULTS_MD}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
