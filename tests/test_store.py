"""ArtifactStore: round trips, determinism, tamper detection, caches, refs and actions."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import numpy as np
import pytest

from assay import (
    ArtifactIntegrityError,
    ArtifactSchemaError,
    ArtifactSidecarRef,
    ArtifactStore,
    ArtifactStoreError,
    AssayError,
    ConditionArtifact,
    ReplicateArtifact,
    action_key,
    read_ref,
    write_ref,
)

# Pinned digests. They hold on any machine for the same library versions: NPZ bytes depend on
# numpy's .npy header layout and CPython's zipfile streaming layout (both stable for years);
# CSV bytes on pandas' float repr; manifests only on canonical JSON. Parquet is not pinned:
# its bytes embed the pyarrow version.
PINNED_NPZ_SHA256 = "fae0da40fd695e4e9aa8ea6e44f11ef2972178a1ee291c9c7d4221245d993524"
PINNED_NPZ_SIZE = 666
PINNED_CSV_SHA256 = "e6733120347fbf35c8eb12e5cc8aae86d2d11a635e0337623c976aed5faa8af7"
HELLO_SHA256 = "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03"  # b"hello\n"
PINNED_MANIFEST_DIGEST = (
    "sha256:1e53060b5f45f687ca57147ae2e2c5e06af2331d2097fc97c342e5dc339b12d5")


# --- helpers ----------------------------------------------------------------------------
def object_path(root: Path, sha256: str) -> Path:
    return Path(root) / "objects" / sha256[:2] / sha256


def make_writable(path: Path) -> None:
    os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)


def flip_byte(path: Path, index: int, *, keep_mtime: bool = False) -> None:
    """Change one byte in place (same inode, same size); optionally restore the mtime."""
    before = path.stat()
    make_writable(path)
    with open(path, "r+b") as handle:
        handle.seek(index)
        byte = handle.read(1)
        handle.seek(index)
        handle.write(bytes([byte[0] ^ 0x01]))
    if keep_mtime:
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = path.stat()
    assert after.st_ino == before.st_ino and after.st_size == before.st_size


def overwrite_same_size(path: Path, data: bytes) -> None:
    assert path.stat().st_size == len(data)
    make_writable(path)
    with open(path, "r+b") as handle:
        handle.write(data)


def pinned_arrays() -> dict[str, np.ndarray]:
    return {"a": np.arange(12.0).reshape(3, 4), "b": np.arange(4, dtype=np.int64)}


def distance_artifact(store: ArtifactStore, values: np.ndarray | None = None):
    values = np.linspace(0.0, 1.0, 2000).reshape(40, 50) if values is None else values
    ref = store.write_npz_sidecar("sidecars/distance_matrix.npz", distances_nm=values,
                                  metadata={"kind": "distance_matrix"})
    artifact = ReplicateArtifact(analysis_name="distance_matrix", condition_label="Polymer",
                                 replicate=1, payload={"metrics": {"mean": float(values.mean())}},
                                 sidecars=[ref])
    return store.write_artifact(artifact), ref


def same_size_other_npz(tmp_path: Path, values: np.ndarray) -> bytes:
    """A valid NPZ of other values with exactly the same size (a plausible stale file)."""
    other = ArtifactStore(tmp_path / "elsewhere")
    ref = other.write_npz_sidecar("x.npz", distances_nm=values + 1.0)
    return object_path(other.root, ref.sha256).read_bytes()


# --- NPZ sidecars ---------------------------------------------------------------------------
ROUND_TRIP_ARRAYS = {
    "f64": np.linspace(-1.0, 1.0, 30).reshape(5, 6),
    "f32": np.arange(7, dtype=np.float32) / 3,
    "i8": np.array([-128, 0, 127], dtype=np.int8),
    "u16": np.arange(9, dtype=np.uint16).reshape(3, 3),
    "i64": np.arange(-5, 5, dtype=np.int64),
    "flags": np.array([True, False, True]),
    "c128": np.array([1 + 2j, -3.5j]),
    "fortran": np.asfortranarray(np.arange(12.0).reshape(3, 4)),
    "strided": np.arange(40.0).reshape(8, 5)[::2, 1::2],
    "scalar": np.array(3.25),
    "empty": np.zeros((0, 3)),
    "text": np.array(["C3", "O1"]),
    "record": np.array([(1, 0.5), (2, 0.25)], dtype=[("frame", "<i4"), ("d", "<f8")]),
    "big_endian": np.arange(4, dtype=">f8"),
}


@pytest.mark.parametrize("compress", [False, True])
def test_npz_round_trip_keeps_dtype_shape_and_values(tmp_path, compress):
    store = ArtifactStore(tmp_path)
    ref = store.write_npz_sidecar("sidecars/all.npz", metadata={"kind": "all"},
                                  compress=compress, **ROUND_TRIP_ARRAYS)
    assert ref.media_type == "application/x-npz" and ref.metadata == {"kind": "all"}
    assert ref.size_bytes == object_path(tmp_path, ref.sha256).stat().st_size

    for reader in (store, ArtifactStore(tmp_path)):
        for verify in ("stat", "full"):
            with reader.load_npz_sidecar(ref, verify=verify) as data:
                assert sorted(data) == sorted(ROUND_TRIP_ARRAYS)
                for name, expected in ROUND_TRIP_ARRAYS.items():
                    got = data[name]
                    assert got.dtype == expected.dtype, name
                    assert got.shape == expected.shape, name
                    np.testing.assert_array_equal(got, expected, err_msg=name)
                    assert not got.flags.writeable, name  # shared with the cache
    # A plain np.load reads it too: the sidecar is a regular NPZ file.
    with np.load(object_path(tmp_path, ref.sha256)) as plain:
        np.testing.assert_array_equal(plain["f64"], ROUND_TRIP_ARRAYS["f64"])


def test_npz_bytes_do_not_depend_on_keyword_order_path_or_metadata(tmp_path):
    store = ArtifactStore(tmp_path)
    arrays = pinned_arrays()
    first = store.write_npz_sidecar("sidecars/x.npz", a=arrays["a"], b=arrays["b"])
    second = store.write_npz_sidecar("other/y.npz", metadata={"kind": "y"},
                                     b=arrays["b"], a=arrays["a"])
    assert first.sha256 == second.sha256 and first.size_bytes == second.size_bytes
    assert len([p for p in (tmp_path / "objects").rglob("*") if p.is_file()]) == 1


def test_npz_digest_is_pinned(tmp_path):
    ref = ArtifactStore(tmp_path).write_npz_sidecar("sidecars/pinned.npz", **pinned_arrays())
    assert (ref.sha256, ref.size_bytes) == (PINNED_NPZ_SHA256, PINNED_NPZ_SIZE)


def test_compressed_npz_is_deterministic_and_differs_from_stored(tmp_path):
    store = ArtifactStore(tmp_path)
    values = {"a": np.zeros(10_000)}
    one = store.write_npz_sidecar("a.npz", compress=True, **values)
    two = ArtifactStore(tmp_path / "again").write_npz_sidecar("a.npz", compress=True, **values)
    plain = store.write_npz_sidecar("a.npz", **values)
    assert one.sha256 == two.sha256
    assert one.sha256 != plain.sha256 and one.size_bytes < plain.size_bytes


def test_npz_takes_the_seed_keywords_and_stores_only_arrays(tmp_path):
    """The seed API's keywords (compressed, media_type, metadata) are options, not data."""
    store = ArtifactStore(tmp_path)
    values = {"a": np.zeros(10_000)}
    ref = store.write_npz_sidecar("sidecars/a.npz", compressed=True,
                                  media_type="application/x-npz+zip",
                                  metadata={"kind": "a"}, **values)
    assert ref.media_type == "application/x-npz+zip" and ref.metadata == {"kind": "a"}
    assert ref.sha256 == store.write_npz_sidecar("a.npz", compress=True, **values).sha256
    with store.load_npz_sidecar(ref) as data:
        assert list(data) == ["a"]
    plain = store.write_npz_sidecar("a.npz", compressed=False, **values)
    assert plain.size_bytes > ref.size_bytes


