"""Run every benchmark script in benchmarks/ in turn; each writes its RESULTS.md section.

    python benchmarks/run_all.py                # full sizes (about an hour on 2 cores)
    python benchmarks/run_all.py --quick        # smaller sizes, a few minutes
    python benchmarks/run_all.py --only jobs aggregation
    python benchmarks/run_all.py --skip workflow --no-write

A benchmark script is any ``benchmarks/*.py`` with a ``main`` guard, except this file and
the shared ``common.py``. With ``--quick`` a script that has a ``--quick`` flag gets it; the
others get the smaller sizes listed in QUICK_ARGS. Scripts run one after another (never in
parallel: they time the same cores), in a separate process each; a failing script does not
stop the rest, and the exit status says whether all of them passed.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
NOT_BENCHMARKS = {"run_all.py", "common.py"}
# Cheapest first, so a quick look at a machine gets the small figures before the long ones.
ORDER = ["jobs", "aggregation", "store", "catalog", "workflow"]
# For scripts without a --quick flag of their own.
QUICK_ARGS = {"store": ["--size-mb", "100", "--repeats", "3"],
              "catalog": ["--artifacts", "20000"]}


def scripts() -> list[Path]:
    found = [p for p in sorted(HERE.glob("*.py"))
             if p.name not in NOT_BENCHMARKS and not p.name.startswith("_")
             and "__main__" in p.read_text(errors="replace")]
    rank = {name: i for i, name in enumerate(ORDER)}
    return sorted(found, key=lambda p: (rank.get(p.stem, len(ORDER)), p.stem))


def script_flags(path: Path) -> str:
    proc = subprocess.run([sys.executable, str(path), "--help"], capture_output=True,
                          text=True, timeout=300)
    return proc.stdout if proc.returncode == 0 else ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes for every script")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run only these scripts")
    parser.add_argument("--skip", nargs="+", metavar="NAME", default=[],
                        help="do not run these scripts")
    parser.add_argument("--no-write", action="store_true",
                        help="pass --no-write to every script (RESULTS.md untouched)")
    parser.add_argument("--list", action="store_true", help="list the scripts and exit")
    args = parser.parse_args(argv)

    chosen = [p for p in scripts()
              if (args.only is None or p.stem in args.only) and p.stem not in args.skip]
    if args.only:
        unknown = set(args.only) - {p.stem for p in scripts()}
        if unknown:
            parser.error(f"no benchmark script named {', '.join(sorted(unknown))}; "
                         f"have {', '.join(p.stem for p in scripts())}")
    if args.list:
        print("\n".join(p.stem for p in chosen))
        return 0

    summary = []
    for path in chosen:
        flags = script_flags(path)
        command = [sys.executable, str(path)]
        if args.quick:
            command += ["--quick"] if "--quick" in flags else QUICK_ARGS.get(path.stem, [])
        if args.no_write:
            if "--no-write" not in flags:
                summary.append((path.stem, None, 0.0, "skipped: has no --no-write flag"))
                print(f"== {path.stem}: skipped (no --no-write flag)", flush=True)
                continue
            command.append("--no-write")
        print(f"== {path.stem}: {' '.join(command[1:])}", flush=True)
        start = time.monotonic()
        proc = subprocess.run(command, cwd=HERE.parent)
        seconds = time.monotonic() - start
        summary.append((path.stem, proc.returncode, seconds,
                        "ok" if proc.returncode == 0 else f"FAILED (exit {proc.returncode})"))
        print(f"== {path.stem}: exit {proc.returncode} after {seconds:.0f} s", flush=True)

    print("\nsummary:")
    for name, _code, seconds, status in summary:
        print(f"  {name:12s} {seconds:7.0f} s  {status}")
    failed = [name for name, code, _s, _st in summary if code not in (0, None)]
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
