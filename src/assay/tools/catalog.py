"""The DuckDB catalog: an index of the store and the results, rebuilt from them at will.

Deleting ``results/catalog.duckdb`` loses nothing. It is built into a temporary file in the
same directory and swapped in with ``os.replace``, so a reader sees the old catalog or the
new one, and never holds a lock that a build needs (DuckDB allows one writer per file and
refuses every other process while a writer holds it).

Rows are collected in Python from the manifests and inserted once per table as Arrow
tables: one bulk insert costs microseconds per row, a per-row INSERT a millisecond.
"""

from __future__ import annotations

import gc
import json
import os
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from ..store.artifacts import SCHEMA_VERSION
from ..store.atomic import atomic_path
from ..errors import ArtifactStoreError
from ..store.hashing import format_digest
from ..store.store_root import has_objects
from .inventory import (
    Progress,
    input_shas,
    load_actions,
    load_refs,
    load_study_actions,
    no_progress,
    scan_objects,
    sidecar_shas,
    sniff_manifests,
    stat_objects,
    walk_manifests,
)
from ..pipeline.metric_info import fallback_label
from .metric_rows import VALUE, as_number, as_text, metric_rows
from ..store import ArtifactStore

CATALOG_NAME = "catalog.duckdb"
CATALOG_FORMAT = 2   # 2: metrics.label and metrics.unit (assay.pipeline.metric_info)
TABLES = ("artifacts", "sidecars", "metrics", "edges", "objects", "refs", "actions",
          "decisions", "catalog_info")
_STALE_TMP_SECONDS = 3600

_S, _I, _F, _B = pa.string(), pa.int64(), pa.float64(), pa.bool_()
SCHEMAS: dict[str, pa.Schema] = {
    "artifacts": pa.schema([
        ("digest", _S), ("artifact_type", _S), ("analysis", _S), ("condition", _S),
        ("replicate", _I), ("replicates", pa.list_(_I)), ("schema_version", _I),
        ("stage", _S), ("plugin", _S), ("code_digest", _S), ("settings_fingerprint", _S),
        ("n_sidecars", _I), ("n_inputs", _I), ("n_warnings", _I), ("manifest_bytes", _I),
        ("sidecar_bytes", _I), ("ref_count", _I), ("live", _B), ("manifest", _S)]),
    "sidecars": pa.schema([
        ("artifact", _S), ("path", _S), ("sha256", _S), ("size_bytes", _I),
        ("media_type", _S), ("kind", _S), ("metadata", _S)]),
    "metrics": pa.schema([
        ("artifact", _S), ("artifact_type", _S), ("analysis", _S), ("condition", _S),
        ("replicate", _I), ("control", _S), ("metric", _S), ("statistic", _S), ("value", _F),
        ("label", _S), ("unit", _S)]),
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
    # One row per look of an adaptive study (decision artifacts, assay.pipeline.adaptive).
    "decisions": pa.schema([
        ("artifact", _S), ("study", _S), ("look", _I), ("n", _I), ("stop", _B), ("why", _S),
        ("rule", _S), ("numbers", _S), ("live", _B)]),
    "catalog_info": pa.schema([("key", _S), ("value", _S)]),
}
# Stored as DuckDB JSON. ``artifacts.manifest`` is the exact manifest text: query any part
# of it with ``manifest->'$.provenance.settings'``.
_JSON_COLUMNS = {"artifacts": ("manifest",), "sidecars": ("metadata",), "actions": ("record",),
                 "decisions": ("rule", "numbers")}


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
def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


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


def _table(name: str, columns: dict[str, list[Any]]) -> pa.Table:
    return pa.table(columns, schema=SCHEMAS[name])


def _columns(name: str) -> dict[str, list[Any]]:
    return {f.name: [] for f in SCHEMAS[name]}


