"""Export and import bundles: zip files holding artifacts with their whole provenance closure.

Layout of a bundle::

    index.json            every object (digest, size, role) and every ref (path, digest)
    objects/<64 hex>      manifests and sidecars, named by their SHA-256
    refs/<results path>   the exported refs, e.g. refs/conditions/rdf/ctrl.json

Import trusts nothing in the file. Member names must be exactly the ones above (no
absolute paths, no ``..``, no links, no duplicates, no extra members); the index must be
of a known format and schema version; the declared sizes must agree and stay under a cap
(zip bombs); every byte is hashed while it is unpacked into ``store/tmp`` and must match
its name. Only after every check passes are the objects published (atomic renames) and the
refs written. A refused bundle leaves the store and the results exactly as they were.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
import uuid
import zipfile
import zlib
from collections import Counter
from dataclasses import dataclass, field
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from ..store.artifacts import SCHEMA_VERSION, artifact_from_manifest
from ..store.atomic import atomic_path, atomic_write_bytes, write_all
from ..errors import ArtifactIntegrityError, ArtifactStoreError, AssayError, BundleError
from ..store.hashing import (
    canonical_json,
    format_digest,
    hash_file,
    is_digest,
    open_regular,
    is_sha256_hex,
    parse_digest,
)
from ..pipeline.layout import REF_DIRS
from ..store.objects import ObjectStore
from .inventory import (
    RefEntry,
    input_shas,
    looks_like_manifest,
    sidecar_shas,
    walk_manifests,
)
from ..store.refs import MAX_REF_BYTES, read_ref, ref_bytes

BUNDLE_FORMAT = "assay-bundle"
BUNDLE_VERSION = 1
INDEX = "index.json"
MAX_INDEX_BYTES = 256 * 1024 * 1024
MAX_MEMBERS = 10_000_000
# A bundle is data from elsewhere: by default it may not fill more than this of the disk
# (the free-space check comes on top). Larger ones are imported with an explicit --max-bytes.
DEFAULT_MAX_BYTES = 4 * 1024 ** 3
CHUNK = 1 << 20
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
_OBJECT_MEMBER = re.compile(r"^objects/([0-9a-f]{64})$")
_DRIVE = re.compile(r"^[A-Za-z]:")




@dataclass
class BundleSummary:
    path: Path
    objects: int = 0
    bytes: int = 0
    artifacts: int = 0
    refs: list[str] = field(default_factory=list)
    new_objects: int = 0          # import: objects the store did not have yet

    def to_dict(self) -> dict[str, Any]:
        return {"bundle": str(self.path), "objects": self.objects, "bytes": self.bytes,
                "artifacts": self.artifacts, "refs": self.refs, "new_objects": self.new_objects}


# --- export ----------------------------------------------------------------------------
OBJECTS_PREFIX = "objects/"   # a bundle's (and a crate's) folder of objects, named by sha256


def zip_member_info(name: str, size: int, compress: bool) -> zipfile.ZipInfo:
    """A member with fixed time and mode, so a bundle (or crate) of the same objects is
    the same bytes."""
    info = zipfile.ZipInfo(name, date_time=_ZIP_EPOCH)
    info.compress_type = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    info.external_attr = (stat.S_IFREG | 0o644) << 16
    info.file_size = size
    return info


def export_bundle(store_root: str | os.PathLike[str], output: str | os.PathLike[str], *,
                  refs: list[RefEntry] = (), digests: list[str] = ()) -> BundleSummary:
    """Write the artifacts named by ``refs`` and ``digests``, with their closure, to a zip.

    Every object is hashed while it is copied in; a damaged store aborts the export.
    The same content always gives the same bundle bytes (sorted members, fixed times).
    """
    store_root, output = Path(store_root), Path(output)
    for entry in refs:
        if entry.digest is None:
            raise ArtifactStoreError(f"cannot export ref {entry.name}: {entry.problem}")
    roots = sorted({e.sha256 for e in refs} | {parse_digest(d) for d in digests})
    if not roots:
        raise ArtifactStoreError("nothing to export: name at least one ref or digest")
    graph = walk_manifests(store_root, roots, verify=True)
    for sha in sorted(graph.missing):
        raise ArtifactIntegrityError(f"cannot export: artifact sha256:{sha} is missing from "
                                     f"the store {store_root}")
    for sha, problem in sorted({**graph.damaged, **graph.not_manifest}.items()):
        raise ArtifactIntegrityError(f"cannot export: object sha256:{sha} {problem}")
    sizes: dict[str, int] = {}
    for sha, manifest in graph.manifests.items():
        artifact_from_manifest(manifest, where=f"artifact sha256:{sha}")
        for side, size in sidecar_shas(manifest):
            sizes[side] = size  # an int: artifact_from_manifest has checked it
    objects = [(sha, "manifest", graph.raw_sizes[sha]) for sha in sorted(graph.manifests)]
    objects += [(sha, "sidecar", sizes[sha]) for sha in sorted(sizes)
                if sha not in graph.manifests]
    ref_items = []
    for entry in sorted(refs, key=lambda e: e.name):
        name = _ref_member_path(entry.name)
        data = canonical_json({"digest": entry.digest, **entry.identity}) + b"\n"
        ref_items.append((name, entry.digest, data))
    if len({n for n, _, _ in ref_items}) != len(ref_items):
        raise ArtifactStoreError("two exported refs have the same path under results/")

    index = {
        "format": BUNDLE_FORMAT, "bundle_version": BUNDLE_VERSION,
        "schema_version": SCHEMA_VERSION,
        "roots": [format_digest(r) for r in roots],
        "objects": [{"digest": format_digest(s), "size_bytes": n, "role": role}
                    for s, role, n in objects],
        "refs": [{"path": n, "digest": d, "sha256": hashlib.sha256(b).hexdigest(),
                  "size_bytes": len(b)} for n, d, b in ref_items],
    }
    total = 0
    with atomic_path(output) as tmp:
        with zipfile.ZipFile(tmp, "w", allowZip64=True) as archive:
            for sha, role, size in objects:
                total += copy_object_into_zip(archive, store_root, sha, role, size)
            for name, _, data in ref_items:
                archive.writestr(zip_member_info(f"refs/{name}", len(data), True), data)
            data = json.dumps(index, indent=1, sort_keys=True).encode() + b"\n"
            archive.writestr(zip_member_info(INDEX, len(data), True), data)
    return BundleSummary(output, objects=len(objects), bytes=total,
                         artifacts=len(graph.manifests), refs=[n for n, _, _ in ref_items])


def copy_object_into_zip(archive: zipfile.ZipFile, store_root: Path, sha: str, role: str,
                         size: int) -> int:
    """Copy one object in, hashing it on the way: a damaged store aborts the export."""
    path = ObjectStore(store_root).path_for(sha)
    try:
        handle = open(open_regular(path), "rb")
    except FileNotFoundError:
        raise ArtifactIntegrityError(f"cannot export: {role} object sha256:{sha} is missing "
                                     f"({path}); run `assay verify`") from None
    except OSError as exc:
        raise ArtifactIntegrityError(f"cannot export: {role} object sha256:{sha} ({path}) is "
                                     f"{exc.strerror}; run `assay verify --repair`") from None
    digest, copied = hashlib.sha256(), 0
    info = zip_member_info(f"{OBJECTS_PREFIX}{sha}", size, role == "manifest")
    with handle, archive.open(info, "w", force_zip64=size >= 2 ** 31) as member:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
            member.write(chunk)
            copied += len(chunk)
    if digest.hexdigest() != sha or copied != size:
        raise ArtifactIntegrityError(
            f"cannot export: {role} object sha256:{sha} is damaged (its bytes hash to "
            f"sha256:{digest.hexdigest()}, {copied} bytes); run `assay verify --repair`")
    return copied


def _ref_member_path(name: str) -> str:
    """A ref's path under results/ as it is stored in the bundle (checked like on import)."""
    problem = _unsafe_path(name)
    if problem or name.split("/")[0] not in REF_DIRS or not name.endswith(".json"):
        raise ArtifactStoreError(
            f"ref {name!r} is not under results/{{{','.join(REF_DIRS)}}}/; export refs from "
            "the results directory (or pass --results)")
    return name


