"""OpenMM runner overhead: an assay run job vs the same simulation as a bare OpenMM script.

    python benchmarks/openmm_overhead.py            # ~60 s simulations, 3 rounds (~15 min)
    python benchmarks/openmm_overhead.py --quick    # ~10 s simulations, 3 rounds (~3 min)

Both sides are whole processes, timed from start to exit, one CPU thread each, same
system (A6PA6 from MDAnalysisTests, amber14, the example study's settings), same seed,
same steps, a DCD frame and an energy row every ``report_interval`` steps:

* bare: a plain script with ``DCDReporter`` + ``StateDataReporter`` and ``sim.step(n)``;
* assay: ``python -m assay.jobs run --no-cache`` with the ``openmm`` runner spec, i.e.
  job start, settings, the runner's own report loop, a checkpoint every
  ``checkpoint_interval`` steps, ingesting the sidecars and writing the artifact, action
  record and ref.

The two trajectories must hold the same frames (bytes after the DCD header): the check
that both sides really ran the same simulation. The cost of one checkpoint (what the
runner does at a checkpoint: fsync of the DCD and CSV, ``createCheckpoint``, atomic
writes of the checkpoint and its JSON) is timed in-process against one report chunk.
Each case is timed as wall time and as process CPU time (user + sys): on a shared
machine other load stretches wall time but hardly CPU time.
Writes the "## OpenMM runner overhead" section of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
from common import (  # noqa: E402
    RESULTS_MD,
    OtherLoad,
    interleaved,
    machine_description,
    machine_markdown,
    markdown_table,
    replace_section,
)

GOAL = 1.03
SEED = 20240
STRUCTURE = "MDAnalysisTests:data/A6PA6_alpha.pdb"
# The example study's runner settings; steps are sized per solvent to a target wall time.
BASE = {"structure": STRUCTURE, "forcefield": ["amber14-all.xml"], "constraints": "HBonds",
        "temperature_k": 300.0, "friction_per_ps": 1.0, "timestep_fs": 2.0,
        "report_interval": 100, "checkpoint_interval": 1000, "platform": "CPU",
        "threads": 1}
STEPS_PER_S = {"obc2": 470, "vacuum": 6500}    # measured here; only sizes the runs

BARE = r'''
import json, sys
from importlib.resources import files
import openmm, openmm.app as app, openmm.unit as unit
s, out, seed = json.loads(sys.argv[1]), sys.argv[2], int(sys.argv[3])
package, rel = s["structure"].split(":", 1)
pdb = app.PDBFile(str(files(package) / rel))
extra = [] if s["solvent"] == "vacuum" else [f"implicit/{s['solvent']}.xml"]
system = app.ForceField(*s["forcefield"], *extra).createSystem(
    pdb.topology, nonbondedMethod=app.NoCutoff, constraints=app.HBonds)
integrator = openmm.LangevinMiddleIntegrator(s["temperature_k"] * unit.kelvin,
    s["friction_per_ps"] / unit.picosecond, s["timestep_fs"] * unit.femtosecond)
integrator.setRandomNumberSeed(seed)
sim = app.Simulation(pdb.topology, system, integrator,
                     openmm.Platform.getPlatformByName("CPU"), {"Threads": "1"})
sim.context.setPositions(pdb.positions)
app.PDBFile.writeFile(pdb.topology, pdb.positions, open(out + "/topology.pdb", "w"))
sim.minimizeEnergy()
sim.context.setVelocitiesToTemperature(s["temperature_k"] * unit.kelvin, seed)
every = s["report_interval"]
sim.reporters.append(app.DCDReporter(out + "/trajectory.dcd", every))
sim.reporters.append(app.StateDataReporter(out + "/state_data.csv", every, step=True,
    time=True, potentialEnergy=True, kineticEnergy=True, totalEnergy=True,
    temperature=True))
sim.step(s["steps"])
'''


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(
        filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH")]))}


class Case:
    """One solvent: a bare script and an assay job over the same simulation."""

    def __init__(self, root: Path, solvent: str, seconds: float) -> None:
        from assay.pipeline.openmm_runner import OpenMMRunner, openmm_seed
        from assay.pipeline.plugins import code_digest

        steps = int(STEPS_PER_S[solvent] * seconds) // 1000 * 1000 or 1000
        self.settings = {**BASE, "solvent": solvent, "steps": steps}
        self.solvent, self.steps, self.root = solvent, steps, root / solvent
        self.seed = openmm_seed(SEED)
        self.spec = {"stage": "run", "plugin": "openmm", "settings": self.settings,
                     "condition": "bench", "replicate": 1, "params": {}, "seed": SEED,
                     "code_digest": code_digest(OpenMMRunner)}
        self.script = root / "bare.py"
        self.script.write_text(BARE)
        self.cpu: dict[str, list[float]] = {"bare": [], "assay": []}

    def _run(self, name: str, command: list[str], **kwargs) -> None:
        """Run a case; record its process CPU time (user + sys), which other load on the
        machine disturbs far less than wall time."""
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run(command, check=True, env=env(), **kwargs)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.cpu[name].append(after.ru_utime - before.ru_utime
                              + after.ru_stime - before.ru_stime)

    def reset_bare(self) -> None:
        shutil.rmtree(self.root / "bare", ignore_errors=True)
        (self.root / "bare").mkdir(parents=True)

    def reset_assay(self) -> None:
        shutil.rmtree(self.root / "assay", ignore_errors=True)
        (self.root / "assay").mkdir(parents=True)

    def bare(self) -> None:
        self._run("bare", [sys.executable, str(self.script), json.dumps(self.settings),
                           str(self.root / "bare"), str(self.seed)])

    def assay(self) -> None:
        with open(self.root / "assay" / "job.log", "w") as job_log:
            self._run("assay", [sys.executable, "-m", "assay.jobs", "run", "--store",
                                str(self.root / "assay" / "store"), "--spec",
                                json.dumps(self.spec), "--output",
                                str(self.root / "assay" / "run.json"), "--no-cache"],
                      stderr=job_log)

    def same_frames(self) -> bool:
        from assay import ArtifactStore

        store = ArtifactStore(self.root / "assay" / "store")
        run = store.read_run_result(self.root / "assay" / "run.json")
        ours = store.validate_sidecar(run.sidecar(kind="trajectory")).read_bytes()
        bare = (self.root / "bare" / "trajectory.dcd").read_bytes()
        header = 276    # 84-byte block, two 80-byte titles, atom count
        return len(ours) == len(bare) and ours[header:] == bare[header:]


def checkpoint_cost(root: Path, solvent: str, repeats: int) -> dict[str, float]:
    """Median seconds of one checkpoint and of one report chunk, in one process."""
    from assay.pipeline.openmm_files import Outputs, save_checkpoint
    from assay.pipeline.openmm_runner import _build, parse_settings, resolve_structure

    s = parse_settings({**BASE, "solvent": solvent})
    name, data = resolve_structure(s.structure, REPO)
    sim, topology, positions = _build(s, name, data, SEED)
    sim.context.setPositions(positions)
    sim.minimizeEnergy()
    folder = root / f"checkpoint-{solvent}"
    folder.mkdir(parents=True)
    outputs = Outputs(folder, topology, s.timestep_fs, s.report_interval)
    outputs.create()
    chunk, checkpoint, step = [], [], 0
    for _ in range(repeats):
        start = time.perf_counter()
        sim.step(s.report_interval)
        step += s.report_interval
        state = sim.context.getState(getPositions=True, getEnergy=True)
        outputs.write(step, state, 300.0)
        chunk.append(time.perf_counter() - start)
        start = time.perf_counter()
        save_checkpoint(folder, sim, outputs, step, "bench", complete=False)
        checkpoint.append(time.perf_counter() - start)
    outputs.close()
    size = sum(p.stat().st_size for p in folder.glob("checkpoint-*.chk"))
    return {"chunk": statistics.median(chunk), "checkpoint": statistics.median(checkpoint),
            "checkpoint_min": min(checkpoint), "checkpoint_max": max(checkpoint),
            "size": size, "report_interval": s.report_interval,
            "checkpoint_interval": s.checkpoint_interval}


def measure(args: argparse.Namespace, root: Path) -> dict:
    facts: dict = {"cases": []}
    for solvent in args.solvent:
        case = Case(root, solvent, args.seconds)
        log(f"{solvent}: {case.steps} steps, {args.repeats} rounds")
        before, started = os.times(), time.monotonic()
        with OtherLoad() as others:
            timings = interleaved({"bare": (case.reset_bare, case.bare),
                                   "assay": (case.reset_assay, case.assay)},
                                  repeats=args.repeats, warmup=False)
        after = os.times()
        # OtherLoad counts our own child processes (both cases) as "others": subtract them.
        children = (after.children_user - before.children_user
                    + after.children_system - before.children_system)
        other_cores = (None if others.core_seconds is None else
                       max(others.core_seconds - children, 0.0)
                       / (time.monotonic() - started))
        # The last round left both outputs in place: compare them.
        same = case.same_frames()
        job_log = (case.root / "assay" / "job.log").read_text().strip().splitlines()
        facts["cases"].append({"solvent": solvent, "steps": case.steps, "timings": timings,
                               "same_frames": same, "others": other_cores, "cpu": case.cpu,
                               "log": [line for line in job_log if "finished" in line]})
        facts[f"checkpoint_{solvent}"] = checkpoint_cost(root, solvent, args.checkpoints)
    return facts


def report(args: argparse.Namespace, facts: dict, info: dict[str, str]) -> str:
    rows = []
    for case in facts["cases"]:
        bare, ours = case["timings"]["bare"], case["timings"]["assay"]
        cpu_bare, cpu_ours = (statistics.median(case["cpu"][k]) for k in ("bare", "assay"))
        ratio, cpu_ratio = ours.median / bare.median, cpu_ours / cpu_bare
        rows.append([f"{case['solvent']}, {case['steps']:,} steps",
                     f"{ours.median:.2f} s ({ours.spread})",
                     f"{bare.median:.2f} s ({bare.spread})", f"{ratio:.3f}",
                     f"{cpu_ours:.2f} s / {cpu_bare:.2f} s", f"{cpu_ratio:.3f}",
                     f"{case['steps'] / cpu_bare:.0f}", f"<= {GOAL}",
                     "yes" if max(ratio, cpu_ratio) <= GOAL else
                     ("CPU yes, wall no" if cpu_ratio <= GOAL else "**no**"),
                     "yes" if case["same_frames"] else "**no**"])
    table = markdown_table(["simulation", "assay job wall: median (min-max)",
                            "bare script wall: median (min-max)", "wall ratio",
                            "CPU (user+sys) assay / bare, medians", "CPU ratio",
                            "bare steps per CPU s", "goal", "met?", "same frames?"], rows)
    ck_rows = []
    for solvent in args.solvent:
        c = facts[f"checkpoint_{solvent}"]
        per_interval = c["chunk"] * c["checkpoint_interval"] / c["report_interval"]
        ck_rows.append([solvent, f"{c['checkpoint'] * 1000:.1f} ms "
                        f"({c['checkpoint_min'] * 1000:.1f}-{c['checkpoint_max'] * 1000:.1f})",
                        f"{c['chunk'] * 1000:.1f} ms", f"{c['size'] / 1024:.1f} KiB",
                        f"{100 * c['checkpoint'] / per_interval:.2f} %"])
    ck_table = markdown_table(["solvent", "one checkpoint: median (min-max)",
                               f"one report chunk ({BASE['report_interval']} steps + frame)",
                               "checkpoint file",
                               f"cost per {BASE['checkpoint_interval']} steps"], ck_rows)
    logs = "; ".join(f"{c['solvent']}: `{c['log'][-1].split('] ', 1)[-1]}`"
                     for c in facts["cases"] if c["log"])
    others = ", ".join(f"{c['solvent']} {c['others']:.2f}" for c in facts["cases"]
                       if c["others"] is not None)
    return f"""`python benchmarks/openmm_overhead.py{' --quick' if args.quick else ''}`: the \
