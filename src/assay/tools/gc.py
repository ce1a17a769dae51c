"""Mark and sweep: objects no ref reaches, older than a grace period, are garbage.

Mark starts at the refs under results/ (plus any extra roots) and follows each manifest to
its sidecars and inputs. Sweep removes unmarked objects whose mtime is older than the grace
period, stale staging files in store/tmp (and the temporaries a killed atomic write leaves
beside refs and action records), and the action records that point to swept
artifacts (a record whose artifact is gone is only a cache miss, but it would never hit
again). The grace period protects a job that is still running: its fresh sidecars and
manifest are not referenced by a ref until it finishes.

The sweep's candidates come from the object index (assay.store.object_index), not from a
listing of objects/: only objects the index holds and mark did not reach are lstat'ed. A
store without an index (older than it) is scanned, and the report says so; ``--rescan``
scans on purpose and writes the index. ``--delete`` compacts the index's logs.

Dry run is the default; nothing is deleted unless ``delete=True``.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ArtifactStoreError
from ..store.actions import ACTIONS_DIR
from ..store.claims import CLAIMS_DIR
from ..store.hashing import format_digest
from ..store.member_roots import registered_results
from ..store.objects import TMP_DIR
from ..store.sharing import SharingPolicy
from ..store.store_root import has_objects
from ..store.workdirs import WORK_DIR
from ..pipeline.layout import PLOTS_DIR, REF_DIRS
from .inventory import (
    Progress,
    RefEntry,
    expand_ref_args,
    input_shas,
    load_actions,
    load_refs,
    no_progress,
    scan_objects,
    sidecar_shas,
    walk_manifests,
)

DEFAULT_GRACE_SECONDS = 3600.0
STAGING_PREFIXES = ("staging-",)
TMP_SUFFIXES = (".part",)


@dataclass
class GcReport:
    delete: bool
    grace_seconds: float
    roots: int = 0
    live_objects: int = 0
    live_bytes: int = 0
    garbage_objects: int = 0          # unreferenced and older than the grace period
    garbage_bytes: int = 0
    young_objects: int = 0            # unreferenced but within the grace period: kept
    young_bytes: int = 0
    tmp_entries: int = 0
    tmp_bytes: int = 0
    actions: int = 0                  # action records pointing at swept or missing artifacts
    broken_refs: dict[str, str] = field(default_factory=dict)
    swept: list[str] = field(default_factory=list)
    # Run work directories whose result is published, or untouched for work_grace_seconds:
    # {key, condition, replicate, attempt, age_s, size_bytes, why}
    work_dirs: list[dict[str, Any]] = field(default_factory=list)
    work_bytes: int = 0
    deleted_work_dirs: int = 0
    deleted_objects: int = 0
    deleted_bytes: int = 0
    # Shared stores: other members' results directories whose refs were roots too; the
    # registered ones that are gone (forgotten on --delete) or that we may not read.
    member_results: list[str] = field(default_factory=list)
    gone_results: list[str] = field(default_factory=list)
    unreadable_results: dict[str, str] = field(default_factory=dict)
    # Roots records written by users the store does not trust: ignored, so an outsider
    # cannot block every member's gc (or keep garbage alive) with a record.
    untrusted_roots: dict[str, str] = field(default_factory=dict)
    live_figures: int = 0           # figures under results/plots whose cached bytes are kept
    # Sticky records folders: other members' records gc may not delete, by owner.
    kept_sticky: dict[str, int] = field(default_factory=dict)
    # Where the objects came from: "index", "scan" (no index yet) or "rescan" (the index
    # rebuilt from this scan); what compaction did, or why it did not.
    objects_from: str = "index"
    index_note: str | None = None
    index_logs_read: int = 0
    index_logs_removed: int = 0
    missing_indexed: int = 0        # indexed objects that were not there (dropped)

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k != "swept"}
        out["swept"] = self.swept
        return out


def _tree_newest_mtime(path: Path) -> tuple[float, int]:
    """Newest mtime and total size under a staging directory (a live job touches it)."""
    newest = path.lstat().st_mtime
    total = 0
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except FileNotFoundError:
                continue
            newest = max(newest, st.st_mtime)
            if name in filenames:
                total += st.st_size
    return newest, total


def _stale_tmp(tmp_dir: Path, cutoff: float) -> list[tuple[Path, int]]:
    out: list[tuple[Path, int]] = []
    if not tmp_dir.is_dir():
        return out
    for entry in sorted(os.scandir(tmp_dir), key=lambda e: e.name):
        path = Path(entry.path)
        try:
            if entry.is_dir(follow_symlinks=False) and entry.name.startswith(STAGING_PREFIXES):
                newest, size = _tree_newest_mtime(path)
            elif entry.is_file(follow_symlinks=False) and entry.name.endswith(TMP_SUFFIXES):
                st = entry.stat(follow_symlinks=False)
                newest, size = st.st_mtime, st.st_size
            else:
                continue
        except FileNotFoundError:
            continue
        if newest < cutoff:
            out.append((path, size))
    return out


def _stale_atomic_temporaries(dirs: list[Path], cutoff: float) -> list[tuple[Path, int]]:
    """``.NAME.XXXX.tmp`` files that ``atomic_write_bytes`` leaves beside a ref or an action
    record when its writer is killed between creating and renaming it."""
    out: list[tuple[Path, int]] = []
    for top in dirs:
        if not top.is_dir():
            continue
        for dirpath, _, filenames in os.walk(top):
            for name in filenames:
                if name.startswith(".") and name.endswith(".tmp"):
                    path = Path(dirpath) / name
                    try:
                        st = path.lstat()
                    except FileNotFoundError:
                        continue
                    if st.st_mtime < cutoff:
                        out.append((path, st.st_size))
    return sorted(out)


def _stale_claim_files(store_root: Path, cutoff: float) -> list[tuple[Path, int]]:
    """What killed holders and waiters leave in ``claims/`` (assay.store.claims): claim files
    and locks whose lease ran out before ``cutoff`` (a live holder's lease lies in the
    future), ``.who`` files without a lock, and their temporaries. Only assay's own names."""
    from ..store.claims import CLAIMS_DIR
    from ..store.hashing import is_sha256_hex

    top = store_root / CLAIMS_DIR
    out: list[tuple[Path, int]] = []
    try:
        entries = sorted(os.scandir(top), key=lambda e: e.name)
    except (FileNotFoundError, NotADirectoryError):
        return out
    locks = {e.name[:64] for e in entries if e.name.endswith(".lock") and len(e.name) == 69}
    for entry in entries:
        name = entry.name
        key = name.lstrip(".")[:64]
        if not is_sha256_hex(key) or not entry.is_file(follow_symlinks=False):
            continue
        try:
            st = entry.stat(follow_symlinks=False)
        except FileNotFoundError:
            continue
        if name.startswith(f"{key}.lock"):          # the lock, or a claim file beside it
            stale = st.st_mtime < cutoff
        elif name == f"{key}.who" or name.startswith(f".{key}.who."):
            stale = key not in locks and st.st_mtime < cutoff
        else:
            continue
        if stale:
            out.append((Path(entry.path), st.st_size))
    return out


