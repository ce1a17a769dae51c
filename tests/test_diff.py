"""assay diff: numbers, arrays and tables of two artifacts that differ by known amounts."""

from __future__ import annotations

import copy
import json
import shutil

import numpy as np
import pandas as pd
import pytest

from assay import ArtifactStore, ReplicateArtifact, canonical_json, write_ref
from assay.cli import main
from assay.tools.diffing import diff_arrays, diff_artifacts, diff_values

BASE = np.arange(10, dtype=np.float64)


def _shifted() -> np.ndarray:
    shifted = BASE.copy()
    shifted[3] += 1e-3
    shifted[7] += 2e-3
    return shifted


def test_arrays_that_differ_by_known_amounts():
    found = diff_arrays(BASE, _shifted(), "x")
    assert found.detail["shape"] == [10] and found.detail["dtype"] == "float64"
    assert found.abs_diff == pytest.approx(2e-3, rel=1e-9)
    assert found.rel_diff == pytest.approx(1e-3 / 3.001, rel=1e-9)      # at index 3
    assert found.detail["n_differ"] == 2 and found.detail["n"] == 10
    assert not found.within
    assert diff_arrays(BASE, _shifted(), "x", atol=2e-3 + 1e-12).within
    assert not diff_arrays(BASE, _shifted(), "x", atol=1.5e-3).within
    assert diff_arrays(BASE, _shifted(), "x", rtol=3.4e-4).within     # 1e-3 <= rtol * 3.001
    assert not diff_arrays(BASE, _shifted(), "x", rtol=3.3e-4).within
    assert diff_arrays(BASE, BASE.copy(), "x") is None


def test_tolerance_is_symmetric():
    a, b = np.array([1.0, 100.0]), np.array([1.1, 110.0])
    forward, backward = diff_arrays(a, b, "x", rtol=0.091), diff_arrays(b, a, "x", rtol=0.091)
    assert forward.within and backward.within
    assert forward.abs_diff == backward.abs_diff and forward.rel_diff == backward.rel_diff


def test_arrays_of_other_shape_dtype_nan_and_text():
    assert diff_arrays(np.zeros(3), np.zeros(4), "x").detail == {
        "note": "shape [3] float64 -> [4] float64"}
    as_float32 = diff_arrays(BASE, BASE.astype(np.float32), "x")
    assert as_float32.detail["dtype"] == "float64 -> float32" and not as_float32.within
    assert as_float32.abs_diff == 0.0
    nan = np.array([1.0, np.nan, 3.0])
    assert diff_arrays(nan, nan.copy(), "x") is None                # NaN where both are
    one_sided = diff_arrays(nan, np.array([1.0, 2.0, 3.0]), "x", atol=1e9)
    assert one_sided.abs_diff == np.inf and not one_sided.within
    ints = diff_arrays(np.array([1, 2, 3]), np.array([1, 2, 5]), "x")
    assert ints.abs_diff == 2.0 and ints.detail["n_differ"] == 1
    text = diff_arrays(np.array(["a", "b"]), np.array(["a", "c"]), "x")
    assert text.detail["n_differ"] == 1 and not text.within


def test_payload_numbers_get_absolute_and_relative_differences():
    found = diff_values({"metrics": {"a": 2.0, "b": 1.0, "flag": True}, "old": 1},
                        {"metrics": {"a": 2.5, "b": 1.0, "flag": False}, "new": 1},
                        "payload", rtol=0.1)
    by_where = {f.where: f for f in found}
    a = by_where["payload.metrics.a"]
    assert (a.abs_diff, a.rel_diff, a.within) == (0.5, 0.2, False)
    assert by_where["payload.metrics.flag"].kind == "value"
    assert by_where["payload.old"].kind == "only_a" and by_where["payload.new"].kind == "only_b"
    assert len(found) == 4