@pytest.mark.parametrize("keyword,expected", [
    ("compressed", "a bool"), ("compress", "a bool or None"),
    ("media_type", "a str or None"), ("metadata", "a dict or None")])
def test_npz_refuses_an_array_named_like_a_keyword(tmp_path, keyword, expected):
    with pytest.raises(ArtifactStoreError) as info:
        ArtifactStore(tmp_path).write_npz_sidecar("sidecars/x.npz", x=np.ones(2),
                                                  **{keyword: np.ones(3)})
    assert str(info.value) == (
        f"write_npz_sidecar('sidecars/x.npz'): {keyword} must be {expected}, got ndarray; an "
        f"array cannot be named {keyword!r} (a keyword of write_npz_sidecar): rename it")


def test_npz_refuses_an_array_named_path(tmp_path):
    store = ArtifactStore(tmp_path)
    with pytest.raises(ArtifactStoreError) as info:
        store.write_npz_sidecar("sidecars/x.npz", path=np.ones(2))
    assert str(info.value) == ("write_npz_sidecar('sidecars/x.npz'): an array cannot be "
                               "named 'path'; rename it")
    with pytest.raises(ArtifactStoreError) as info:
        store.write_npz_sidecar(path="sidecars/x.npz", x=np.ones(2))
    assert str(info.value) == ("write_npz_sidecar(None): give the sidecar path first, as a "
                               "positional argument")


def test_npz_refuses_contradicting_compression_spellings(tmp_path):
    with pytest.raises(ArtifactStoreError, match="give compressed= or its older spelling "
                                                 "compress=, not both"):
        ArtifactStore(tmp_path).write_npz_sidecar("x.npz", compressed=True, compress=False,
                                                  x=np.ones(2))


def test_npz_without_arrays_is_refused(tmp_path):
    with pytest.raises(ArtifactStoreError, match="no arrays"):
        ArtifactStore(tmp_path).write_npz_sidecar("sidecars/empty.npz")


def test_object_arrays_are_refused_with_an_assay_error(tmp_path):
    """Regression: this was a bare TypeError (every deliberate error is an AssayError)."""
    store = ArtifactStore(tmp_path)
    with pytest.raises(AssayError, match="object"):
        store.write_npz_sidecar("sidecars/o.npz", o=np.array([{"a": 1}], dtype=object))


