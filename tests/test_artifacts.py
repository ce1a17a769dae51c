"""The artifact envelope: sidecar paths, sha formats, strict JSON payloads, schema versions."""

from __future__ import annotations

import math
from pathlib import Path, PurePosixPath

import numpy as np
import pytest

from assay import (
    METRICS,
    SCHEMA_VERSION,
    ArtifactSchemaError,
    ArtifactSidecarRef,
    ArtifactStore,
    ArtifactStoreError,
    ComparisonArtifact,
    ConditionArtifact,
    PayloadError,
    ReplicateArtifact,
    RunArtifact,
    SidecarPathError,
    strict_json_payload,
)
from assay import canonical_json

HEX = "0123456789abcdef" * 4


# --- sidecar paths --------------------------------------------------------------------------
BAD_PATHS = ["/abs", "/abs/x.npz", "../x", "safe/../x", "a\\b", "", "a//b", "./a", "a/.",
             "a/", "..", ".", "C:/x.npz", "a\x00b"]


@pytest.mark.parametrize("path", BAD_PATHS)
def test_bad_sidecar_paths_are_refused_everywhere(tmp_path, path):
    store = ArtifactStore(tmp_path)
    with pytest.raises(SidecarPathError):
        ArtifactSidecarRef(path=path, sha256=HEX, size_bytes=1)
    with pytest.raises(SidecarPathError):
        store.write_bytes_sidecar(path, b"x")
    with pytest.raises(SidecarPathError):
        store.write_npz_sidecar(path, a=np.arange(3))
    with pytest.raises(SidecarPathError):
        store.resolve_sidecar(path)
    with pytest.raises(SidecarPathError):
        store.register_sidecar(path)
    with pytest.raises(SidecarPathError):
        ArtifactSidecarRef.from_dict({"path": path, "sha256": HEX, "size_bytes": 1})
    # what a new store holds from the start: its marker and its (empty) object index
    assert not [p for p in tmp_path.rglob("*") if p.is_file()
                and p.relative_to(tmp_path).as_posix() not in (".assay-store",
                                                                "index/snapshot.tsv")]


def test_sidecar_path_errors_are_store_and_value_errors():
    with pytest.raises(SidecarPathError) as info:
        ArtifactSidecarRef(path="../escape.npz", sha256=HEX, size_bytes=1)
    assert isinstance(info.value, ArtifactStoreError) and isinstance(info.value, ValueError)
    assert "'../escape.npz'" in str(info.value)


@pytest.mark.parametrize("path", ["x.npz", "sidecars/distance_matrix.npz", "a/b/c.d.csv",
                                  "sidecars/.hidden", "with space/é.csv", "a..b/c"])
def test_good_sidecar_paths_are_kept(path):
    assert ArtifactSidecarRef(path=path, sha256=HEX, size_bytes=0).path == path


# --- sha256 formats ------------------------------------------------------------------------
BAD_SHA256 = {
    "uppercase": HEX.upper(),
    "63 chars": HEX[:63],
    "65 chars": HEX + "0",
    "prefixed": "sha256:" + HEX,
    "non-hex": "g" * 64,
    "spaces": " " + HEX[1:],
    "empty": "",
    "bytes": HEX.encode(),
    "int": 12,
}


@pytest.mark.parametrize("value", BAD_SHA256.values(), ids=BAD_SHA256.keys())
def test_sidecar_sha256_must_be_64_lowercase_hex(value):
    with pytest.raises(ArtifactSchemaError, match="sha256"):
        ArtifactSidecarRef(path="sidecars/x.npz", sha256=value, size_bytes=1)
    with pytest.raises(ArtifactSchemaError):
        ArtifactSidecarRef.from_dict({"path": "x.npz", "sha256": value, "size_bytes": 1})


BAD_DIGESTS = {
    "uppercase": "sha256:" + HEX.upper(),
    "63 chars": "sha256:" + HEX[:63],
    "non-hex": "sha256:" + "z" * 64,
    "empty hex": "sha256:",
}


@pytest.mark.parametrize("digest", BAD_DIGESTS.values(), ids=BAD_DIGESTS.keys())
def test_artifact_digests_must_be_sha256_prefixed_lowercase_hex(tmp_path, digest):
    store = ArtifactStore(tmp_path)
    with pytest.raises(ArtifactSchemaError, match="sha256:<64 lowercase hex>"):
        store.read_artifact(digest)
    with pytest.raises(ArtifactSchemaError):
        store.load_artifact(digest)
    with pytest.raises(ArtifactSchemaError):
        ConditionArtifact(analysis_name="a", condition_label="c", inputs=[digest])