same OpenMM simulation (A6PA6, 137 atoms, amber14, the example study's settings: 2 fs, \
HBonds, Langevin middle at 300 K, a frame and an energy row every \
{BASE['report_interval']} steps, CPU platform, 1 thread, one seed) as a whole process, \
start to exit: an assay run job (`python -m assay.jobs run --no-cache`: job start, the \
runner's report loop, a checkpoint every {BASE['checkpoint_interval']} steps, sidecar \
ingest, artifact, action record, ref) against a bare script with `DCDReporter` + \
`StateDataReporter`. Median of {args.repeats} rounds, the two cases alternating. Each \
case is timed as wall time and as the process's CPU time (user + sys, `getrusage` of the \
child): both processes are single-threaded, so their CPU time is their work, and it is \
the figure to read when other processes share the cores (they stretch wall time, not CPU \
time). The goal counts as met when both ratios are within it.

{machine_markdown(info)}
- openmm: {facts.get('openmm_version', '?')}

{table}

"Same frames" compares the two DCD files after their headers: both sides ran the same \
simulation to the byte. The bare script's DCD and PDB carry OpenMM's timestamps; the \
runner's carry none.

Cost of one checkpoint, in-process, median of {args.checkpoints} (fsync of the DCD and \
CSV, `Context.createCheckpoint()`, atomic write of the checkpoint file and its JSON):

