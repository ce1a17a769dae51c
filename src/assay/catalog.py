"""The DuckDB catalog: an index of the store and the results, rebuilt from them at will.

Deleting ``results/catalog.duckdb`` loses nothing. It is built into a temporary file in the
same directory and swapped in with ``os.replace``, so a reader sees the old catalog or the
new one, and never holds a lock that a build needs (DuckDB allows one writer per file and
refuses every other process while a writer holds it).

Rows are collected in Python from the manifests and inserted once per table as Arrow
tables: one bulk insert costs microseconds per row, a per-row INSERT a millisecond.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from .artifacts import SCHEMA_VERSION
from .errors import ArtifactStoreError
from .hashing import DIGEST_PREFIX
from .inventory import (
    Progress,
    input_shas,
    load_actions,
    load_refs,
    no_progress,
    scan_objects,
    sidecar_shas,
    sniff_manifests,
    walk_manifests,
)
from .payload import CONTROL, METRICS
from .store import ArtifactStore

CATALOG_NAME = "catalog.duckdb"
CATALOG_FORMAT = 1
# Payload key of a comparison artifact's per-condition statistics (written by stages.py).
COMPARISONS = "comparisons"
# The statistic name of a plain scalar metric (replicate and run artifacts).
VALUE = "value"
TABLES = ("artifacts", "sidecars", "metrics", "edges", "objects", "refs", "actions",
          "catalog_info")
_STALE_TMP_SECONDS = 3600

_S, _I, _F, _B = pa.string(), pa.int64(), pa.float64(), pa.bool_()
SCHEMAS: dict[str, pa.Schema] = {
    "artifacts": pa.schema([
        ("digest", _S), ("artifact_type", _S), ("analysis", _S), ("condition", _S),
        ("replicate", _I), ("replicates", pa.list_(_I)), ("schema_version", _I),
        ("stage", _S), ("plugin", _S), ("code_digest", _S), ("settings_fingerprint", _S),
        ("n_sidecars", _I), ("n_inputs", _I), ("n_warnings", _I), ("manifest_bytes", _I),
        ("sidecar_bytes", _I), ("ref_count", _I), ("live", _B),
        ("payload", _S), ("provenance", _S), ("metadata", _S), ("warnings", _S)]),
    "sidecars": pa.schema([
        ("artifact", _S), ("path", _S), ("sha256", _S), ("size_bytes", _I),
        ("media_type", _S), ("kind", _S), ("metadata", _S)]),
    "metrics": pa.schema([
        ("artifact", _S), ("artifact_type", _S), ("analysis", _S), ("condition", _S),
        ("replicate", _I), ("control", _S), ("metric", _S), ("statistic", _S), ("value", _F)]),
    "edges": pa.schema([("artifact", _S), ("input", _S), ("role", _S), ("position", _I)]),
    "objects": pa.schema([
        ("sha256", _S), ("size_bytes", _I), ("modified", pa.timestamp("us")),
        ("is_manifest", _B), ("ref_count", _I), ("live", _B)]),
    "refs": pa.schema([
        ("path", _S), ("digest", _S), ("artifact_type", _S), ("analysis", _S),
        ("condition", _S), ("replicate", _I), ("resolves", _B), ("problem", _S)]),
    "actions": pa.schema([
        ("key", _S), ("digest", _S), ("stage", _S), ("plugin", _S),
        ("when", pa.timestamp("us")), ("host", _S), ("duration_s", _F), ("record", _S)]),
    "catalog_info": pa.schema([("key", _S), ("value", _S)]),
}
_JSON_COLUMNS = {"artifacts": ("payload", "provenance", "metadata", "warnings"),
                 "sidecars": ("metadata",), "actions": ("record",)}


@dataclass
class CatalogSummary:
    path: Path
    rows: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    skipped: dict[str, str] = field(default_factory=dict)   # object -> why it is not indexed

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "rows": self.rows, "seconds": round(self.seconds, 3),
                "skipped": self.skipped}


# --- rows ------------------------------------------------------------------------------
def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _when(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(timezone.utc).replace(tzinfo=None)
    return parsed


class _Columns:
    """Column lists for one table, appended row by row, turned into Arrow once."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.schema = SCHEMAS[name]
        self.cols: dict[str, list[Any]] = {f.name: [] for f in self.schema}
        self._lists = list(self.cols.values())

    def add(self, *row: Any) -> None:
        for column, value in zip(self._lists, row):
            column.append(value)

    def __len__(self) -> int:
        return len(self._lists[0])

    def arrow(self) -> pa.Table:
        return pa.table(self.cols, schema=self.schema)