@pytest.mark.parametrize("digest", ["ab" * 32, "SHA256:" + HEX, "md5:" + HEX[:32]])
def test_unprefixed_digests_are_not_artifact_ids(tmp_path, digest):
    store = ArtifactStore(tmp_path)
    with pytest.raises(ArtifactStoreError):
        store.read_artifact(digest)
    with pytest.raises(ArtifactSchemaError):
        store.load_artifact(digest)


@pytest.mark.parametrize("size", [-1, 1.0, True, "10", None])
def test_sidecar_size_must_be_a_non_negative_int(size):
    with pytest.raises(ArtifactSchemaError, match="size_bytes"):
        ArtifactSidecarRef(path="x.npz", sha256=HEX, size_bytes=size)


def test_sidecar_ref_round_trips_through_a_dict():
    ref = ArtifactSidecarRef(path="sidecars/x.npz", sha256=HEX, size_bytes=3,
                             media_type="application/x-npz",
                             metadata={"kind": "x", "shape": (1, 3)})
    assert ref.metadata == {"kind": "x", "shape": [1, 3]}  # normalised to JSON
    assert ArtifactSidecarRef.from_dict(ref.to_dict()) == ref
    assert ref.kind == "x"


# --- strict_json_payload ------------------------------------------------------------------
class Results(dict):
    """Named like MDAnalysis' runtime container."""


class Opaque:
    pass


REJECTED = {
    "nan": ({"metrics": {"x": float("nan")}}, "['metrics']['x']", "finite"),
    "inf": ({"metrics": {"x": math.inf}}, "['metrics']['x']", "finite"),
    "-inf": ({"metrics": {"x": -math.inf}}, "['metrics']['x']", "finite"),
    "np.float32 nan": ({"metrics": {"x": np.float32("nan")}}, "['metrics']['x']", "finite"),
    "np.float64 inf": ({"metrics": {"x": np.float64("inf")}}, "['metrics']['x']", "finite"),
    "nan in a list": ({"a": [1.0, {"b": float("nan")}]}, "['a'][1]['b']", "finite"),
    "nan in an array": ({"a": np.array([1.0, np.nan])}, "['a'][1]", "finite"),
    "int key": ({"metrics": {1: 2.0}}, "['metrics']", "non-string key"),
    "tuple key": ({"metrics": {("a", 1): 2.0}}, "['metrics']", "non-string key"),
    "absolute path": ({"files": {"traj": Path("/scratch/traj.xtc")}}, "['files']['traj']",
                      "absolute"),
    "large array": ({"big": {"x": np.arange(1025)}}, "['big']['x']", "1025"),
    "large list": ({"big": list(range(5000))}, "['big']", "5000"),
    "Results": ({"job": {"results": Results(a=1)}}, "['job']['results']", "Results"),
    "object": ({"metrics": {"x": Opaque()}}, "['metrics']['x']", "Opaque"),
    "set": ({"tags": {"a", "b"}}, "['tags']", "set"),
    "bytes": ({"blob": b"\x00"}, "['blob']", "bytes"),
    "datetime64": ({"when": np.datetime64("2024-01-01")}, "['when']", "unsupported"),
}


@pytest.mark.parametrize("value,key_path,problem", REJECTED.values(), ids=REJECTED.keys())
def test_strict_json_payload_rejects_and_names_the_key_path(value, key_path, problem):
    with pytest.raises(PayloadError) as info:
        strict_json_payload(value, analysis_name="distance_matrix")
    message = str(info.value)
    assert key_path in message, message
    assert problem in message, message
    assert "distance_matrix" in message, message


def test_a_top_level_results_object_is_rejected():
    with pytest.raises(PayloadError, match="Results"):
        strict_json_payload(Results(), analysis_name="a")