# --- import ----------------------------------------------------------------------------
def _unsafe_path(name: str) -> str | None:
    if not name:
        return "is empty"
    if "\x00" in name:
        return "contains a NUL byte"
    if "\\" in name:
        return "contains a backslash"
    if name.startswith("/") or _DRIVE.match(name):
        return "is an absolute path"
    parts = name.split("/")
    if ".." in parts:
        return "contains '..'"
    if any(p in ("", ".") for p in parts):
        return "has an empty or '.' component"
    return None


def _check_members(archive: zipfile.ZipFile) -> dict[str, zipfile.ZipInfo]:
    infos = archive.infolist()
    if len(infos) > MAX_MEMBERS:
        raise BundleError(f"bundle has {len(infos)} members, more than {MAX_MEMBERS}")
    counts = Counter(info.filename for info in infos)
    duplicates = sorted(name for name, n in counts.items() if n > 1)
    if duplicates:
        raise BundleError(f"bundle has duplicate member names: {duplicates[:5]}")
    members: dict[str, zipfile.ZipInfo] = {}
    for info in infos:
        name = info.filename
        problem = _unsafe_path(name)
        if problem:
            raise BundleError(f"bundle member {name!r} {problem}; refusing the bundle")
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            raise BundleError(f"bundle member {name!r} is a symbolic link; refusing the bundle")
        if info.is_dir() or stat.S_IFMT(mode) not in (0, stat.S_IFREG):
            raise BundleError(f"bundle member {name!r} is not a regular file")
        if info.flag_bits & 0x1:
            raise BundleError(f"bundle member {name!r} is encrypted")
        if not (name == INDEX or _OBJECT_MEMBER.match(name) or name.startswith("refs/")):
            raise BundleError(f"bundle member {name!r} is not part of the bundle format "
                              "(index.json, objects/<sha256>, refs/...)")
        members[name] = info
    if INDEX not in members:
        raise BundleError("bundle has no index.json; not an assay bundle")
    return members


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int) -> bytes:
    if info.file_size > limit:
        raise BundleError(f"bundle member {info.filename!r} declares {info.file_size} bytes, "
                          f"more than {limit}")
    try:
        with archive.open(info) as handle:
            data = handle.read(limit + 1)
    except (zipfile.BadZipFile, EOFError, zlib.error, NotImplementedError) as exc:
        raise BundleError(f"bundle member {info.filename!r} is corrupt ({exc})") from None
    if len(data) > limit:
        raise BundleError(f"bundle member {info.filename!r} expands past {limit} bytes")
    return data