def _metric_rows(out: _Columns, digest: str, manifest: dict[str, Any], identity: tuple) -> None:
    kind, analysis, condition, replicate = identity
    payload = manifest.get("payload")
    if not isinstance(payload, dict):
        return
    control = _str(payload.get(CONTROL)) if kind == "comparison" else None
    metrics = payload.get(METRICS)
    if isinstance(metrics, dict):
        for name in sorted(metrics):
            value = metrics[name]
            if isinstance(value, dict):          # condition artifacts: {n, mean, std, ...}
                for stat in sorted(value):
                    number = _num(value[stat])
                    if number is not None:
                        out.add(digest, kind, analysis, condition, replicate, control, name,
                                stat, number)
            else:
                number = _num(value)
                if number is not None:
                    out.add(digest, kind, analysis, condition, replicate, control, name,
                            VALUE, number)
    comparisons = payload.get(COMPARISONS)
    if isinstance(comparisons, dict):            # {condition: {metric: {difference, ...}}}
        for label in sorted(comparisons):
            per_metric = comparisons[label]
            if not isinstance(per_metric, dict):
                continue
            for name in sorted(per_metric):
                stats = per_metric[name]
                if not isinstance(stats, dict):
                    continue
                for stat in sorted(stats):
                    number = _num(stats[stat])
                    if number is not None:
                        out.add(digest, kind, analysis, label, None, control, name, stat,
                                number)