CONVERTED = {
    "np.float32": (np.float32(0.5), 0.5, float),
    "np.float32 inexact": (np.float32(0.1), float(np.float32(0.1)), float),
    "np.float64": (np.float64(2.5), 2.5, float),
    "np.int64": (np.int64(7), 7, int),
    "np.uint8": (np.uint8(255), 255, int),
    "np.bool_": (np.bool_(True), True, bool),
    "np.str_": (np.str_("C3"), "C3", str),
    "relative Path": (Path("rel/x"), "rel/x", str),
    "PurePosixPath": (PurePosixPath("a/b.npz"), "a/b.npz", str),
    "small array": (np.array([1, 2, 3]), [1, 2, 3], list),
    "small 2-d array": (np.arange(4.0).reshape(2, 2), [[0.0, 1.0], [2.0, 3.0]], list),
    "0-d array": (np.array(1.5), 1.5, float),
    "tuple": ((1, "a"), [1, "a"], list),
    "None": (None, None, type(None)),
    "bool": (False, False, bool),
}


@pytest.mark.parametrize("value,expected,kind", CONVERTED.values(), ids=CONVERTED.keys())
def test_strict_json_payload_converts(value, expected, kind):
    out = strict_json_payload({"k": value}, analysis_name="a")["k"]
    assert out == expected and isinstance(out, kind)
    if not isinstance(value, np.str_):  # np.str_ is a str subclass and is kept as is
        assert type(out) is kind
    if isinstance(out, list):
        assert all(type(x) in (int, float, str, list) for x in out)


def test_strict_json_payload_keeps_nested_plain_json():
    value = {"metrics": {"mean": 1.5, "n": 3}, "labels": ["a", "b"], "nested": {"x": None}}
    assert strict_json_payload(value, analysis_name="a") == value
    assert strict_json_payload({"a": np.arange(10)}, analysis_name="a",
                               max_array_items=10) == {"a": list(range(10))}
    with pytest.raises(PayloadError, match="limit 5"):
        strict_json_payload({"a": np.arange(10)}, analysis_name="a", max_array_items=5)


def test_strict_json_payload_refuses_absurd_nesting():
    value: dict = {}
    cursor = value
    for _ in range(100):
        cursor["x"] = {}
        cursor = cursor["x"]
    with pytest.raises(PayloadError, match="deeper"):
        strict_json_payload(value, analysis_name="a")


def test_artifacts_apply_strict_json_to_payload_provenance_and_metadata():
    for field in ("payload", "provenance", "metadata"):
        with pytest.raises(PayloadError, match=r"\['metrics'\]\['x'\]"):
            ReplicateArtifact(analysis_name="a", condition_label="c", replicate=1,
                              **{field: {"metrics": {"x": float("nan")}}})
    art = ReplicateArtifact(analysis_name="a", condition_label="c", replicate=1,
                            payload={METRICS: {"x": np.float32(0.25)}})
    assert art.metrics == {"x": 0.25} and type(art.payload["metrics"]["x"]) is float


# --- envelope validation ------------------------------------------------------------------------
@pytest.mark.parametrize("make", [
    lambda: ReplicateArtifact(analysis_name="a", condition_label="c"),           # no replicate
    lambda: ReplicateArtifact(analysis_name="a", replicate=1),                   # no condition
    lambda: RunArtifact(analysis_name="demo", condition_label="c"),
    lambda: ConditionArtifact(analysis_name="a", condition_label="c", replicate=1),
    lambda: ConditionArtifact(analysis_name="a"),
    lambda: ComparisonArtifact(analysis_name="a", replicate=2),
    lambda: ReplicateArtifact(analysis_name="a", condition_label="c", replicate=0),
    lambda: ReplicateArtifact(analysis_name="a", condition_label="c", replicate=True),
    lambda: ReplicateArtifact(analysis_name="../a", condition_label="c", replicate=1),
    lambda: ReplicateArtifact(analysis_name="a", condition_label="x/y", replicate=1),
    lambda: ReplicateArtifact(analysis_name="", condition_label="c", replicate=1),
    lambda: ConditionArtifact(analysis_name="a", condition_label="c", replicates=[0, 1]),
    lambda: ReplicateArtifact(analysis_name="a", condition_label="c", replicate=1,
                              warnings=[1]),
    lambda: ReplicateArtifact(analysis_name="a", condition_label="c", replicate=1,
                              payload=[1, 2]),
    lambda: ReplicateArtifact(analysis_name="a", condition_label="c", replicate=1,
                              sidecars=[ArtifactSidecarRef("x.npz", HEX, 1),
                                        ArtifactSidecarRef("x.npz", "f" * 64, 2)]),
    lambda: ReplicateArtifact(analysis_name="a", condition_label="c", replicate=1,
                              extra={"payload": {}}),
    lambda: ReplicateArtifact(analysis_name="a", condition_label="c", replicate=1,
                              schema_version=0),
])
def test_invalid_envelopes_are_refused_at_construction(make):
    with pytest.raises(ArtifactSchemaError):
        make()


