"""The `assay` command, run in-process through `assay.cli.main` (and once as a program)."""

from __future__ import annotations

import copy
import io
import json
import os
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
from study_helpers import run_cli

from assay.cli import main
from assay.store.hashing import canonical_json

HEAVY = ("numpy", "pandas", "duckdb", "matplotlib", "pyarrow", "scipy")



run = run_cli


# --- the program itself ----------------------------------------------------------------
def test_help_is_fast_and_imports_nothing_heavy():
    start = time.perf_counter()
    proc = subprocess.run(["assay", "--help"], capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    assert proc.returncode == 0 and "verify" in proc.stdout and "gc" in proc.stdout
    assert elapsed < 5.0
    probe = ("import sys; from assay.cli import main\n"
             "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
             f"print([m for m in {HEAVY!r} if m in sys.modules])")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          check=True)
    assert proc.stdout.strip().splitlines()[-1] == "[]"


def test_exit_codes_for_usage_and_errors(study, capsys, tmp_path):
    assert main([]) == 2
    assert main(["no-such-command"]) == 2
    assert main(["ls", "--type", "nonsense"]) == 2
    code = main(["--store", str(tmp_path / "nowhere"), "verify"])
    err = capsys.readouterr().err
    assert code == 1 and "no store at" in err and "Traceback" not in err
    code, _, err = run(study, capsys, "show", "definitely-not-a-ref")
    assert code == 2 and "neither a ref file" in err


def test_job_is_forwarded(monkeypatch):
    import assay.jobs

    seen = []
    monkeypatch.setattr(assay.jobs, "main", lambda argv: seen.append(argv) or 7)
    assert main(["--store", "s", "job", "run", "--spec", "{}"]) == 7
    assert seen == [["run", "--spec", "{}"]]


# --- browse ----------------------------------------------------------------------------
def test_ls_table_filters_and_json(study, capsys):
    code, out, _ = run(study, capsys, "ls")
    assert code == 0 and out.splitlines()[0].split() == [
        "REF", "TYPE", "ANALYSIS", "CONDITION", "REPLICATE", "DIGEST"]
    assert len(out.splitlines()) == 1 + 15
    code, out, _ = run(study, capsys, "ls", "--type", "condition", "--json")
    rows = json.loads(out)
    assert [r["ref"] for r in rows] == ["conditions/rg/ctrl.json", "conditions/rg/treat.json"]
    assert rows[0]["digest"] == study.conditions["ctrl"]
    code, out, _ = run(study, capsys, "ls", "--analysis", "rg", "--condition", "treat")
    assert len(out.splitlines()) == 1 + 3 + 1


def test_show_by_ref_path_digest_and_prefix(study, capsys):
    digest = study.conditions["treat"]
    for name in (str(study.ref(digest)), "conditions/rg/treat.json", digest,
                 digest[len("sha256:"):][:8]):
        code, out, _ = run(study, capsys, "show", name, "--json")
        shown = json.loads(out)
        assert code == 0 and shown["digest"] == digest
        assert shown["manifest"]["payload"]["metrics"]["rg"]["mean"] == 3.0
    code, out, _ = run(study, capsys, "show", "conditions/rg/treat.json")
    assert out.startswith(f"# {digest}") and '"artifact_type": "condition"' in out
    sidecar = study.store.read_artifact(study.runs["ctrl", 1]).sidecars[0].sha256
    code, _, err = run(study, capsys, "show", sidecar)
    assert code == 1 and "not an artifact manifest" in err


def test_ambiguous_prefix_is_a_usage_error(study, capsys):
    objects = sorted(p.name for p in (study.store_root / "objects").glob("??/*"))
    shard = objects[0][:2]
    os.chmod(study.store_root / "objects" / shard, 0o755)
    twin = study.store_root / "objects" / shard / (objects[0][:6] + "f" * 58)
    twin.write_bytes(b"x")
    code, _, err = run(study, capsys, "show", objects[0][:6])
    assert code == 2 and "ambiguous" in err


