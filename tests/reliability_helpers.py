"""Shared by the reliability tests (tests/test_reliability_*.py): a reduced study, a
finished copy of it, checks that walk a whole store, snapshots, and a deterministic writer.

Everything here uses the real components: the real store, the real `assay` command
(``assay.cli.main`` in-process or ``python -m assay.cli`` as a subprocess) and the real
Snakemake (through ``workflow_helpers.snakemake``).
"""

from __future__ import annotations

import atexit
import contextlib
import copy
import hashlib
import io
import json
import os
import shutil
import stat
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from assay.pipeline.layout import REF_DIRS as RESULT_REF_DIRS
from workflow_helpers import REPO, SMALL_CONFIG, digests, snakemake, write_config

# The demo study cut down to what the reliability tests need: 2 conditions x 2 replicates,
# one analysis (NPZ sidecars), so a whole workflow takes ~10 s on 2 cores.
REDUCED_CONFIG: dict[str, Any] = copy.deepcopy(SMALL_CONFIG)
REDUCED_CONFIG["analyses"] = {"gyration": SMALL_CONFIG["analyses"]["gyration"]}


def snakemake_command(workdir: Path, *args: str) -> list[str]:
    """The command line `workflow_helpers.snakemake` runs, for Popen (to kill it)."""
    return [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "workflow" / "Snakefile"),
            "--directory", str(workdir), "--cores", "2", "--workflow-profile", "none",
            "--scheduler", "greedy", *args]


# --- a finished reduced study, built once per test session ------------------------------
_FINISHED: dict[str, Path] = {}


def finished_study() -> Path:
    """A workdir where the reduced study ran to completion (uninterrupted). Read-only:
    tests copy it with ``copy_study``."""
    if "study" not in _FINISHED:
        top = Path(tempfile.mkdtemp(prefix="assay-reliability-"))
        atexit.register(shutil.rmtree, top, True)
        workdir = top / "finished"
        workdir.mkdir()
        write_config(workdir, REDUCED_CONFIG)
        snakemake(workdir)
        _FINISHED["study"] = workdir
    return _FINISHED["study"]


def copy_study(source: Path, target: Path) -> Path:
    shutil.copytree(source, target, symlinks=True)
    return target


# --- the `assay` command -------------------------------------------------------------
def assay(store: Path, results: Path, *argv: str) -> tuple[int, str, str]:
    """Run the real `assay` command in-process; (exit code, stdout, stderr)."""
    from assay.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["--store", str(store), "--results", str(results), "--no-progress",
                     *argv])
    return code, out.getvalue(), err.getvalue()


# --- whole-store checks ----------------------------------------------------------------
def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def object_files(store: Path) -> dict[str, Path]:
    """Every file under objects/ (whatever its name)."""
    out = {}
    objects = store / "objects"
    if objects.is_dir():
        for path in sorted(objects.rglob("*")):
            if path.is_file() or path.is_symlink():
                out[path.relative_to(objects).as_posix()] = path
    return out


def bad_objects(store: Path) -> list[str]:
    """Objects whose bytes do not hash to their name, are misplaced, or are writable."""
    problems = []
    for name, path in object_files(store).items():
        shard, _, sha = name.partition("/")
        if path.is_symlink() or len(sha) != 64 or sha[:2] != shard:
            problems.append(f"{name}: not a <2 hex>/<64 hex> regular file")
            continue
        if sha256_file(path) != sha:
            problems.append(f"{name}: bytes hash to {sha256_file(path)}")
        if stat.S_IMODE(path.stat().st_mode) & 0o222:
            problems.append(f"{name}: writable ({oct(path.stat().st_mode)})")
    return problems


def ref_files(results: Path) -> list[Path]:
    out = []
    for sub in RESULT_REF_DIRS:
        top = results / sub
        if top.is_dir():
            out += sorted(p for p in top.rglob("*.json") if not p.name.startswith("."))
    return out


def deep_verify(store_obj: Any, digest: str, seen: set[str] | None = None) -> None:
    """Hash an artifact's manifest, every sidecar, and every input, recursively."""
    seen = set() if seen is None else seen
    if digest in seen:
        return
    seen.add(digest)
    artifact = store_obj.verify_artifact(digest, verify="full")
    for item in artifact.inputs:
        deep_verify(store_obj, item["digest"], seen)


def broken_refs(store: Path, results: Path, *, needed: set[str] | None = None
                ) -> dict[str, str]:
    """Ref name -> problem, for every ref that does not lead to an intact artifact closure.
    ``needed`` (if given) collects the sha256 of every object those closures use."""
    from assay import ArtifactStore, AssayError, read_ref
    from assay.store.hashing import parse_digest

    problems = {}
    with ArtifactStore(store) as store_obj:
        for path in ref_files(results):
            name = path.relative_to(results).as_posix()
            seen: set[str] = set()
            try:
                deep_verify(store_obj, read_ref(path).digest, seen)
            except AssayError as exc:
                problems[name] = str(exc)
            if needed is not None:
                for digest in seen:
                    needed.add(parse_digest(digest))
                    try:
                        needed.update(s.sha256 for s in store_obj.read_artifact(digest).sidecars)
                    except AssayError:
                        pass
    return problems