def test_a_refused_npz_leaves_nothing_behind(tmp_path):
    store = ArtifactStore(tmp_path)
    with pytest.raises(ArtifactStoreError, match="object"):
        store.write_npz_sidecar("sidecars/o.npz", ok=np.arange(3),
                                o=np.array([None], dtype=object))
    # what a new store holds from the start: its marker and its (empty) object index
    assert not [p for p in tmp_path.rglob("*") if p.is_file()
                and p.relative_to(tmp_path).as_posix() not in (".assay-store",
                                                                "index/snapshot.tsv")]


def test_objects_are_read_only_and_named_by_their_hash(tmp_path):
    store = ArtifactStore(tmp_path)
    ref = store.write_npz_sidecar("sidecars/pinned.npz", **pinned_arrays())
    path = object_path(tmp_path, ref.sha256)
    assert stat.S_IMODE(path.stat().st_mode) == 0o444
    assert hashlib.sha256(path.read_bytes()).hexdigest() == ref.sha256
    assert store.validate_sidecar(ref) == path
    assert not [p for p in (tmp_path / "tmp").rglob("*") if p.is_file()]


def test_an_existing_object_is_never_rewritten(tmp_path):
    store = ArtifactStore(tmp_path)
    ref = store.write_npz_sidecar("sidecars/pinned.npz", **pinned_arrays())
    before = object_path(tmp_path, ref.sha256).stat()
    again = ArtifactStore(tmp_path).write_npz_sidecar("sidecars/pinned.npz", **pinned_arrays())
    after = object_path(tmp_path, again.sha256).stat()
    # Same file, same bytes; only the mtime moves forward (a reuse refreshes gc's grace).
    assert after.st_ino == before.st_ino and after.st_size == before.st_size
    assert after.st_mtime_ns >= before.st_mtime_ns


# --- CSV via resolve/register, table sidecars ----------------------------------------------
def test_csv_via_resolve_and_register(tmp_path):
    store = ArtifactStore(tmp_path)
    staged = store.resolve_sidecar("sidecars/contact_events.csv")
    assert tmp_path in staged.parents and "objects" not in staged.parts
    staged.parent.mkdir(parents=True, exist_ok=True)
    text = "frame,protein_resid,distance_nm\n0,12,0.31\n4,47,0.28\n"
    staged.write_text(text, encoding="utf-8")

    ref = store.register_sidecar("sidecars/contact_events.csv",
                                 metadata={"kind": "contact_events", "n_rows": 2})
    assert ref.media_type == "text/csv"  # guessed from the suffix
    assert ref.sha256 == hashlib.sha256(text.encode()).hexdigest()
    assert ref.size_bytes == len(text)
    assert not staged.exists()

    path = ArtifactStore(tmp_path).validate_sidecar(ref)
    assert path.read_text(encoding="utf-8") == text
    frame = store.load_table_sidecar(ref)
    assert list(frame.columns) == ["frame", "protein_resid", "distance_nm"]
    assert frame["protein_resid"].tolist() == [12, 47]


def test_register_without_a_staged_file_says_what_to_do(tmp_path):
    store = ArtifactStore(tmp_path)
    with pytest.raises(ArtifactStoreError, match="resolve_sidecar"):
        store.register_sidecar("sidecars/never_written.csv")


def _events_frame():
    import pandas as pd

    return pd.DataFrame({"frame": [0, 1, 2], "protein_resid": [10, 11, 12],
                         "distance_nm": [0.5, 0.25, 1.125]})


@pytest.mark.parametrize("suffix", ["csv", "parquet"])
def test_table_sidecar_round_trip(tmp_path, suffix):
    import pandas as pd

    store = ArtifactStore(tmp_path)
    frame = _events_frame()
    ref = store.write_table_sidecar(f"sidecars/events.{suffix}", frame,
                                    metadata={"kind": "events"})
    assert ref.metadata == {"n_rows": 3, "kind": "events"}
    again = ArtifactStore(tmp_path / "again").write_table_sidecar(f"x/events.{suffix}", frame)
    assert again.sha256 == ref.sha256  # deterministic bytes within one installation
    for reader in (store, ArtifactStore(tmp_path)):
        pd.testing.assert_frame_equal(reader.load_table_sidecar(ref), frame)


def test_csv_table_digest_is_pinned(tmp_path):
    ref = ArtifactStore(tmp_path).write_table_sidecar("sidecars/events.csv", _events_frame())
    assert ref.sha256 == PINNED_CSV_SHA256
    assert object_path(tmp_path, ref.sha256).read_bytes() == (
        b"frame,protein_resid,distance_nm\n0,10,0.5\n1,11,0.25\n2,12,1.125\n")


def test_table_sidecar_refuses_other_suffixes(tmp_path):
    with pytest.raises(ArtifactStoreError, match=r"\.csv or \.parquet"):
        ArtifactStore(tmp_path).write_table_sidecar("sidecars/events.xlsx", _events_frame())