def test_cat_to_stdout(study, capfdbinary):
    assert main(["--store", str(study.store_root), "--results", str(study.results),
                 "cat", "runs/ctrl/2.json", "sidecars/trajectory.npz"]) == 0
    data = capfdbinary.readouterr().out
    assert np.load(io.BytesIO(data))["x"].tolist() == (np.arange(16.0) * 2).tolist()


def test_cat_writes_verified_bytes(study, capsys, tmp_path):
    ref = "runs/ctrl/2.json"
    out = tmp_path / "trajectory.npz"
    code, _, err = run(study, capsys, "cat", ref, "sidecars/trajectory.npz", "-o", str(out))
    assert code == 0 and "wrote" in err
    assert np.load(out)["x"].tolist() == (np.arange(16.0) * 2).tolist()
    code, _, err = run(study, capsys, "cat", ref, "sidecars/nope.npz")
    assert code == 2 and "sidecars/trajectory.npz" in err
    # Damaged bytes never reach the output file.
    sha = study.store.read_artifact(study.runs["ctrl", 2]).sidecars[0].sha256
    path = study.store.objects.path_for(sha)
    os.chmod(path, 0o644)
    path.write_bytes(path.read_bytes()[:-1] + b"!")
    out2 = tmp_path / "damaged.npz"
    code, _, err = run(study, capsys, "cat", ref, "sidecars/trajectory.npz", "-o", str(out2))
    assert code == 1 and "is damaged" in err and "verify --repair" in err
    assert not out2.exists()


def test_stats(study, capsys):
    study.store.write_bytes_sidecar("stray.bin", b"unreferenced")
    code, out, _ = run(study, capsys, "stats", "--json")
    stats = json.loads(out)
    assert code == 0
    assert stats["artifacts_by_type"] == {"comparison": 1, "condition": 2, "replicate": 6,
                                          "run": 6}
    assert stats["unreferenced_objects"] == 1 and stats["action_records"] == 15
    assert stats["dedup_ratio"] > 1.0      # six replicates share one profile sidecar
    code, out, _ = run(study, capsys, "stats")
    assert "deduplication" in out and "unreferenced" in out


# --- catalog ---------------------------------------------------------------------------
def test_catalog_build_query_and_metrics(study, capsys, tmp_path):
    code, out, err = run(study, capsys, "--progress", "catalog", "build")
    assert code == 0 and "built" in out and "artifacts" in out
    assert "read manifests" in err or "index manifests" in err     # progress on stderr
    code, out, _ = run(study, capsys, "query",
                       "SELECT artifact_type, count(*) AS n FROM artifacts GROUP BY 1 ORDER BY 1",
                       "--json")
    assert json.loads(out) == [{"artifact_type": "comparison", "n": 1},
                               {"artifact_type": "condition", "n": 2},
                               {"artifact_type": "replicate", "n": 6},
                               {"artifact_type": "run", "n": 6}]
    code, out, _ = run(study, capsys, "query", "SELECT count(*) AS n FROM refs")
    assert out.split() == ["n", "15"]
    code, _, err = run(study, capsys, "query", "SELECT * FROM nowhere")
    assert code == 1 and "catalog query failed" in err

    code, out, _ = run(study, capsys, "metrics", "--statistic", "mean", "--format", "csv")
    frame = pd.read_csv(io.StringIO(out))
    assert set(frame.condition) == {"ctrl", "treat"} and set(frame.statistic) == {"mean"}
    parquet = tmp_path / "m.parquet"
    code, _, _ = run(study, capsys, "metrics", "--type", "replicate", "--metric", "rg",
                     "--format", "parquet", "-o", str(parquet))
    assert code == 0 and sorted(pd.read_parquet(parquet).value) == [1, 2, 2, 3, 3, 4]
    code, _, err = run(study, capsys, "metrics", "--format", "parquet")
    assert code == 2 and "-o FILE" in err
    code, out, _ = run(study, capsys, "metrics", "--type", "comparison")
    assert "difference" in out and "treat" in out

    other = tmp_path / "elsewhere.duckdb"
    assert run(study, capsys, "catalog", "build", "--output", str(other), "--json")[0] == 0
    assert run(study, capsys, "query", "SELECT 1 AS x", "--catalog", str(other))[0] == 0