DEFAULT_WORK_GRACE_SECONDS = 7 * 24 * 3600


def abandoned_work_dirs(store_root: Path, work_grace_seconds: float) -> list[tuple[Any, dict]]:
    """Work directories no attempt will come back to: the run's artifact is published (its
    action key has a record), or nothing in it changed for ``work_grace_seconds``. A run
    waiting in the queue for its next attempt keeps its checkpoint until then, and one
    whose key a live attempt claims (assay.store.claims: a lease that has not run out) is never
    abandoned, whatever the grace."""
    from ..store.actions import ActionCache
    from ..store.claims import Claim
    from ..store.workdirs import WorkDirs

    actions = ActionCache.at(store_root)
    now = time.time()
    out = []
    for work in WorkDirs(store_root / WORK_DIR):
        try:
            lease_until = os.lstat(Claim(store_root, work.key).lock_path).st_mtime
        except FileNotFoundError:
            lease_until = 0.0
        if lease_until > now:
            continue   # a live attempt works in it now
        age = now - work.mtime()
        done = actions.read(work.key) is not None
        if not done and age < work_grace_seconds:
            continue
        state = work.state()
        out.append((work, {"key": work.key, "condition": state.get("condition"),
                           "replicate": state.get("replicate"),
                           "attempt": state.get("attempt"), "age_s": round(age, 1),
                           "size_bytes": work.size_bytes(),
                           "why": "published" if done else "untouched"}))
    return out


