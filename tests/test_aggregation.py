"""Aggregation keeps each replicate's value and refuses inputs that would lie."""

from __future__ import annotations

import copy

import pytest
from workflow_helpers import SMALL_CONFIG

from assay import ArtifactStore, AssayError, ReplicateArtifact
from assay.pipeline.aggregation import metric_value
from assay.pipeline.config import Study
from assay.pipeline.stages import aggregate_spec, execute


@pytest.fixture
def study() -> Study:
    return Study.from_config(copy.deepcopy(SMALL_CONFIG))


@pytest.fixture
def store(tmp_path) -> ArtifactStore:
    return ArtifactStore(tmp_path / "store")


def _replicate(store, spec, replicate, metrics, *, analysis=None, **payload):
    art = ReplicateArtifact(analysis_name=analysis or spec["analysis"],
                            condition_label=spec["condition"], replicate=replicate,
                            payload={"metrics": metrics, **payload},
                            metadata={"settings_fingerprint": spec["settings_fingerprint"]})
    return store.write_artifact(art)


def test_condition_keeps_each_replicates_value_numbered(study, store):
    spec = aggregate_spec(study, "contacts", "free")
    inputs = [_replicate(store, spec, r, {"x": v, "y": 2 * v})
              for r, v in ((1, 1.0), (2, 3.0), (10, 5.0))]
    art = store.read_condition_result(execute(store, spec, inputs))
    x = art.payload["metrics"]["x"]
    assert x["values"] == {"1": 1.0, "2": 3.0, "10": 5.0}
    assert (x["n"], x["mean"]) == (3, 3.0) and x["std"] == pytest.approx(2.0)
    assert art.payload["metrics"]["y"]["values"] == {"1": 2.0, "2": 6.0, "10": 10.0}
    assert art.warnings == []


def test_integer_metrics_are_real_numbers(study, store):
    spec = aggregate_spec(study, "contacts", "free")
    inputs = [_replicate(store, spec, 1, {"count": 3}), _replicate(store, spec, 2, {"count": 5})]
    art = store.read_condition_result(execute(store, spec, inputs))
    assert art.payload["metrics"]["count"]["values"] == {"1": 3.0, "2": 5.0}


def test_a_metric_some_replicates_lack_is_summarized_from_the_others_with_a_warning(study, store):
    spec = aggregate_spec(study, "contacts", "free")
    inputs = [_replicate(store, spec, 1, {"x": 1.0, "y": 1.0}),
              _replicate(store, spec, 2, {"x": 2.0}), _replicate(store, spec, 3, {"x": 3.0})]
    art = store.read_condition_result(execute(store, spec, inputs))
    assert art.payload["metrics"]["y"]["values"] == {"1": 1.0}
    assert art.warnings == [("metric 'y' is missing from replicate(s) [2, 3]; its summary "
                             "uses the other 1")]


@pytest.mark.parametrize("value,shown", [
    ("1.0", "'1.0' (str)"), (True, "True (bool)"), (False, "False (bool)"),
    (None, "None (NoneType)"), ([1.0], "[1.0] (list)"), ({"a": 1.0}, "{'a': 1.0} (dict)"),
])
def test_a_metric_that_is_not_a_finite_real_is_refused_naming_where(study, store, value, shown):
    spec = aggregate_spec(study, "contacts", "strong")
    inputs = [_replicate(store, spec, 1, {"x": 1.0}), _replicate(store, spec, 2, {"x": value})]
    with pytest.raises(AssayError) as info:
        execute(store, spec, inputs)
    assert str(info.value) == (
        f"aggregate contacts/strong: replicate 2 metric 'x' is {shown}, not a finite real "
        "number; the collector must store each metric as a finite float (keep other values "
        "elsewhere in the payload, or skip the replicate with a reason)")


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_values_are_refused(value):
    # Manifests cannot hold them (strict JSON), but a plugin's in-memory replicates can.
    with pytest.raises(AssayError, match=r"^aggregate a/c: replicate 3 metric 'm' is "
                                         r"-?(nan|inf) \(float\), not a finite real number"):
        metric_value(value, analysis="a", condition="c", replicate=3, name="m")


def test_replicates_of_another_analysis_are_refused(study, store):
    spec = aggregate_spec(study, "contacts", "free")
    mine = _replicate(store, spec, 1, {"x": 1.0})
    theirs = _replicate(store, spec, 2, {"x": 2.0}, analysis="gyration")
    with pytest.raises(AssayError) as info:
        execute(store, spec, [mine, theirs])
    assert str(info.value).startswith(
        f"aggregate job for contacts/free was given {theirs}, which is replicate "
        "gyration/free/2: analysis 'gyration' (expected 'contacts'). A ref names the wrong "
        "artifact")


def test_replicates_of_other_settings_are_refused(study, store):
    spec = aggregate_spec(study, "contacts", "free")
    other = {**spec, "settings_fingerprint": "sha256:" + "0" * 64}
    mine, theirs = _replicate(store, spec, 1, {"x": 1.0}), _replicate(store, other, 2, {"x": 2.0})
    with pytest.raises(AssayError) as info:
        execute(store, spec, [mine, theirs])
    assert str(info.value) == (
        f"replicate 2 of contacts/free ({theirs}) was collected with settings fingerprint "
        f"sha256:{'0' * 64}, not {spec['settings_fingerprint']}; rerun its collect job")


def test_metrics_that_are_not_a_mapping_are_refused(study, store):
    spec = aggregate_spec(study, "contacts", "free")
    inputs = [_replicate(store, spec, 1, {"x": 1.0}), _replicate(store, spec, 2, [1.0, 2.0])]
    with pytest.raises(AssayError) as info:
        execute(store, spec, inputs)
    assert str(info.value) == ("aggregate contacts/free: replicate 2 payload['metrics'] is a "
                               "list, not a mapping of metric names to numbers; fix its "
                               "collector")