def _load_index(archive: zipfile.ZipFile, members: dict[str, zipfile.ZipInfo]) -> dict[str, Any]:
    try:
        index = json.loads(_read_member(archive, members[INDEX], MAX_INDEX_BYTES))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise BundleError(f"bundle index.json is not JSON ({exc})") from None
    if not isinstance(index, dict) or index.get("format") != BUNDLE_FORMAT:
        raise BundleError("bundle index.json is not an assay bundle index")
    if index.get("bundle_version") != BUNDLE_VERSION:
        raise BundleError(f"bundle version {index.get('bundle_version')!r} is not one this "
                          f"assay reads ({BUNDLE_VERSION}); upgrade assay")
    version = index.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= SCHEMA_VERSION:
        raise BundleError(f"bundle schema_version {version!r} is unknown to this assay "
                          f"(it reads 1..{SCHEMA_VERSION}); upgrade assay to import it")
    if not isinstance(index.get("objects"), list) or not isinstance(index.get("refs"), list):
        raise BundleError("bundle index.json lacks its objects and refs lists")
    return index


def _expected_objects(index: dict[str, Any]) -> dict[str, tuple[int, str]]:
    objects: dict[str, tuple[int, str]] = {}
    for item in index["objects"]:
        if not isinstance(item, dict) or not is_digest(item.get("digest")):
            raise BundleError(f"bundle index has a malformed object entry {item!r:.120}")
        size, role = item.get("size_bytes"), item.get("role")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise BundleError(f"bundle index: object {item['digest']} has a bad size {size!r}")
        if role not in ("manifest", "sidecar"):
            raise BundleError(f"bundle index: object {item['digest']} has unknown role {role!r}")
        sha = parse_digest(item["digest"])
        if sha in objects:
            raise BundleError(f"bundle index lists object {item['digest']} twice")
        objects[sha] = (size, role)
    return objects