def collect_garbage(store_root: str | os.PathLike[str], results_dir: str | os.PathLike[str], *,
                    roots: list[str] | None = None, grace_seconds: float = DEFAULT_GRACE_SECONDS,
                    work_grace_seconds: float = DEFAULT_WORK_GRACE_SECONDS,
                    delete: bool = False, jobs: int | None = None, rescan: bool = False,
                    progress: Progress = no_progress) -> GcReport:
    """Mark from the refs (and ``roots``: ref files or directories of them), then sweep.

    The sweep's candidates are the objects the object index (assay.store.object_index) holds
    that mark did not reach: only those are lstat'ed. Without an index (a store older
    than it), or with ``rescan``, objects/ is scanned instead; ``rescan`` then writes the
    index from that scan.

    Refuses to delete anything while a reachable manifest exists but cannot be read: its
    sidecars would look unreferenced. Run ``assay verify --repair`` first.
    """
    from ..store.store_root import check_store_root

    check_store_root(store_root, adopt=False)   # never sweep a directory that is not a store
    store_root, results_dir = Path(store_root), Path(results_dir)
    if grace_seconds < 0:
        raise ArtifactStoreError(f"grace period must be >= 0 seconds, got {grace_seconds}")
    if not has_objects(store_root):
        raise ArtifactStoreError(f"no store at {store_root} (no objects/ directory)")
    report = GcReport(delete=delete, grace_seconds=grace_seconds)
    now = time.time()
    cutoff = now - grace_seconds

    entries: list[RefEntry] = load_refs(results_dir, jobs=jobs)
    entries += expand_ref_args(roots or [], results_dir)
    gone_records = _member_roots(store_root, results_dir, report, entries, jobs)
    report.roots = len(entries)
    figures = live_figure_shas([results_dir, *map(Path, report.member_results)])
    report.live_figures = len(figures)
    for entry in entries:
        if entry.digest is None:
            report.broken_refs[entry.name] = entry.problem or "unreadable"

    # Mark. Manifest bytes are not re-hashed here: gc only needs their references, and a
    # damaged manifest that still parses names the same objects.
    graph = walk_manifests(store_root, [e.sha256 for e in entries if e.sha256], verify=False,
                           jobs=jobs, progress=progress, stage="gc mark")
    unreadable = {s: p for s, p in graph.not_manifest.items()}
    for entry in entries:
        if entry.sha256 in graph.missing:
            report.broken_refs[entry.name] = f"points to missing {entry.digest}"
        elif entry.sha256 in unreadable:
            report.broken_refs[entry.name] = f"points to {entry.digest}, which " \
                                             f"{unreadable[entry.sha256]}"
    marked: set[str] = set(graph.manifests) | figures
    for manifest in graph.manifests.values():
        marked.update(s for s, _ in sidecar_shas(manifest))
        marked.update(input_shas(manifest))
    if delete and report.unreadable_results:
        where, problem = sorted(report.unreadable_results.items())[0]
        raise ArtifactStoreError(
            f"gc refuses to delete: the refs of another member's results directory {where} "
            f"cannot be read ({problem}), so what they keep alive is unknown. Its owner "
            "runs `assay gc` instead, or makes it readable to the store's group "
            f"(chmod -R g+rX {where})")
    if delete and unreadable:
        first = sorted(unreadable)[0]
        raise ArtifactStoreError(
            f"gc refuses to delete: {len(unreadable)} object(s) reachable from refs cannot be "
            f"read as manifests (e.g. sha256:{first} {unreadable[first]}), so what they "
            "reference is unknown. Run `assay verify --repair` first.")

    sharing = SharingPolicy.for_store(store_root, check_world_writable=False)
    view = _object_view(store_root, marked, cutoff, report, rescan=rescan, jobs=jobs,
                        sharing=sharing, progress=progress)
    candidates = view.candidates
    report.garbage_objects = len(candidates)
    report.garbage_bytes = sum(size for _, _, size in candidates)
    report.swept = [format_digest(sha) for sha, _, _ in candidates]

    stale = _stale_tmp(store_root / TMP_DIR, cutoff)
    stale += _stale_atomic_temporaries(
        [store_root / ACTIONS_DIR, *(results_dir / sub for sub in REF_DIRS)], cutoff)
    stale += _stale_claim_files(store_root, cutoff)
    report.tmp_entries = len(stale)
    report.tmp_bytes = sum(size for _, size in stale)

    gone = {sha for sha, _, _ in candidates}
    doomed_actions = [a for a in load_actions(store_root, jobs=jobs)
                      if a.sha256 is not None and (a.sha256 in gone or view.absent(a.sha256))]
    report.actions = len(doomed_actions)
    abandoned = abandoned_work_dirs(store_root, work_grace_seconds)
    report.work_dirs = [info for _, info in abandoned]
    report.work_bytes = sum(info["size_bytes"] for info in report.work_dirs)
    if not delete:
        if rescan:
            _compact(store_root, view, {}, sharing, report)
        return report
    for work, _ in abandoned:
        work.remove()
        report.deleted_work_dirs += 1
    for record in gone_records:
        _unlink_unless_sticky(Path(record), sharing, report)

    # Action records first: a job that starts meanwhile then misses the cache instead of
    # hitting an artifact that is about to go.
    for action in doomed_actions:
        _unlink_unless_sticky(Path(action.path), sharing, report)
    deleted: dict[str, int] = {}
    try:
        for i, (sha, path, size) in enumerate(candidates, 1):
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                view.missing[sha] = time.time_ns()
                continue
            if st.st_mtime >= time.time() - grace_seconds:
                continue  # rewritten (touched) since the scan: someone is using it again
            with sharing.writing(path):
                os.unlink(path)
            deleted[sha] = time.time_ns()
            report.deleted_objects += 1
            report.deleted_bytes += size
            if i % 1024 == 0:
                progress("gc sweep", i, len(candidates))
    finally:
        _compact(store_root, view, deleted, sharing, report)
    for path, _ in stale:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        elif path.parent.name == CLAIMS_DIR and _renewed_since(path, cutoff):
            continue   # a lock taken again since the scan: a live holder's now
        else:
            _unlink_unless_sticky(path, sharing, report)
    return report