def _metric_descriptions(manifests: dict[str, dict[str, Any]]
                         ) -> dict[tuple[str | None, str], tuple[str, str | None]]:
    """(plugin, metric) -> (label, unit) as the condition artifacts recorded them
    (assay.pipeline.metric_info); replicate and comparison rows of the same plugin share them."""
    from ..pipeline.metric_info import METRIC_INFO_KEY

    out: dict[tuple[str | None, str], tuple[str, str | None]] = {}
    for manifest in manifests.values():
        payload, provenance = manifest.get("payload"), manifest.get("provenance")
        if manifest.get("artifact_type") != "condition" or not isinstance(payload, dict):
            continue
        plugin = as_text(provenance.get("plugin")) if isinstance(provenance, dict) else None
        info = payload.get(METRIC_INFO_KEY)
        for name, entry in (info.items() if isinstance(info, dict) else ()):
            if isinstance(entry, dict) and as_text(entry.get("label")):
                out.setdefault((plugin, name), (entry["label"], as_text(entry.get("unit"))
                                                or None))
    return out


def _index_manifests(order: list[str], manifests: dict[str, dict[str, Any]],
                     raw: dict[str, bytes], refs_to: dict[str, int],
                     live: set[str]) -> dict[str, pa.Table]:
    art, side, edge, metric = (_columns(n) for n in ("artifacts", "sidecars", "edges",
                                                     "metrics"))
    described = _metric_descriptions(manifests)
    for sha in order:
        manifest = manifests[sha]
        get = manifest.get
        digest = format_digest(sha)
        kind, analysis = as_text(get("artifact_type")), as_text(get("analysis_name"))
        condition, replicate = as_text(get("condition_label")), _int(get("replicate"))
        replicates = get("replicates")
        if not (isinstance(replicates, list) and all(_int(r) is not None for r in replicates)):
            replicates = None
        provenance = get("provenance") if isinstance(get("provenance"), dict) else {}
        metadata = get("metadata") if isinstance(get("metadata"), dict) else {}
        sidecars = [s for s in get("sidecars") or () if isinstance(s, dict)]
        inputs = get("inputs") or []
        warnings = get("warnings")
        total = 0
        for item in sorted(sidecars, key=lambda s: str(s.get("path"))):
            size = _int(item.get("size_bytes"))
            total += size or 0
            meta = item.get("metadata") if isinstance(item.get("metadata"), dict) else {}
            side["artifact"].append(digest)
            side["path"].append(as_text(item.get("path")))
            side["sha256"].append(as_text(item.get("sha256")))
            side["size_bytes"].append(size)
            side["media_type"].append(as_text(item.get("media_type")))
            side["kind"].append(as_text(meta.get("kind")))
            side["metadata"].append(json.dumps(meta, sort_keys=True, separators=(",", ":"),
                                               ensure_ascii=False))
        for position, item in enumerate(inputs if isinstance(inputs, list) else ()):
            edge["artifact"].append(digest)
            edge["position"].append(position)
            if isinstance(item, dict):
                edge["input"].append(as_text(item.get("digest")))
                edge["role"].append(as_text(item.get("role")) or "input")
            else:
                edge["input"].append(as_text(item))
                edge["role"].append("input")
        for column, value in (
                ("digest", digest), ("artifact_type", kind), ("analysis", analysis),
                ("condition", condition), ("replicate", replicate),
                ("replicates", replicates), ("schema_version", _int(get("schema_version"))),
                ("stage", as_text(provenance.get("stage"))),
                ("plugin", as_text(provenance.get("plugin"))),
                ("code_digest", as_text(provenance.get("code_digest"))),
                ("settings_fingerprint", as_text(provenance.get("settings_fingerprint"))
                 or as_text(metadata.get("settings_fingerprint"))),
                ("n_sidecars", len(sidecars)),
                ("n_inputs", len(inputs) if isinstance(inputs, list) else 0),
                ("n_warnings", len(warnings) if isinstance(warnings, list) else 0),
                ("manifest_bytes", len(raw[sha])), ("sidecar_bytes", total),
                ("ref_count", refs_to.get(sha, 0)), ("live", sha in live),
                ("manifest", raw[sha].decode("utf-8"))):
            art[column].append(value)
        before = len(metric["metric"])
        metric_rows(metric, digest, get("payload"), (kind, analysis, condition, replicate))
        plugin = as_text(provenance.get("plugin"))
        for name in metric["metric"][before:]:
            label, unit = described.get((plugin, name)) or (fallback_label(name), None)
            metric["label"].append(label)
            metric["unit"].append(unit)
    return {"artifacts": _table("artifacts", art), "sidecars": _table("sidecars", side),
            "edges": _table("edges", edge), "metrics": _table("metrics", metric)}


