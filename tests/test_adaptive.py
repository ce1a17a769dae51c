"""Adaptive replicates (assay.adaptive): a real Snakemake run stops when the precision
target holds, the same study makes the same decisions again, and a stricter target
continues it to max; counted from the refs on disk."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from assay import ArtifactStore, ConfigError, read_ref
from assay.adaptive import check_design, looks
from assay.config import Study
from workflow_helpers import SMALL_CONFIG, jobs_run, snakemake, write_config


def _config(half_width: float) -> dict:
    config = copy.deepcopy(SMALL_CONFIG)
    config["replicates"] = {"min": 2, "max": 6, "batch": 2, "until": {"precision": [
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
    # The small study's mean_rg: CI half-widths 0.50/1.86 at 2 replicates, 0.27/0.26 at 4.
    write_config(tmp_path, _config(0.3))
    snakemake(tmp_path)
    assert _runs(tmp_path) == {"free": 4, "strong": 4}
    first, second = _look(tmp_path, 1), _look(tmp_path, 2)
    assert (first["n"], first["stop"]) == (2, False)
    assert first["why"] == ("precision not reached: gyration/free mean_rg, "
                            "gyration/strong mean_rg; add 2")
    assert (second["n"], second["stop"], second["why"]) == (4, True,
                                                          "precision reached at n = 4")
    assert not (tmp_path / "results" / "looks" / "3.json").exists()
    store = ArtifactStore(tmp_path / "store")
    for condition in ("free", "strong"):
        summary = store.read_condition_result(read_ref(
            tmp_path / "results" / "conditions" / "gyration" / f"{condition}.json").digest
        ).payload["metrics"]["mean_rg"]
        numbers = second["numbers"]["gyration"][condition]["mean_rg"]
        # the study's condition is the one the look judged: same replicates, same numbers
        assert summary["n"] == 4 and numbers["met"] is True
        assert (summary["ci_high"] - summary["ci_low"]) / 2 == numbers["half_width"] <= 0.3

    again = snakemake(tmp_path)   # the same study: the same decisions, nothing to run
    assert jobs_run(again) == set() and "Nothing to be done" in again.stdout + again.stderr

    write_config(tmp_path, _config(0.0001))   # unreachable: on to max
    ran = jobs_run(snakemake(tmp_path))
    assert {out for rule, out in ran if rule == "run"} == {
        f"results/runs/{c}/{r}.json" for c in ("free", "strong") for r in (5, 6)}
    assert _runs(tmp_path) == {"free": 6, "strong": 6}
    last = _look(tmp_path, 3)
    assert (last["n"], last["stop"]) == (6, True)
    assert last["why"].startswith("max 6 reached; precision not reached: gyration/free")