def collect_rows(store_root: Path, results_dir: Path, *, jobs: int | None = None,
                 progress: Progress = no_progress) -> tuple[dict[str, pa.Table], dict[str, str]]:
    """Every catalog table as an Arrow table, plus the objects left out and why."""
    store_root, results_dir = Path(store_root), Path(results_dir)
    progress("scan objects", 0, None)
    objects = scan_objects(store_root)
    refs = load_refs(results_dir)
    actions = load_actions(store_root, jobs=jobs)
    roots = [r.ref.digest for r in refs if r.ref is not None]
    roots += [a.record["digest"] for a in actions if a.record is not None]
    graph = walk_manifests(store_root, roots, verify=True, jobs=jobs, progress=progress)
    manifests = dict(graph.manifests)
    sizes = dict(graph.raw_sizes)
    skipped = {f"sha256:{s}": p for s, p in {**graph.damaged, **graph.not_manifest}.items()}
    known = set(manifests) | set(graph.damaged) | set(graph.not_manifest)
    for manifest in graph.manifests.values():
        known.update(s for s, _ in sidecar_shas(manifest))
    # Objects no ref or action reaches may still be manifests (garbage, imports): sniff them.
    extra = sniff_manifests((o for s, o in objects.items() if s not in known), jobs=jobs,
                            progress=progress)
    for sha, (manifest, size) in extra.items():
        manifests[sha] = manifest
        sizes[sha] = size

    # Liveness: what the refs keep (gc's mark), and how many manifests name each object.
    live: set[str] = set()
    pending = [r.sha256 for r in refs if r.sha256 is not None]
    while pending:
        sha = pending.pop()
        if sha in live:
            continue
        live.add(sha)
        manifest = manifests.get(sha)
        if manifest is not None:
            pending.extend(s for s, _ in sidecar_shas(manifest))
            pending.extend(input_shas(manifest))
    ref_counts: dict[str, int] = {}
    for manifest in manifests.values():
        for child in {s for s, _ in sidecar_shas(manifest)} | set(input_shas(manifest)):
            ref_counts[child] = ref_counts.get(child, 0) + 1
    refs_to: dict[str, int] = {}
    for entry in refs:
        if entry.sha256 is not None:
            refs_to[entry.sha256] = refs_to.get(entry.sha256, 0) + 1

    progress("index manifests", 0, len(manifests))
    artifacts, sidecars, metrics, edges = (_Columns(n) for n in
                                           ("artifacts", "sidecars", "metrics", "edges"))
    for i, sha in enumerate(sorted(manifests), 1):
        manifest = manifests[sha]
        digest = DIGEST_PREFIX + sha
        kind = _str(manifest.get("artifact_type"))
        analysis = _str(manifest.get("analysis_name"))
        condition = _str(manifest.get("condition_label"))
        replicate = _int(manifest.get("replicate"))
        replicates = manifest.get("replicates")
        if not (isinstance(replicates, list) and all(_int(r) is not None for r in replicates)):
            replicates = None
        provenance = manifest.get("provenance")
        provenance = provenance if isinstance(provenance, dict) else {}
        metadata = manifest.get("metadata")
        metadata = metadata if isinstance(metadata, dict) else {}
        fingerprint = _str(provenance.get("settings_fingerprint")) or _str(
            metadata.get("settings_fingerprint"))
        side = [s for s in (manifest.get("sidecars") or []) if isinstance(s, dict)]
        inputs = manifest.get("inputs") or []
        warnings = manifest.get("warnings") or []
        sidecar_bytes = 0
        for item in sorted(side, key=lambda s: str(s.get("path"))):
            size = _int(item.get("size_bytes"))
            sidecar_bytes += size or 0
            meta = item.get("metadata") if isinstance(item.get("metadata"), dict) else {}
            sidecars.add(digest, _str(item.get("path")), _str(item.get("sha256")), size,
                         _str(item.get("media_type")), _str(meta.get("kind")), _json(meta))
        for position, item in enumerate(inputs):
            if isinstance(item, dict):
                edges.add(digest, _str(item.get("digest")), _str(item.get("role")), position)
            elif isinstance(item, str):
                edges.add(digest, item, "input", position)
        artifacts.add(
            digest, kind, analysis, condition, replicate, replicates,
            _int(manifest.get("schema_version")), _str(provenance.get("stage")),
            _str(provenance.get("plugin")), _str(provenance.get("code_digest")), fingerprint,
            len(side), len(inputs), len(warnings) if isinstance(warnings, list) else 0,
            sizes.get(sha), sidecar_bytes, refs_to.get(sha, 0), sha in live,
            _json(manifest.get("payload", {})), _json(provenance), _json(metadata),
            _json(warnings))
        _metric_rows(metrics, digest, manifest, (kind, analysis, condition, replicate))
        if i % 4096 == 0:
            progress("index manifests", i, len(manifests))

    object_rows = _Columns("objects")
    for sha in sorted(objects):
        info = objects[sha]
        object_rows.add(sha, info.size_bytes,
                        datetime.fromtimestamp(info.mtime_ns / 1e9, tz=timezone.utc)
                        .replace(tzinfo=None),
                        sha in manifests, ref_counts.get(sha, 0), sha in live)

    ref_rows = _Columns("refs")
    for entry in refs:
        if entry.ref is None:
            ref_rows.add(entry.name, None, None, None, None, None, False, entry.problem)
            continue
        ident = entry.ref.identity
        resolves = entry.sha256 in manifests
        ref_rows.add(entry.name, entry.ref.digest, _str(ident.get("artifact_type")),
                     _str(ident.get("analysis")), _str(ident.get("condition")),
                     _int(ident.get("replicate")), resolves,
                     None if resolves else skipped.get(entry.ref.digest,
                                                        "no manifest with this digest"))

    action_rows = _Columns("actions")
    for action in actions:
        rec = action.record or {}
        action_rows.add(action.key, _str(rec.get("digest")), _str(rec.get("stage")),
                        _str(rec.get("plugin")), _when(rec.get("when")),
                        _str(rec.get("host")), _num(rec.get("duration_s")),
                        _json(rec) if action.record is not None else None)

    info = _Columns("catalog_info")
    for key, value in (("catalog_format", CATALOG_FORMAT), ("schema_version", SCHEMA_VERSION),
                       ("store", store_root.resolve()), ("results", results_dir.resolve())):
        info.add(key, str(value))
    tables = {c.name: c.arrow() for c in (artifacts, sidecars, metrics, edges, object_rows,
                                           ref_rows, action_rows, info)}
    return tables, skipped


