"""Aggregation reads payloads only: 1,000 replicates of one condition, with 1 MB sidecars.

    python benchmarks/aggregation.py            # 1,000 replicates x 1 MB NPZ sidecar
    python benchmarks/aggregation.py --quick    # 200 replicates

Builds N replicate artifacts of one condition through the store API (``write_npz_sidecar``
of a 1 MB float64 array, then ``write_artifact`` of a ReplicateArtifact with four payload
metrics), then times ``assay.pipeline.stages.compute_aggregate`` with the spec
``assay.pipeline.stages.aggregate_spec`` gives (a new ArtifactStore each time, so the in-process LRU
and stat cache start empty; the page cache is warm) and measures what it reads: bytes from
``/proc/self/io`` (``rchar``) and every file it opens (a ``sys.addaudithook`` "open" hook),
sorted into manifests, sidecars and other files. Baselines in the same run: reading and
parsing the N manifest files directly (the least any aggregation must read), and opening
every sidecar (what aggregation avoids). Also times one ``assay.pipeline.stages.execute`` of the
aggregate spec (action key, aggregate, write the artifact and the action record).

Writes the "## Aggregation" section of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from common import (  # noqa: E402
    RESULTS_MD,
    machine_markdown,
    markdown_table,
)
from workflow import Shape, measure_and_write, study_config, write_plugins  # noqa: E402

SIDECAR_BYTES = 1 << 20


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- what a block of code reads ------------------------------------------------------------
class Opened:
    """Paths opened (builtins.open, io.open, os.open) while ``active``; via an audit hook,
    which cannot be removed, so one instance per process."""

    def __init__(self) -> None:
        self.active = False
        self.paths: list[str] = []
        sys.addaudithook(self._hook)

    def _hook(self, event: str, args: tuple) -> None:
        if self.active and event == "open" and args and isinstance(args[0], (str, bytes,
                                                                              os.PathLike)):
            self.paths.append(os.fsdecode(args[0]))


def rchar() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise RuntimeError("no rchar in /proc/self/io")


class Reads:
    def __init__(self, opened: Opened) -> None:
        self.opened = opened

    def __enter__(self) -> "Reads":
        self.opened.paths = []
        self._r0 = rchar()
        self.opened.active = True
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self._t0
        self.opened.active = False
        self.bytes = rchar() - self._r0
        self.paths = list(self.opened.paths)


# --- the fixture ---------------------------------------------------------------------------
def build(root: Path, n: int, seed: int = 0):
    """N replicate artifacts of condition c000 (analysis a0) with one 1 MB NPZ sidecar each."""
    import numpy as np

    plugins = write_plugins(root / "plugins")
    sys.path.insert(0, str(plugins))
    from assay import ArtifactStore, ReplicateArtifact
    from assay.pipeline.config import Study
    from assay.pipeline.stages import aggregate_spec

    config = study_config(Shape(1, n, 1))
    config["conditions"].append({"label": "c001", "params": {}})  # a control to compare to
    study = Study.from_config(config)
    spec = aggregate_spec(study, "a0", "c000")
    rng = np.random.default_rng(seed)
    digests, sidecars = [], []
    t0 = time.perf_counter()
    with ArtifactStore(root / "store") as store:
        for replicate in range(1, n + 1):
            array = rng.random(SIDECAR_BYTES // 8)
            ref = store.write_npz_sidecar("sidecars/profile.npz", profile=array,
                                          metadata={"kind": "profile"})
            metrics = {"mean": float(array.mean()), "std": float(array.std()),
                       "max": float(array.max()), "first": float(array[0])}
            artifact = ReplicateArtifact(
                analysis_name="a0", condition_label="c000", replicate=replicate,
                payload={"metrics": metrics}, sidecars=[ref],
                metadata={"settings_fingerprint": spec["settings_fingerprint"]})
            digests.append(store.write_artifact(artifact))
            sidecars.append(ref)
            if replicate % 100 == 0:
                log(f"  built {replicate}/{n} replicates")
    return spec, digests, sidecars, time.perf_counter() - t0


# --- the benchmark -------------------------------------------------------------------------
def measure(args: argparse.Namespace, root: Path) -> dict:
    from assay import ArtifactStore
    from assay.store.hashing import parse_digest
    from assay.pipeline.stages import compute_aggregate, execute

    log(f"building {args.replicates} replicates with a {SIDECAR_BYTES >> 20} MB sidecar each")
    spec, digests, sidecars, build_s = build(root, args.replicates)
    store_root = root / "store"
    manifest_paths = {str(store_root / "objects" / parse_digest(d)[:2] / parse_digest(d))
                      for d in digests}
    sidecar_paths = {str(store_root / "objects" / s.sha256[:2] / s.sha256) for s in sidecars}
    manifest_bytes = sum(os.path.getsize(p) for p in manifest_paths)
    sidecar_bytes = sum(s.size_bytes for s in sidecars)
    opened = Opened()

    def aggregate() -> object:
        store = ArtifactStore(store_root)  # empty LRU and stat cache
        return compute_aggregate(store, spec, digests)

    def raw_manifests() -> object:
        out = []
        for path in manifest_paths:
            with open(path, "rb") as handle:
                out.append(json.loads(handle.read())["payload"]["metrics"])
        return out

    def every_sidecar() -> object:
        import numpy as np

        total = 0.0
        for path in sidecar_paths:
            with np.load(path) as data:
                total += float(data["profile"][0])
        return total

    # Warm up: imports (scipy.stats is imported by the first summary), page cache.
    result = aggregate()
    raw_manifests()
    every_sidecar()
    cases = {"compute_aggregate": aggregate, "raw manifests": raw_manifests,
             "every sidecar": every_sidecar}
    runs: dict[str, list[Reads]] = {name: [] for name in cases}
    for i in range(args.repeats):
        for name, fn in cases.items():
            with Reads(opened) as reads:
                fn()
            runs[name].append(reads)
        log(f"  [{i + 1}/{args.repeats}] " + ", ".join(
            f"{name} {r[-1].seconds:.3f}s {r[-1].bytes / 1e6:.2f} MB" for name, r in runs.items()))

    with Reads(opened) as first_execute:
        store = ArtifactStore(store_root)
        execute_digest = execute(store, spec, digests, use_cache=False)
        store.close()

    def sort_paths(paths: list[str]) -> dict[str, int]:
        kinds = {"manifests": 0, "sidecars": 0, "other": 0}
        for path in paths:
            real = str(Path(path).resolve()) if not os.path.isabs(path) else path
            if real in manifest_paths:
                kinds["manifests"] += 1
            elif real in sidecar_paths:
                kinds["sidecars"] += 1
            else:
                kinds["other"] += 1
        return kinds

    others_execute = sorted({p for p in first_execute.paths
                             if p not in manifest_paths and p not in sidecar_paths})
    n_metrics = len(result.payload["metrics"])
    return {"runs": runs, "sort": sort_paths, "manifest_bytes": manifest_bytes,
            "sidecar_bytes": sidecar_bytes, "build_s": build_s, "execute": first_execute,
            "execute_digest": execute_digest, "others_execute": others_execute,
            "n_metrics": n_metrics, "replicates_used": len(result.replicates)}


def report(args: argparse.Namespace, facts: dict, info: dict) -> str:
    runs = facts["runs"]
    sort = facts["sort"]

    def med_s(name: str) -> float:
        return statistics.median(r.seconds for r in runs[name])

    def med_b(name: str) -> float:
        return statistics.median(r.bytes for r in runs[name])

    def opened(name: str) -> dict[str, int]:
        return sort(runs[name][-1].paths)

    def cell(name: str) -> str:
        times = [r.seconds for r in runs[name]]
        o = opened(name)
        return (f"{med_s(name):.3f} s ({min(times):.3f}-{max(times):.3f}); "
                f"{med_b(name) / 1e6:.2f} MB read; opened {o['manifests']} manifests, "
                f"{o['sidecars']} sidecars, {o['other']} other files")

    ours = opened("compute_aggregate")
    payload_only = (ours["sidecars"] == 0
                    and med_b("compute_aggregate") <= 1.1 * facts["manifest_bytes"] + 65536)
    n = args.replicates
    rows = [
        [f"`compute_aggregate`, {n} replicates", cell("compute_aggregate"),
         f"reading + parsing the {n} manifest files: {cell('raw manifests')}",
         f"{med_s('compute_aggregate') / med_s('raw manifests'):.2f} (time), "
         f"{med_b('compute_aggregate') / max(med_b('raw manifests'), 1):.2f} (bytes)",
         "reads payloads only: no sidecar opened, bytes ~ manifests",
         "yes" if payload_only else "**no**"],
        [f"(what it avoids) `np.load` of every sidecar, {n} replicates", cell("every sidecar"),
         f"`compute_aggregate`: {med_s('compute_aggregate'):.3f} s",
         f"{med_s('every sidecar') / med_s('compute_aggregate'):.1f}x slower, "
         f"{med_b('every sidecar') / max(med_b('compute_aggregate'), 1):.0f}x the bytes",
         "", ""],
    ]
    table = markdown_table(["figure", "measured", "baseline", "ratio", "goal", "met?"], rows)
    ex = facts["execute"]
    ex_open = sort(ex.paths)
    cmd = "python benchmarks/aggregation.py" + (" --quick" if args.quick else "")
    others = facts.get("others")
    lines = [
        "## Aggregation", "",
        f"`{cmd}`: {n} replicate artifacts of one condition, each with four payload metrics "
        f"and one {SIDECAR_BYTES >> 20} MB NPZ sidecar (random float64), written through the "
        f"store API (`write_npz_sidecar`, `write_artifact`; {facts['build_s']:.1f} s to "
        f"build). Manifests total {facts['manifest_bytes'] / 1e6:.2f} MB, sidecars "
        f"{facts['sidecar_bytes'] / 1e6:.0f} MB. Each timing uses a new `ArtifactStore` "
        "(empty LRU and stat cache; page cache warm, imports done); median of "
        f"{args.repeats} (min-max), cases round-robin. Bytes read: `rchar` of "
        "`/proc/self/io`; files: a `sys.addaudithook` \"open\" hook, each path sorted into "
        "manifest objects, sidecar objects and other files.", "",
        machine_markdown(info), "",
        table, "",
        f"- The aggregate holds {facts['n_metrics']} metrics over "
        f"{facts['replicates_used']} replicates (n, mean, std, SEM, t interval each).",
        f"- One `execute` of the aggregate spec (action key, `compute_aggregate`, write the "
        f"condition artifact and the action record, `use_cache=False`): {ex.seconds:.3f} s, "
        f"{ex.bytes / 1e6:.2f} MB read; opened {ex_open['manifests']} manifests, "
        f"{ex_open['sidecars']} sidecars and {ex_open['other']} other files"
        + (f" ({', '.join(Path(p).name if 'objects' not in p else 'objects/…' for p in facts['others_execute'][:8])})"
           if facts["others_execute"] else "") + ".",
    ]
    if others is not None and others.cores is not None:
        lines.append(f"- Other processes used on average {others.cores:.2f} of "
                     f"{os.cpu_count()} cores while this ran.")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="200 replicates, 3 repeats")
    parser.add_argument("--replicates", type=int, help="default 1000 (--quick: 200)")
    parser.add_argument("--repeats", type=int, help="default 5 (--quick: 3)")
    parser.add_argument("--scratch", type=Path, default=Path("/tmp"))
    parser.add_argument("--no-write", action="store_true", help="do not update RESULTS.md")
    parser.add_argument("--results", type=Path, default=RESULTS_MD)
    args = parser.parse_args(argv)
    args.replicates = args.replicates or (200 if args.quick else 1000)
    args.repeats = args.repeats or (3 if args.quick else 5)
    return measure_and_write("Aggregation", args, "assay-bench-aggregation-", measure, report)


if __name__ == "__main__":
    raise SystemExit(main())