def _stage_object(archive: zipfile.ZipFile, info: zipfile.ZipInfo, sha: str, size: int,
                  target: Path) -> None:
    """Unpack one member, hashing as it goes, reading never more than ``size`` + 1 bytes."""
    digest, written = hashlib.sha256(), 0
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with archive.open(info) as member:
            while chunk := member.read(min(CHUNK, size + 1 - written)):
                written += len(chunk)
                if written > size:
                    raise BundleError(f"bundle member objects/{sha} expands past the "
                                      f"{size} bytes the index declares (zip bomb?)")
                digest.update(chunk)
                write_all(fd, chunk)
                if written == size:
                    break
            if member.read(1):
                raise BundleError(f"bundle member objects/{sha} expands past the {size} "
                                  "bytes the index declares (zip bomb?)")
        os.fsync(fd)
    except (zipfile.BadZipFile, EOFError, zlib.error, NotImplementedError) as exc:
        raise BundleError(f"bundle member objects/{sha} is corrupt ({exc})") from None
    finally:
        os.close(fd)
    if written != size:
        raise BundleError(f"bundle member objects/{sha} has {written} bytes, the index "
                          f"declares {size}")
    actual = digest.hexdigest()
    if actual != sha:
        raise BundleError(f"bundle member objects/{sha} does not match its digest: its bytes "
                          f"hash to sha256:{actual}; the bundle is damaged or forged")


def import_bundle(store: Any, bundle: str | os.PathLike[str],
                  results_dir: str | os.PathLike[str] | None, *,
                  max_bytes: int = DEFAULT_MAX_BYTES, overwrite_refs: bool = False,
                  progress: Any = None) -> BundleSummary:
    """Verify a bundle completely, then add its objects to ``store`` and its refs to
    ``results_dir`` (skipped when None). Raises BundleError and changes nothing if any
    check fails; an existing ref with a different digest is a conflict unless
    ``overwrite_refs``."""
    bundle = Path(bundle)
    objects_store = store.objects
    store_root = Path(store.root)
    try:
        archive = zipfile.ZipFile(bundle)
    except (zipfile.BadZipFile, OSError) as exc:
        raise BundleError(f"{bundle} is not a readable zip file ({exc})") from None
    staging = objects_store.tmp_dir / f"staging-import-{uuid.uuid4().hex}"
    try:
        with archive:
            members = _check_members(archive)
            index = _load_index(archive, members)
            expected = _expected_objects(index)
            object_members = {m[len(OBJECTS_PREFIX):] for m in members if m.startswith(OBJECTS_PREFIX)}
            if object_members - set(expected):
                extra = sorted(object_members - set(expected))[0]
                raise BundleError(f"bundle member objects/{extra} is not in index.json")
            if set(expected) - object_members:
                lost = sorted(set(expected) - object_members)[0]
                raise BundleError(f"index.json lists sha256:{lost} but the bundle lacks "
                                  f"{OBJECTS_PREFIX}{lost}")
            refs = _expected_refs(index, members)
            total = sum(size for size, _ in expected.values())
            if total > max_bytes:
                raise BundleError(f"bundle would unpack to {total} bytes, more than the limit "
                                  f"of {max_bytes} (raise it with --max-bytes if you trust it)")
            for sha, (size, _) in expected.items():
                declared = members[f"{OBJECTS_PREFIX}{sha}"].file_size
                if declared != size:
                    raise BundleError(f"bundle member objects/{sha} declares {declared} bytes "
                                      f"but index.json says {size}")
            staging.mkdir(parents=True)
            free = shutil.disk_usage(staging).free
            if total > free:
                raise BundleError(f"bundle needs {total} bytes, only {free} are free under "
                                  f"{staging.parent}")
            for i, sha in enumerate(sorted(expected), 1):
                size, _ = expected[sha]
                _stage_object(archive, members[f"{OBJECTS_PREFIX}{sha}"], sha, size, staging / sha)
                if progress is not None and i % 64 == 0:
                    progress("import verify", i, len(expected))
            manifests = _check_manifests(staging, expected, objects_store)
            ref_writes = _check_refs(archive, members, refs, manifests, objects_store,
                                     results_dir, overwrite_refs)

        # Every check passed: publish sidecars, then manifests inputs-first, then refs.
        summary = BundleSummary(bundle, objects=len(expected), bytes=total,
                                artifacts=len(manifests))
        origin = {"bundle": bundle.name, "bundle_sha256": hash_file(bundle)[0]}
        for sha in [*sorted(s for s in expected if s not in manifests),
                    *_inputs_first(manifests)]:
            if not objects_store.exists(sha):   # bytes this store did not have: their
                objects_store.record_origin(sha, origin)   # origin, before they are visible
            summary.new_objects += _publish(objects_store, staging / sha, sha, expected[sha][0])
        if ref_writes:
            with _results_lock(Path(results_dir)):
                # Again, under the lock: another import may have written these refs since
                # the first check. One of two conflicting imports wins; the other fails.
                _recheck_conflicts(ref_writes, overwrite_refs)
                for path, data, name in ref_writes:
                    if not path.is_file() or path.read_bytes() != data:   # same bytes: keep mtime
                        atomic_write_bytes(path, data)
                    summary.refs.append(name)
        return summary
    finally:
        shutil.rmtree(staging, ignore_errors=True)