# --- build -----------------------------------------------------------------------------
def default_catalog_path(results_dir: str | os.PathLike[str]) -> Path:
    return Path(results_dir) / CATALOG_NAME


def _clean_stale_tmp(output: Path) -> None:
    cutoff = time.time() - _STALE_TMP_SECONDS
    for leftover in output.parent.glob(f".{output.name}.*.tmp*"):
        try:
            if leftover.stat().st_mtime < cutoff:
                leftover.unlink()
        except OSError:
            pass


def write_catalog(tables: dict[str, pa.Table], output: Path) -> None:
    """Write the tables into a new DuckDB file beside ``output`` and swap it in."""
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    _clean_stale_tmp(output)
    tmp = output.parent / f".{output.name}.{uuid.uuid4().hex}.tmp"
    try:
        con = duckdb.connect(str(tmp))
        try:
            con.execute("SET preserve_insertion_order = false")
            for name in TABLES:
                table = tables[name]
                json_cols = _JSON_COLUMNS.get(name, ())
                select = ", ".join(
                    f'"{c}"::JSON AS "{c}"' if c in json_cols else f'"{c}"'
                    for c in table.column_names)
                con.register("_rows", table)
                con.execute(f"CREATE TABLE {name} AS SELECT {select} FROM _rows")
                con.unregister("_rows")
            con.execute("CHECKPOINT")
        finally:
            con.close()
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        # A WAL left beside the old file would be replayed into the new one: drop it first.
        Path(f"{output}.wal").unlink(missing_ok=True)
        os.replace(tmp, output)
        dir_fd = os.open(output.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    finally:
        for leftover in (tmp, Path(f"{tmp}.wal")):
            leftover.unlink(missing_ok=True)


def build_catalog(store: Any, results_dir: str | os.PathLike[str],
                  output: str | os.PathLike[str] | None = None, *, jobs: int | None = None,
                  progress: Progress = no_progress) -> CatalogSummary:
    """Index ``store`` (an ArtifactStore or its root) and ``results_dir`` into ``output``.

    ``output`` defaults to ``results/catalog.duckdb``. Safe to run while readers have the
    old catalog open; never run by cluster jobs (one writer per file).
    """
    start = time.perf_counter()
    store_root = store.root if isinstance(store, ArtifactStore) else Path(store)
    if not (store_root / "objects").is_dir():
        raise ArtifactStoreError(f"no store at {store_root} (no objects/ directory); "
                                 "pass the store root, e.g. --store store")
    output = Path(output) if output is not None else default_catalog_path(results_dir)
    tables, skipped = collect_rows(store_root, Path(results_dir), jobs=jobs, progress=progress)
    progress("write catalog", 0, None)
    write_catalog(tables, output)
    return CatalogSummary(output, {name: t.num_rows for name, t in tables.items()},
                          time.perf_counter() - start, skipped)


# --- read ------------------------------------------------------------------------------
class Catalog:
    """A read-only view of a built catalog; every query returns a pandas DataFrame."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise ArtifactStoreError(
                f"no catalog at {self.path}; build it with `assay catalog build` "
                "(or let the workflow's catalog rule run)")
        try:
            self._con = duckdb.connect(str(self.path), read_only=True)
        except duckdb.Error as exc:
            raise ArtifactStoreError(f"cannot open catalog {self.path}: {exc}. Rebuild it "
                                     "with `assay catalog build`") from None

    def __repr__(self) -> str:
        return f"Catalog({str(self.path)!r})"

    def query(self, sql: str, params: list[Any] | dict[str, Any] | None = None) -> Any:
        """Run any SQL against the catalog tables (read-only)."""
        try:
            return self._con.execute(sql, params).df() if params else self._con.sql(sql).df()
        except duckdb.Error as exc:
            raise ArtifactStoreError(f"catalog query failed: {exc}") from None

    def tables(self) -> list[str]:
        return [row[0] for row in self._con.execute(
            "SELECT table_name FROM information_schema.tables ORDER BY table_name").fetchall()]

    def query_metrics(self, analysis: str | None = None, condition: str | None = None,
                      metric: str | None = None, statistic: str | None = None,
                      artifact_type: str | None = None, replicate: int | None = None,
                      *, live_only: bool = True) -> Any:
        """Metric rows (long form) matching every filter given, ordered for reading.

        ``live_only`` keeps artifacts that some ref under results/ still reaches, so old
        results left in the store do not mix with the current study.
        """
        where, params = self._filters(analysis=analysis, condition=condition, metric=metric,
                                      statistic=statistic, artifact_type=artifact_type,
                                      replicate=replicate)
        if live_only:
            where.append("a.live")
        sql = ("SELECT m.artifact, m.artifact_type, m.analysis, m.condition, m.replicate, "
               "m.control, m.metric, m.statistic, m.value FROM metrics m "
               "JOIN artifacts a ON a.digest = m.artifact"
               + (" WHERE " + " AND ".join(where) if where else "")
               + " ORDER BY m.analysis, m.artifact_type, m.condition, m.replicate NULLS FIRST,"
                 " m.metric, m.statistic, m.artifact")
        return self.query(sql, params)

    def top_metrics(self, n: int, metric: str, analysis: str | None = None, *,
                    statistic: str = VALUE, artifact_type: str | None = None,
                    condition: str | None = None, ascending: bool = False,
                    live_only: bool = True) -> Any:
        """The ``n`` rows with the highest (or lowest) value of one metric statistic.

        ``statistic`` is ``value`` for per-replicate metrics, ``mean``/``sem``/... for
        condition summaries and ``difference``/``p``/... for comparisons.
        """
        if not isinstance(n, int) or n < 1:
            raise ArtifactStoreError(f"top_metrics needs n >= 1, got {n!r}")
        where, params = self._filters(analysis=analysis, condition=condition, metric=metric,
                                      statistic=statistic, artifact_type=artifact_type)
        if live_only:
            where.append("a.live")
        order = "ASC" if ascending else "DESC"
        sql = ("SELECT m.artifact, m.artifact_type, m.analysis, m.condition, m.replicate, "
               "m.metric, m.statistic, m.value FROM metrics m "
               "JOIN artifacts a ON a.digest = m.artifact WHERE " + " AND ".join(where)
               + f" ORDER BY m.value {order}, m.artifact LIMIT {int(n)}")
        return self.query(sql, params)

    @staticmethod
    def _filters(**filters: Any) -> tuple[list[str], list[Any]]:
        where, params = [], []
        for column, value in filters.items():
            if value is not None:
                where.append(f"m.{column} = ?")
                params.append(value)
        return where, params

    def close(self) -> None:
        self._con.close()

    def __enter__(self) -> "Catalog":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_catalog(path: str | os.PathLike[str] = Path("results") / CATALOG_NAME) -> Catalog:
    """Open a built catalog read-only (``results/catalog.duckdb`` by default)."""
    return Catalog(path)