# --- round trips, unknown fields, schema versions ---------------------------------------------
def test_every_artifact_type_round_trips(tmp_path):
    store = ArtifactStore(tmp_path)
    run = RunArtifact(analysis_name="demo_runner", condition_label="Control", replicate=1,
                      payload={"n_frames": 10})
    run_digest = store.write_artifact(run)
    rep = ReplicateArtifact(analysis_name="rmsd", condition_label="Control", replicate=1,
                            payload={"metrics": {"rmsd": 0.2}},
                            inputs=[{"role": "run", "digest": run_digest}])
    rep_digest = store.write_artifact(rep)
    cond = ConditionArtifact(analysis_name="rmsd", condition_label="Control", replicates=[1],
                             inputs=[rep_digest])
    cond_digest = store.write_artifact(cond)
    comp = ComparisonArtifact(analysis_name="rmsd", inputs=[cond_digest],
                              payload={"control": "Control"})
    comp_digest = store.write_artifact(comp)

    fresh = ArtifactStore(tmp_path)
    assert fresh.read_run_result(run_digest) == run
    assert fresh.read_replicate_result(rep_digest) == rep
    assert fresh.read_condition_result(cond_digest) == cond
    assert fresh.read_comparison_result(comp_digest) == comp
    assert fresh.read_condition_result(cond_digest).inputs == [
        {"role": "input", "digest": rep_digest}]
    assert fresh.verify_artifact(comp_digest) == comp


@pytest.mark.parametrize("reader,expected", [
    ("read_condition_result", "condition"), ("read_run_result", "run"),
    ("read_comparison_result", "comparison"),
])
def test_reading_the_wrong_type_is_refused(tmp_path, reader, expected):
    store = ArtifactStore(tmp_path)
    digest = store.write_artifact(ReplicateArtifact(analysis_name="a", condition_label="c",
                                                    replicate=1))
    with pytest.raises(ArtifactStoreError) as info:
        getattr(ArtifactStore(tmp_path), reader)(digest)
    message = str(info.value)
    assert digest in message and "replicate" in message and expected in message


def test_unknown_extra_fields_survive_a_round_trip(tmp_path):
    store = ArtifactStore(tmp_path)
    art = ReplicateArtifact(analysis_name="a", condition_label="c", replicate=1,
                            extra={"x_future": {"weights": [1, 2]}, "x_note": "kept"})
    digest = store.write_artifact(art)
    back = ArtifactStore(tmp_path).read_replicate_result(digest)
    assert back.extra == {"x_future": {"weights": [1, 2]}, "x_note": "kept"}
    assert back.to_manifest()["x_note"] == "kept"
    assert ArtifactStore(tmp_path).write_artifact(back) == digest


def _manifest(**changes):
    manifest = {
        "schema_version": SCHEMA_VERSION, "artifact_type": "replicate",
        "analysis_name": "a", "condition_label": "c", "replicate": 1,
        "payload": {"metrics": {"m": 1.0}}, "sidecars": [], "inputs": [], "provenance": {},
        "metadata": {}, "warnings": [],
    }
    manifest.update(changes)
    return manifest


def test_unknown_fields_in_a_hand_written_manifest_survive(tmp_path):
    store = ArtifactStore(tmp_path)
    manifest = _manifest(written_by_a_newer_minor={"feature": True, "list": [1, "x"]})
    stored = store.objects.put_bytes(canonical_json(manifest))
    digest = "sha256:" + stored.sha256
    art = ArtifactStore(tmp_path).read_replicate_result(digest)
    assert art.extra == {"written_by_a_newer_minor": {"feature": True, "list": [1, "x"]}}
    assert art.to_manifest() == manifest
    assert ArtifactStore(tmp_path / "copy").write_artifact(art) == digest


def test_a_newer_schema_version_is_refused(tmp_path):
    store = ArtifactStore(tmp_path)
    stored = store.objects.put_bytes(canonical_json(_manifest(schema_version=SCHEMA_VERSION + 1)))
    digest = "sha256:" + stored.sha256
    with pytest.raises(ArtifactSchemaError, match="newer") as info:
        ArtifactStore(tmp_path).read_artifact(digest)
    assert digest in str(info.value) and "upgrade" in str(info.value)
    with pytest.raises(ArtifactSchemaError, match="newer"):
        ReplicateArtifact(analysis_name="a", condition_label="c", replicate=1,
                          schema_version=SCHEMA_VERSION + 1)


