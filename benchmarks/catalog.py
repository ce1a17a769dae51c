"""Catalog benchmark: build the DuckDB catalog for ~100,000 artifacts and query it.

Synthesizes a study the shape of a real one (runs with an NPZ-sized sidecar, per-replicate
artifacts with metrics and a sidecar, condition summaries, comparisons), with a ref and
an action record per artifact, written straight into the store layout (no fsync: this is
a fixture, not a store write path). Then times ``assay catalog build`` (in-process) and
metric queries, and writes the "## Catalog" section of benchmarks/RESULTS.md.

    python benchmarks/catalog.py                 # 100,000 artifacts in a temp dir
    python benchmarks/catalog.py --artifacts 20000 --keep /tmp/catalog-bench
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
GOAL_BUILD_S = 30.0
GOAL_QUERY_S = 0.1
METRICS = ("radius_of_gyration", "end_to_end", "energy", "msd")


def _canonical(value) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode()


class Writer:
    def __init__(self, root: Path) -> None:
        self.store = root / "store"
        self.results = root / "results"
        self.made_dirs: set[Path] = set()

    def _write(self, path: Path, data: bytes, mode: int = 0o644) -> None:
        parent = path.parent
        if parent not in self.made_dirs:
            parent.mkdir(parents=True, exist_ok=True)
            self.made_dirs.add(parent)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)

    def put(self, data: bytes) -> str:
        sha = hashlib.sha256(data).hexdigest()
        self._write(self.store / "objects" / sha[:2] / sha, data, 0o444)
        return sha

    def artifact(self, manifest: dict, ref: str, identity: dict, when: str) -> str:
        sha = self.put(_canonical(manifest))
        digest = f"sha256:{sha}"
        self._write(self.results / ref, _canonical({"digest": digest, **identity}) + b"\n")
        key = hashlib.sha256(f"action:{ref}".encode()).hexdigest()
        record = {"key": key, "digest": digest, "stage": manifest["provenance"]["stage"],
                  "plugin": manifest["provenance"]["plugin"], "when": when,
                  "host": "bench-node", "duration_s": 0.25}
        self._write(self.store / "actions" / key[:2] / f"{key}.json", _canonical(record) + b"\n")
        return digest


def _envelope(kind, analysis, condition, replicate, payload, sidecars, inputs, stage, plugin):
    return {
        "schema_version": 1, "artifact_type": kind, "analysis_name": analysis,
        "condition_label": condition, "replicate": replicate, "payload": payload,
        "sidecars": sidecars, "inputs": inputs, "metadata": {},
        "provenance": {"stage": stage, "plugin": plugin, "code_digest": "sha256:" + "c" * 64,
                       "settings": {"bins": 64, "cutoff": 1.5},
                       "settings_fingerprint": "sha256:" + "f" * 64,
                       "versions": {"assay": "0.1.0", "numpy": "2.0", "python": "3.11"}},
        "warnings": [],
    }


def _sidecar(w: Writer, path: str, rng: random.Random, size: int) -> dict:
    data = rng.randbytes(size)
    return {"path": path, "sha256": w.put(data), "size_bytes": size,
            "media_type": "application/x-npz", "metadata": {"kind": path.split("/")[-1][:-4]}}


def synthesize(root: Path, n_artifacts: int, seed: int = 0) -> dict[str, int]:
    """About ``n_artifacts`` artifacts: 4 analyses x C conditions x R replicates."""
    rng = random.Random(seed)
    w = Writer(root)
    n_analyses, n_conditions = len(METRICS), 50
    replicates = max(1, round(n_artifacts / (n_conditions * (1 + n_analyses))))
    when = "2024-05-01T12:00:00+00:00"
    counts = {"run": 0, "replicate": 0, "condition": 0, "comparison": 0}
    runs: dict[tuple[str, int], str] = {}
    for c in range(n_conditions):
        cond = f"c{c:03d}"
        for r in range(1, replicates + 1):
            side = [_sidecar(w, "sidecars/trajectory.npz", rng, 512)]
            m = _envelope("run", "demo", cond, r, {"n_frames": 100}, side, [], "run", "demo")
            runs[cond, r] = w.artifact(m, f"runs/{cond}/{r}.json",
                                       {"artifact_type": "run", "condition": cond,
                                        "replicate": r}, when)
            counts["run"] += 1
    for a in range(n_analyses):
        analysis = f"analysis{a}"
        cond_digests = []
        for c in range(n_conditions):
            cond = f"c{c:03d}"
            rep_digests, values = [], {name: [] for name in METRICS}
            for r in range(1, replicates + 1):
                metrics = {name: rng.gauss(c, 1.0) for name in METRICS}
                for name, v in metrics.items():
                    values[name].append(v)
                side = [_sidecar(w, "sidecars/profile.npz", rng, 256)]
                m = _envelope("replicate", analysis, cond, r, {"metrics": metrics}, side,
                              [{"role": "run", "digest": runs[cond, r]}], "collect", "bench")
                rep_digests.append(w.artifact(
                    m, f"replicates/{analysis}/{cond}/{r}.json",
                    {"analysis": analysis, "artifact_type": "replicate", "condition": cond,
                     "replicate": r}, when))
                counts["replicate"] += 1
            summary = {}
            for name, vs in values.items():
                mean = sum(vs) / len(vs)
                std = (sum((v - mean) ** 2 for v in vs) / max(1, len(vs) - 1)) ** 0.5
                sem = std / len(vs) ** 0.5
                summary[name] = {"n": len(vs), "mean": mean, "std": std, "sem": sem,
                                 "ci_low": mean - 2 * sem, "ci_high": mean + 2 * sem,
                                 "confidence": 0.95}
            m = _envelope("condition", analysis, cond, None, {"metrics": summary}, [],
                          [{"role": "replicate", "digest": d} for d in rep_digests],
                          "aggregate", "bench")
            m["replicates"] = list(range(1, replicates + 1))
            cond_digests.append(w.artifact(
                m, f"conditions/{analysis}/{cond}.json",
                {"analysis": analysis, "artifact_type": "condition", "condition": cond}, when))
            counts["condition"] += 1
        comparisons = {f"c{c:03d}": {name: {"difference": float(c), "ci_low": c - 1.0,
                                            "ci_high": c + 1.0, "t": 3.0, "p": 0.01,
                                            "df": 10.0} for name in METRICS}
                       for c in range(1, n_conditions)}
        m = _envelope("comparison", analysis, None, None,
                      {"control": "c000", "comparisons": comparisons}, [],
                      [{"role": "condition", "digest": d} for d in cond_digests],
                      "compare", "bench")
        w.artifact(m, f"comparisons/{analysis}.json",
                   {"analysis": analysis, "artifact_type": "comparison"}, when)
        counts["comparison"] += 1
    for sub in ("tmp",):
        (w.store / sub).mkdir(parents=True, exist_ok=True)
    return counts


def drop_page_cache(root: Path) -> int:
    """Ask the kernel to forget the cached pages of every file under ``root`` (no root
    privileges needed; directory entries and inodes stay cached)."""
    os.sync()
    count = 0
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)
            count += 1
    return count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifacts", type=int, default=100_000)
    parser.add_argument("--keep", type=Path, help="work in this directory and keep it "
                        "(reused if it already holds a synthesized study)")
    parser.add_argument("--repeats", type=int, default=2, help="catalog builds to time")
    parser.add_argument("--no-write", action="store_true", help="do not update RESULTS.md")
    args = parser.parse_args(argv)

    from common import (OtherLoad, machine_description, machine_markdown, markdown_table,
                        replace_section, wait_until_quiet)

    from assay.tools.catalog import build_catalog, open_catalog
    from assay.tools.gc import collect_garbage
    from assay.tools.verify import verify_store

    root = args.keep or Path(tempfile.mkdtemp(prefix="assay-catalog-bench-"))
    try:
        marker = root / "synthesized.json"
        if marker.exists() and json.loads(marker.read_text())["artifacts"] == args.artifacts:
            counts = json.loads(marker.read_text())["counts"]
            synth_s = float("nan")
        else:
            shutil.rmtree(root / "store", ignore_errors=True)
            shutil.rmtree(root / "results", ignore_errors=True)
            t0 = time.perf_counter()
            counts = synthesize(root, args.artifacts)
            synth_s = time.perf_counter() - t0
            marker.write_text(json.dumps({"artifacts": args.artifacts, "counts": counts}))
        total = sum(counts.values())
        print(f"synthesized {total} artifacts {counts} in {synth_s:.1f} s", file=sys.stderr)

        builds = []   # (label, seconds, other load in cores)
        for i in range(args.repeats):
            wait_until_quiet(300, log=lambda m: print(m, file=sys.stderr))
            label = "warm"
            if i == 0:
                evicted = drop_page_cache(root)
                label = f"cold ({evicted:,} files evicted from the page cache)"
            with OtherLoad() as load:
                summary = build_catalog(root / "store", root / "results")
            builds.append((label, summary.seconds, load.cores))
            print(f"catalog build ({label}): {summary.seconds:.2f} s, other load "
                  f"{load.cores or 0:.2f} cores; rows={summary.rows}", file=sys.stderr)

        with open_catalog(root / "results" / "catalog.duckdb") as catalog:
            queries = {}
            for name, call in {
                "top_metrics(10, 'energy', analysis='analysis1')":
                    lambda: catalog.top_metrics(10, "energy", analysis="analysis1"),
                "query_metrics(analysis=, condition=, metric=)":
                    lambda: catalog.query_metrics(analysis="analysis2", condition="c007",
                                                  metric="msd"),
                "query_metrics(statistic='mean')":
                    lambda: catalog.query_metrics(statistic="mean"),
            }.items():
                call()  # warm
                times = []
                for _ in range(5):
                    t0 = time.perf_counter()
                    frame = call()
                    times.append(time.perf_counter() - t0)
                queries[name] = (statistics.median(times), len(frame))
                print(f"{name}: {queries[name][0] * 1e3:.1f} ms ({len(frame)} rows)",
                      file=sys.stderr)
            metric_rows = int(catalog.query("SELECT count(*) AS n FROM metrics")["n"][0])

        # For scale, the other whole-store walks (no goals; not part of the catalog).
        others = {}
        t0 = time.perf_counter()
        report = verify_store(root / "store", root / "results")
        others["`assay verify` (hashes every reachable manifest and sidecar)"] = (
            time.perf_counter() - t0, "ok" if report.ok else "DAMAGE")
        t0 = time.perf_counter()
        gc_report = collect_garbage(root / "store", root / "results")
        others["`assay gc` (dry run)"] = (time.perf_counter() - t0,
                                          f"{gc_report.live_objects:,} live objects")

        worst_build = max(t for _, t, _ in builds)
        worst_query = max(t for t, _ in queries.values())
        ok = worst_build < GOAL_BUILD_S and worst_query < GOAL_QUERY_S
        rows = [(f"`catalog build`, {label}; other processes used {cores or 0:.2f} cores",
                 f"{t:.2f}", f"< {GOAL_BUILD_S:.0f}", "yes" if t < GOAL_BUILD_S else "**no**")
                for label, t, cores in builds]
        rows += [(f"`{name}` ({n:,} rows)", f"{t:.4f}", f"< {GOAL_QUERY_S}",
                  "yes" if t < GOAL_QUERY_S else "**no**") for name, (t, n) in queries.items()]
        rows += [(name, f"{t:.2f}", note, "") for name, (t, note) in others.items()]
        body = "\n".join([
            f"`python benchmarks/catalog.py --artifacts {args.artifacts}`: a synthetic study "
            f"of {total:,} artifacts ({', '.join(f'{v:,} {k}' for k, v in counts.items())}), "
            f"one ref and one action record each; {summary.rows['objects']:,} objects, "
            f"{metric_rows:,} metric rows. Query times are medians of 5 (after one warm-up).",
            "",
            machine_markdown(machine_description(root, packages=("duckdb", "pyarrow",
                                                                 "pandas"))),
            "",
            markdown_table(["measurement", "seconds", "goal", "met"], rows),
            "",
            "How the build works: walk the refs and action records, read each manifest once "
            "(following inputs; hashed, so a damaged manifest is skipped and reported), sniff "
            "objects nothing reaches for more manifests, build the rows in Python, insert one "
            "Arrow table per table into a new DuckDB file beside the old one, `os.replace`. "
            "Four reader threads only open and read files (the GIL is free during the "
            "syscalls); hashing and JSON parsing stay on the main thread (threads that also "
            "parse only pass the GIL back and forth: twice as slow here). About half of the "
            "build is opening and reading ~300,000 small files (refs, action records, "
            "manifests); DuckDB's own `read_json`/`json_each` over the manifests measured "
            "slower here (20 s for the JSON extraction alone), so rows are built in Python.",
        ])
        if not args.no_write:
            replace_section("Catalog", body)
        print(body)
        return 0 if ok else 1
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