def broken_actions(store: Path) -> dict[str, str]:
    """Action records that cannot be read, or whose artifact does not verify."""
    from assay import ArtifactStore, AssayError

    problems = {}
    with ArtifactStore(store) as store_obj:
        for path in sorted((store / "actions").glob("??/*.json")):
            key = path.stem
            record = store_obj.actions.read(key)
            if record is None:
                problems[key] = "unreadable record"
                continue
            try:
                deep_verify(store_obj, record["digest"])
            except AssayError as exc:
                problems[key] = str(exc)
    return problems


def store_temporaries(store: Path) -> list[str]:
    """Leftovers of interrupted writes inside the store: staging dirs, *.part, dot-temps."""
    out = []
    tmp = store / "tmp"
    if tmp.is_dir():
        out += [f"tmp/{p.name}" for p in sorted(tmp.iterdir())]
    for sub in ("actions", "objects"):
        top = store / sub
        if top.is_dir():
            out += [p.relative_to(store).as_posix() for p in sorted(top.rglob("*"))
                    if p.is_file() and (p.name.startswith(".") or p.name.endswith(
                        (".tmp", ".part")))]
    return out


def results_temporaries(results: Path) -> list[str]:
    """Leftovers of interrupted ref writes (atomic_write_bytes temp files) under results/."""
    out = []
    for sub in RESULT_REF_DIRS:
        top = results / sub
        if top.is_dir():
            out += [p.relative_to(results).as_posix() for p in sorted(top.rglob(".*.tmp"))]
    return out


def snapshot(*roots: Path) -> dict[str, tuple[str, bytes | None, int]]:
    """Every path under the roots: (kind, bytes, mode). Compared before/after to prove
    an operation changed nothing."""
    out: dict[str, tuple[str, bytes | None, int]] = {}
    for root in roots:
        if not root.exists():
            out[str(root)] = ("absent", None, 0)
            continue
        for path in [root, *sorted(root.rglob("*"))]:
            st = path.lstat()
            if stat.S_ISLNK(st.st_mode):
                entry = ("link", os.readlink(path).encode(), st.st_mode)
            elif path.is_file():
                entry = ("file", path.read_bytes(), st.st_mode)
            else:
                entry = ("dir", None, st.st_mode)
            out[str(path)] = entry
    return out


def age_tree(root: Path, seconds: float) -> None:
    """Make every file under ``root`` look ``seconds`` old (for gc's grace period)."""
    then = time.time() - seconds
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            os.utime(path, (then, then))


def flip_byte(path: Path, offset: int) -> None:
    os.chmod(path, 0o644)   # objects are read-only (0444)
    data = bytearray(path.read_bytes())
    data[offset % len(data)] ^= 0x01
    path.write_bytes(bytes(data))
    os.chmod(path, 0o444)


def truncate(path: Path, keep: int) -> None:
    os.chmod(path, 0o644)
    with open(path, "r+b") as handle:
        handle.truncate(keep)
    os.chmod(path, 0o444)


def workflow_digests(workdir: Path) -> dict[str, str]:
    return digests(workdir)


def job_logs(workdir: Path) -> dict[str, str]:
    """Per-job log text for the artifact stages: 'run/free/1' -> log."""
    out = {}
    logs = workdir / "results" / "logs"
    for stage in ("run", "collect", "aggregate", "compare"):
        for path in sorted((logs / stage).rglob("*.log")):
            out[f"{stage}/{path.relative_to(logs / stage).with_suffix('').as_posix()}"] = (
                path.read_text(errors="replace"))
    return out


def report(name: str, **numbers: Any) -> None:
    """One greppable line per test group: `pytest -s -k reliability | grep RELIABILITY`."""
    print(f"\nRELIABILITY {name}: " + json.dumps(numbers, sort_keys=True))


# --- a deterministic writer: every kind of store write, in the order a job makes them ---
KILL_ANALYSIS = "kill"