def test_table_sidecar_counts_rows_of_a_dict_of_columns(tmp_path):
    """Regression: n_rows was len(dict), i.e. the number of columns."""
    ref = ArtifactStore(tmp_path).write_table_sidecar(
        "sidecars/t.csv", {"a": [1, 2, 3], "b": [4, 5, 6]})
    assert ref.metadata["n_rows"] == 3


def test_ingest_file_copy_keeps_the_source(tmp_path):
    source = tmp_path / "made_elsewhere.dat"
    source.write_bytes(b"hello\n")
    store = ArtifactStore(tmp_path / "store")
    ref = store.ingest_file(source, "inputs/made_elsewhere.dat", link=False)
    assert ref.sha256 == HELLO_SHA256
    assert source.read_bytes() == b"hello\n"
    assert stat.S_IMODE(source.stat().st_mode) != 0o444
    assert store.validate_sidecar(ref, verify="full").read_bytes() == b"hello\n"


def test_ingest_file_link(tmp_path):
    source = tmp_path / "traj.bin"
    source.write_bytes(os.urandom(1000))
    store = ArtifactStore(tmp_path / "store")
    ref = store.ingest_file(source, "inputs/traj.bin")
    assert store.validate_sidecar(ref, verify="full").read_bytes() == source.read_bytes()


# --- manifests and the default ref -----------------------------------------------------------
def pinned_manifest_artifact(store: ArtifactStore) -> ReplicateArtifact:
    hello = store.write_bytes_sidecar("sidecars/hello.txt", b"hello\n",
                                      metadata={"kind": "greeting"})
    assert hello.sha256 == HELLO_SHA256
    return ReplicateArtifact(
        analysis_name="distance_matrix", condition_label="Polymer", replicate=1,
        payload={"n_pairs": 3, "metrics": {"mean_distance_nm": 0.625}}, sidecars=[hello],
        provenance={"source": "pinned", "settings": {"cutoff_nm": 0.5}},
        metadata={"result_kind": "pinned"}, warnings=["first frame skipped"])


def test_manifest_digest_is_pinned_and_has_no_time_or_host(tmp_path):
    import socket

    store = ArtifactStore(tmp_path)
    artifact = pinned_manifest_artifact(store)
    digest = store.write_artifact(artifact)
    assert digest == PINNED_MANIFEST_DIGEST
    manifest = object_path(tmp_path, digest.removeprefix("sha256:")).read_bytes()
    assert manifest == artifact.manifest_bytes()
    assert socket.gethostname().encode() not in manifest
    # Rebuilding the same artifact (dict insertion order differs) gives the same digest.
    again = ReplicateArtifact(
        warnings=["first frame skipped"], metadata={"result_kind": "pinned"},
        provenance={"settings": {"cutoff_nm": 0.5}, "source": "pinned"},
        sidecars=list(artifact.sidecars),
        payload={"metrics": {"mean_distance_nm": 0.625}, "n_pairs": 3},
        replicate=1, condition_label="Polymer", analysis_name="distance_matrix")
    assert ArtifactStore(tmp_path / "other").write_bytes_sidecar(
        "sidecars/hello.txt", b"hello\n").sha256 == HELLO_SHA256
    assert ArtifactStore(tmp_path).write_artifact(again) == digest


def test_read_artifact_by_digest_ref_path_ref_and_default(tmp_path):
    store = ArtifactStore(tmp_path)
    artifact = pinned_manifest_artifact(store)
    digest = store.write_artifact(artifact)
    ref = write_ref(tmp_path / "refs" / "r1.json", digest, artifact_type="replicate")
    write_ref(tmp_path / "result.json", digest, artifact_type="replicate")
    fresh = ArtifactStore(tmp_path)
    for how in (digest, tmp_path / "refs" / "r1.json", str(tmp_path / "refs" / "r1.json"),
                ref, None):
        assert fresh.read_replicate_result(how) == artifact
    assert fresh.read_artifact() == artifact


def test_write_artifact_refuses_sidecars_whose_object_is_missing(tmp_path):
    store = ArtifactStore(tmp_path)
    ghost = ArtifactSidecarRef(path="sidecars/ghost.npz", sha256="0" * 64, size_bytes=10)
    artifact = ReplicateArtifact(analysis_name="a", condition_label="c", replicate=1,
                                 sidecars=[ghost])
    with pytest.raises(ArtifactIntegrityError, match="sidecars/ghost.npz"):
        store.write_artifact(artifact)
    assert not [p for p in (tmp_path / "objects").rglob("*") if p.is_file()]


def test_write_artifact_refuses_wrong_size_sidecars(tmp_path):
    store = ArtifactStore(tmp_path)
    real = store.write_bytes_sidecar("sidecars/hello.txt", b"hello\n")
    lying = ArtifactSidecarRef(path=real.path, sha256=real.sha256, size_bytes=99)
    with pytest.raises(ArtifactIntegrityError, match="99"):
        store.write_artifact(ReplicateArtifact(analysis_name="a", condition_label="c",
                                               replicate=1, sidecars=[lying]))


def test_write_artifact_refuses_missing_inputs(tmp_path):
    store = ArtifactStore(tmp_path)
    artifact = ConditionArtifact(analysis_name="a", condition_label="c",
                                 inputs=["sha256:" + "1" * 64])
    with pytest.raises(ArtifactStoreError, match="not in the store"):
        store.write_artifact(artifact)