@dataclass
class _ObjectView:
    """What the sweep needs of objects/: its candidates, and whether an object is absent."""

    candidates: list[tuple[str, str, int]]
    entries: dict[str, Any] | None          # the index's entries (None: a plain scan)
    present: set[str]
    scanned: bool                           # ``present`` is a scan: what is there
    consumed: dict[str, int]
    path_str: Any
    missing: dict[str, int] = field(default_factory=dict)   # sha -> when found missing

    def absent(self, sha: str) -> bool:
        """No such object (an action record naming it is a dead record). The index alone
        never says so: a lost line would make a live record look dead."""
        if sha in self.missing:
            return True
        if sha in self.present:
            return False
        return self.scanned or not os.path.lexists(self.path_str(sha))


def _object_view(store_root: Path, marked: set[str], cutoff: float, report: GcReport, *,
                 rescan: bool, jobs: int | None, sharing: SharingPolicy,
                 progress: Progress) -> _ObjectView:
    from ..store import object_index
    from ..store.objects import ObjectStore

    path_str = ObjectStore(store_root).path_str
    candidates: list[tuple[str, str, int]] = []
    loaded, unusable = object_index.load_unless_rescan(store_root, sharing, rescan=rescan)
    if loaded is not None:
        report.objects_from = "index"
        report.index_logs_read = loaded.logs_read
        if loaded.unreadable_logs:   # (untrusted logs were read: their objects are candidates)
            report.index_note = (f"{loaded.unreadable_logs} index log(s) could not be read; "
                                 "gc keeps the objects only they name (`assay gc --rescan`)")
        view = _ObjectView(candidates, loaded.entries, set(loaded.entries)
                           | set(loaded.untrusted_entries), False, loaded.consumed, path_str)
        every = {**loaded.untrusted_entries, **loaded.entries}
        for i, (sha, entry) in enumerate(sorted(every.items()), 1):
            if sha in marked:
                report.live_objects += 1
                report.live_bytes += entry.size
                continue
            path = path_str(sha)
            try:   # only candidates are looked at: the grace check needs the real mtime
                st = os.lstat(path)
            except FileNotFoundError:
                view.missing[sha] = time.time_ns()
                continue
            if st.st_mtime_ns / 1e9 < cutoff:
                candidates.append((sha, path, st.st_size))
            else:
                report.young_objects += 1
                report.young_bytes += st.st_size
            if i % 4096 == 0:
                progress("gc candidates", i, len(every))
        report.missing_indexed = len(view.missing)
        return view
    if rescan:
        entries, offsets = object_index.rebuild(
            store_root, ObjectStore(store_root).scan, jobs=jobs, progress=progress)
        scanned = {sha: (e.size, e.time_ns) for sha, e in entries.items()}
        report.objects_from = "rescan"
        view = _ObjectView(candidates, entries, set(entries), True, offsets, path_str)
    else:
        scanned = {sha: (info.size_bytes, info.mtime_ns)
                   for sha, info in scan_objects(store_root).items()}
        report.objects_from = "scan"
        report.index_note = NO_INDEX_NOTE if unusable is None else (
            f"the object index cannot be read ({unusable}), so objects/ was scanned; "
            "`assay gc --rescan` rewrites it")
        view = _ObjectView(candidates, None, set(scanned), True, {}, path_str)
    for sha, (size, mtime_ns) in scanned.items():
        if sha in marked:
            report.live_objects += 1
            report.live_bytes += size
        elif mtime_ns / 1e9 < cutoff:
            candidates.append((sha, path_str(sha), size))
        else:
            report.young_objects += 1
            report.young_bytes += size
    candidates.sort()
    return view