def kill_writer(store_root: str, results_dir: str, seed: int, progress: Any = None,
                n_items: int = 3) -> dict[str, str]:
    """Write what a job writes, ``n_items`` times, then a condition artifact over them:
    NPZ sidecars (plain and compressed), a CSV table, a staged file registered with
    ``register_sidecar``, a joblib object, a sidecar shared with every other writer, the
    manifest, the action record, then the ref. Deterministic in ``seed``; returns
    {ref name: digest}. ``progress.value`` counts finished steps (for the kill tally)."""
    import numpy as np

    from assay import ArtifactStore, ConditionArtifact, ReplicateArtifact, action_key, write_ref

    def step() -> None:
        if progress is not None:
            progress.value += 1

    rng = np.random.default_rng(seed)
    results = Path(results_dir)
    label = f"t{seed}"
    out: dict[str, str] = {}
    with ArtifactStore(store_root) as store:
        step()
        shared = store.write_npz_sidecar("sidecars/shared.npz", values=np.arange(20_000.0),
                                         metadata={"kind": "shared"})
        step()
        replicate_digests = []
        for i in range(n_items):
            n = int(rng.integers(1_000, 20_000))
            series = rng.standard_normal(n)
            npz = store.write_npz_sidecar("sidecars/series.npz", series=series,
                                          index=np.arange(n), compress=bool(i % 2),
                                          metadata={"kind": "series"})
            step()
            k = int(rng.integers(10, 400))
            table = store.write_table_sidecar(
                "sidecars/events.csv", {"t": np.arange(k), "v": np.round(series[:k], 6)},
                metadata={"kind": "events"})
            step()
            staged = store.resolve_sidecar("sidecars/raw.bin")
            staged.parent.mkdir(parents=True, exist_ok=True)
            staged.write_bytes(rng.bytes(int(rng.integers(500, 50_000))))
            raw = store.register_sidecar("sidecars/raw.bin", metadata={"kind": "raw"})
            step()
            model_id = store.save_artifact({"coef": series[:16].tolist(), "item": i},
                                           "Ridge", "model")
            model = store.sidecar_ref_for(model_id, "sidecars/model.joblib",
                                          metadata={"kind": "model"})
            step()
            artifact = ReplicateArtifact(
                analysis_name=KILL_ANALYSIS, condition_label=label, replicate=i + 1,
                payload={"metrics": {"mean": float(series.mean()), "n": n}},
                sidecars=[shared, npz, table, raw, model], provenance={"model": model_id})
            digest = store.write_artifact(artifact)
            step()
            key = action_key(stage="collect", plugin=KILL_ANALYSIS, code_digest="0" * 64,
                             settings={"seed": seed, "item": i})
            store.record_action(key, digest, stage="collect", plugin=KILL_ANALYSIS,
                                when="2026-01-01T00:00:00+00:00", host="test", pid=0,
                                duration_s=0.0)
            step()
            name = f"replicates/{KILL_ANALYSIS}/{label}/{i + 1}.json"
            write_ref(results / name, digest, artifact_type="replicate",
                      analysis=KILL_ANALYSIS, condition=label, replicate=i + 1)
            step()
            replicate_digests.append(digest)
            out[name] = digest
        condition = ConditionArtifact(
            analysis_name=KILL_ANALYSIS, condition_label=label,
            replicates=list(range(1, n_items + 1)), payload={"metrics": {}},
            inputs=[{"role": "replicate", "digest": d} for d in replicate_digests])
        digest = store.write_artifact(condition)
        step()
        name = f"conditions/{KILL_ANALYSIS}/{label}.json"
        write_ref(results / name, digest, artifact_type="condition", analysis=KILL_ANALYSIS,
                  condition=label)
        step()
        out[name] = digest
    return out


KILL_WRITER_STEPS = 2 + 7 * 3 + 2   # step() calls in kill_writer with n_items=3


def kill_writer_main(store_root: str, results_dir: str, seed: int, progress: Any) -> None:
    """Process target: the writer, then a clean exit (a crash shows as exit code 1)."""
    kill_writer(store_root, results_dir, seed, progress)


# --- command-line entry for writer subprocesses ------------------------------------------
def kill_writer_ref_names(seed: int, n_items: int = 3) -> list[str]:
    label = f"t{seed}"
    return ([f"replicates/{KILL_ANALYSIS}/{label}/{i + 1}.json" for i in range(n_items)]
            + [f"conditions/{KILL_ANALYSIS}/{label}.json"])


def _main(argv: list[str]) -> int:
    """``python tests/reliability_helpers.py write [--rerun] STORE RESULTS SEED...``: run
    the writer for each seed in turn; print one JSON line per seed: {seed, refs,
    finished_at}. With --rerun, first delete the seed's refs, as Snakemake deletes a job's
    outputs before it reruns the job."""
    rerun = "--rerun" in argv
    argv = [a for a in argv if a != "--rerun"]
    if len(argv) < 4 or argv[0] != "write":
        print(_main.__doc__, file=sys.stderr)
        return 2
    store, results = argv[1], argv[2]
    for seed in argv[3:]:
        if rerun:
            for name in kill_writer_ref_names(int(seed)):
                Path(results, name).unlink(missing_ok=True)
        refs = kill_writer(store, results, int(seed))
        print(json.dumps({"seed": int(seed), "refs": refs, "finished_at": time.time()}),
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