# --- tampering ----------------------------------------------------------------------------
def assert_names_everything(error: BaseException, digest: str, ref: ArtifactSidecarRef) -> None:
    message = str(error)
    assert digest in message, message
    assert ref.path in message, message
    assert ref.sha256 in message, message


def _read_back(root: Path, digest: str) -> tuple[ArtifactStore, ArtifactSidecarRef]:
    store = ArtifactStore(root)
    (ref,) = store.read_replicate_result(digest).sidecars
    return store, ref


def test_size_change_is_detected(tmp_path):
    store = ArtifactStore(tmp_path)
    digest, ref = distance_artifact(store)
    path = object_path(tmp_path, ref.sha256)
    make_writable(path)
    with open(path, "ab") as handle:
        handle.write(b"\0")
    for reader in (store, ArtifactStore(tmp_path)):
        (ref,) = reader.read_replicate_result(digest).sidecars
        for verify in ("stat", "full"):
            with pytest.raises(ArtifactIntegrityError, match="bytes, expected") as info:
                reader.validate_sidecar(ref, verify=verify)
            assert_names_everything(info.value, digest, ref)
            with pytest.raises(ArtifactIntegrityError) as info:
                with reader.load_npz_sidecar(ref, verify=verify) as data:
                    data["distances_nm"]
            assert_names_everything(info.value, digest, ref)


