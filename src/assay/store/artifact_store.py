"""ArtifactStore: the one entry point for writing and reading artifacts and sidecars."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Literal

from .actions import ACTIONS_DIR, ActionCache
from .artifacts import (
    Artifact,
    Sidecar,
    ComparisonArtifact,
    ConditionArtifact,
    ReplicateArtifact,
    RunArtifact,
    artifact_from_manifest,
)
from .lru import MISSING, CacheInfo, LRUCache
from ..errors import ArtifactIntegrityError, ArtifactSchemaError, ArtifactStoreError
from .hashing import hex_of, is_digest, parse_digest
from .store_root import check_store_root
from .objects import OBJECTS_DIR, TMP_DIR, ObjectStore
from .reading import MAX_MANIFEST_BYTES
from .refs import Ref, read_ref, write_ref
from .sharing import SharingPolicy, SharingSettings, UntrustedWriterError
from .workdirs import WORK_DIR, WorkDirs
from .sidecar_paths import check_sidecar_path, guess_media_type

if TYPE_CHECKING:
    from .npz import VerifiedNpz

Verify = Literal["stat", "full"]
DEFAULT_REF = "result.json"
BINARY_FORMATS = ("joblib",)


def _type_names(expected: type | tuple[type, ...]) -> str:
    types = expected if isinstance(expected, tuple) else (expected,)
    return " or ".join("None" if t is type(None) else f"a {t.__name__}" for t in types)


class ArtifactStore:
    """A content-addressed store rooted at a directory shared by every job.

    Layout: ``objects/<2 hex>/<64 hex>`` (immutable blobs), ``actions/`` (action cache),
    ``tmp/`` (staging on the same filesystem, so publishing is an atomic rename).

    ``sharing`` (default: the ``ASSAY_STORE_SHARING`` environment the workflow sets from
    the study's ``store_sharing``) decides whether the store is kept shared by a group and
    whose action records and pickles count (``assay.store.sharing``).
    """

    def __init__(self, root: str | os.PathLike[str], *, cache_size: int = 256,
                 sharing: SharingSettings | None = None) -> None:
        self.root = Path(root)
        settings = sharing if sharing is not None else SharingSettings.from_env()
        try:
            st: os.stat_result | None = os.stat(self.root)
        except FileNotFoundError:
            st = None
            SharingPolicy(self.root, settings, shared=bool(settings.shared)).make_dirs(self.root)
        if st is not None and not stat.S_ISDIR(st.st_mode):
            raise ArtifactStoreError(f"store root {self.root} exists and is not a directory")
        self.sharing = SharingPolicy.for_store(self.root, settings, st=st)
        check_store_root(self.root, adopt=st is None or os.access(self.root, os.W_OK),
                         sharing=self.sharing)
        root = os.fspath(self.root)
        for sub in (OBJECTS_DIR, ACTIONS_DIR, TMP_DIR):
            self.sharing.make_dirs(f"{root}/{sub}")
        self.objects = ObjectStore(self.root, self.sharing)
        self.actions = ActionCache(self.root / ACTIONS_DIR, self.sharing)
        self.work = WorkDirs(self.root / WORK_DIR, self.sharing)
        self._cache = LRUCache(cache_size)
        self._staging = self.objects.tmp_dir / f"staging-{uuid.uuid4().hex}"
        self._owners: dict[tuple[str, str], str] = {}

    def __repr__(self) -> str:
        return f"ArtifactStore({str(self.root)!r})"

    @contextlib.contextmanager
    def scratch_dir(self, prefix: str) -> Iterator[Path]:
        """A private directory in the store's tmp folder, removed at exit: on the objects'
        filesystem (files made there publish by rename), and one a crash leaves is gc's."""
        import tempfile

        self.sharing.make_dirs(self.objects.tmp_dir)
        with tempfile.TemporaryDirectory(dir=self.objects.tmp_dir, prefix=prefix) as tmp:
            yield Path(tmp)

    # --- sidecars: write ---------------------------------------------------------------
    def _ref(self, path: str, stored: Any, media_type: str | None,
             metadata: dict[str, Any] | None) -> Sidecar:
        return Sidecar(path=path, sha256=stored.sha256, size_bytes=stored.size_bytes,
                                  media_type=media_type or guess_media_type(path),
                                  metadata=dict(metadata or {}))

    def write_npz_sidecar(self, path: str | None = None, /, *, compressed: bool = False,
                          media_type: str | None = None,
                          metadata: dict[str, Any] | None = None,
                          compress: bool | None = None, **arrays: Any) -> Sidecar:
        """Write arrays as a deterministic NPZ, hashing on a second core while writing.

        The keywords are the seed API's (``compress`` is an older spelling of
        ``compressed``). An array may not be named like a keyword: it would be taken as
        the option, or stored as data, silently.
        """
        from .npz import write_npz_stream

        where = f"write_npz_sidecar({path!r})"
        if path is None or "path" in arrays:
            raise ArtifactStoreError(
                f"{where}: " + ("an array cannot be named 'path'; rename it" if path is not None
                                else "give the sidecar path first, as a positional argument"))
        options = {"compressed": (compressed, bool), "compress": (compress, (bool, type(None))),
                   "media_type": (media_type, (str, type(None))),
                   "metadata": (metadata, (dict, type(None)))}
        for name, (value, expected) in options.items():
            if not isinstance(value, expected):
                raise ArtifactStoreError(
                    f"{where}: {name} must be {_type_names(expected)}, got "
                    f"{type(value).__name__}; an array cannot be named {name!r} (a keyword of "
                    "write_npz_sidecar): rename it")
        if compress is not None:
            if compressed and not compress:
                raise ArtifactStoreError(f"{where}: give compressed= or its older spelling "
                                         "compress=, not both")
            compressed = compress
        check_sidecar_path(path)
        if not arrays:
            raise ArtifactStoreError(f"{where} got no arrays")
        stored = self.objects.put_stream(
            lambda handle: write_npz_stream(handle, arrays, compress=compressed))
        if stored.fresh:  # an existing twin was not re-hashed, so it is not vouched for
            self.objects.mark_verified(stored.sha256, self.objects.path_for(stored.sha256))
        return self._ref(path, stored, media_type or "application/x-npz", metadata)

    def write_table_sidecar(self, path: str, frame: Any, *,
                            metadata: dict[str, Any] | None = None) -> Sidecar:
        """Write a DataFrame (or dict of columns) as CSV or Parquet, chosen by suffix."""
        from .tables import TABLE_FORMATS, table_bytes, table_format

        check_sidecar_path(path)
        suffix = table_format(path)
        data, n_rows = table_bytes(frame, suffix)
        stored = self.objects.put_bytes(data)
        meta = {"n_rows": n_rows, **(metadata or {})}
        return self._ref(path, stored, TABLE_FORMATS[suffix], meta)

    def write_bytes_sidecar(self, path: str, data: bytes, *, media_type: str | None = None,
                            metadata: dict[str, Any] | None = None) -> Sidecar:
        check_sidecar_path(path)
        return self._ref(path, self.objects.put_bytes(bytes(data)), media_type, metadata)

    def resolve_sidecar(self, path: str) -> Path:
        """A private staging path to write a sidecar to; ``register_sidecar`` ingests it."""
        check_sidecar_path(path)
        return self._staging.joinpath(*path.split("/"))

    def register_sidecar(self, path: str, *, media_type: str | None = None,
                         metadata: dict[str, Any] | None = None) -> Sidecar:
        """Move a file written at ``resolve_sidecar(path)`` into the store and describe it."""
        staged = self.resolve_sidecar(path)
        if not staged.is_file() or staged.is_symlink():
            raise ArtifactStoreError(
                f"register_sidecar({path!r}): nothing staged at {staged}; write the file at "
                "store.resolve_sidecar(path) first")
        stored = self.objects.put_file(staged, move=True)
        return self._ref(path, stored, media_type, metadata)

    def ingest_file(self, source: str | os.PathLike[str], path: str, *,
                    media_type: str | None = None, metadata: dict[str, Any] | None = None,
                    link: bool = False) -> Sidecar:
        """Ingest a file that already exists elsewhere without changing it.

        The object is a copy (a reflink clone where the filesystem has one), so no process
        holding the original open can change published bytes. ``link=True`` hard-links
        instead (no second copy): only for a file nothing will ever write again, since
        the object then shares its inode, and its mode, with the original.
        """
        check_sidecar_path(path)
        source = Path(source)
        if not source.is_file():
            raise ArtifactStoreError(f"cannot ingest {source}: not a regular file")
        stored = self.objects.link_file(source) if link else None
        if stored is None:
            stored = self.objects.put_file(source, move=False)
        return self._ref(path, stored, media_type, metadata)

    def sidecar_ref_for(self, digest: str, path: str, *, media_type: str | None = None,
                        metadata: dict[str, Any] | None = None) -> Sidecar:
        """Describe an object already in the store (e.g. a ``save_object`` id) as a sidecar."""
        sha = hex_of(digest) or digest
        check_sidecar_path(path)
        obj = self.objects.verify(sha, None, what=f"sidecar {path}")
        from .objects import StoredObject

        return self._ref(path, StoredObject(sha, obj.stat().st_size), media_type, metadata)

    # --- sidecars: read ----------------------------------------------------------------
    def _what(self, ref: Sidecar) -> str:
        owner = self._owners.get((ref.path, ref.sha256))
        return f"artifact {owner} sidecar {ref.path!r}" if owner else f"sidecar {ref.path!r}"

    def validate_sidecar(self, ref: Sidecar, *, verify: Verify = "stat") -> Path:
        """Verified, read-only path to a sidecar's bytes (size and SHA-256 checked)."""
        if not isinstance(ref, Sidecar):
            raise ArtifactStoreError(f"validate_sidecar expects an Sidecar, got {ref!r:.80}")
        return self.objects.verify(ref.sha256, ref.size_bytes, what=self._what(ref),
                                   full=verify == "full")

    def load_npz_sidecar(self, ref: Sidecar, *, verify: Verify = "stat") -> "VerifiedNpz":
        """Open an NPZ sidecar; arrays are handed out only after the digest checks out."""
        from .npz import VerifiedNpz

        if not isinstance(ref, Sidecar):
            raise ArtifactStoreError(f"load_npz_sidecar expects an Sidecar, got {ref!r:.80}")
        what = self._what(ref)
        path = self.objects.path_for(ref.sha256)
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise self.objects._damaged(ref.sha256, what, "is missing") from None
        except PermissionError:
            raise self.objects.unreadable(ref.sha256, what) from None
        if size != ref.size_bytes:
            self.objects.forget(ref.sha256)
            raise self.objects._damaged(ref.sha256, what,
                                        f"has {size} bytes, expected {ref.size_bytes}")
        trusted = verify != "full" and self.objects.is_stat_verified(ref.sha256)

        def mismatch(actual: str) -> Exception:
            self.objects.forget(ref.sha256)
            self._cache.discard(lambda key: key[:2] == ("npz", ref.sha256))
            return self.objects._damaged(ref.sha256, what, f"has different bytes (sha256:{actual})")

        def cache_get(name: str) -> Any:
            if not trusted:
                return None
            hit = self._cache.get(("npz", ref.sha256, name))
            return None if hit is MISSING else hit

        try:
            return VerifiedNpz(
                path, expected_sha256=None if trusted else ref.sha256, on_mismatch=mismatch,
                on_verified=lambda: self.objects.mark_verified(ref.sha256, path),
                cache_get=cache_get,
                cache_put=lambda name, array: self._cache.put(("npz", ref.sha256, name), array,
                                                              array.nbytes))
        except PermissionError:
            raise self.objects.unreadable(ref.sha256, what) from None

    def load_table_sidecar(self, ref: Sidecar, *, verify: Verify = "stat") -> Any:
        from .tables import read_table, table_format

        return read_table(self.validate_sidecar(ref, verify=verify), table_format(ref.path))

    # --- artifacts ---------------------------------------------------------------------
    def write_artifact(self, artifact: Artifact) -> str:
        """Store the canonical manifest; every sidecar it names must already be stored."""
        if not isinstance(artifact, Artifact):
            raise ArtifactStoreError(f"write_artifact expects an artifact, got {artifact!r:.80}")
        for ref in artifact.sidecars:
            self.objects.verify(ref.sha256, ref.size_bytes,
                                what=f"{artifact.artifact_type} artifact sidecar {ref.path!r}")
        for item in artifact.inputs:
            if not self.objects.exists(parse_digest(item["digest"])):
                raise ArtifactStoreError(
                    f"{artifact.artifact_type} artifact input {item['digest']} "
                    f"({item['role']}) is not in the store {self.root}")
        data = artifact.manifest_bytes()
        stored = self.objects.put_bytes(data)
        digest = stored.digest
        if stored.fresh:
            self.objects.mark_verified(stored.sha256, self.objects.path_for(stored.sha256))
            self._cache.put(("manifest", stored.sha256), data, len(data))
        for ref in artifact.sidecars:
            self._owners[(ref.path, ref.sha256)] = digest
        return digest

    def _digest_of(self, ref: str | os.PathLike[str] | Ref | None) -> str:
        if ref is None:
            default = self.root / DEFAULT_REF
            if not default.exists():
                raise ArtifactStoreError(
                    f"no artifact given and no default ref {default}; pass a digest or a ref path")
            return read_ref(default).digest
        if isinstance(ref, Ref):
            return ref.digest
        if isinstance(ref, str) and is_digest(ref):
            return ref
        if isinstance(ref, str) and (ref.lower().startswith("sha256:") or (
                len(ref) == 64 and all(c in "0123456789abcdefABCDEF" for c in ref))):
            if not os.path.exists(ref):
                parse_digest(ref)  # raises with the exact spelling rule
        return read_ref(ref).digest

    def manifest_bytes(self, ref: str | os.PathLike[str] | Ref | None, *,
                       verify: Verify = "stat") -> tuple[str, bytes]:
        """Verified manifest bytes; the LRU serves them only while the object still exists."""
        digest = self._digest_of(ref)
        sha = parse_digest(digest)
        path = self.objects.path_for(sha)
        if verify != "full":
            cached = self._cache.get(("manifest", sha))
            if cached is not MISSING and self.objects.is_stat_verified(sha):
                return digest, cached
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise self.objects._damaged(sha, f"artifact {digest}", "is missing") from None
        if size > MAX_MANIFEST_BYTES:
            raise ArtifactSchemaError(f"artifact {digest}: manifest is {size} bytes, more than "
                                      f"{MAX_MANIFEST_BYTES}; not a manifest")
        data = self.objects.read_bytes(sha, None, what=f"artifact {digest}")
        self.objects.mark_verified(sha, path)
        self._cache.put(("manifest", sha), data, len(data))
        return digest, data

    def read_artifact(self, ref: str | os.PathLike[str] | Ref | None = None,
                      *, verify_sidecars: bool = False, verify: Verify = "stat") -> Artifact:
        """Read and validate a manifest by digest, ref file or Ref."""
        digest, data = self.manifest_bytes(ref, verify=verify)
        try:
            manifest = json.loads(data)
        except RecursionError:
            raise ArtifactSchemaError(f"artifact {digest} is not a manifest: its JSON is "
                                      "nested too deeply") from None
        except ValueError as exc:   # also bad UTF-8 and integers too long to convert
            raise ArtifactSchemaError(f"artifact {digest} is not a JSON manifest ({exc})") from None
        artifact = artifact_from_manifest(manifest, where=f"artifact {digest}")
        for sidecar in artifact.sidecars:
            self._owners[(sidecar.path, sidecar.sha256)] = digest
            if verify_sidecars:
                self.validate_sidecar(sidecar)
        return artifact

    def _read_typed(self, ref: Any, cls: type[Artifact]) -> Any:
        artifact = self.read_artifact(ref)
        if not isinstance(artifact, cls):
            raise ArtifactStoreError(
                f"{self._digest_of(ref)} is a {artifact.artifact_type} artifact, "
                f"not a {cls.artifact_type} artifact")
        return artifact

    def read_run_result(self, ref: Any = None) -> RunArtifact:
        return self._read_typed(ref, RunArtifact)

    def read_replicate_result(self, ref: Any = None) -> ReplicateArtifact:
        return self._read_typed(ref, ReplicateArtifact)

    def read_condition_result(self, ref: Any = None) -> ConditionArtifact:
        return self._read_typed(ref, ConditionArtifact)

    def read_comparison_result(self, ref: Any = None) -> ComparisonArtifact:
        return self._read_typed(ref, ComparisonArtifact)

    def verify_artifact(self, ref: Any, *, verify: Verify = "full") -> Artifact:
        """Manifest plus every sidecar, hashed; raises on the first damaged object."""
        artifact = self.read_artifact(ref, verify=verify)
        for sidecar in artifact.sidecars:
            self.validate_sidecar(sidecar, verify=verify)
        return artifact

    # --- binary objects (models, fitted transformers) -----------------------------------
    def save_object(self, obj: Any, operator_class: str, artifact_type: str,
                    format: str = "joblib") -> str:
        """Pickle with joblib into the store; identical bytes give the identical id."""
        if format not in BINARY_FORMATS:
            raise ArtifactStoreError(f"save_object format {format!r} is not supported; "
                                     f"use one of {BINARY_FORMATS}")
        if not isinstance(operator_class, str) or not isinstance(artifact_type, str):
            raise ArtifactStoreError("save_object needs operator_class and artifact_type strings")
        import joblib

        stored = self.objects.put_stream(lambda handle: joblib.dump(obj, handle))
        self.objects.forget_origin(stored.sha256)   # we made these bytes ourselves now
        if stored.fresh:
            self.objects.mark_verified(stored.sha256, self.objects.path_for(stored.sha256))
        return stored.digest

    def load_object(self, artifact_id: str, *, verify: Verify = "stat",
                    trust_imported: bool = False) -> Any:
        """Unpickle only after the digest verifies, and only what a trusted writer stored
        (unpickling runs code), never bytes imported from a bundle unless
        ``trust_imported``; results are cached in-process."""
        sha = parse_digest(artifact_id)
        origin = self.objects.origin(sha)
        if origin is not None and not trust_imported:
            raise UntrustedWriterError(
                f"refusing to unpickle binary {artifact_id}: it came from "
                f"{origin.get('bundle', 'a bundle')} (sha256:{origin.get('bundle_sha256')}) "
                "through `assay import`. A bundle carries data, not authority, and unpickling "
                "runs code: recompute and save_object it yourself, or pass "
                "trust_imported=True if you trust whoever made that bundle")
        cached = self._cache.get(("binary", sha))
        # Like manifests and arrays: served from memory only while the object on disk is
        # unchanged since it was verified (a deleted or rewritten object is re-checked).
        if cached is not MISSING and verify != "full" and self.objects.is_stat_verified(sha):
            return cached
        path = self.objects.verify(sha, None, what=f"binary {artifact_id}", full=verify == "full")
        owner = path.stat().st_uid
        if not self.sharing.is_trusted(owner):
            raise UntrustedWriterError(
                f"refusing to unpickle binary {artifact_id}: "
                + self.sharing.untrusted("its object", path, owner)
                + ". Unpickling runs code: save the object again yourself (save_object), or "
                "add its writer to store_sharing.trusted in the study config")
        import joblib

        obj = joblib.load(path)
        self._cache.put(("binary", sha), obj, path.stat().st_size)
        return obj

    # The seed API's names: an "artifact" here is always a manifest, a pickled Python
    # object is a binary object, so the library says save_object/load_object.
    save_artifact = save_object
    load_artifact = load_object

    def get_artifact_path(self, artifact_id: str) -> Path:
        return self.objects.verify(parse_digest(artifact_id), None, what=f"object {artifact_id}")

    # --- refs and the action cache ------------------------------------------------------
    @staticmethod
    def write_ref(path: str | os.PathLike[str], digest: str, **identity: Any) -> Ref:
        return write_ref(path, digest, **identity)

    @staticmethod
    def read_ref(path: str | os.PathLike[str]) -> Ref:
        return read_ref(path)

    @staticmethod
    def action_key(**parts: Any) -> str:
        from .actions import action_key

        return action_key(**parts)

    def lookup_action(self, key: str, *, verify: Verify = "stat") -> str | None:
        """The cached artifact digest for this action, only if a trusted writer recorded it
        and the artifact and its sidecars verify (and are stored by trusted writers)."""
        record = self.actions.read(key, trusted_only=True)
        if record is None:
            return None
        # A hit is about to be named by a new ref: refresh each object's mtime before it is
        # verified, so a gc running meanwhile sees them as young and keeps them.
        try:
            if not self.objects.refresh(parse_digest(record["digest"])):
                return None
            artifact = self.read_artifact(record["digest"], verify=verify)
            for sidecar in artifact.sidecars:
                if not self.objects.refresh(sidecar.sha256):
                    return None
                self.validate_sidecar(sidecar, verify=verify)
        except (ArtifactIntegrityError, ArtifactSchemaError):
            return None
        return record["digest"]

    def record_action(self, key: str, digest: str, **record: Any) -> Path:
        return self.actions.record(key, digest, **record)

    # --- cache -------------------------------------------------------------------------
    def cache_info(self) -> CacheInfo:
        return self._cache.info()

    def clear_cache(self) -> None:
        self._cache.clear()

    def set_cache_size(self, size: int) -> None:
        self._cache.resize(size)

    @property
    def cache_size(self) -> int:
        return self._cache.max_size

    @cache_size.setter
    def cache_size(self, size: int) -> None:
        self._cache.resize(size)

    def close(self) -> None:
        shutil.rmtree(self._staging, ignore_errors=True)

    def __enter__(self) -> "ArtifactStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
