"""Promise: nothing half-written is ever visible under a final name.

1. A writer process (sidecars of every kind, manifests, action records, refs: see
``reliability_helpers.kill_writer``) is SIGKILLed at seeded random moments spread over its
whole lifetime. After every kill the store is checked from the outside:

* every object's bytes hash to its name (and objects are read-only);
* every ref leads to an artifact whose manifest, sidecars and inputs all verify;
* every action record is readable and its artifact verifies;
* ``assay verify --full`` exits 0;
* ``assay gc --delete --grace 0`` (safe here: the writer is dead) leaves no temporary
  file anywhere (store/tmp, actions/, beside the refs);
* no ref written by an earlier, finished writer stopped verifying (data lost = 0);
* rerunning the writer completes and gives the digests of an uninterrupted run.

2. A real `snakemake` on the reduced demo study is SIGKILLed (its whole process group, as a
   batch system or a node failure does) mid-way, twice; after what the user types (see
   docs/reliability.md) the workflow completes with the digests of an uninterrupted run.
"""

from __future__ import annotations

import collections
import multiprocessing as mp
import os
import random
import signal
import statistics
import subprocess
import time
from pathlib import Path

import pytest
from reliability_helpers import (
    KILL_WRITER_STEPS,
    REDUCED_CONFIG,
    assay,
    bad_objects,
    broken_actions,
    broken_refs,
    finished_study,
    kill_writer,
    kill_writer_main,
    ref_files,
    report,
    results_temporaries,
    snakemake_command,
    store_temporaries,
    workflow_digests,
)
from workflow_helpers import jobs_run, snakemake, write_config

from assay import read_ref

SEED = 20260601
EPOCHS = 10              # a fresh store per epoch ...
TRIALS_PER_EPOCH = 12    # ... shared by this many kill trials (so earlier refs can be lost)
PRELOAD = ["reliability_helpers", "assay", "assay.store.artifact_store", "assay.store.npz", "assay.store.tables",
           "assay.cli", "assay.tools.verify", "assay.tools.gc", "numpy", "pandas", "joblib"]


@pytest.fixture(scope="module")
def ctx():
    context = mp.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    return context


def _start(ctx, store: Path, results: Path, seed: int):
    progress = ctx.RawValue("i", 0)
    process = ctx.Process(target=kill_writer_main,
                          args=(str(store), str(results), seed, progress), daemon=True)
    process.start()
    deadline = time.monotonic() + 30
    while progress.value < 1 and process.exitcode is None:   # the writer has begun
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError("writer did not start within 30 s")
        time.sleep(0.0002)
    return process, progress


def _run_to_end(ctx, store: Path, results: Path, seed: int) -> float:
    """Run the writer to its end; its lifetime (first step to exit) in seconds."""
    process, progress = _start(ctx, store, results, seed)
    started = time.monotonic()
    process.join(60)
    assert process.exitcode == 0, f"writer (seed {seed}) exited with {process.exitcode}"
    assert progress.value == KILL_WRITER_STEPS
    return time.monotonic() - started


def _lifetime(ctx, tmp_path: Path) -> list[float]:
    """Lifetimes of a few uninterrupted writers on this machine (after a warm-up)."""
    times = []
    for i in range(6):
        times.append(_run_to_end(ctx, tmp_path / f"cal{i}" / "store",
                                 tmp_path / f"cal{i}" / "results", 1000 + i))
    return times[1:]


