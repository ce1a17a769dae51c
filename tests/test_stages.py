"""The stages without Snakemake: aggregation rules, provenance and the action cache."""

from __future__ import annotations

import copy

import pytest

from assay import ArtifactStore, AssayError, ConfigError, ReplicateArtifact
from assay.pipeline.config import Study
from assay.pipeline.stages import (
    aggregate_spec,
    collect_spec,
    compare_spec,
    execute,
    recompute,
    run_spec,
)
from workflow_helpers import SMALL_CONFIG


@pytest.fixture
def study() -> Study:
    return Study.from_config(copy.deepcopy(SMALL_CONFIG))


@pytest.fixture
def store(tmp_path) -> ArtifactStore:
    return ArtifactStore(tmp_path / "store")


def _replicate(store, spec, replicate, metrics, **payload):
    art = ReplicateArtifact(analysis_name=spec["analysis"], condition_label=spec["condition"],
                            replicate=replicate, payload={"metrics": metrics, **payload},
                            metadata={"settings_fingerprint": spec["settings_fingerprint"]})
    return store.write_artifact(art)


def test_full_chain_records_provenance_and_reproduces(study, store, tmp_path):
    run = execute(store, run_spec(study, "strong", 1), [])
    collect = execute(store, collect_spec(study, "contacts", "strong", 1), [run])
    art = store.read_replicate_result(collect)
    assert art.inputs == [{"role": "run", "digest": run}]
    assert art.provenance["stage"] == "collect" and art.provenance["condition"] == "strong"
    assert art.provenance["settings"] == study.analyses["contacts"].settings
    assert set(art.provenance["versions"]) == {"assay", "python", "numpy"}
    assert recompute(store, collect, ArtifactStore(tmp_path / "scratch")) == collect


def test_action_cache_hit_returns_the_same_digest_without_recomputing(study, store):
    spec = run_spec(study, "free", 1)
    first = execute(store, spec, [])
    logs = []
    assert execute(store, spec, [], log=logs.append) == first
    assert any("action cache hit" in line for line in logs)


def test_aggregate_summarizes_and_records_skipped_replicates(study, store):
    spec = aggregate_spec(study, "contacts", "free")
    inputs = [_replicate(store, spec, 1, {"x": 1.0}), _replicate(store, spec, 2, {"x": 3.0}),
              _replicate(store, spec, 3, {}, skipped="trajectory too short")]
    art = store.read_condition_result(execute(store, spec, inputs))
    assert art.replicates == [1, 2]
    assert art.payload["metrics"]["x"]["mean"] == 2.0 and art.payload["metrics"]["x"]["n"] == 2
    assert art.payload["skipped_replicates"] == [{"replicate": 3,
                                                  "reason": "trajectory too short"}]


def test_aggregate_refuses_mixed_settings_fingerprints(study, store):
    spec = aggregate_spec(study, "contacts", "free")
    other = {**spec, "settings_fingerprint": "sha256:" + "0" * 64}
    inputs = [_replicate(store, spec, 1, {"x": 1.0}), _replicate(store, other, 2, {"x": 2.0})]
    with pytest.raises(AssayError, match="settings fingerprint"):
        execute(store, spec, inputs)


def test_min_replicates_and_allow_partial(study, store):
    spec = aggregate_spec(study, "contacts", "free")
    inputs = [_replicate(store, spec, 1, {"x": 1.0}), _replicate(store, spec, 2, {}, skipped="bad")]
    with pytest.raises(AssayError, match="1 usable replicate.*min_replicates=2.*allow_partial"):
        execute(store, spec, inputs)
    partial = {**spec, "aggregation": {**spec["aggregation"], "allow_partial": True}}
    art = store.read_condition_result(execute(store, partial, inputs))
    assert art.payload["metrics"]["x"]["n"] == 1 and "fewer than min_replicates" in art.warnings[0]


def test_compare_is_each_condition_against_the_control(study, store):
    digests = []
    for condition, values in (("free", (1.0, 2.0, 3.0)), ("strong", (5.0, 6.0, 7.5))):
        spec = aggregate_spec(study, "contacts", condition)
        reps = [_replicate(store, spec, i + 1, {"x": v}) for i, v in enumerate(values)]
        digests.append(execute(store, spec, reps))
    art = store.read_comparison_result(execute(store, compare_spec(study, "contacts"), digests))
    result = art.payload["comparisons"]["strong"]["x"]
    assert art.payload["control"] == "free" and list(art.payload["comparisons"]) == ["strong"]
    assert result["difference"] == pytest.approx(6.1666666 - 2.0, rel=1e-6)
    assert 0 < result["p"] < 0.05 and result["ci_low"] > 0


def test_seeds_differ_per_condition_and_replicate_and_are_stable(study):
    seeds = {(c, r): study.seed_for(c, r) for c in ("free", "strong") for r in (1, 2)}
    assert len(set(seeds.values())) == 4
    assert seeds == {(c, r): Study.from_config(copy.deepcopy(SMALL_CONFIG)).seed_for(c, r)
                     for c, r in seeds}


def test_unknown_plugin_is_a_config_error_naming_the_key():
    config = copy.deepcopy(SMALL_CONFIG)
    config["analyses"]["contacts"]["plugin"] = "no_such_analysis"
    with pytest.raises(ConfigError, match="analyses.contacts.plugin"):
        Study.from_config(config)