# --- artifacts in stores -------------------------------------------------------------------
def _artifact(store: ArtifactStore, positions: np.ndarray, *, mean: float,
              table: dict) -> str:
    npz = store.write_npz_sidecar("sidecars/traj.npz", positions=positions,
                                  labels=np.array(["a", "b"]), metadata={"kind": "trajectory"})
    csv = store.write_table_sidecar("sidecars/events.csv", pd.DataFrame(table),
                                    metadata={"kind": "events"})
    return store.write_artifact(ReplicateArtifact(
        analysis_name="md", condition_label="c", replicate=1,
        payload={"metrics": {"mean": mean, "n": 3}}, sidecars=[npz, csv],
        provenance={"versions": {"numpy": "1.26"}}))


TABLE = {"start": [0, 5, 9], "duration": [1.5, 2.0, 3.25], "kind": ["x", "y", "z"]}


@pytest.fixture
def pair(tmp_path):
    """The same artifact in two stores (and results), the second one perturbed."""
    roots = []
    for name, positions, mean, table in (
            ("one", BASE, 1.0, TABLE),
            ("two", _shifted(), 1.0 + 1e-6, {**TABLE, "duration": [1.5, 2.01, 3.25],
                                              "extra": [1, 2, 3]})):
        store = ArtifactStore(tmp_path / name / "store")
        digest = _artifact(store, positions, mean=mean, table=table)
        write_ref(tmp_path / name / "results" / "replicates" / "md" / "c" / "1.json", digest,
                  artifact_type="replicate", analysis="md", condition="c", replicate=1)
        roots.append((store, digest))
    return tmp_path, roots


def test_artifacts_differ_in_payload_arrays_and_table_columns(pair):
    _, [(store_a, a), (store_b, b)] = pair
    report = diff_artifacts(store_a, a, store_b, b)
    lines = report.lines()
    assert not report.equal and not report.identical
    assert "payload.metrics.mean: 1.0 -> 1.000001 (|Δ| 1e-06, rel 9.99999e-07)" in lines
    assert ("sidecar sidecars/traj.npz array 'positions': [10] float64: max |Δ| 0.002, "
            "max rel Δ 0.000333222, 2 of 10 elements differ") in lines
    assert ("sidecar sidecars/events.csv column 'duration': [3] float64: max |Δ| 0.01, "
            "max rel Δ 0.00497512, 1 of 3 elements differ") in lines
    assert "sidecar sidecars/events.csv column 'extra': only in B" in lines
    assert not any("'labels'" in line or "'start'" in line for line in lines)
    assert report.context == []
    loose = diff_artifacts(store_a, a, store_b, b, rtol=0.01)
    assert not loose.equal   # the extra column is a difference no tolerance removes
    assert [f.where for f in loose.findings if not f.within] == [
        "sidecar sidecars/events.csv column 'extra'"]


