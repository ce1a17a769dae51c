"""Simulated ns an adaptive run length needs vs a fixed length reaching the same N_eff.

    python benchmarks/run_length.py            # 3 conditions x 4 replicates, up to 24 ps
    python benchmarks/run_length.py --quick    # 3 conditions x 2 replicates

The OpenMM example (config/examples/openmm.yaml: A6PA6 in OBC2, a frame every 0.2 ps, the
study's seeds per condition x replicate) with

    run_length: {segment: 1000, max: 12000, until: {n_eff: 20}}   # potential energy

Each replicate is simulated once for ``max`` steps with the runner. A run that stops at N
steps is the first N steps of that run, frame for frame (the property
tests/test_openmm_runner.py checks: an extended run is the run of N steps in one go), so
where the adaptive run stops is read off the long run's state table at each segment end
with the runner's own rule (assay.pipeline.run_length); one replicate per condition is also run
with run_length for real, and its table must be that prefix. Fixed: the shortest length
(a multiple of the segment) at which as many replicates reach the target as the adaptive
runs do, chosen knowing every run's outcome, which favours the fixed design.

Writes the "## Adaptive run length" section of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
from common import (  # noqa: E402
    busy_cores,
    machine_description,
    machine_markdown,
    markdown_table,
    replace_section,
)

CONFIG = REPO / "config" / "examples" / "openmm.yaml"
SEGMENT, MAX, TARGET = 1000, 12000, 20.0
SERIES = "potential_energy_kj_mol"


def _simulate(job: tuple[str, dict, dict, int, str, int, str]
              ) -> tuple[str, str, int, list[float], float, int]:
    """One replicate in a scratch store: (kind, condition, replicate, the series, seconds,
    steps)."""
    kind, settings, params, seed, condition, replicate, scratch = job
    from assay import ArtifactStore
    from assay.pipeline.context import RunContext
    from assay.pipeline.openmm_runner import OpenMMRunner

    root = Path(tempfile.mkdtemp(dir=scratch, prefix=f"{kind}-{condition}-{replicate}-"))
    (root / "work").mkdir()
    ctx = RunContext(condition_label=condition, replicate=replicate, params=params,
                     settings=settings, seed=seed, artifact_store=ArtifactStore(root / "store"),
                     runner_name="openmm", study_dir=REPO, workdir=root / "work")
    ctx.log = lambda message: None
    started = time.perf_counter()
    run = OpenMMRunner().run(ctx)
    seconds = time.perf_counter() - started
    table = ctx.artifact_store.load_table_sidecar(run.sidecar(kind="state_data"))
    return kind, condition, replicate, table[SERIES].tolist(), seconds, run.payload["steps"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--cache", type=Path, help="keep the simulated series in this JSON "
                        "file and reuse them (same settings) instead of simulating again")
    args = parser.parse_args()
    replicates = 2 if args.quick else 4

    import yaml

    from assay.pipeline.config import Study
    from assay.pipeline.run_length import n_eff_of

    config = yaml.safe_load(CONFIG.read_text())
    config["replicates"] = replicates
    study = Study.from_config(config)
    settings = dict(config["runner"]["settings"])
    frame = settings["report_interval"]
    ns_per_step = settings["timestep_fs"] * 1e-6
    fixed_settings = {**settings, "steps": MAX}
    adaptive_settings = {k: v for k, v in settings.items() if k != "steps"}
    adaptive_settings["run_length"] = {"segment": SEGMENT, "max": MAX,
                                       "until": {"n_eff": TARGET, "series": SERIES}}
    labels = list(study.conditions)
    cached = json.loads(args.cache.read_text()) if args.cache and args.cache.is_file() else None
    if cached is not None and cached.get("key") != [settings, replicates, MAX, SEGMENT]:
        cached = None   # other settings: simulate again
    if cached is None:
        with tempfile.TemporaryDirectory(prefix="assay-bench-run-length-") as scratch:
            jobs = [("fixed", fixed_settings, study.conditions[c], study.seed_for(c, r), c, r,
                     scratch) for c in labels for r in range(1, replicates + 1)]
            jobs += [("adaptive", adaptive_settings, study.conditions[c], study.seed_for(c, 1),
                      c, 1, scratch) for c in labels]   # replicate 1 with run_length, for real
            quiet = busy_cores(0.5)
            started = time.perf_counter()
            with ProcessPoolExecutor(max_workers=args.workers) as pool:
                done = [list(d) for d in pool.map(_simulate, jobs)]
            wall = time.perf_counter() - started
            load = busy_cores(0.5)
            info = machine_description(Path(scratch), packages=("numpy", "openmm"))
        cached = {"key": [settings, replicates, MAX, SEGMENT], "done": done, "wall": wall,
                  "quiet": quiet, "load": load, "info": info}
        if args.cache:
            args.cache.write_text(json.dumps(cached))
    done, wall, quiet, load, info = (cached[k] for k in ("done", "wall", "quiet", "load",
                                                         "info"))
    long = {(c, r): series for kind, c, r, series, _, _ in done if kind == "fixed"}
    real = {c: (series, steps) for kind, c, _, series, _, steps in done if kind == "adaptive"}
    ends = list(range(SEGMENT, MAX + 1, SEGMENT))
    n_eff = {key: {end: n_eff_of(series[:end // frame]) for end in ends}
             for key, series in long.items()}
    stop, reached = {}, {}
    for key, by_end in n_eff.items():   # the runner's rule: first segment end at target
        stop[key] = next((e for e in ends if by_end[e] >= TARGET), MAX)
        reached[key] = by_end[stop[key]] >= TARGET
    for condition, (series, steps) in real.items():   # the real adaptive run agrees
        assert steps == stop[(condition, 1)], (condition, steps, stop[(condition, 1)])
        assert series == long[(condition, 1)][:steps // frame], condition
    runs = len(long)
    assurance = sum(reached.values()) / runs
    rates = {e: sum(n_eff[k][e] >= TARGET for k in long) / runs for e in ends}
    fixed = next((e for e in ends if rates[e] >= assurance), None)
    best = min(ends, key=lambda e: (-rates[e], e))   # the most runs on target, shortest
    adaptive_ns = sum(stop.values()) * ns_per_step

    def versus(length: int | None, what: str, goal: bool = False) -> list[str]:
        target = ["<= 0.70", "**no**"] if goal else ["", ""]
        if length is None:   # no fixed length to compare with: say so, not "no"
            return [what, f"{adaptive_ns:.3f}", f"none up to {MAX} steps", "",
                    target[0], "n/a" if goal else ""]
        ratio = adaptive_ns / (length * runs * ns_per_step)
        if goal:
            target[1] = "yes" if ratio <= 0.7 else "**no**"
        return [what, f"{adaptive_ns:.3f}", f"{length * runs * ns_per_step:.3f} ({length} "
                f"steps each, {rates[length] * runs:.0f} of {runs} on target)",
                f"{ratio:.2f}", *target]

    ps = 1000 * ns_per_step
    per_condition = "; ".join(
        f"{c}: " + ", ".join(f"{stop[(c, r)] * ps:g}"
                             + ("" if reached[(c, r)] else " (max, short)")
                             for r in range(1, replicates + 1)) for c in labels)
    rows = [
        [f"runs on target (N_eff >= {TARGET:g})", f"{sum(reached.values())} of {runs}",
         "", "", "", ""],
        versus(fixed, "simulated ns vs a fixed length on target as often", goal=True),
        versus(best, "simulated ns vs the fixed length on target most often"),
        ["ps per run where the adaptive runs stopped", per_condition, "", "", "", ""],
        ["runs on target at each fixed length (ps: runs)", "",
         ", ".join(f"{e * ps:g}: {rates[e] * runs:.0f}" for e in ends), "", "", ""],
    ]
    sim_seconds = sum(d[4] for d in done)
    body = "\n".join([
        f"`python benchmarks/run_length.py`{' --quick' if args.quick else ''}: the OpenMM "
        f"example (A6PA6 in OBC2, a frame every {frame} steps = "
        f"{frame * settings['timestep_fs'] / 1000:g} ps), {len(labels)} temperatures x "
        f"{replicates} replicates with the study's seeds. Adaptive: `run_length: {{segment: "
        f"{SEGMENT}, max: {MAX}, until: {{n_eff: {TARGET:g}}}}}` on the potential energy. "
        f"Each replicate was simulated once for {MAX} steps; where its adaptive run stops "
        "is read off that run's state table with the runner's rule (an extended run is the "
        "first N steps of the one-go run, frame for frame), and one replicate per "
        "condition was also run with run_length: its steps and table matched. Fixed: the "
        "shortest length reaching the target in as many runs as the adaptive ones, chosen "
        f"knowing every outcome. {len(done)} runs, {sim_seconds:.0f} s of simulation, "
        f"{wall:.0f} s wall on {args.workers} workers.",
        "", machine_markdown(info), "",
        markdown_table(["figure", "adaptive", "fixed", "ratio", "goal", "met?"], rows), "",
        f"- Other processes used {'?' if quiet is None else f'{quiet:.2f}'} of 2 cores "
        f"before and {'?' if load is None else f'{load:.2f}'} after.",
        "- N_eff of a series is not monotone in its length: the equilibration time t0 is "
        "chosen again on every prefix, and the estimate itself is noisy (tens of percent). "
        "A fixed length must be long enough for every run at once, while the adaptive run "
        "stops each at the first segment end where its estimate reaches the target. That "
        "is also the catch: stopping at the first crossing of a noisy estimate favours "
        "runs whose estimate happens to be high, as stopping at the first p < alpha does "
        "(docs/statistics.md); a longer run does not always confirm the number. Set the "
        "target with margin, or on a slower series, and read the analyses' own "
        "diagnostics.",
    ])
    path = replace_section("Adaptive run length", body)
    print(body)
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