def test_query_without_catalog_says_how_to_build_it(study, capsys):
    code, _, err = run(study, capsys, "query", "SELECT 1")
    assert code == 1 and "assay catalog build" in err


# --- provenance and configuration -------------------------------------------------------
def _small_config() -> dict:
    from workflow_helpers import SMALL_CONFIG

    return copy.deepcopy(SMALL_CONFIG)


def test_config_validate(tmp_path, capsys):
    from workflow_helpers import write_config

    path = write_config(tmp_path, _small_config())
    assert main(["config", "validate", str(path)]) == 0
    assert "2 conditions x 2 replicates" in capsys.readouterr().out
    bad = _small_config()
    bad["control"] = "missing"
    path = write_config(tmp_path / "bad", bad)
    code = main(["config", "validate", str(path)])
    err = capsys.readouterr().err
    assert code == 1 and "control" in err and "Traceback" not in err
    assert main(["config", "validate", str(tmp_path / "none.yaml")]) == 1


def test_reproduce_matches_and_names_differences(tmp_path, capsys):
    from assay import ArtifactStore
    from assay.pipeline.config import Study
    from assay.pipeline.stages import execute, run_spec

    study = Study.from_config(_small_config())
    store = ArtifactStore(tmp_path / "store")
    digest = execute(store, run_spec(study, "free", 1), [])
    base = ["--store", str(store.root), "--results", str(tmp_path / "results")]
    capsys.readouterr()
    assert main([*base, "reproduce", digest]) == 0
    assert "identical" in capsys.readouterr().out

    _, data = store.manifest_bytes(digest)
    forged = json.loads(data)
    forged["payload"]["note"] = "edited by hand"
    forged_digest = "sha256:" + store.objects.put_bytes(canonical_json(forged)).sha256
    assert main([*base, "reproduce", forged_digest, "--json"]) == 1
    result = json.loads(capsys.readouterr().out)
    assert result["reproduced"] == digest and not result["match"]
    assert any(d.startswith("payload.note") for d in result["differences"])


# --- a real workflow run ----------------------------------------------------------------
@pytest.mark.slow
def test_real_workflow_damage_repair_rerun(tmp_path, capsys):
    """Snakemake makes the store; a damaged sidecar is found, repaired, and the next run
    recomputes exactly that job, restoring every digest."""
    from workflow_helpers import digests, jobs_run, snakemake, write_config

    from assay import ArtifactStore

    write_config(tmp_path, _small_config())
    snakemake(tmp_path)
    before = digests(tmp_path)
    base = ["--store", str(tmp_path / "store"), "--results", str(tmp_path / "results")]
    capsys.readouterr()
    assert main([*base, "metrics", "--statistic", "mean", "--json"]) == 0   # workflow catalog
    assert json.loads(capsys.readouterr().out)
    assert main([*base, "verify", "--full"]) == 0

    ref = tmp_path / "results" / "replicates" / "gyration" / "strong" / "2.json"
    store = ArtifactStore(tmp_path / "store")
    artifact = store.read_replicate_result(ref)
    victim = store.objects.path_for(artifact.sidecars[0].sha256)
    os.chmod(victim, 0o644)
    victim.write_bytes(victim.read_bytes()[:-1] + bytes([victim.read_bytes()[-1] ^ 1]))

    capsys.readouterr()
    assert main([*base, "verify"]) == 1
    out = capsys.readouterr().out
    assert "replicates/gyration/strong/2.json" in out and "conditions/gyration/strong.json" in out
    assert main([*base, "verify", "--repair"]) == 0
    out = capsys.readouterr().out
    assert not ref.exists() and not (tmp_path / "results" / "catalog.duckdb").exists()
    assert f"snakemake {tmp_path / 'results' / 'replicates'}" in out

    # The printed command recomputes exactly that job; a plain run then only re-indexes.
    proc = snakemake(tmp_path, "results/replicates/gyration/strong/2.json")
    assert sorted(jobs_run(proc)) == [("collect", "results/replicates/gyration/strong/2.json")]
    proc = snakemake(tmp_path)
    assert [rule for rule, _ in jobs_run(proc)] == ["catalog"]
    assert digests(tmp_path) == before
    assert main([*base, "verify", "--full"]) == 0
