"""What portable numerics cost: each workload with the node's own numerics vs pinned ones.

    python benchmarks/numerics.py            # 7 rounds
    python benchmarks/numerics.py --quick    # 3 rounds

``numerics: {portable: true}`` makes a job pin OpenBLAS to its Haswell kernels, BLAS to one
thread and numpy's dispatch to AVX2 (assay.pipeline.numerics.PORTABLE_ENV). Each workload runs in a
fresh process per round (the variables act when numpy loads), timed inside the process
around the work only; cases run round-robin. Ratio = portable median / native median.

* demo run: one ``simulate_polymer`` of the demo config (24 beads, 200 frames);
* matmul: ``a @ b`` of two 1000 x 1000 float64 matrices, 5 times (BLAS dgemm): the worst
  case, since native uses every core and AVX-512 kernels; a third case shows how much of it
  is the thread count alone;
* exp: ``np.exp`` of 10^7 float64 values, 5 times (numpy's AVX-512 vs AVX2 loop);
* job start: ``apply_portable`` + ``check_portable`` (import numpy, read BLAS state) vs a
  plain ``import numpy``; and one ``numeric_environment()`` call, which every computed
  action pays either way.

Writes the "## Portable numerics" section of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
from common import machine_description, machine_markdown, markdown_table, replace_section  # noqa: E402

PREPARE = {
    "native": "",
    "portable": ("from assay.pipeline.numerics import apply_portable, check_portable\n"
                 "apply_portable()\ncheck_portable()\n"),
    "native, 1 BLAS thread": "import os\nos.environ['OPENBLAS_NUM_THREADS'] = '1'\n",
}
WORK = {
    "demo run": ("from assay.demo.physics import simulate_polymer\n",
                 "simulate_polymer(seed=1, surface_epsilon=1.5, n_frames=200)"),
    "matmul 1000x1000 x5": ("import numpy as np\nrng = np.random.default_rng(0)\n"
                            "a = rng.standard_normal((1000, 1000))\n"
                            "b = rng.standard_normal((1000, 1000))\n",
                            "[a @ b for _ in range(5)]"),
    "np.exp 10^7 x5": ("import numpy as np\nx = np.linspace(-5, 5, 10_000_000)\n",
                       "[np.exp(x) for _ in range(5)]"),
}


def _script(prepare: str, setup: str, work: str) -> str:
    return (f"import time\nt0 = time.perf_counter()\n{prepare}import numpy\n"
            f"t1 = time.perf_counter()\n{setup}t2 = time.perf_counter()\n{work}\n"
            "t3 = time.perf_counter()\n"
            "from assay.pipeline.numerics import numeric_environment\n"
            "t4 = time.perf_counter()\nnumeric_environment()\nt5 = time.perf_counter()\n"
            "import json\nprint(json.dumps({'start': t1 - t0, 'work': t3 - t2, "
            "'record': t5 - t4}))\n")


def _run(code: str) -> dict[str, float]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_NUM_THREADS", "NPY_DISABLE_CPU_FEATURES",
                        "OMP_NUM_THREADS")}
    env["PYTHONPATH"] = str(REPO / "src")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True, timeout=600)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    rounds = 3 if args.quick else 7
    cases = [(w, p) for w in WORK for p in PREPARE
             if not (p == "native, 1 BLAS thread" and not w.startswith("matmul"))]
    times: dict[tuple[str, str], list[dict[str, float]]] = {c: [] for c in cases}
    for r in range(rounds):
        order = cases[r % len(cases):] + cases[:r % len(cases)]
        for work, prepare in order:
            setup, body = WORK[work]
            times[work, prepare].append(_run(_script(PREPARE[prepare], setup, body)))
        print(f"round {r + 1}/{rounds} done", file=sys.stderr, flush=True)

    def med(work: str, prepare: str, part: str) -> float:
        return statistics.median(t[part] for t in times[work, prepare])

    rows = []
    for work in WORK:
        native = med(work, "native", "work")
        for prepare in PREPARE:
            if (work, prepare) not in times:
                continue
            value = med(work, prepare, "work")
            rows.append([work, prepare, f"{value:.3f}", f"{value / native:.2f}"])
    start_native = statistics.median(t["start"] for w in WORK for t in times[w, "native"])
    start_portable = statistics.median(t["start"] for w in WORK for t in times[w, "portable"])
    record = statistics.median(t["record"] for c in cases for t in times[c])
    body = "\n\n".join([
        f"`python benchmarks/numerics.py{' --quick' if args.quick else ''}`: {rounds} rounds, "
        "each case in a fresh process per round, round-robin; medians in seconds; ratio = "
        "case / native.",
        machine_markdown(machine_description()),
        markdown_table(["workload", "numerics", "median s", "ratio to native"], rows),
        markdown_table(["job start", "median s", "ratio"], [
            ["import numpy (native)", f"{start_native:.3f}", "1.00"],
            ["apply_portable + check_portable + import numpy", f"{start_portable:.3f}",
             f"{start_portable / start_native:.2f}"],
            ["numeric_environment() per computed action (both)", f"{record * 1000:.1f} ms",
             ""]]),
    ])
    print(body)
    if not args.no_write:
        replace_section("Portable numerics", body)


if __name__ == "__main__":
    main()
