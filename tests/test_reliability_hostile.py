"""Promise: bad input gets a clear error, with nothing lost.

Property-based (hypothesis, derandomized so every run tries the same inputs):

* ``strict_json_payload``: any nested value (NaN/inf, numpy scalars and arrays, paths,
  non-string keys, lone surrogates, huge integers, unsupported types) either comes back
  as plain JSON equal in value, or raises PayloadError. Nothing else.
* sidecar paths: any text is either refused with SidecarPathError or is a relative POSIX
  path that stays inside the artifact (no '..', not absolute, no backslash, no NUL).
* manifests (truncated, mutated field by field, wrong types, huge, deeply nested, newer
  schema) and refs (any bytes): reading raises only ArtifactSchemaError /
  ArtifactIntegrityError (refs: ArtifactStoreError), or returns a valid artifact.

Tables: bad configs, each with its exact error (and one through real Snakemake); bundles
(zip-slip, absolute paths, symlinks, duplicates, digest mismatches, zip bombs, ...)
refused by `assay import` with the store and the results byte-for-byte unchanged.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import posixpath
import stat
import struct
import zipfile
from pathlib import Path, PurePosixPath, PureWindowsPath

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from reliability_helpers import REDUCED_CONFIG, assay, kill_writer, report, snapshot
from workflow_helpers import snakemake, write_config

from assay import (
    Artifact,
    ArtifactIntegrityError,
    ArtifactSchemaError,
    ArtifactSidecarRef,
    ArtifactStore,
    ArtifactStoreError,
    ConfigError,
    PayloadError,
    ReplicateArtifact,
    SidecarPathError,
    canonical_json,
    read_ref,
    strict_json_payload,
)
from assay.pipeline.config import Study
from assay.store.sidecar_paths import check_sidecar_path

HYPOTHESIS = settings(max_examples=200, deadline=None, derandomize=True, database=None,
                      suppress_health_check=[HealthCheck.too_slow,
                                             HealthCheck.function_scoped_fixture])
TALLY: dict[str, dict[str, int]] = {}


def count(group: str, outcome: str) -> None:
    TALLY.setdefault(group, {}).setdefault(outcome, 0)
    TALLY[group][outcome] += 1


@pytest.fixture(scope="module", autouse=True)
def _print_tally():
    yield
    report("hostile", **{k: dict(sorted(v.items())) for k, v in sorted(TALLY.items())})


# --- strategies ------------------------------------------------------------------------
# Text includes lone surrogates, NUL and other control characters: JSON text may carry
# them as \\ud800 escapes, and Python strings can hold them.
any_char = st.characters(exclude_categories=())
text = st.one_of(st.text(any_char, max_size=12),
                 st.sampled_from(["\ud800", "a\udfffb", "\x00", "é", "𝔘", ""]))
numpy_scalars = st.one_of(
    st.floats(width=64).map(np.float64), st.floats(width=32).map(np.float32),
    st.floats(width=16).map(np.float16),
    st.integers(-2**63, 2**63 - 1).map(np.int64), st.integers(0, 2**64 - 1).map(np.uint64),
    st.integers(-128, 127).map(np.int8), st.booleans().map(np.bool_),
    st.text(max_size=5).map(np.str_), st.just(np.complex64(1 + 2j)),
    st.just(np.datetime64("2026-01-01")))
numpy_arrays = hnp.arrays(   # float elements include NaN and inf
    dtype=st.sampled_from([np.float64, np.float32, np.int32, np.bool_, np.uint8]),
    shape=hnp.array_shapes(min_dims=0, max_dims=3, max_side=4))
unsupported = st.sampled_from([b"bytes", {1, 2}, 1 + 2j, object(), Ellipsis, frozenset(),
                               bytearray(b"x"), range(3)])
paths = st.one_of(st.builds(PurePosixPath, st.sampled_from(["a/b.npz", "/abs/x", "rel"])),
                  st.builds(Path, st.sampled_from(["sidecars/x.npz", "/etc/passwd"])))
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(-2**80, 2**80),
    st.sampled_from([-(10**400), 2**63, 2**64, -(2**63) - 1]),
    st.integers(4400, 5000).map(lambda n: 10**n),     # more digits than int() converts
    st.floats(allow_nan=True, allow_infinity=True), text, numpy_scalars, numpy_arrays,
    unsupported, paths)
keys = st.one_of(text, st.integers(), st.none(), st.booleans(), st.floats(),
                 st.tuples(st.integers()), st.text(max_size=4).map(np.str_))
payloads = st.recursive(
    scalars,
    lambda children: st.one_of(st.lists(children, max_size=5),
                               st.tuples(children, children),
                               st.dictionaries(keys, children, max_size=5)),
    max_leaves=25)

PLAIN = (dict, list, str, int, float, bool, type(None))


def _plain(value) -> bool:
    if type(value) not in PLAIN:
        return False
    if isinstance(value, dict):
        return all(type(k) is str and _plain(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_plain(v) for v in value)
    return True


def _same_value(original, out) -> bool:
    """Does ``out`` (plain JSON) hold the value of ``original``?"""
    if isinstance(original, np.ndarray):
        return _same_value(original.tolist(), out)
    if isinstance(original, np.generic):
        return _same_value(original.item(), out)
    if isinstance(original, PurePosixPath | Path):
        return out == original.as_posix()
    if isinstance(original, (list, tuple)):
        return (isinstance(out, list) and len(out) == len(original)
                and all(_same_value(a, b) for a, b in zip(original, out)))
    if isinstance(original, dict):
        return (isinstance(out, dict) and list(out) == [str(k) for k in original]
                and all(_same_value(v, out[str(k)]) for k, v in original.items()))
    if isinstance(original, bool) or original is None:
        return out is original
    for kind in (int, float, str):        # subclasses (IntEnum, np.float64, ...) included
        if isinstance(original, kind):
            return type(out) is kind and out == original
    return False


# --- strict_json_payload ---------------------------------------------------------------
@HYPOTHESIS
@given(payloads)
def test_strict_json_payload_returns_plain_equal_json_or_refuses(value):
    try:
        out = strict_json_payload(value, analysis_name="hostile")
    except PayloadError as exc:
        assert str(exc).startswith("hostile: payload")
        count("strict_json_payload", "refused")
        return
    count("strict_json_payload", "accepted")
    assert _plain(out), out
    assert _same_value(value, out), (value, out)
    encoded = canonical_json(out)              # what a manifest is made of
    assert json.loads(encoded) == out
    assert canonical_json(strict_json_payload(out, analysis_name="again")) == encoded


@pytest.mark.parametrize("value", [
    float("nan"), float("inf"), -float("inf"), np.float32("nan"), {"a": {1: 2}},
    {"x": "\ud800"}, {"\udfff": 1}, 10**5000, 2**64, -(2**63) - 1, {1, 2}, b"x",
    PurePosixPath("/abs"), np.arange(2000), list(range(2000)),
], ids=lambda v: type(v).__name__ if isinstance(v, int) and abs(v) > 2**70 else repr(v)[:30])
def test_strict_json_payload_refuses_known_bad_values(value):
    with pytest.raises(PayloadError):
        strict_json_payload({"k": value}, analysis_name="hostile")


def test_strict_json_payload_refuses_deep_and_cyclic_values():
    deep: list = []
    cursor = deep
    for _ in range(10_000):
        cursor.append([])
        cursor = cursor[0]
    cyclic: list = []
    cyclic.append(cyclic)
    for value in (deep, cyclic):
        with pytest.raises(PayloadError, match="deeper than"):
            strict_json_payload(value, analysis_name="hostile")


# --- sidecar paths ---------------------------------------------------------------------
path_parts = st.one_of(st.sampled_from(["..", ".", "", "a", "b.npz", "C:", "c:", "~", "\\",
                                        "..\\x", "%2e%2e", " ", "\x00", "\ud800", "a\nb",
                                        "sidecars", "/", "//"]), st.text(any_char, max_size=6))
sidecar_paths = st.one_of(st.text(any_char, max_size=30),
                          st.lists(path_parts, min_size=1, max_size=5).map("/".join),
                          st.builds(lambda a, b: a + b, st.sampled_from(["/", "C:", "\\\\"]),
                                    st.text(max_size=10)),
                          st.sampled_from([None, 5, b"a.npz", ["a"], PurePosixPath("a")]))


@HYPOTHESIS
@given(sidecar_paths)
def test_sidecar_paths_are_safe_or_refused(path):
    try:
        out = check_sidecar_path(path)
    except SidecarPathError:
        count("sidecar_paths", "refused")
        return
    count("sidecar_paths", "accepted")
    assert out == path and isinstance(path, str)
    parts = path.split("/")
    assert "\\" not in path and "\x00" not in path
    assert not path.startswith("/") and not PurePosixPath(path).is_absolute()
    assert not PureWindowsPath(path).drive and not PureWindowsPath(path).is_absolute()
    assert ".." not in parts and "." not in parts and "" not in parts
    base = "/srv/artifact"
    assert posixpath.normpath(posixpath.join(base, path)).startswith(base + "/")
    path.encode("utf-8")                            # it can be written into a manifest
    ref = ArtifactSidecarRef(path=path, sha256="0" * 64, size_bytes=0)
    assert json.loads(canonical_json(ref.to_dict()))["path"] == path


# --- manifests -------------------------------------------------------------------------
def _good_manifest() -> dict:
    sidecar = ArtifactSidecarRef(path="sidecars/series.npz", sha256="ab" * 32,
                                 size_bytes=10, metadata={"kind": "series"})
    return ReplicateArtifact(
        analysis_name="hostile", condition_label="c", replicate=1,
        payload={"metrics": {"m": 1.5}, "labels": ["a", "b"]}, sidecars=[sidecar],
        inputs=[{"role": "run", "digest": "sha256:" + "cd" * 32}],
        provenance={"stage": "collect", "settings": {"k": 1}},
        metadata={"settings_fingerprint": "sha256:" + "ef" * 32},
        warnings=["w"]).to_manifest()


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(),
              st.just(10**21),      # (integer literals too long to parse: below)
              st.floats(allow_nan=True, allow_infinity=True), text),
    lambda children: st.one_of(st.lists(children, max_size=4),
                               st.dictionaries(text, children, max_size=4)),
    max_leaves=12)


def _paths(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, prefix + (key,))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _paths(item, prefix + (i,))


@st.composite
def mutated_manifests(draw) -> bytes:
    manifest = _good_manifest()
    for _ in range(draw(st.integers(1, 3))):
        where = draw(st.sampled_from(list(_paths(manifest))[1:]))
        parent = manifest
        for key in where[:-1]:
            parent = parent[key]
        if draw(st.booleans()) and isinstance(parent, dict):
            del parent[where[-1]]
        else:
            parent[where[-1]] = draw(json_values)
    return json.dumps(manifest, allow_nan=True).encode()


@st.composite
def truncated_manifests(draw) -> bytes:
    data = canonical_json(_good_manifest())
    return data[:draw(st.integers(0, len(data) - 1))]


def _nested(depth: int, inner: str = "1") -> bytes:
    return ('{"schema_version":1,"artifact_type":"comparison","analysis_name":"a",'
            '"payload":{"x":' + "[" * depth + inner + "]" * depth + "}}").encode()


manifest_bytes = st.one_of(
    mutated_manifests(), truncated_manifests(), st.binary(max_size=200),
    json_values.map(lambda v: json.dumps(v, allow_nan=True).encode()),
    st.integers(2, 10**6).map(lambda v: canonical_json({**_good_manifest(),
                                                         "schema_version": v})),
    st.integers(30, 200_000).map(_nested),
    st.sampled_from([b'{"schema_version":1,"artifact_type":"run","analysis_name":"a",'
                     b'"condition_label":"c","replicate":' + b"9" * 5000 + b"}",
                     b"\xef\xbb\xbf{}", b"\xff\xfe{\x00}\x00", b"{" * 100_000]))

READ_ERRORS = (ArtifactSchemaError, ArtifactIntegrityError)


@pytest.fixture(scope="module")
def hostile_store(tmp_path_factory):
    return ArtifactStore(tmp_path_factory.mktemp("hostile") / "store")


@HYPOTHESIS
@given(data=manifest_bytes)
def test_hostile_manifests_raise_schema_or_integrity_errors_only(hostile_store, data):
    digest = "sha256:" + hostile_store.objects.put_bytes(data).sha256
    try:
        artifact = hostile_store.read_artifact(digest)
    except READ_ERRORS as exc:
        assert digest in str(exc)
        count("manifests", "refused")
        return
    count("manifests", "accepted")
    assert isinstance(artifact, Artifact)
    canonical_json(artifact.to_manifest())          # what was accepted can be re-written


def _set(manifest: dict, where: tuple, value) -> dict:
    target = manifest
    for key in where[:-1]:
        target = target[key]
    target[where[-1]] = value
    return manifest


@pytest.mark.parametrize("where", [
    ("sidecars", 0, "media_type"), ("sidecars", 0, "path"), ("sidecars", 0, "metadata", "kind"),
    ("warnings", 0), ("inputs", 0, "role"), ("payload", "labels", 0), ("provenance", "stage"),
    ("analysis_name",), ("condition_label",)], ids=lambda w: ".".join(map(str, w)))
def test_lone_surrogate_anywhere_in_a_manifest_is_refused(hostile_store, where):
    """A JSON escape such as \\ud800 decodes to text no UTF-8 manifest can hold: every
    field refuses it (found by these tests: media_type, warnings and input roles did not)."""
    data = json.dumps(_set(_good_manifest(), where, "x\ud800")).encode()
    digest = "sha256:" + hostile_store.objects.put_bytes(data).sha256
    with pytest.raises(ArtifactSchemaError,
                       match="surrogate|must start with a letter|sidecar path"):
        hostile_store.read_artifact(digest)


def test_huge_manifest_is_refused_without_reading_it(hostile_store):
    sha = "12" * 32                                  # any name: the size is checked first
    path = hostile_store.objects.path_for(sha)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        handle.truncate(64 * 1024 * 1024 + 1)        # sparse: costs no disk
    with pytest.raises(ArtifactSchemaError, match="more than"):
        hostile_store.read_artifact("sha256:" + sha)


def test_newer_schema_version_says_upgrade(hostile_store):
    data = canonical_json({**_good_manifest(), "schema_version": 2})
    digest = "sha256:" + hostile_store.objects.put_bytes(data).sha256
    with pytest.raises(ArtifactSchemaError, match="upgrade assay"):
        hostile_store.read_artifact(digest)


# --- refs ------------------------------------------------------------------------------
ref_bytes_strategy = st.one_of(
    st.binary(max_size=300),
    json_values.map(lambda v: json.dumps(v, allow_nan=True).encode()),
    st.dictionaries(text, json_values, max_size=4).map(
        lambda d: json.dumps({"digest": "sha256:" + "ab" * 32, **d}, allow_nan=True).encode()),
    st.sampled_from(["sha256:" + "AB" * 32, "sha256:abc", "md5:" + "ab" * 16, 5, None]).map(
        lambda d: json.dumps({"digest": d}).encode()),
    st.integers(100, 60_000).map(lambda n: b"[" * n + b"]" * n),
    st.just(b'{"digest":"sha256:' + b"ab" * 32 + b'","n":' + b"9" * 5000 + b"}"),
    st.just(b" " * (64 * 1024 + 1)))


@HYPOTHESIS
@given(data=ref_bytes_strategy)
def test_hostile_refs_raise_store_errors_only(tmp_path_factory, data):
    path = tmp_path_factory.getbasetemp() / "hostile-refs" / "replicates" / "a" / "c" / "1.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    try:
        ref = read_ref(path)
    except ArtifactStoreError as exc:
        assert str(path) in str(exc)
        count("refs", "refused")
        return
    count("refs", "accepted")
    assert ref.digest.startswith("sha256:") and len(ref.digest) == 71


@pytest.mark.parametrize("data", [
    pytest.param(b"[" * 30_000 + b"]" * 30_000, id="deeply nested"),   # under 64 KiB
    pytest.param(b'{"digest":"sha256:' + b"ab" * 32 + b'","n":' + b"9" * 5000 + b"}",
                 id="huge integer"),
    pytest.param(b"\xff\xfe\xfd", id="not UTF-8"),
])
def test_hostile_ref_is_reported_by_verify_not_a_crash(tmp_path, data):
    """`assay verify` and `assay ls` over a results/ holding one hostile ref file: a
    clear report (BAD REF, exit 1), never a traceback."""
    root, results = tmp_path / "store", tmp_path / "results"
    ArtifactStore(root)
    path = results / "replicates" / "a" / "c" / "1.json"
    path.parent.mkdir(parents=True)
    path.write_bytes(data)
    code, out, err = assay(root, results, "verify")
    assert code == 1 and "BAD REF replicates/a/c/1.json" in out, out + err
    code, out, err = assay(root, results, "ls")
    assert code in (0, 1) and "Traceback" not in err


HOSTILE_MANIFESTS = {
    "deeply nested": _nested(50_000),
    "huge integer": b'{"schema_version":1,"artifact_type":"run","analysis_name":"a",'
                    b'"condition_label":"c","replicate":' + b"9" * 5000 + b"}",
    "replicates not a list": canonical_json({**_good_manifest(), "artifact_type": "condition",
                                             "replicate": None, "replicates": 5}),
    "surrogate in payload": b'{"schema_version":1,"artifact_type":"comparison",'
                            b'"analysis_name":"a","payload":{"x":"\\ud800"}}',
}


@pytest.mark.parametrize("name", [
    "deeply nested",
    "huge integer",
    "replicates not a list", "surrogate in payload"])
def test_hostile_manifest_is_reported_by_verify_not_a_crash(tmp_path, name):
    root, results = tmp_path / "store", tmp_path / "results"
    store = ArtifactStore(root)
    digest = "sha256:" + store.objects.put_bytes(HOSTILE_MANIFESTS[name]).sha256
    with pytest.raises(READ_ERRORS):
        store.read_artifact(digest)
    from assay import write_ref

    write_ref(results / "comparisons" / "a.json", digest)
    code, out, err = assay(root, results, "verify")
    assert code == 1 and ("BAD MANIFEST" in out or "BAD REF" in out), out + err


# --- bad configs -----------------------------------------------------------------------
def _mutate(**changes):
    def apply(config):
        for key, value in changes.items():
            target = config
            *parents, last = key.split(".")
            for part in parents:
                target = target[int(part)] if part.isdigit() else target[part]
            if value is _DELETE:
                del target[last]
            elif isinstance(target, list):
                target[int(last)] = value
            else:
                target[last] = value
        return config
    return apply


_DELETE = object()
LABEL_RULE = ("must start with a letter or digit and contain only letters, digits, '_', "
              "'.', '+' or '-' (at most 128 characters)")
BAD_CONFIGS = [
    ("missing conditions", _mutate(conditions=_DELETE),
     "config key (top level): 'conditions' is a required property"),
    ("missing runner plugin", _mutate(**{"runner.plugin": _DELETE}),
     "config key runner: 'plugin' is a required property"),
    ("replicates of the wrong type", _mutate(replicates="four"),
     "config key replicates: 'four' is not of type 'integer' or 'array' or 'object'"),
    ("seed of the wrong type", _mutate(seed="x"),
     "config key seed: 'x' is not of type 'integer'"),
    ("conditions as a mapping", _mutate(conditions={"free": {}}),
     "config key conditions: {'free': {}} is not of type 'array'"),
    ("params not a mapping", _mutate(**{"conditions.0.params": [1]}),
     "config key conditions[0].params: [1] is not of type 'object'"),
    ("unknown top-level key", _mutate(unknown_key=1),
     "config key (top level): unknown key 'unknown_key'; known keys: aggregation, analyses, comparison, "
     "conditions, control, numerics, plots, replicates, resources, results, runner, seed, store, store_sharing"),
    ("unknown analysis plugin", _mutate(**{"analyses.gyration.plugin": "no_such_analysis"}),
     "analyses.gyration.plugin: unknown plugin 'no_such_analysis'; known: contact_events, "
     "distance_matrix, md_contacts, md_distance_matrix, md_rgyr, md_rmsd, md_rmsf, "
     "radius_of_gyration; or give 'module:attr'"),
    ("unimportable analysis module", _mutate(**{"analyses.gyration.plugin": "nosuch:Thing"}),
     "analyses.gyration.plugin: cannot import 'nosuch' for plugin 'nosuch:Thing': No module "
     "named 'nosuch'"),
    ("unknown runner plugin", _mutate(**{"runner.plugin": "no_such_runner"}),
     "runner.plugin: unknown plugin 'no_such_runner'; known: import, openmm, polymer_langevin, "
     "python, shell; or give 'module:attr'"),
    ("duplicate condition labels",
     _mutate(conditions=[{"label": "free"}, {"label": "strong"}, {"label": "free"}]),
     "conditions: duplicate condition label 'free'; each condition needs its own label"),
    ("control not a condition", _mutate(control="nope"),
     "control: 'nope' is not one of the condition labels ['free', 'strong']"),
    ("replicates 0", _mutate(replicates=0),
     "config key replicates: 0 is less than the minimum of 1"),
    ("replicate number 0 in a list", _mutate(replicates=[0, 1]),
     "config key replicates[0]: 0 is less than the minimum of 1"),
    ("replicate listed twice", _mutate(replicates=[1, 1]),
     "config key replicates: [1, 1] has non-unique elements"),
    ("replicates true", _mutate(replicates=True),
     "config key replicates: True is not of type 'integer' or 'array' or 'object'"),
    ("'..' in the store path", _mutate(store="../elsewhere/store"),
     "store: '../elsewhere/store' contains '..'; use a path inside the workflow directory "
     "or an absolute path"),
    ("'..' inside the store path", _mutate(store="data/../../store"),
     "store: 'data/../../store' contains '..'; use a path inside the workflow directory or "
     "an absolute path"),
    ("'..' in the results path", _mutate(results="results/.."),
     "results: 'results/..' contains '..'; use a path inside the workflow directory or an "
     "absolute path"),
    ("empty store path", _mutate(store=""), "config key store: '' should be non-empty"),
    ("condition label with '/..'", _mutate(**{"conditions.0.label": "free/../x"}),
     f"config key conditions[0].label: 'free/../x' is not a valid label: it {LABEL_RULE}"),
    ("condition label with a space", _mutate(**{"conditions.0.label": "has space"}),
     f"config key conditions[0].label: 'has space' is not a valid label: it {LABEL_RULE}"),
    ("hidden condition label", _mutate(**{"conditions.0.label": ".hidden"}),
     f"config key conditions[0].label: '.hidden' is not a valid label: it {LABEL_RULE}"),
    ("analysis name with '..'", _mutate(analyses={"../x": {"plugin": "radius_of_gyration"}}),
     f"config key analyses: '../x' is not a valid label: it {LABEL_RULE}"),
    ("no analyses", _mutate(analyses={}), "config key analyses: {} should be non-empty"),
    ("confidence out of range", _mutate(**{"aggregation.confidence": 1.5}),
     "config key aggregation.confidence: 1.5 is greater than or equal to the maximum of 1"),
    ("unknown plot format", _mutate(**{"plots.format": "gif"}),
     "config key plots.format: 'gif' is not one of ['png', 'svg', 'pdf']"),
]


@pytest.mark.parametrize("name, mutate, message", BAD_CONFIGS, ids=[c[0] for c in BAD_CONFIGS])
def test_bad_config_has_its_exact_error(name, mutate, message):
    config = mutate(copy.deepcopy(REDUCED_CONFIG))
    with pytest.raises(ConfigError) as info:
        Study.from_config(config)
    assert str(info.value) == message
    count("configs", "refused")


@pytest.mark.slow
def test_bad_config_stops_snakemake_before_any_job(tmp_path):
    config = copy.deepcopy(REDUCED_CONFIG)
    config["conditions"].append({"label": "free", "params": {}})
    write_config(tmp_path, config)
    proc = snakemake(tmp_path, check=False, timeout=120)
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "conditions: duplicate condition label 'free'" in text
    assert "rule run:" not in text and not (tmp_path / "results").exists()
    assert not (tmp_path / "store").exists() or not any((tmp_path / "store" / "objects")
                                                           .iterdir())


# --- bundles ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def bundle_source(tmp_path_factory):
    """A small store with refs, and a good bundle exported from it by `assay export`."""
    top = tmp_path_factory.mktemp("bundle-source")
    store, results = top / "store", top / "results"
    kill_writer(str(store), str(results), 7)
    bundle = top / "good.zip"
    code, out, err = assay(store, results, "export", str(results / "conditions"), "-o",
                           str(bundle))
    assert code == 0, out + err
    return bundle


def _members(bundle: Path) -> list[tuple[zipfile.ZipInfo, bytes]]:
    with zipfile.ZipFile(bundle) as archive:
        return [(info, archive.read(info)) for info in archive.infolist()]


def _write(path: Path, members: list[tuple[zipfile.ZipInfo | str, bytes]]) -> Path:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")          # zipfile warns about duplicate names
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for info, data in members:
                archive.writestr(info, data)
    return path


def _index(members) -> dict:
    return json.loads(next(d for i, d in members if i.filename == "index.json"))


def _with_index(members, index: dict):
    return [(i, json.dumps(index).encode() if i.filename == "index.json" else d)
            for i, d in members]


def _first_object(members):
    return next((i, d) for i, d in members if i.filename.startswith("objects/"))


def _with_extra_manifest(members, index: dict, data: bytes):
    """The bundle plus one more (hostile) object listed in the index as a manifest."""
    sha = hashlib.sha256(data).hexdigest()
    objects = index["objects"] + [{"digest": "sha256:" + sha, "size_bytes": len(data),
                                   "role": "manifest"}]
    return _with_index(members, {**index, "objects": objects}) + [(f"objects/{sha}", data)], []


def _symlink_info(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


def _lying_bomb(members, tmp_path: Path) -> Path:
    """An object member that inflates to 50 MB of zeros while its zip headers and the
    index both declare the small size of the real object."""
    info, data = _first_object(members)
    bomb = b"\0" * (50 * 1024 * 1024)
    path = _write(tmp_path / "bomb.zip", [(i, bomb if i.filename == info.filename else d)
                                          for i, d in members])
    raw = bytearray(path.read_bytes())
    name = info.filename.encode()
    for signature, size_at in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        at = 0
        while (at := raw.find(signature, at)) >= 0:
            name_at = at + (30 if signature == b"PK\x03\x04" else 46)
            if raw[name_at:name_at + len(name)] == name:
                struct.pack_into("<I", raw, at + size_at, len(data))
            at += 4
    path.write_bytes(bytes(raw))
    return path


def _bad_bundles(good: Path, tmp_path: Path) -> dict[str, tuple[Path, list[str]]]:
    members = _members(good)
    index = _index(members)
    obj_info, obj_data = _first_object(members)
    ref_info = next(i for i, _ in members if i.filename.startswith("refs/"))
    flipped = bytearray(obj_data)
    flipped[len(flipped) // 2] ^= 1
    cases: dict[str, tuple[list, list[str]]] = {
        "zip-slip ../": (members + [("../evil.txt", b"x")], []),
        "zip-slip objects/../../": (members + [("objects/../../evil", b"x")], []),
        "zip-slip refs/../../../": (members + [("refs/../../../evil.json", b"{}")], []),
        "absolute path": (members + [("/tmp/assay-evil.txt", b"x")], []),
        "drive path": (members + [("C:/evil.txt", b"x")], []),
        "backslash path": (members + [("objects\\..\\..\\evil", b"x")], []),
        "symlink entry": (members + [(_symlink_info("refs/conditions/kill/link.json"),
                                      b"/etc/passwd")], []),
        "symlink replacing an object": (
            [(_symlink_info(i.filename) if i.filename == obj_info.filename else i, d)
             for i, d in members], []),
        "duplicate names": (members + [(obj_info.filename, b"other bytes")], []),
        "object digest mismatch": (
            [(i, bytes(flipped) if i.filename == obj_info.filename else d)
             for i, d in members], []),
        "ref digest mismatch": (
            [(i, d + b" " if i.filename == ref_info.filename else d)
             for i, d in members], []),
        "ref path traversal in index": (_with_index(members, {
            **index, "refs": [{**index["refs"][0], "path": "../../evil.json"}]}), []),
        "object missing": ([(i, d) for i, d in members if i.filename != obj_info.filename],
                           []),
        "member not in index": (members + [("objects/" + "0" * 64, b"")], []),
        "newer bundle version": (_with_index(members, {**index, "bundle_version": 99}), []),
        "newer schema version": (_with_index(members, {**index, "schema_version": 99}), []),
        "index not JSON": ([(i, b"{nope" if i.filename == "index.json" else d)
                            for i, d in members], []),
        "no index": ([(i, d) for i, d in members if i.filename != "index.json"], []),
        "honest bomb over --max-bytes": (members, ["--max-bytes", "1000"]),
        "index nested too deeply": ([(i, b"[" * 50_000 + b"]" * 50_000 if i.filename ==
                                      "index.json" else d) for i, d in members], []),
        "manifest nested too deeply": _with_extra_manifest(members, index, _nested(50_000)),
        "manifest with a huge integer": _with_extra_manifest(
            members, index, b'{"schema_version":1,"artifact_type":"comparison",'
                            b'"analysis_name":"a","payload":{"n":' + b"9" * 5000 + b"}}"),
    }
    out = {name: (_write(tmp_path / f"{n}.zip", m), extra)
           for n, (name, (m, extra)) in enumerate(cases.items())}
    out["lying zip bomb"] = (_lying_bomb(members, tmp_path), [])
    out["not a zip"] = (tmp_path / "garbage.zip", [])
    (tmp_path / "garbage.zip").write_bytes(os.urandom(4096))
    out["truncated zip"] = (tmp_path / "truncated.zip", [])
    (tmp_path / "truncated.zip").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    return out


BUNDLE_CASES = ["zip-slip ../", "zip-slip objects/../../", "zip-slip refs/../../../",
                "absolute path", "drive path", "backslash path", "symlink entry",
                "symlink replacing an object", "duplicate names", "object digest mismatch",
                "ref digest mismatch", "ref path traversal in index", "object missing",
                "member not in index", "newer bundle version", "newer schema version",
                "index not JSON", "no index", "honest bomb over --max-bytes",
                "lying zip bomb", "not a zip", "truncated zip", "manifest with a huge integer",
                "index nested too deeply", "manifest nested too deeply"]


@pytest.mark.parametrize("case", BUNDLE_CASES)
def test_hostile_bundle_is_refused_and_changes_nothing(bundle_source, tmp_path, case):
    root, results = tmp_path / "store", tmp_path / "results"
    kill_writer(str(root), str(results), 1)            # a store with content of its own
    (root / "tmp" / "staging-of-a-running-job").mkdir()  # and someone else's staging dir
    (tmp_path / "bundles").mkdir()
    bundle, extra = _bad_bundles(bundle_source, tmp_path / "bundles")[case]
    before = snapshot(root, results)
    code, out, err = assay(root, results, "import", str(bundle), *extra)
    assert code == 1, (case, out, err)
    assert err.startswith("assay import: error: ") and "Traceback" not in err, err
    assert snapshot(root, results) == before, case
    assert not Path("/tmp/assay-evil.txt").exists()
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "evil").exists()
    count("bundles", "refused")


def test_good_bundle_imports_and_verifies(bundle_source, tmp_path):
    """The control: the untampered bundle is accepted, so the refusals above are real."""
    root, results = tmp_path / "store", tmp_path / "results"
    ArtifactStore(root)
    code, out, err = assay(root, results, "import", str(bundle_source))
    assert code == 0, out + err
    code, out, err = assay(root, results, "verify", "--full")
    assert code == 0, out + err