IMPORT_LOCK = ".import.lock"


@contextmanager
def _results_lock(results_dir: Path) -> Iterator[None]:
    """Serialize the ref writes of imports into one results directory (a POSIX lock,
    which NFS also honours; released by the kernel if the importer dies)."""
    import fcntl

    results_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(results_dir / IMPORT_LOCK, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _current_digest(target: Path) -> str | None:
    try:
        return read_ref(target).digest
    except AssayError:   # unreadable or not a ref: a conflict with any digest
        return None


def _recheck_conflicts(writes: list[tuple[Path, bytes, str]], overwrite: bool) -> None:
    for target, data, _ in writes:
        if target.is_symlink():
            raise BundleError(f"refusing to write ref {target}: it is a symbolic link")
        if overwrite or not target.exists():
            continue
        digest = json.loads(data)["digest"]
        current = _current_digest(target)
        if current != digest:
            raise BundleError(
                f"ref {target} already points to {current}, the bundle has {digest} (written "
                "meanwhile, by another import?); pass --overwrite-refs to replace it or "
                "--no-refs to import objects only")


def _expected_refs(index: dict[str, Any], members: dict[str, zipfile.ZipInfo]) -> list[dict]:
    refs, seen = [], set()
    for item in index["refs"]:
        if not isinstance(item, dict) or not isinstance(item.get("path"), str):
            raise BundleError(f"bundle index has a malformed ref entry {item!r:.120}")
        path = item["path"]
        problem = _unsafe_path(path)
        if problem:
            raise BundleError(f"bundle ref path {path!r} {problem}; refusing the bundle")
        if path.split("/")[0] not in REF_DIRS or not path.endswith(".json"):
            raise BundleError(f"bundle ref path {path!r} is not under "
                              f"{{{','.join(REF_DIRS)}}}/ or not a .json file")
        if not is_digest(item.get("digest")) or not is_sha256_hex(item.get("sha256")):
            raise BundleError(f"bundle ref {path!r} has a malformed digest")
        if f"refs/{path}" not in members:
            raise BundleError(f"index.json lists ref {path!r} but the bundle lacks refs/{path}")
        if path in seen:
            raise BundleError(f"bundle index lists ref {path!r} twice")
        seen.add(path)
        refs.append(item)
    listed = {f"refs/{r['path']}" for r in refs}
    for name in members:
        if name.startswith("refs/") and name not in listed:
            raise BundleError(f"bundle member {name!r} is not in index.json")
    return refs


def _check_manifests(staging: Path, expected: dict[str, tuple[int, str]],
                     objects_store: Any) -> dict[str, dict[str, Any]]:
    manifests: dict[str, dict[str, Any]] = {}
    for sha, (size, role) in expected.items():
        if role != "manifest":
            continue
        try:
            manifest = json.loads((staging / sha).read_bytes())
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise BundleError(f"bundle object sha256:{sha} is listed as a manifest but is not "
                              "JSON") from None
        if not looks_like_manifest(manifest):
            raise BundleError(f"bundle object sha256:{sha} is listed as a manifest but lacks "
                              "schema_version/artifact_type")
        try:
            artifact_from_manifest(manifest, where=f"bundle artifact sha256:{sha}")
        except AssayError as exc:
            raise BundleError(f"refusing the bundle: {exc}") from None
        manifests[sha] = manifest

    def available(child: str, size: int | None) -> bool:
        if child in expected:
            return size is None or expected[child][0] == size
        path = objects_store.path_for(child)
        try:
            return size is None or path.stat().st_size == size
        except FileNotFoundError:
            return False

    for sha, manifest in manifests.items():
        for child, size in sidecar_shas(manifest):
            if not available(child, size):
                raise BundleError(f"bundle is not self-contained: artifact sha256:{sha} names "
                                  f"sidecar sha256:{child} ({size} bytes), which is neither in "
                                  "the bundle nor in the store")
        for child in input_shas(manifest):
            if child not in manifests and not available(child, None):
                raise BundleError(f"bundle is not self-contained: artifact sha256:{sha} names "
                                  f"input sha256:{child}, which is neither in the bundle nor "
                                  "in the store")
    return manifests


def _check_refs(archive: zipfile.ZipFile, members: dict[str, zipfile.ZipInfo],
                refs: list[dict[str, Any]], manifests: dict[str, dict[str, Any]],
                objects_store: Any, results_dir: str | os.PathLike[str] | None,
                overwrite: bool) -> list[tuple[Path, bytes, str]]:
    writes = []
    for item in refs:
        name = item["path"]
        data = _read_member(archive, members[f"refs/{name}"], MAX_REF_BYTES)
        if hashlib.sha256(data).hexdigest() != item["sha256"]:
            raise BundleError(f"bundle ref {name!r} does not match its digest in index.json")
        try:
            body = json.loads(data)
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise BundleError(f"bundle ref {name!r} is not JSON") from None
        if not isinstance(body, dict) or body.get("digest") != item["digest"]:
            raise BundleError(f"bundle ref {name!r} does not hold the digest index.json lists")
        digest = body.pop("digest")
        try:
            ref_data = ref_bytes(digest, body)
        except AssayError as exc:
            raise BundleError(f"bundle ref {name!r} is not a valid ref ({exc})") from None
        sha = parse_digest(digest)
        if sha not in manifests and not objects_store.exists(sha):
            raise BundleError(f"bundle ref {name!r} points to {digest}, which is neither a "
                              "manifest in the bundle nor in the store")
        _check_ref_identity(name, body, digest, manifests.get(sha) or _stored_manifest(
            objects_store, sha))
        if results_dir is None:
            continue
        target = Path(results_dir) / name
        if target.is_symlink():
            raise BundleError(f"refusing to write ref {target}: it is a symbolic link")
        if target.exists() and not overwrite:
            current = _current_digest(target)
            if current != digest:
                raise BundleError(
                    f"ref {target} already points to {current}, the bundle has {digest}; "
                    "pass --overwrite-refs to replace it or --no-refs to import objects only")
        writes.append((target, ref_data, name))
    return writes


def _stored_manifest(objects_store: Any, sha: str) -> dict[str, Any] | None:
    try:
        return json.loads(objects_store.read_bytes(sha, None, what=f"manifest sha256:{sha}"))
    except (AssayError, ValueError, RecursionError):
        return None


def _check_ref_identity(name: str, identity: dict[str, Any], digest: str,
                        manifest: dict[str, Any] | None) -> None:
    """A bundle carries data, not authority: its ref ``runs/free/1.json`` must name run
    free/1, and say so, or the bundle is refused (it would serve one condition's run as
    another's with every digest verifying)."""
    from ..pipeline.proofs import describe, manifest_identity, mismatch, ref_path_identity

    if manifest is None:
        raise BundleError(f"bundle ref {name!r} points to {digest}, which is not a manifest")
    actual = manifest_identity(manifest)
    expected = ref_path_identity(name)
    if expected is None:
        raise BundleError(f"bundle ref {name!r} is not a place where assay keeps refs")
    for claimed, by in ((expected, "its path"), (identity, "its content")):
        problem = mismatch(claimed, actual)
        if problem:
            raise BundleError(f"bundle ref {name!r} names {describe(actual)} ({digest}) but "
                              f"{by} says {describe(claimed)}: {problem}. Nothing was "
                              "imported; the bundle is forged or was assembled wrongly")


def _inputs_first(manifests: dict[str, dict[str, Any]]) -> list[str]:
    """Manifests ordered so that each comes after the inputs it names (from the bundle)."""
    order, done = [], set()
    for start in sorted(manifests):
        stack = [(start, False)]
        while stack:
            sha, expanded = stack.pop()
            if sha in done:
                continue
            if expanded:
                done.add(sha)
                order.append(sha)
                continue
            stack.append((sha, True))
            stack.extend((c, False) for c in input_shas(manifests[sha])
                         if c in manifests and c not in done)
    return order


def _publish(objects_store: Any, staged: Path, sha: str, size: int) -> int:
    existed = objects_store.exists(sha)
    objects_store.publish(staged, sha, size)
    return 0 if existed else 1