NO_INDEX_NOTE = ("this store has no object index (it was written before assay kept one), so "
                 "objects/ was scanned; `assay gc --rescan` builds the index once, then gc "
                 "and stats read it instead")


def _compact(store_root: Path, view: _ObjectView, deleted: dict[str, int],
             sharing: SharingPolicy, report: GcReport) -> None:
    """Log what was deleted or found missing (at the time it was), write the index as a
    snapshot (after a rescan: the scan), then drop logs it has read to the end. Skipped,
    and said, when another gc compacts right now: the logs keep every line meanwhile."""
    from ..store import object_index

    if view.entries is None:
        return   # no index to write (a plain scan of a store without one)
    # A missing object published again since we looked is no longer missing.
    gone = {**{s: t for s, t in view.missing.items() if not os.path.lexists(view.path_str(s))},
            **deleted}
    object_index.note_gone_at(store_root, sorted(gone.items()), sharing)
    try:
        with object_index.CompactionLock(store_root, sharing):
            if view.scanned:   # a rescan: the scan, then the logs past where it began
                entries = {sha: e for sha, e in view.entries.items() if sha not in gone}
                consumed = view.consumed
            else:   # reread under the lock: the newest snapshot and every line since
                fresh = object_index.load(store_root, sharing)
                entries, consumed = fresh.entries, fresh.consumed
            report.index_logs_removed = object_index.compact(store_root, entries, consumed,
                                                             sharing)
    except object_index.Busy as busy:
        report.index_note = (f"the object index was not compacted: another gc holds {busy} "
                             "(the logs keep every line; the next gc compacts)")
    except (object_index.IndexUnusable, OSError) as exc:
        report.index_note = (f"the object index was not compacted ({exc}); the logs keep "
                             "every line; `assay gc --rescan` rewrites it")


