"""What the convergence diagnostics cost a collect job (goal: < 5% of the collect job).

    python benchmarks/convergence.py            # 9 rounds
    python benchmarks/convergence.py --quick    # 3 rounds

One demo run (the demo config's runner settings: 24 beads, 200 frames) is stored; then,
round-robin, each case is timed:

* the whole collect job of the demo's gyration analysis (radius_of_gyration, which
  declares two series), as Snakemake starts it: ``python -m assay.jobs collect
  --no-cache`` from process start to its ref;
* the same job for a copy of the plugin without SERIES (no diagnostics);
* in process: ``assay.pipeline.diagnostics.with_replicate_diagnostics`` alone on the collected
  replicate (read the series sidecar, t0/g/N_eff/MCSE of both series);
* ``assay.pipeline.convergence.series_diagnostics`` alone on AR(1) series of 1,000, 10,000 and
  100,000 frames (g ~ 19), to show how it grows for long MD series.

Writes the "## Convergence diagnostics" section of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from common import (  # noqa: E402
    busy_cores,
    machine_description,
    machine_markdown,
    markdown_table,
    replace_section,
)

PLUGIN = textwrap.dedent('''
    from assay.analyses.polymer import RadiusOfGyration


    class NoSeries(RadiusOfGyration):
        """The demo's gyration analysis without SERIES: no diagnostics."""

        SERIES = None
''')


def _median(values: list[float]) -> str:
    return f"{statistics.median(values):.3f} s ({min(values):.3f}-{max(values):.3f})"


def _job(scratch: Path, store: Path, spec: dict, run_ref: Path, out: Path) -> float:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(scratch), *sys.path])}
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "assay.jobs", "collect", "--store",
                           str(store), "--spec", json.dumps(spec), "--inputs", str(run_ref),
                           "--output", str(out), "--no-cache"], env=env, cwd=scratch,
                          capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"collect job failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    rounds = 3 if args.quick else 9

    import numpy as np
    import yaml

    from assay import ArtifactStore, read_ref, write_ref
    from assay.analyses.polymer import RadiusOfGyration
    from assay.pipeline.config import Study
    from assay.pipeline.convergence import series_diagnostics
    from assay.pipeline.diagnostics import with_replicate_diagnostics
    from assay.pipeline.stages import collect_spec, execute, run_spec

    config = yaml.safe_load((HERE.parent / "config" / "config.yaml").read_text())
    config["analyses"] = {"gyration": config["analyses"]["gyration"],
                          "plain": {"plugin": "nsplugin:NoSeries",
                                    "settings": config["analyses"]["gyration"]["settings"]}}
    with tempfile.TemporaryDirectory(prefix="assay-bench-conv-") as tmp:
        scratch = Path(tmp)
        (scratch / "nsplugin.py").write_text(PLUGIN)
        sys.path.insert(0, str(scratch))
        study = Study.from_config(config)
        store = ArtifactStore(scratch / "store")
        run = execute(store, run_spec(study, "free", 1), [])
        run_ref = scratch / "results" / "runs" / "free" / "1.json"
        write_ref(run_ref, run, artifact_type="run", condition="free", replicate=1)
        specs = {name: collect_spec(study, name, "free", 1) for name in ("gyration", "plain")}
        collected = store.read_replicate_result(execute(store, specs["gyration"], [run]))
        n_frames = collected.payload["n_frames"]
        series: dict[int, np.ndarray] = {}
        rng = np.random.default_rng(0)
        for n in (1_000, 10_000, 100_000):
            x = np.empty(n)
            x[0] = 0.0
            noise = rng.normal(size=n)
            for i in range(1, n):
                x[i] = 0.9 * x[i - 1] + noise[i]
            series[n] = x

        times: dict[str, list[float]] = {k: [] for k in (
            "job", "job_plain", "diagnostics", *(f"series_{n}" for n in series))}
        quiet = busy_cores(0.5)
        for _ in range(rounds):
            for case, name in (("job", "gyration"), ("job_plain", "plain")):
                out = scratch / "results" / "replicates" / name / "free" / "1.json"
                times[case].append(_job(scratch, store.root, specs[name], run_ref, out))
            bare = dataclasses.replace(collected, payload={
                k: v for k, v in collected.payload.items() if k != "convergence"})
            started = time.perf_counter()
            with_replicate_diagnostics(ArtifactStore(store.root), RadiusOfGyration, bare,
                                       "bench")
            times["diagnostics"].append(time.perf_counter() - started)
            for n, x in series.items():
                started = time.perf_counter()
                series_diagnostics(x)
                times[f"series_{n}"].append(time.perf_counter() - started)
        read_ref(scratch / "results" / "replicates" / "gyration" / "free" / "1.json")
        load = busy_cores(0.5)
        info = machine_description(scratch)

    job, plain, diag = (statistics.median(times[k]) for k in ("job", "job_plain",
                                                            "diagnostics"))
    rows = [
        ["collect job of the demo's gyration analysis (2 series), process start to ref",
         _median(times["job"]), f"same job without SERIES: {_median(times['job_plain'])}",
         f"{job / plain:.3f}", "", ""],
        [f"the diagnostics alone (read the sidecar, 2 series of {n_frames} frames)",
         _median(times["diagnostics"]), f"the collect job: {job:.3f} s",
         f"{100 * diag / job:.1f} %", "< 5 %", "yes" if diag / job < 0.05 else "**no**"],
    ]
    for n in series:
        rows.append([f"series_diagnostics of one series of {n:,} frames (AR(1), g ~ 19)",
                     _median(times[f"series_{n}"]), "", "", "", ""])
    body = "\n".join([
        "`python benchmarks/convergence.py`"
        + (" --quick" if args.quick else "")
        + f": {rounds} rounds, cases round-robin, median (min-max). One demo run (24 beads, "
        f"{n_frames} frames after the analysis' equilibration) collected by `python -m "
        "assay.jobs collect --no-cache` as Snakemake starts it, with the plugin's SERIES "
        "and with a copy that declares none; the diagnostics also timed alone in process.",
        "", machine_markdown(info), "",
        markdown_table(["figure", "measured", "baseline", "ratio", "goal", "met?"], rows),
        "",
        f"- Other processes used {'?' if quiet is None else f'{quiet:.2f}'} of 2 cores "
        f"before and {'?' if load is None else f'{load:.2f}'} after the rounds.",
        "- The estimators are numpy ports of pymbar/arviz-stats (docs/statistics.md): "
        "importing pymbar.timeseries itself costs ~0.9 s (it loads scipy.stats), several "
        "times the whole demo collect job.",
    ])
    path = replace_section("Convergence diagnostics", body)
    print(body)
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