def test_same_size_byte_flip_is_detected_by_full_and_by_a_new_store(tmp_path):
    store = ArtifactStore(tmp_path)
    digest, ref = distance_artifact(store)
    store.validate_sidecar(ref)  # verified once: now in the stat cache
    flip_byte(object_path(tmp_path, ref.sha256), ref.size_bytes // 2)

    with pytest.raises(ArtifactIntegrityError, match="different bytes") as info:
        store.validate_sidecar(ref, verify="full")
    assert_names_everything(info.value, digest, ref)

    fresh, fresh_ref = _read_back(tmp_path, digest)
    with pytest.raises(ArtifactIntegrityError, match="different bytes") as info:
        fresh.validate_sidecar(fresh_ref)  # default verify="stat": first read always hashes
    assert_names_everything(info.value, digest, ref)
    with pytest.raises(ArtifactIntegrityError):
        fresh.verify_artifact(digest)


def test_same_size_stale_npz_is_refused_before_any_array_is_returned(tmp_path):
    """A different but valid NPZ of the same size: only the digest can tell."""
    values = np.linspace(0.0, 1.0, 2000).reshape(40, 50)
    store = ArtifactStore(tmp_path)
    digest, ref = distance_artifact(store, values)
    with store.load_npz_sidecar(ref) as data:  # verified once
        data["distances_nm"]
    stale = same_size_other_npz(tmp_path, values)
    overwrite_same_size(object_path(tmp_path, ref.sha256), stale)

    handed_out = []
    with pytest.raises(ArtifactIntegrityError) as info:
        with store.load_npz_sidecar(ref, verify="full") as data:
            handed_out.append(data["distances_nm"])
    assert_names_everything(info.value, digest, ref)

    fresh, fresh_ref = _read_back(tmp_path, digest)
    with pytest.raises(ArtifactIntegrityError) as info:
        with fresh.load_npz_sidecar(fresh_ref) as data:
            handed_out.append(data["distances_nm"])
    assert_names_everything(info.value, digest, ref)
    assert handed_out == []


@pytest.mark.parametrize("where", ["array data", "zip magic"])
@pytest.mark.parametrize("verify", ["stat", "full"])
def test_byte_flip_in_npz_raises_integrity_error_on_load(tmp_path, where, verify):
    """Regression: the zip CRC (array data) or the zip parser (magic) used to fire first,
    as zipfile.BadZipFile / ValueError, before the digest check could name the damage."""
    store = ArtifactStore(tmp_path)
    digest, ref = distance_artifact(store)
    index = ref.size_bytes // 2 if where == "array data" else 0
    flip_byte(object_path(tmp_path, ref.sha256), index)
    fresh, fresh_ref = _read_back(tmp_path, digest)  # first read in this instance: hashes
    with pytest.raises(ArtifactIntegrityError, match="different bytes") as info:
        with fresh.load_npz_sidecar(fresh_ref, verify=verify) as data:
            data["distances_nm"]
    assert_names_everything(info.value, digest, ref)


def test_a_failed_verification_stays_failed_on_the_same_handle(tmp_path):
    """Regression: the second data[name] after a mismatch used to return the array."""
    values = np.linspace(0.0, 1.0, 2000).reshape(40, 50)
    store = ArtifactStore(tmp_path)
    digest, ref = distance_artifact(store, values)
    overwrite_same_size(object_path(tmp_path, ref.sha256), same_size_other_npz(tmp_path, values))
    fresh, fresh_ref = _read_back(tmp_path, digest)
    with fresh.load_npz_sidecar(fresh_ref, verify="full") as data:
        for _ in range(2):
            with pytest.raises(ArtifactIntegrityError):
                data["distances_nm"]
    with pytest.raises(ArtifactIntegrityError):  # nothing bad was left in the LRU either
        with fresh.load_npz_sidecar(fresh_ref) as data:
            data["distances_nm"]


def test_rewriting_a_damaged_object_heals_it(tmp_path):
    """Regressions: publishing found the same-size twin, kept it unhashed, and the writer
    then put it in the stat cache, so damaged bytes were served without a digest check;
    later it kept the damaged twin (hashed), so no rerun could heal it. Now the twin is
    hashed and, being damaged, replaced by the writer's good bytes."""
    values = np.linspace(0.0, 1.0, 2000).reshape(40, 50)
    digest, ref = distance_artifact(ArtifactStore(tmp_path), values)
    path = object_path(tmp_path, ref.sha256)
    overwrite_same_size(path, same_size_other_npz(tmp_path, values))
    store = ArtifactStore(tmp_path)
    again = store.write_npz_sidecar("sidecars/distance_matrix.npz", distances_nm=values)
    assert again.sha256 == ref.sha256
    assert hashlib.sha256(path.read_bytes()).hexdigest() == ref.sha256
    store.validate_sidecar(again)
    with store.load_npz_sidecar(again) as data:
        np.testing.assert_array_equal(data["distances_nm"], values)


def test_saving_over_a_damaged_binary_heals_it(tmp_path):
    """Same as above for save_artifact: a damaged pickle is never unpickled; saving the
    same object again replaces the damaged bytes."""
    store = ArtifactStore(tmp_path)
    model_id = store.save_artifact({"coef": list(range(100))}, "PLS", "model")
    path = object_path(tmp_path, model_id.removeprefix("sha256:"))
    flip_byte(path, path.stat().st_size // 2)
    fresh = ArtifactStore(tmp_path)
    with pytest.raises(ArtifactIntegrityError):
        fresh.load_artifact(model_id)
    assert fresh.save_artifact({"coef": list(range(100))}, "PLS", "model") == model_id
    assert fresh.load_artifact(model_id) == {"coef": list(range(100))}


def test_deletion_is_detected_and_named(tmp_path):
    store = ArtifactStore(tmp_path)
    digest, ref = distance_artifact(store)
    os.unlink(object_path(tmp_path, ref.sha256))
    for reader in (store, ArtifactStore(tmp_path)):
        (ref,) = reader.read_replicate_result(digest).sidecars
        for verify in ("stat", "full"):
            with pytest.raises(ArtifactIntegrityError, match="missing") as info:
                reader.validate_sidecar(ref, verify=verify)
            assert_names_everything(info.value, digest, ref)
            with pytest.raises(ArtifactIntegrityError, match="missing") as info:
                reader.load_npz_sidecar(ref, verify=verify)
            assert_names_everything(info.value, digest, ref)
        with pytest.raises(ArtifactIntegrityError) as info:
            reader.verify_artifact(digest)
        assert_names_everything(info.value, digest, ref)
        assert "assay verify" in str(info.value)  # says what to do


def test_a_damaged_manifest_is_detected(tmp_path):
    store = ArtifactStore(tmp_path)
    digest, _ = distance_artifact(store)
    path = object_path(tmp_path, digest.removeprefix("sha256:"))
    flip_byte(path, 5, keep_mtime=True)
    with pytest.raises(ArtifactIntegrityError, match=digest):
        ArtifactStore(tmp_path).read_artifact(digest)
    os.unlink(path)
    with pytest.raises(ArtifactIntegrityError, match="missing"):
        ArtifactStore(tmp_path).read_artifact(digest)


def test_verify_full_rechecks_the_manifest_object(tmp_path):
    """Regression: the in-process LRU used to serve a manifest whose object was gone."""
    store = ArtifactStore(tmp_path)
    digest, _ = distance_artifact(store)
    key = action_key(stage="collect", plugin="p", code_digest="c", settings={"m": 1})
    store.record_action(key, digest)
    store.read_artifact(digest)  # now in the LRU
    os.unlink(object_path(tmp_path, digest.removeprefix("sha256:")))
    with pytest.raises(ArtifactIntegrityError, match="missing"):
        store.verify_artifact(digest, verify="full")
    with pytest.raises(ArtifactIntegrityError, match="missing"):
        store.verify_artifact(digest, verify="stat")
    with pytest.raises(ArtifactIntegrityError, match="missing"):
        store.read_artifact(digest)
    assert store.lookup_action(key) is None


# --- the stat cache contract -------------------------------------------------------------------
def test_stat_cache_contract(tmp_path):
    """verify="stat" re-hashes an object only when its (size, mtime, ctime, inode) changed
    since this store instance last verified it. ctime cannot be set back, so even a
    same-size in-place edit that restores the mtime is seen; what the stat cache cannot
    see is a change that leaves all four alone (only verify="full" hashes every time).
    """
    store = ArtifactStore(tmp_path)
    digest, ref = distance_artifact(store)
    path = object_path(tmp_path, ref.sha256)
    store.validate_sidecar(ref, verify="full")
    store.clear_cache()  # the LRU is separate; make sure only the stat cache is at play
    assert store.validate_sidecar(ref, verify="stat") == path  # unchanged: trusted

    flip_byte(path, ref.size_bytes // 2, keep_mtime=True)
    with pytest.raises(ArtifactIntegrityError, match="different bytes"):
        store.validate_sidecar(ref, verify="stat")
    with pytest.raises(ArtifactIntegrityError, match="different bytes"):
        store.validate_sidecar(ref, verify="full")
    with pytest.raises(ArtifactIntegrityError, match="different bytes"):
        ArtifactStore(tmp_path).validate_sidecar(ref, verify="stat")


def test_stat_cache_rehashes_when_the_mtime_changes(tmp_path):
    store = ArtifactStore(tmp_path)
    _, ref = distance_artifact(store)
    path = object_path(tmp_path, ref.sha256)
    store.validate_sidecar(ref)
    before = path.stat()
    flip_byte(path, ref.size_bytes // 2)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000))
    with pytest.raises(ArtifactIntegrityError, match="different bytes"):
        store.validate_sidecar(ref, verify="stat")


def test_stat_cache_rehashes_when_the_inode_changes(tmp_path):
    store = ArtifactStore(tmp_path)
    values = np.linspace(0.0, 1.0, 2000).reshape(40, 50)
    _, ref = distance_artifact(store, values)
    path = object_path(tmp_path, ref.sha256)
    store.validate_sidecar(ref)
    before = path.stat()
    replacement = tmp_path / "replacement"
    replacement.write_bytes(same_size_other_npz(tmp_path, values))
    os.utime(replacement, ns=(before.st_atime_ns, before.st_mtime_ns))
    os.replace(replacement, path)
    assert path.stat().st_ino != before.st_ino
    with pytest.raises(ArtifactIntegrityError, match="different bytes"):
        store.validate_sidecar(ref, verify="stat")


# --- the in-process LRU --------------------------------------------------------------------
def test_lru_cache_info_hits_misses_and_clear(tmp_path):
    writer = ArtifactStore(tmp_path)
    digest, ref = distance_artifact(writer)
    model_id = writer.save_artifact({"coef": [1.0, 2.0]}, "PLS", "model")

    store = ArtifactStore(tmp_path)
    assert (store.cache_info().hits, store.cache_info().misses, store.cache_info().size) == (0, 0, 0)
    assert store.cache_info().hit_rate == 0.0
    store.read_artifact(digest)          # miss, then cached
    store.read_artifact(digest)          # hit
    store.load_artifact(model_id)        # miss
    first = store.load_artifact(model_id)  # hit
    info = store.cache_info()
    assert (info.hits, info.misses, info.size) == (2, 2, 2)
    assert info.hit_rate == pytest.approx(0.5)
    assert info["hit_rate"] == info.hit_rate

    with store.load_npz_sidecar(ref) as data:  # first load hashes and fills the LRU
        data["distances_nm"]
    with store.load_npz_sidecar(ref) as data:  # stat-trusted: served from the LRU
        cached = data["distances_nm"]
    with store.load_npz_sidecar(ref) as data:
        assert data["distances_nm"] is cached
    assert store.cache_info().hits == 4 and store.cache_info().size == 3

    store.clear_cache()
    info = store.cache_info()
    assert (info.hits, info.misses, info.size) == (0, 0, 0)
    assert store.load_artifact(model_id) == first
    assert store.cache_info().misses == 1


def test_lru_size_zero_caches_nothing(tmp_path):
    writer = ArtifactStore(tmp_path)
    digest, _ = distance_artifact(writer)
    store = ArtifactStore(tmp_path)
    store.read_artifact(digest)
    assert store.cache_info().size == 1
    store.set_cache_size(0)
    assert store.cache_info().size == 0
    for _ in range(3):
        store.read_artifact(digest)
    info = store.cache_info()
    assert (info.hits, info.size, info.max_size) == (0, 0, 0)
    assert info.misses == 4 and info.hit_rate == 0.0
    with pytest.raises(ValueError):
        store.set_cache_size(-1)


def test_lru_evicts_least_recently_used(tmp_path):
    store = ArtifactStore(tmp_path, cache_size=2)
    ids = [store.save_artifact({"i": i}, "X", "model") for i in range(3)]
    for artifact_id in ids:
        store.load_artifact(artifact_id)
    assert store.cache_info().size == 2
    store.load_artifact(ids[2])
    store.load_artifact(ids[0])  # evicted earlier: a miss
    info = store.cache_info()
    assert (info.hits, info.misses) == (1, 4)


# --- refs ------------------------------------------------------------------------------------
def test_write_ref_is_byte_identical_on_rewrite(tmp_path):
    digest = "sha256:" + "ab" * 32
    path = tmp_path / "results" / "replicates" / "a" / "Polymer" / "1.json"
    ref = write_ref(path, digest, artifact_type="replicate", analysis="a",
                    condition="Polymer", replicate=1)
    first = path.read_bytes()
    before = path.stat()
    again = write_ref(path, digest, replicate=1, condition="Polymer", analysis="a",
                      artifact_type="replicate")
    assert path.read_bytes() == first and first.endswith(b"\n")
    assert path.stat().st_mtime_ns == before.st_mtime_ns  # not even rewritten
    assert again == ref
    back = read_ref(path)
    assert back.digest == digest and back["replicate"] == 1 and back["digest"] == digest
    assert back.identity == {"artifact_type": "replicate", "analysis": "a",
                             "condition": "Polymer", "replicate": 1}
    assert ArtifactStore.read_ref(path) == back
    assert not [p for p in path.parent.iterdir() if p != path]  # no temp files left


@pytest.mark.parametrize("digest", [
    "ab" * 32, "sha256:" + "AB" * 32, "sha256:" + "a" * 63, "sha256:" + "g" * 64,
    "md5:" + "a" * 32, "", None,
])
def test_write_ref_rejects_bad_digests(tmp_path, digest):
    with pytest.raises(ArtifactSchemaError):
        write_ref(tmp_path / "r.json", digest)
    assert not (tmp_path / "r.json").exists()


@pytest.mark.parametrize("content", [
    b"", b"not json", b"[]", b'{"digest": 1}', b'{"digest": "sha256:abc"}',
    b'{"digest": "' + b"ab" * 32 + b'"}', b"\xff\xfe", b'{"digest": "sha256:' + b"a" * 64 + b'"'
    + b" " * 70_000 + b"}",
])
def test_read_ref_rejects_garbage(tmp_path, content):
    path = tmp_path / "r.json"
    path.write_bytes(content)
    with pytest.raises(ArtifactSchemaError):
        read_ref(path)


def test_read_ref_missing_says_what_to_do(tmp_path):
    with pytest.raises(ArtifactStoreError, match="does not exist"):
        read_ref(tmp_path / "nope.json")


def test_read_ref_never_follows_a_link_nor_reads_a_fifo(tmp_path):
    """A ref replaced by a link to another run's ref would serve that run as this one."""
    digest = "sha256:" + "a" * 64
    write_ref(tmp_path / "strong.json", digest)
    (tmp_path / "free.json").symlink_to(tmp_path / "strong.json")
    with pytest.raises(ArtifactStoreError, match=r"free.json is a symbolic link, not a file "
                       r"\(never followed\); delete it and rerun the job that writes it"):
        read_ref(tmp_path / "free.json")
    os.mkfifo(tmp_path / "fifo.json")
    with pytest.raises(ArtifactStoreError, match="fifo.json is a FIFO, not a regular file"):
        read_ref(tmp_path / "fifo.json")
    (tmp_path / "dir.json").mkdir()
    with pytest.raises(ArtifactStoreError, match="dir.json is a directory, not a regular"):
        read_ref(tmp_path / "dir.json")


# --- the action cache ---------------------------------------------------------------------------
def test_action_key_is_deterministic():
    parts = dict(stage="collect", plugin="distance_matrix", code_digest="sha256:" + "0" * 64,
                 settings={"cutoff": 0.5, "selection": "name CA"},
                 inputs=["sha256:" + "1" * 64])
    key = action_key(**parts)
    assert len(key) == 64 and int(key, 16) >= 0
    reordered = dict(reversed(list(parts.items())))
    reordered["settings"] = {"selection": "name CA", "cutoff": 0.5}
    assert action_key(**reordered) == key
    assert action_key(**{**parts, "settings": {"cutoff": 0.6, "selection": "name CA"}}) != key
    assert action_key(**{**parts, "schema_version": 99}) != key
    assert ArtifactStore.action_key(**parts) == key


def test_lookup_action(tmp_path):
    store = ArtifactStore(tmp_path)
    digest, ref = distance_artifact(store)
    key = action_key(stage="collect", plugin="p", code_digest="c", settings={})
    assert store.lookup_action(key) is None  # unknown key
    record_path = store.record_action(key, digest, host="node1", seconds=1.5)
    assert record_path.is_file()
    assert store.lookup_action(key) == digest
    assert ArtifactStore(tmp_path).lookup_action(key) == digest

    os.unlink(object_path(tmp_path, ref.sha256))  # damage the artifact: a cache miss
    assert store.lookup_action(key) is None
    assert ArtifactStore(tmp_path).lookup_action(key) is None


def test_lookup_action_misses_on_a_same_size_damaged_sidecar(tmp_path):
    store = ArtifactStore(tmp_path)
    digest, ref = distance_artifact(store)
    key = action_key(stage="collect", plugin="p", code_digest="c", settings={"x": 1})
    store.record_action(key, digest)
    flip_byte(object_path(tmp_path, ref.sha256), 100, keep_mtime=True)
    assert ArtifactStore(tmp_path).lookup_action(key) is None
    assert store.lookup_action(key, verify="full") is None


def test_lookup_action_misses_on_a_damaged_record(tmp_path):
    store = ArtifactStore(tmp_path)
    digest, _ = distance_artifact(store)
    key = action_key(stage="collect", plugin="p", code_digest="c", settings={"x": 2})
    path = store.record_action(key, digest)
    make_writable(path)
    path.write_bytes(b"{truncated")
    assert store.lookup_action(key) is None


def test_record_action_rejects_bad_digests(tmp_path):
    store = ArtifactStore(tmp_path)
    key = action_key(stage="s", plugin="p", code_digest="c", settings={})
    with pytest.raises(ArtifactSchemaError):
        store.record_action(key, "ab" * 32)
    with pytest.raises(ArtifactSchemaError):
        store.lookup_action("not-a-key")