@pytest.mark.stress
def test_sigkill_at_random_points_loses_nothing(ctx, tmp_path):
    rng = random.Random(SEED)
    # Kill delays are drawn uniformly over the writer's lifetime, estimated from the last
    # few complete runs (each trial's rerun is one), so the kills follow the machine's load.
    lifetimes = collections.deque(_lifetime(ctx, tmp_path), maxlen=9)
    expected = {}                       # seed -> {ref: digest} of an uninterrupted run
    for seed in range(TRIALS_PER_EPOCH):
        expected[seed] = kill_writer(str(tmp_path / "ref" / "store"),
                                     str(tmp_path / "ref" / "results"), seed)

    trials = faults = after_finish = lost = 0
    killed_at_step: collections.Counter[int] = collections.Counter()
    leftovers_swept = 0
    started = time.monotonic()
    for epoch in range(EPOCHS):
        store = tmp_path / f"epoch{epoch}" / "store"
        results = tmp_path / f"epoch{epoch}" / "results"
        finished: dict[str, str] = {}   # refs of writers that completed in this epoch
        for seed in range(TRIALS_PER_EPOCH):
            trials += 1
            delay = rng.uniform(0.0, 1.05 * statistics.median(lifetimes))
            process, progress = _start(ctx, store, results, seed)
            time.sleep(delay)
            try:
                os.kill(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            process.join(30)
            where = f"epoch {epoch} seed {seed} delay {delay * 1e3:.1f} ms"
            if process.exitcode == -signal.SIGKILL and progress.value < KILL_WRITER_STEPS:
                faults += 1
                killed_at_step[progress.value] += 1
            else:
                assert process.exitcode in (0, -signal.SIGKILL), (where, process.exitcode)
                after_finish += 1

            # 1. no object whose bytes do not match its name
            assert bad_objects(store) == [], where
            # 2. no ref pointing at a missing or damaged artifact
            needed: set[str] = set()
            assert broken_refs(store, results, needed=needed) == {}, where
            assert broken_actions(store) == {}, where
            # 3. verify --full passes
            code, out, err = assay(store, results, "verify", "--full")
            assert code == 0, (where, out, err)
            # 4. gc (grace 0: nothing is writing now) removes the leftovers of the kill
            leftovers_swept += len(store_temporaries(store)) + len(
                results_temporaries(results))
            code, out, err = assay(store, results, "gc", "--delete", "--grace", "0")
            assert code == 0, (where, out, err)
            assert store_temporaries(store) == [], where
            assert results_temporaries(results) == [], where
            # 5. nothing finished earlier was lost, by the kill or by gc (gc only deletes,
            #    so every object the refs needed before it must still exist)
            gone = {sha for sha in needed
                    if not (store / "objects" / sha[:2] / sha).is_file()}
            lost += sum(1 for name, digest in finished.items() if digest[7:] in gone)
            assert not gone, (where, sorted(gone)[:3])
            # 6. rerunning the writer completes, with the digests of an uninterrupted run
            lifetimes.append(_run_to_end(ctx, store, results, seed))
            got = {name: read_ref(results / name).digest for name in expected[seed]}
            assert got == expected[seed], where
            finished.update(got)
        code, out, err = assay(store, results, "verify", "--full")
        assert code == 0, (out, err)
        assert broken_refs(store, results) == {} and bad_objects(store) == []
        for name, digest in finished.items():
            assert read_ref(results / name).digest == digest
    elapsed = time.monotonic() - started

    report("kill", trials=trials, faults_injected=faults, kills_after_finish=after_finish,
           data_lost=lost, writer_lifetime_ms=round(statistics.median(lifetimes) * 1e3, 1),
           writer_steps=KILL_WRITER_STEPS, distinct_steps_hit=len(killed_at_step),
           killed_at_step=dict(sorted(killed_at_step.items())),
           leftovers_swept_by_gc=leftovers_swept, seconds=round(elapsed, 1))
    assert trials >= 100 and lost == 0
    assert faults >= 75, "most kills must land while the writer is running"
    assert len(killed_at_step) >= KILL_WRITER_STEPS // 2, killed_at_step


# --- 2. a killed workflow ----------------------------------------------------------------
def _run_until_refs(workdir: Path, refs: int, *args: str) -> subprocess.Popen:
    """Start snakemake in its own session; return once ``refs`` refs exist (or it ended)."""
    proc = subprocess.Popen(snakemake_command(workdir, *args), cwd=workdir,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.monotonic() + 180
    while len(ref_files(workdir / "results")) < refs and proc.poll() is None:
        assert time.monotonic() < deadline, "snakemake made no progress"
        time.sleep(0.01)
    return proc


def _kill_group(proc: subprocess.Popen) -> bool:
    """SIGKILL snakemake and every job it started; True if it was still running."""
    running = proc.poll() is None
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(30)
    return running


@pytest.mark.slow
def test_sigkilled_snakemake_resumes_to_the_uninterrupted_digests(tmp_path):
    expected = workflow_digests(finished_study())        # an uninterrupted run
    rng = random.Random(SEED)
    workdir = tmp_path / "study"
    workdir.mkdir()
    write_config(workdir, REDUCED_CONFIG)
    store, results = workdir / "store", workdir / "results"
    kills = []
    # Kill 1: once the first refs exist (runs done, collect jobs running).
    first = rng.randint(2, 5)
    proc = _run_until_refs(workdir, first)
    assert _kill_group(proc), "snakemake finished before the kill"
    kills.append(len(ref_files(results)))
    assert bad_objects(store) == [] and broken_refs(store, results) == {}

    # What the user types after a crash: unlock, then rerun the incomplete jobs.
    blocked = snakemake(workdir, check=False, timeout=120)
    assert blocked.returncode != 0
    snakemake(workdir, "--unlock", timeout=120)
    # Kill 2: during the resumed run, a few refs later.
    proc = _run_until_refs(workdir, kills[0] + rng.randint(2, 4), "--rerun-incomplete")
    assert _kill_group(proc), "snakemake finished before the second kill"
    kills.append(len(ref_files(results)))
    assert bad_objects(store) == [] and broken_refs(store, results) == {}

    snakemake(workdir, "--unlock", timeout=120)
    resumed = snakemake(workdir, "--rerun-incomplete")
    assert workflow_digests(workdir) == expected
    assert bad_objects(store) == [] and broken_refs(store, results) == {}
    code, out, err = assay(store, results, "verify", "--full")
    assert code == 0, out + err
    leftovers = store_temporaries(store)
    code, out, err = assay(store, results, "gc", "--delete", "--grace", "0")
    assert code == 0, out + err
    assert store_temporaries(store) == []
    assert jobs_run(snakemake(workdir)) == set()          # and nothing is left to do
    report("workflow-kill", kills=2, refs_at_kill=kills, refs_total=len(expected),
           jobs_after_resume=len(jobs_run(resumed)), leftovers_swept_by_gc=len(leftovers),
           first_error=("LockException" if "LockException" in blocked.stderr else
                        "IncompleteFilesException" if "Incomplete" in blocked.stderr else
                        blocked.stderr.strip().splitlines()[-1][:80]),
           digests_equal_uninterrupted=True, data_lost=0)
