"""Adaptive replicates (assay.pipeline.adaptive): a real Snakemake run stops when the precision
target holds, the same study makes the same decisions again, and a stricter target
continues it to max; counted from the refs on disk."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest

from assay import ArtifactStore, ConfigError, read_ref
from assay.pipeline.adaptive import check_design, looks
from assay.pipeline.config import Study
from workflow_helpers import SMALL_CONFIG, jobs_run, snakemake, write_config


# The runs' target: everything but the figures (plot jobs cost seconds, decide nothing).
CATALOG = "results/catalog.duckdb"


def _config(half_width: float, maximum: int = 6) -> dict:
    config = copy.deepcopy(SMALL_CONFIG)
    config["replicates"] = {"min": 2, "max": maximum, "batch": 2, "until": {"precision": [
        {"analysis": "gyration", "metric": "mean_rg", "half_width": half_width}]}}
    config["analyses"] = {"gyration": config["analyses"]["gyration"]}
    return config


def _runs(root: Path) -> dict[str, int]:
    return {c: len(list((root / "results" / "runs" / c).glob("*.json")))
            for c in ("free", "strong")}


def _look(root: Path, k: int) -> dict:
    return json.loads((root / "results" / "looks" / f"{k}.json").read_text())


def test_looks_and_design_checks():
    assert looks({"min": 3, "max": 24, "batch": 3}) == [3, 6, 9, 12, 15, 18, 21, 24]
    assert looks({"min": 2, "max": 7, "batch": 2}) == [2, 4, 6, 7]
    assert looks({"min": 4, "max": 4, "batch": 1}) == [4]
    study = Study.from_config(_config(0.3))
    assert study.replicates == [1, 2, 3, 4, 5, 6] and study.adaptive["batch"] == 2
    bad = _config(0.3)
    bad["replicates"]["min"] = 8
    with pytest.raises(ConfigError, match="min 8 is more than max 6"):
        Study.from_config(bad)
    bad = _config(0.3)
    bad["replicates"]["until"]["precision"][0] = {"analysis": "gyration", "metric": "x"}
    with pytest.raises(ConfigError, match=r"precision\[0\]: give half_width"):
        Study.from_config(bad)
    with pytest.raises(ConfigError, match="'nope' is not one of the study's analyses"):
        check_design({"min": 2, "max": 3, "until": {"precision": [
            {"analysis": "nope", "metric": "x", "half_width": 1.0}]}}, {"gyration": {}})


@pytest.mark.slow
def test_an_adaptive_study_stops_at_its_target_and_goes_on_when_it_is_stricter(tmp_path):
    # The small study's mean_rg: CI half-widths 0.50 (free) and 1.86 (strong) at 2
    # replicates, 0.27 and 0.26 at 4. Design: min 2, batch 2, max 4.
    write_config(tmp_path, _config(2.0, maximum=4))
    snakemake(tmp_path, CATALOG)
    assert _runs(tmp_path) == {"free": 2, "strong": 2}
    first = _look(tmp_path, 1)
    assert (first["n"], first["stop"], first["why"]) == (2, True, "precision reached at n = 2")
    assert not (tmp_path / "results" / "looks" / "2.json").exists()
    store = ArtifactStore(tmp_path / "store")
    for condition in ("free", "strong"):
        summary = store.read_condition_result(read_ref(
            tmp_path / "results" / "conditions" / "gyration" / f"{condition}.json").digest
        ).payload["metrics"]["mean_rg"]
        numbers = first["numbers"]["gyration"][condition]["mean_rg"]
        # the study's condition is the one the look judged: same replicates, same numbers
        assert summary["n"] == 2 and numbers["met"] is True
        assert (summary["ci_high"] - summary["ci_low"]) / 2 == numbers["half_width"] <= 2.0

    _check_on_record(tmp_path, [first])

    status = subprocess.run([sys.executable, "-m", "assay.cli", "status", "--json",
                             "--no-slurm"], cwd=tmp_path, capture_output=True, text=True,
                            timeout=120)
    assert json.loads(status.stdout)["notes"] == [
        "adaptive replicates: stopped at 2 per condition (look 1: precision reached at n = 2)"]
    runs = json.loads(status.stdout)["stages"]["run"]   # the decided 2 x 2, not max
    assert (runs["total"], runs["done"]) == (4, 4)

    again = snakemake(tmp_path, CATALOG)   # the same study: the same decisions, nothing to run
    assert jobs_run(again) == set() and "Nothing to be done" in again.stdout + again.stderr

    write_config(tmp_path, _config(0.0001, maximum=4))   # out of reach: on to max
    ran = jobs_run(snakemake(tmp_path, CATALOG))
    assert {out for rule, out in ran if rule == "run"} == {
        f"results/runs/{c}/{r}.json" for c in ("free", "strong") for r in (3, 4)}
    assert _runs(tmp_path) == {"free": 4, "strong": 4}
    first, last = _look(tmp_path, 1), _look(tmp_path, 2)
    assert (first["n"], first["stop"]) == (2, False)
    assert first["why"] == ("precision not reached: gyration/free mean_rg, "
                            "gyration/strong mean_rg; add 2")
    assert (last["n"], last["stop"]) == (4, True)
    assert last["why"].startswith("max 4 reached; precision not reached: gyration/free")
    _check_on_record(tmp_path, [first, last])


def _check_on_record(root: Path, decisions: list[dict]) -> None:
    """Each look's decision is a stored artifact named by results/decisions/<k>.json, and
    a row of the catalog's decisions table with the same numbers."""
    from assay import open_catalog

    store = ArtifactStore(root / "store")
    previous = None
    for decision in decisions:
        ref = read_ref(root / "results" / "decisions" / f"{decision['look']}.json")
        assert ref.digest == decision["artifact"]
        stored = store.read_artifact(ref)
        assert stored.artifact_type == "decision"
        assert stored.payload == {k: v for k, v in decision.items() if k != "artifact"}
        inputs = {i["role"]: i["digest"] for i in stored.inputs}
        judged = {c: decision["numbers"]["gyration"][c]["mean_rg"]["condition_artifact"]
                  for c in ("free", "strong")}
        assert {i["digest"] for i in stored.inputs if i["role"] == "condition"} == set(
            judged.values())
        assert inputs.get("previous_look") == previous
        previous = ref.digest
    with open_catalog(root / CATALOG) as catalog:
        rows = catalog.query("SELECT artifact, look, n, stop, why, "
                             "CAST(numbers AS VARCHAR) AS numbers FROM decisions "
                             "WHERE live ORDER BY look")
    assert list(rows.look) == [d["look"] for d in decisions]
    assert list(rows.artifact) == [d["artifact"] for d in decisions]
    assert [(n, bool(s), w) for n, s, w in zip(rows.n, rows.stop, rows.why)] == [
        (d["n"], d["stop"], d["why"]) for d in decisions]
    assert [json.loads(n) for n in rows.numbers] == [d["numbers"] for d in decisions]


