"""What one live attempt per run costs a job: a claim taken and released, per job.

    python benchmarks/claims.py            # 500 rounds
    python benchmarks/claims.py --quick    # 100 rounds

Every computing job (each action-cache miss) takes the claim of its action key before it
works and releases it after publishing (assay.store.claims: flufl.lock's hard-link lock, a
``.who`` file naming the holder, a heartbeat thread). Baseline in the same run: one
``atomic_write_bytes`` of a 200-byte file (tmp + fsync + rename + directory fsync), which
is what writing the job's ref costs. Cases alternate round by round; medians in ms.
Also: a second attempt's wait for a holder that exits (the takeover path) and the time to
take over the claim of a SIGKILLed holder on this machine.

Writes the "## Claims" section of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO / "src"))
from common import machine_description, machine_markdown, markdown_table, replace_section  # noqa: E402

HOLDER = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {src!r})
    from assay.store.claims import Claim
    Claim({root!r}, {key!r}).acquire()
    print("held", flush=True)
    time.sleep(600)
""")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    rounds = 100 if args.quick else 500
    from assay.store.atomic import atomic_write_bytes
    from assay.store.claims import Claim

    with tempfile.TemporaryDirectory(dir="/tmp") as scratch:
        root = Path(scratch)
        claim_ms, write_ms = [], []
        for i in range(rounds):
            key = f"{i:064x}"
            start = time.perf_counter()
            claim = Claim(root, key, what=f"run c/{i}")
            claim.acquire()
            claim.check()
            claim.release()
            claim_ms.append((time.perf_counter() - start) * 1000)
            start = time.perf_counter()
            atomic_write_bytes(root / "refs" / f"{i}.json", b"x" * 200)
            write_ms.append((time.perf_counter() - start) * 1000)
        takeover = []
        for i in range(3 if args.quick else 5):
            key = f"{i:064x}".replace("0", "f")
            holder = subprocess.Popen(
                [sys.executable, "-c", HOLDER.format(src=str(REPO / "src"), root=str(root),
                                                     key=key)],
                stdout=subprocess.PIPE, text=True, start_new_session=True)
            assert holder.stdout.readline().strip() == "held"
            os.killpg(holder.pid, signal.SIGKILL)
            holder.wait()
            start = time.perf_counter()
            with Claim(root, key):
                takeover.append(time.perf_counter() - start)
    claim, write = statistics.median(claim_ms), statistics.median(write_ms)
    body = "\n\n".join([
        f"`python benchmarks/claims.py{' --quick' if args.quick else ''}`: {rounds} rounds, "
        "claim and baseline alternating; scratch in /tmp.",
        machine_markdown(machine_description(Path("/tmp"))),
        markdown_table(["per job", "median ms", "p90 ms", "ratio to baseline"], [
            ["claim: acquire + who file + check + release",
             f"{claim:.2f}", f"{sorted(claim_ms)[int(0.9 * rounds)]:.2f}",
             f"{claim / write:.2f}"],
            ["baseline: atomic_write_bytes of a 200-byte ref", f"{write:.2f}",
             f"{sorted(write_ms)[int(0.9 * rounds)]:.2f}", "1.00"]]),
        f"Taking over the claim of a SIGKILLed holder on this machine: median "
        f"{statistics.median(takeover):.2f} s over {len(takeover)} tries (max "
        f"{max(takeover):.2f} s): the first lock attempt waits up to 2 s, then the dead "
        "holder's lease is expired and broken. A cache hit takes no claim at all.",
    ])
    print(body)
    if not args.no_write:
        replace_section("Claims", body)


if __name__ == "__main__":
    main()
