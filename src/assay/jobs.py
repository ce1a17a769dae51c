"""The entry point of every Snakemake job: ``python -m assay.jobs STAGE --spec JSON ...``.

The rules call this module directly (``assay job ...`` forwards here too), kept apart from
the user-facing CLI so a job imports only what its stage needs.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Sequence

from .pipeline import joblog

def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="assay job", description=__doc__)
    parser.add_argument("stage", choices=["run", "collect", "aggregate", "compare", "plot"])
    parser.add_argument("--store", required=True, help="store directory")
    parser.add_argument("--spec", required=True, help="job spec as JSON, or @FILE named by its sha256 (long specs)")
    parser.add_argument("--inputs", nargs="*", default=[], help="input ref files")
    # The run rule gives these in its shell text, not in its spec param (assay.pipeline.keys).
    parser.add_argument("--code-digest", help="the runner's code digest (run stage)")
    parser.add_argument("--storage-format", type=int, help="the storage format (run stage)")
    parser.add_argument("--output", help="ref file to write (artifact stages)")
    parser.add_argument("--plots", nargs="*", default=[], help="figure files (plot stage)")
    parser.add_argument("--looks", nargs="*", default=[],
                        help="an adaptive study's look decisions (plot stage)")
    parser.add_argument("--no-cache", action="store_true", help="ignore the action cache")
    parser.add_argument("--threads", type=int, default=1,
                        help="CPU threads of this job (the study's resources; run stage)")
    parser.add_argument("--grace", type=float, default=20.0,
                        help="seconds a run gets after SIGTERM to checkpoint (run stage)")
    parser.add_argument("--claim-wait", type=float, default=300.0,
                        help="seconds to wait for another live attempt of the same action "
                             "key before stopping (assay.store.claims)")
    parser.add_argument("--log", help="this job's log file (its stdout/stderr), quoted in errors")
    return parser


def _wants_portable(spec_text: str) -> bool:
    try:
        spec = json.loads(spec_text)
    except ValueError:
        return False   # reported below, with the other spec errors
    numerics = spec.get("numerics") if isinstance(spec, dict) else None
    return isinstance(numerics, dict) and bool(numerics.get("portable"))


def _note_job_key(results: Path, output: str, spec: dict, inputs: list[str]) -> None:
    """results/.keys/<ref path> names the action key behind the ref: per-study tools (the
    catalog) find the study's records without scanning store/actions."""
    from .store.atomic import atomic_write_bytes
    from .pipeline.layout import job_key_path
    from .pipeline.stages import stage_action_key

    relative = Path(output).relative_to(results).as_posix()
    key = stage_action_key(spec, inputs)
    path = job_key_path(results, relative)
    try:
        if path.read_bytes() == key.encode():
            return
    except OSError:
        pass
    atomic_write_bytes(path, key.encode())


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    started = time.monotonic()
    supervisor = None
    if args.stage == "run":
        # A run gets SIGTERM at its walltime (or scancel, preemption): forward it to the
        # runner and give it the grace period to checkpoint (assay.pipeline.supervise).
        from .pipeline.supervise import Supervisor

        import socket
        from datetime import datetime, timezone

        print(f"[assay run] ---- job started {datetime.now(timezone.utc):%Y-%m-%d %H:%M:%S} "
              f"UTC on {socket.gethostname()}, pid {os.getpid()}", file=sys.stderr, flush=True)
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
        supervisor = Supervisor(args.grace)
        supervisor.install()
    else:
        # Exit through Python so the finally blocks remove staging files instead of
        # leaving them for `assay gc`.
        signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(128 + signum))

    from .errors import AssayError

    def log(message: str) -> None:
        print(f"{joblog.prefix(args.stage)}{message}", file=sys.stderr, flush=True)

    try:
        from .store.spec_files import spec_text

        args.spec = spec_text(args.spec)   # a long spec comes as @<file named by its digest>
        # Before anything loads numpy: its BLAS reads these variables once, at load.
        if _wants_portable(args.spec):
            from .pipeline.numerics import apply_portable, check_portable

            apply_portable(log=log)
            check_portable()
    except AssayError as exc:
        log(f"error: {exc}")
        return 1

    from .pipeline.layout import STAGE_LAYOUTS, ref_identity
    from .store.refs import read_ref, write_ref
    from .store.artifact_store import ArtifactStore

    store = None
    try:
        from .pipeline.keys import with_rule_code

        spec = with_rule_code(json.loads(args.spec), {"code_digest": args.code_digest,
                                                      "format": args.storage_format})
        if spec.get("stage") != args.stage:
            raise AssayError(f"spec is for stage {spec.get('stage')!r}, not {args.stage!r}")
        store = ArtifactStore(args.store)
        umask = store.sharing.job_umask()
        if umask is not None:   # a shared store: what the runner creates stays group-writable
            os.umask(umask)
        inputs = [read_ref(path).digest for path in args.inputs]
        if args.stage == "plot":
            from .pipeline.plotting import run_plot, run_plot_cached

            [comparison] = inputs
            from .pipeline.plotting import with_looks

            spec = with_looks(spec, args.looks)   # an adaptive study: why it stopped
            if args.no_cache:
                run_plot(store, spec, comparison, args.plots)
            else:
                run_plot_cached(store, spec, comparison, args.plots, log=log)
            log(f"{joblog.FIGURES_WRITTEN}{len(args.plots)} figure(s) in "
                f"{time.monotonic() - started:.2f}s")
            return 0
        from .pipeline.stages import JobOptions, execute

        if not args.output:
            raise AssayError("--output REF is required for artifact stages")
        options = JobOptions(threads=args.threads,
                             log_path=Path(args.log) if args.log else None,
                             claim_wait=args.claim_wait)
        if supervisor is not None:
            options.supervisor = supervisor
        digest = execute(store, spec, inputs, use_cache=not args.no_cache, log=log,
                         options=options)
        write_ref(args.output, digest, **ref_identity(spec))
        results = STAGE_LAYOUTS[args.stage].results_of(args.output)
        _note_job_key(results, args.output, spec, inputs)
        # In a shared store any member's gc marks from these refs too.
        from .store.member_roots import register_results

        register_results(store.sharing, results)
        log(f"{joblog.REF_WRITTEN}{args.output} -> {digest} "
            f"({time.monotonic() - started:.2f}s)")
        return 0
    except AssayError as exc:
        log(f"error: {exc}")
        return 1
    except PermissionError as exc:   # outside assay's own writes (a runner, say): still clear
        from .store.sharing import PRIVATE

        policy = store.sharing if store is not None else PRIVATE
        path = exc.filename or args.store
        reading = os.path.exists(path) and not os.access(path, os.R_OK)
        log(f"error: {policy.permission_error(path, write=not reading)}")
        return 1
    finally:
        if store is not None:
            store.close()


if __name__ == "__main__":
    sys.exit(main())