def _replicates(store, plan, tmp_path, shift: float, n: int) -> list[str]:
    """Replicate artifacts and refs of metric 'x' for free (N(0, 1)) and strong
    (N(shift, 1)), as collect would leave them."""
    import numpy as np

    from assay import ReplicateArtifact, write_ref
    from assay.pipeline.stages import collect_spec

    rng = np.random.default_rng(7)
    refs = []
    for condition, mean in (("free", 0.0), ("strong", shift)):
        fingerprint = collect_spec(plan.study, "contacts", condition, 1)["settings_fingerprint"]
        for replicate in range(1, n + 1):
            digest = store.write_artifact(ReplicateArtifact(
                analysis_name="contacts", condition_label=condition, replicate=replicate,
                payload={"metrics": {"x": float(mean + rng.normal())}},
                metadata={"settings_fingerprint": fingerprint}))
            path = tmp_path / "results" / "replicates" / "contacts" / condition / f"{replicate}.json"
            write_ref(path, digest, artifact_type="replicate", analysis="contacts",
                      condition=condition, replicate=replicate)
            refs.append(str(path))
    return refs


@pytest.mark.parametrize("shift, stops_at", [(10.0, 2), (0.0, None)])
def test_a_decided_comparison_stops_on_its_group_sequential_boundary(tmp_path, shift,
                                                                      stops_at):
    """until: decided. A large difference crosses the O'Brien-Fleming boundary at look 2
    of 3 (not at look 1: n = 2 cannot reach p < 0.0002), with the p adjusted for the
    looks; no difference never crosses, and the last look stops at max."""
    from assay.pipeline.adaptive import decide
    from assay.store.spec_files import spec_text
    from assay.pipeline.workflow import WorkflowPlan

    config = copy.deepcopy(SMALL_CONFIG)
    config["analyses"] = {"contacts": config["analyses"]["contacts"]}
    config["replicates"] = {"min": 2, "max": 6, "batch": 2, "until": {"decided": {
        "analysis": "contacts", "metric": "x"}}}
    plan = WorkflowPlan(config, workdir=tmp_path)
    store = ArtifactStore(tmp_path / "store")
    refs = _replicates(store, plan, tmp_path, shift, 6)

    class Look:
        def __init__(self, k):
            self.look = k

    decisions = []
    for k in (1, 2, 3):
        spec = json.loads(spec_text(__import__("shlex").split(plan.look_spec(Look(k)))[0]))
        decisions.append(decide(store, spec, refs))
        if decisions[-1]["stop"]:
            break
    entry = decisions[-1]["numbers"]["contacts"]["strong"]["decided"]["x"]
    if stops_at is None:
        assert [d["stop"] for d in decisions] == [False, False, True]
        assert decisions[-1]["why"] == "max 6 reached; comparison not decided"
        assert not entry["crossed"] and "p_adjusted_for_looks" not in entry
        return
    assert [d["stop"] for d in decisions] == [False, True]
    first = decisions[0]["numbers"]["contacts"]["strong"]["decided"]["x"]
    assert first["nominal_p"] < 0.001 < first["p"]   # look 1: boundary not crossed
    assert entry["p"] < entry["nominal_p"] < 0.05
    assert entry["p"] < entry["p_adjusted_for_looks"] < 0.05
    assert decisions[-1]["why"].startswith("comparison decided at n = 4: strong vs free x p ")