def _cli(tmp_path, capsys, *argv):
    capsys.readouterr()
    code = main(["--store", str(tmp_path / "one" / "store"),
                 "--results", str(tmp_path / "one" / "results"), "diff", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_diff_of_the_same_ref_in_two_studies(pair, capsys):
    tmp_path, [(_, a), (_, b)] = pair
    second = ["--store2", str(tmp_path / "two" / "store"),
              "--results2", str(tmp_path / "two" / "results")]
    code, out, _ = _cli(tmp_path, capsys, "replicates/md/c/1.json", *second)
    assert code == 1
    assert out.splitlines()[-1] == "DIFFERS: 4 difference(s) beyond rtol=0, atol=0"
    assert "  payload.metrics.mean: 1.0 -> 1.000001 (|Δ| 1e-06, rel 9.99999e-07)" in out.splitlines()
    code, out, _ = _cli(tmp_path, capsys, "replicates/md/c/1.json", *second, "--json")
    result = json.loads(out)
    assert code == 1 and (result["a"], result["b"]) == (a, b) and not result["equal"]
    arrays = [d for d in result["differences"] if d["kind"] == "array"]
    assert {d["where"]: d["abs_diff"] for d in arrays} == pytest.approx({
        "sidecar sidecars/traj.npz array 'positions'": 2e-3,
        "sidecar sidecars/events.csv column 'duration'": 1e-2})


def test_cli_diff_exit_status_follows_the_tolerance(tmp_path, capsys):
    store = ArtifactStore(tmp_path / "one" / "store")
    a = _artifact(store, BASE, mean=1.0, table=TABLE)
    b = _artifact(store, _shifted(), mean=1.0 + 1e-6, table=TABLE)
    assert _cli(tmp_path, capsys, a, b)[0] == 1
    code, out, _ = _cli(tmp_path, capsys, a, b, "--atol", "0.0025")
    assert code == 0
    assert out.splitlines()[-1] == ("equal within rtol=0, atol=0.0025 (2 difference(s) "
                                    "within it)")
    code, out, _ = _cli(tmp_path, capsys, a, a)
    assert code == 0 and out.splitlines()[-1] == "identical (same digest)"


def test_cli_diff_needs_b_or_a_second_location(tmp_path, capsys):
    store = ArtifactStore(tmp_path / "one" / "store")
    a = _artifact(store, BASE, mean=1.0, table=TABLE)
    code, _, err = _cli(tmp_path, capsys, a)
    assert code == 2
    assert err == ("assay diff: error: give B, or --results2/--store2 to compare A with the "
                   "same ref (or digest) of another study\n")


def test_reproduce_says_by_how_much_a_recomputation_differs(tmp_path, capsys):
    from workflow_helpers import SMALL_CONFIG

    from assay.pipeline.config import Study
    from assay.pipeline.stages import execute, run_spec

    study = Study.from_config(copy.deepcopy(SMALL_CONFIG))
    store = ArtifactStore(tmp_path / "store")
    digest = execute(store, run_spec(study, "free", 1), [])
    run = store.read_run_result(digest)
    [trajectory] = run.sidecars
    with store.load_npz_sidecar(trajectory) as data:
        arrays = {name: np.array(data[name]) for name in data}
    arrays["positions"][0, 0, 0] += 1.5e-3     # what another numpy could have computed
    forged_sidecar = store.write_npz_sidecar(trajectory.path, metadata=trajectory.metadata,
                                             **arrays)
    _, data = store.manifest_bytes(digest)
    manifest = json.loads(data)
    manifest["sidecars"] = [forged_sidecar.to_dict()]
    forged = "sha256:" + store.objects.put_bytes(canonical_json(manifest)).sha256
    base = ["--store", str(store.root), "--results", str(tmp_path / "results"), "reproduce"]
    capsys.readouterr()
    assert main([*base, forged]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"DIFFERS run artifact: recorded {forged}, recomputed {digest}"
    shape = list(arrays["positions"].shape)
    size = int(np.prod(shape))
    assert out[1].startswith(f"  sidecar sidecars/trajectory.npz array 'positions': {shape} "
                             f"float64: max |Δ| 0.0015, max rel Δ ")
    assert out[1].endswith(f", 1 of {size} elements differ")
    assert out[-1] == "  DIFFERS: 1 difference(s) beyond rtol=0, atol=0"
    assert main([*base, forged, "--atol", "0.002"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("EQUAL WITHIN TOLERANCE run artifact")
    assert main([*base, forged, "--json"]) == 1
    result = json.loads(capsys.readouterr().out)
    assert result["diff"]["differences"][0]["abs_diff"] == pytest.approx(1.5e-3)
    assert not result["match"] and not result["equal_within_tolerance"]


def test_copies_of_a_study_are_identical(tmp_path, capsys):
    store = ArtifactStore(tmp_path / "one" / "store")
    digest = _artifact(store, BASE, mean=1.0, table=TABLE)
    write_ref(tmp_path / "one" / "results" / "r.json", digest)
    shutil.copytree(tmp_path / "one", tmp_path / "two")
    code, out, _ = _cli(tmp_path, capsys, "r.json", "--results2", str(tmp_path / "two" / "results"),
                        "--store2", str(tmp_path / "two" / "store"))
    assert code == 0 and out.splitlines()[-1] == "identical (same digest)"