{ck_table}

- The job's own log of its last round: {logs or 'n/a'}.
- Other processes used on average {others or 'n/a'} of {info['cores']} cores while the \
cases ran.
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="~10 s simulations")
    parser.add_argument("--seconds", type=float, help="target simulation wall time "
                        "(default 60, --quick 10)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--checkpoints", type=int, default=30,
                        help="checkpoints timed for the checkpoint cost")
    parser.add_argument("--solvent", nargs="+", default=["obc2", "vacuum"],
                        choices=sorted(STEPS_PER_S))
    parser.add_argument("--scratch", type=Path, default=Path("/tmp"))
    parser.add_argument("--no-write", action="store_true", help="do not update RESULTS.md")
    parser.add_argument("--results", type=Path, default=RESULTS_MD)
    args = parser.parse_args(argv)
    args.seconds = args.seconds or (10.0 if args.quick else 60.0)
    sys.path.insert(0, str(REPO / "src"))
    import openmm

    root = Path(tempfile.mkdtemp(prefix="assay-bench-openmm-", dir=args.scratch))
    info = machine_description(args.scratch, packages=("numpy",))
    try:
        facts = measure(args, root)
        facts["openmm_version"] = openmm.__version__
    finally:
        shutil.rmtree(root, ignore_errors=True)
    text = report(args, facts, info)
    print(text)
    if not args.no_write:
        replace_section("OpenMM runner overhead", text, args.results)
        log(f"wrote the OpenMM runner overhead section of {args.results}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