def _unlink_unless_sticky(path: Path, sharing: SharingPolicy, report: GcReport) -> None:
    """Delete a record or temp file; in a sticky folder (share-store --sticky-records)
    another member's stays, counted for the report: its owner's gc (or root's) removes it."""
    try:
        with sharing.writing(path):
            path.unlink(missing_ok=True)
    except PermissionError:
        owner = sharing.kept_by_sticky(path)
        if owner is None:
            raise
        from ..store.sharing import user_name

        name = user_name(owner)
        report.kept_sticky[name] = report.kept_sticky.get(name, 0) + 1


MAX_FIGURE_BYTES = 256 * 1024 * 1024


def live_figure_shas(results_dirs: list[Path]) -> set[str]:
    """The digests of the figures under each results directory's plots/.

    No ref names a figure: its bytes are named by the figure cache's action records only.
    Hashing the figures that are there (small files, never followed as links) keeps the
    cache of what the study shows, while figures no longer drawn remain garbage."""
    from ..store.hashing import hash_file

    found: set[str] = set()
    for results in results_dirs:
        for dirpath, _, filenames in os.walk(results / PLOTS_DIR):   # never into links
            for name in filenames:
                path = Path(dirpath) / name
                try:
                    st = os.lstat(path)
                    if st.st_size <= MAX_FIGURE_BYTES:
                        found.add(hash_file(path)[0])   # only regular files (open_regular)
                except OSError:
                    continue
    return found


def _renewed_since(path: Path, cutoff: float) -> bool:
    try:
        return os.lstat(path).st_mtime >= cutoff
    except FileNotFoundError:
        return True


def _unreadable_below(top: Path) -> str | None:
    """What keeps us from reading every ref under a results directory, if anything."""
    problems: list[str] = []

    def note(exc: OSError) -> None:
        problems.append(f"{exc.filename}: {exc.strerror}")

    if not os.access(top, os.R_OK | os.X_OK):
        return f"{top}: Permission denied"
    for sub in REF_DIRS:
        for dirpath, _, filenames in os.walk(top / sub, onerror=lambda exc: None if isinstance(
                exc, FileNotFoundError) else note(exc)):
            problems += [f"{os.path.join(dirpath, n)}: Permission denied" for n in filenames
                         if n.endswith(".json") and not n.startswith(".")
                         and not os.access(os.path.join(dirpath, n), os.R_OK)]
            if problems:
                return problems[0]
        if problems:
            return problems[0]
    return None


def _member_roots(store_root: Path, results_dir: Path, report: GcReport,
                  entries: list[RefEntry], jobs: int | None) -> list[Path]:
    """Add the refs of every other registered results directory (a shared store's other
    members) to ``entries``; return the registry files of directories that are gone."""
    own = os.path.realpath(results_dir)
    gone: list[Path] = []
    policy = SharingPolicy.for_store(store_root, check_world_writable=False)
    for record_path, record in registered_results(store_root):
        where = record["results"]
        if where == own:
            continue
        if not policy.is_trusted(record["owner_uid"]):
            report.untrusted_roots[where] = policy.writer(record["owner_uid"])
            continue
        try:
            os.lstat(where)
        except FileNotFoundError:
            report.gone_results.append(where)
            gone.append(record_path)
            continue
        except OSError as exc:   # e.g. a parent we may not search: not gone, unknown
            report.unreadable_results[where] = f"{where}: {exc.strerror}"
            continue
        problem = _unreadable_below(Path(where))
        if problem is not None:
            report.unreadable_results[where] = problem
            continue
        report.member_results.append(where)
        entries.extend(load_refs(Path(where), jobs=jobs))
    return gone