@pytest.mark.parametrize("body", [
    b"not json",
    b"[]",
    b"\xff\xfe",
    canonical_json(_manifest(schema_version="1")),
    canonical_json({k: v for k, v in _manifest().items() if k != "schema_version"}),
    canonical_json(_manifest(artifact_type="model")),
    canonical_json(_manifest(payload=[1])),
    canonical_json(_manifest(sidecars=[{"path": "x.npz"}])),
    canonical_json(_manifest(sidecars=[{"path": "x.npz", "sha256": HEX.upper(),
                                        "size_bytes": 1}])),
    canonical_json(_manifest(replicate=None)),
    canonical_json(_manifest(payload={"metrics": {"m": "NAN"}})).replace(b'"NAN"', b"NaN"),
])
def test_malformed_manifests_are_refused_with_a_schema_error(tmp_path, body):
    store = ArtifactStore(tmp_path)
    digest = "sha256:" + store.objects.put_bytes(body).sha256
    with pytest.raises(ArtifactSchemaError) as info:
        ArtifactStore(tmp_path).read_artifact(digest)
    assert digest in str(info.value)


def test_a_manifest_with_a_bad_sidecar_path_names_the_artifact(tmp_path):
    """Regression: SidecarPathError escaped unwrapped, without the artifact's name."""
    store = ArtifactStore(tmp_path)
    body = canonical_json(_manifest(sidecars=[{"path": "../x", "sha256": HEX, "size_bytes": 1}]))
    digest = "sha256:" + store.objects.put_bytes(body).sha256
    with pytest.raises(ArtifactSchemaError) as info:
        ArtifactStore(tmp_path).read_artifact(digest)
    assert digest in str(info.value) and "../x" in str(info.value)


# --- properties ------------------------------------------------------------------------------
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_path_text = st.text(alphabet=st.sampled_from(list("ab./\\:\x00 é")), max_size=12)


@settings(max_examples=400, deadline=None)
@given(_path_text)
def test_accepted_sidecar_paths_never_escape(path):
    """Whatever is accepted stays under the artifact: relative, no '.', '..' or empty part."""
    try:
        ref = ArtifactSidecarRef(path=path, sha256=HEX, size_bytes=0)
    except SidecarPathError:
        return
    parts = PurePosixPath(ref.path).parts
    assert ref.path == path and not PurePosixPath(path).is_absolute()
    assert "\\" not in path and all(part not in ("", ".", "..") for part in path.split("/"))
    assert list(parts) == path.split("/")
    root = Path("/store/artifact")
    assert root in (root / path).parents or (root / path).parent == root


_json_leaf = st.one_of(st.none(), st.booleans(), st.integers(),
                       st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=5),
                       st.builds(np.float32, st.floats(width=32)),
                       st.builds(np.int64, st.integers(-2**63, 2**63 - 1)))
_json_value = st.recursive(
    _json_leaf,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.text(max_size=4), inner, max_size=4)),
    max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(_json_value)
def test_strict_json_payload_is_canonical_or_refuses(value):
    try:
        out = strict_json_payload({"v": value}, analysis_name="prop")
    except PayloadError as exc:
        assert "payload['v']" in str(exc)
        return
    encoded = canonical_json(out)  # never raises: only finite JSON primitives remain
    assert strict_json_payload(out, analysis_name="prop") == out  # idempotent
    assert canonical_json(strict_json_payload(out, analysis_name="prop")) == encoded


def test_a_numpy_string_key_is_the_text_numpy_says_and_two_keys_never_merge_silently():
    """Found by the hostile-payload property test: numpy drops trailing NULs from a str_
    (``np.str_('\\x00')`` is ``''`` to numpy), its raw buffer does not; the payload keeps
    numpy's text. Two keys that become the same JSON text are refused, never one picked."""
    from assay import PayloadError, strict_json_payload

    assert strict_json_payload({np.str_("\x00"): 1}, analysis_name="a") == {"": 1}
    with pytest.raises(PayloadError, match="has two keys that are both 'k' as JSON text"):
        strict_json_payload({np.str_("k\x00"): 1, "k": 2}, analysis_name="a")