def collect_rows(store_root: Path, results_dir: Path, *, jobs: int | None = None,
                 progress: Progress = no_progress, store_wide: bool = False
                 ) -> tuple[dict[str, pa.Table], dict[str, str]]:
    """Every catalog table as an Arrow table, plus the objects left out and why.

    By default the study's view: its refs, what they reach and the action records behind
    them (results/.keys), at a cost that grows with the study. ``store_wide`` lists every
    object and record of the store (and sniffs unreferenced objects for manifests)."""
    # Hundreds of thousands of small dicts stay alive until the end; the cyclic collector
    # would rescan them again and again (a quarter of the build time) and free nothing.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _collect_rows(Path(store_root), Path(results_dir), jobs=jobs, progress=progress,
                             store_wide=store_wide)
    finally:
        if was_enabled:
            gc.enable()


def _collect_rows(store_root: Path, results_dir: Path, *, jobs: int | None,
                  progress: Progress, store_wide: bool = False
                  ) -> tuple[dict[str, pa.Table], dict[str, str]]:
    refs = load_refs(results_dir, jobs=jobs)
    if store_wide:
        progress("scan objects", 0, None)
        objects = scan_objects(store_root)
        actions = load_actions(store_root, jobs=jobs)
    else:   # the study's refs, their closure and the records behind them: nothing else
        actions = load_study_actions(store_root, results_dir, refs, jobs=jobs)
    roots = [r.sha256 for r in refs if r.sha256 is not None]
    roots += [a.artifact_sha256 for a in actions if a.artifact_sha256 is not None]
    graph = walk_manifests(store_root, roots, verify=True, keep_raw=True, jobs=jobs,
                           progress=progress)
    manifests, raw = graph.manifests, graph.raw
    skipped = {format_digest(s): p for s, p in {**graph.damaged, **graph.not_manifest}.items()}
    children = {sha: [s for s, _ in sidecar_shas(m)] + input_shas(m)
                for sha, m in manifests.items()}
    known = set(manifests) | set(graph.damaged) | set(graph.not_manifest)
    for names in children.values():
        known.update(names)
    if store_wide:
        # Objects no ref or action reaches may still be manifests (garbage, imports): sniff.
        extra = sniff_manifests([o for s, o in objects.items() if s not in known], jobs=jobs,
                                progress=progress)
        for sha, (manifest, data) in extra.items():
            manifests[sha], raw[sha] = manifest, data
            children[sha] = [s for s, _ in sidecar_shas(manifest)] + input_shas(manifest)
    else:
        objects = stat_objects(store_root, sorted(known - set(graph.missing)))

    # Liveness is gc's mark (what the refs keep); ref_count how many manifests name an object.
    live: set[str] = set()
    pending = [r.sha256 for r in refs if r.sha256 is not None]
    while pending:
        sha = pending.pop()
        if sha not in live:
            live.add(sha)
            pending.extend(children.get(sha, ()))
    named: dict[str, int] = {}
    for names in children.values():
        for child in set(names):
            named[child] = named.get(child, 0) + 1
    refs_to: dict[str, int] = {}
    for entry in refs:
        if entry.sha256 is not None:
            refs_to[entry.sha256] = refs_to.get(entry.sha256, 0) + 1

    progress("index manifests", 0, None)
    tables = _index_manifests(sorted(manifests), manifests, raw, refs_to, live)

    shas = sorted(objects)
    tables["objects"] = _table("objects", {
        "sha256": shas,
        "size_bytes": [objects[s].size_bytes for s in shas],
        "modified": pa.array([objects[s].mtime_ns // 1000 for s in shas], pa.int64())
                      .cast(pa.timestamp("us")),
        "is_manifest": [s in manifests for s in shas],
        "ref_count": [named.get(s, 0) for s in shas],
        "live": [s in live for s in shas],
    })

    ref_cols = _columns("refs")
    for entry in refs:
        ident = entry.identity
        resolves = entry.sha256 in manifests
        problem = entry.problem if entry.digest is None else None if resolves else skipped.get(
            entry.digest, "no manifest with this digest in the store")
        for column, value in (
                ("path", entry.name), ("digest", entry.digest),
                ("artifact_type", as_text(ident.get("artifact_type"))),
                ("analysis", as_text(ident.get("analysis"))),
                ("condition", as_text(ident.get("condition"))),
                ("replicate", _int(ident.get("replicate"))), ("resolves", resolves),
                ("problem", problem)):
            ref_cols[column].append(value)
    tables["refs"] = _table("refs", ref_cols)

    act_cols = _columns("actions")
    for action in actions:
        rec = action.record or {}
        for column, value in (
                ("key", action.key), ("digest", as_text(rec.get("digest"))),
                ("stage", as_text(rec.get("stage"))), ("plugin", as_text(rec.get("plugin"))),
                ("when", _when(rec.get("when"))), ("host", as_text(rec.get("host"))),
                ("duration_s", as_number(rec.get("duration_s"))),
                ("record", action.raw.decode("utf-8") if action.record is not None else None)):
            act_cols[column].append(value)
    tables["actions"] = _table("actions", act_cols)

    tables["decisions"] = _decision_rows(manifests, live, str(results_dir.resolve()))
    tables["catalog_info"] = _table("catalog_info", {
        "key": ["catalog_format", "schema_version", "store", "results"],
        "value": [str(CATALOG_FORMAT), str(SCHEMA_VERSION), str(store_root.resolve()),
                  str(results_dir.resolve())]})
    return tables, skipped


def _decision_rows(manifests: dict[str, dict[str, Any]], live: set[str],
                   study: str) -> pa.Table:
    """The looks of adaptive studies: each decision artifact's payload, one row per look
    (``rule`` and ``numbers`` as JSON), ordered by look."""
    cols = _columns("decisions")
    found = []
    for sha, manifest in manifests.items():
        payload = manifest.get("payload")
        if manifest.get("artifact_type") == "decision" and isinstance(payload, dict):
            found.append((_int(payload.get("look")) or 0, sha, payload))
    for look, sha, payload in sorted(found, key=lambda item: (item[0], item[1])):
        stop = payload.get("stop")
        for column, value in (
                ("artifact", format_digest(sha)), ("study", study), ("look", look or None),
                ("n", _int(payload.get("n"))),
                ("stop", stop if isinstance(stop, bool) else None),
                ("why", as_text(payload.get("why"))),
                ("rule", json.dumps(payload.get("rule"), sort_keys=True)),
                ("numbers", json.dumps(payload.get("numbers"), sort_keys=True)),
                ("live", sha in live)):
            cols[column].append(value)
    return _table("decisions", cols)


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


def write_catalog(tables: dict[str, pa.Table], output: Path) -> dict[str, int]:
    """Write the tables into a new DuckDB file beside ``output`` and swap it in."""
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    _clean_stale_tmp(output)
    with atomic_path(output) as tmp:
        try:
            con = duckdb.connect(str(tmp))
            try:
                con.execute("SET preserve_insertion_order = false")
                for name, table in tables.items():
                    con.register("_rows", table)
                    select = ", ".join(f'"{c}"::JSON AS "{c}"'
                                       if c in _JSON_COLUMNS.get(name, ()) else f'"{c}"'
                                       for c in table.column_names)
                    con.execute(f"CREATE TABLE {name} AS SELECT {select} FROM _rows")
                    con.unregister("_rows")
                rows = {name: con.execute(f"SELECT count(*) FROM {name}").fetchone()[0]
                        for name in TABLES}
                con.execute("CHECKPOINT")
            finally:
                con.close()
        finally:
            Path(f"{tmp}.wal").unlink(missing_ok=True)
        # A WAL left beside the old file would be replayed into the new one: drop it first.
        Path(f"{output}.wal").unlink(missing_ok=True)
    return rows


def build_catalog(store: Any, results_dir: str | os.PathLike[str],
                  output: str | os.PathLike[str] | None = None, *, jobs: int | None = None,
                  progress: Progress = no_progress, store_wide: bool = False
                  ) -> CatalogSummary:
    """Index ``store`` (an ArtifactStore or its root) and ``results_dir`` into ``output``.

    ``output`` defaults to ``results/catalog.duckdb``. Safe to run while readers have the
    old catalog open; never run by cluster jobs (one writer per file).
    """
    start = time.perf_counter()
    store_root = store.root if isinstance(store, ArtifactStore) else Path(store)
    if not has_objects(store_root):
        raise ArtifactStoreError(f"no store at {store_root} (no objects/ directory); "
                                 "pass the store root, e.g. --store store")
    output = Path(output) if output is not None else default_catalog_path(results_dir)
    tables, skipped = collect_rows(store_root, Path(results_dir), jobs=jobs, progress=progress,
                                   store_wide=store_wide)
    progress("write catalog", 0, None)
    rows = write_catalog(tables, output)
    return CatalogSummary(output, rows, time.perf_counter() - start, skipped)


# --- read ------------------------------------------------------------------------------
_TYPE_ORDER = ("CASE m.artifact_type WHEN 'run' THEN 0 WHEN 'replicate' THEN 1 "
               "WHEN 'condition' THEN 2 WHEN 'comparison' THEN 3 ELSE 4 END")


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
        described = self._con.execute(
            "SELECT count(*) FROM information_schema.columns WHERE table_name = 'metrics' "
            "AND column_name IN ('label', 'unit')").fetchall()[0][0]
        if described != 2:
            raise ArtifactStoreError(
                f"catalog {self.path} was built by an older assay (its metrics have no label "
                "and unit columns); rebuild it with `assay catalog build`")
        where, params = self._filters(analysis=analysis, condition=condition, metric=metric,
                                      statistic=statistic, artifact_type=artifact_type,
                                      replicate=replicate)
        if live_only:
            where.append("a.live")
        sql = ("SELECT m.artifact, m.artifact_type, m.analysis, m.condition, m.replicate, "
               "m.control, m.metric, m.statistic, m.value, m.label, m.unit FROM metrics m "
               "JOIN artifacts a ON a.digest = m.artifact"
               + (" WHERE " + " AND ".join(where) if where else "")
               + " ORDER BY m.analysis, " + _TYPE_ORDER + ", m.condition, m.replicate, "
                 "m.metric, m.statistic, m.artifact")
        return self.query(sql, params)

    def top_metrics(self, n: int, metric: str, analysis: str | None = None, *,
                    statistic: str = VALUE, artifact_type: str | None = None,
                    condition: str | None = None, ascending: bool = False,
                    live_only: bool = True) -> Any:
        """The ``n`` rows with the highest (or lowest) value of one metric statistic.

        ``statistic`` is ``value`` for per-replicate metrics, ``mean``/``sem``/... for
        condition summaries and ``difference``/``p``/``p_adjusted``/``hedges_g``/... for
        comparisons.
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
