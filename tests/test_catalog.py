"""The DuckDB catalog: built from a real store, rebuilt identically, swapped in atomically."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import duckdb
import pytest

import assay
from assay import ReplicateArtifact, RunArtifact
from assay.tools.catalog import TABLES, build_catalog, open_catalog

def _rows(path: Path) -> dict[str, list[tuple]]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return {t: sorted(con.execute(f"SELECT * FROM {t}").fetchall(), key=repr)
                for t in TABLES}
    finally:
        con.close()


def test_tables_hold_the_study(study):
    summary = build_catalog(study.store, study.results)
    assert summary.path == study.results / "catalog.duckdb"
    assert summary.rows["artifacts"] == 6 + 6 + 2 + 1
    assert summary.rows["refs"] == 15 and summary.rows["actions"] == 15
    with open_catalog(summary.path) as catalog:
        types = catalog.query("SELECT artifact_type, count(*) AS n FROM artifacts "
                              "GROUP BY 1 ORDER BY 1")
        assert dict(zip(types.artifact_type, types.n)) == {
            "comparison": 1, "condition": 2, "replicate": 6, "run": 6}
        # Edges: every replicate names its run, with its role.
        edges = catalog.query("SELECT * FROM edges WHERE role = 'run'")
        assert len(edges) == 6
        # objects.ref_count: the shared profile sidecar is named by six manifests.
        shared = catalog.query("SELECT ref_count, live FROM objects o JOIN sidecars s "
                               "ON o.sha256 = s.sha256 WHERE s.kind = 'profile' LIMIT 1")
        assert shared.ref_count[0] == 6 and bool(shared.live[0])
        actions = catalog.query("SELECT host, duration_s, \"when\" FROM actions LIMIT 1")
        assert actions.host[0] == "node1" and actions.duration_s[0] == 0.25
        assert str(actions["when"][0]).startswith("2024-05-01 12:00:00")
        # The whole manifest is there to query.
        stage = catalog.query("SELECT manifest->>'$.provenance.stage' AS s FROM artifacts "
                              f"WHERE digest = '{study.comparison}'")
        assert stage.s[0] == "compare"


def test_metrics_long_form_covers_replicates_conditions_and_comparisons(study):
    build_catalog(study.store, study.results)
    with assay.open_catalog(study.results / "catalog.duckdb") as catalog:
        values = catalog.query_metrics(analysis="rg", metric="rg", statistic="value")
        assert sorted(values.value) == [1.0, 2.0, 2.0, 3.0, 3.0, 4.0]
        assert set(values.artifact_type) == {"replicate"}
        means = catalog.query_metrics(artifact_type="condition", statistic="mean", metric="rg")
        assert dict(zip(means.condition, means.value)) == {"ctrl": 2.0, "treat": 3.0}
        # A statistic that is null (std with n < 2) gives no row rather than a NaN.
        e2e = catalog.query_metrics(condition="ctrl", metric="e2e", artifact_type="condition")
        assert "std" not in set(e2e.statistic) and "mean" in set(e2e.statistic)
        comparison = catalog.query_metrics(artifact_type="comparison")
        assert set(comparison.statistic) == {"difference", "ci_low", "ci_high", "t", "p", "df"}
        assert set(comparison.condition) == {"treat"} and set(comparison.control) == {"ctrl"}
        top = catalog.top_metrics(2, "rg", analysis="rg")
        assert list(top.value) == [4.0, 3.0] and list(top.condition) == ["treat", "treat"]
        low = catalog.top_metrics(1, "rg", ascending=True)
        assert low.value[0] == 1.0 and low.condition[0] == "ctrl"


def test_rebuild_gives_identical_rows_and_deleting_loses_nothing(study):
    path = build_catalog(study.store, study.results).path
    first = _rows(path)
    build_catalog(study.store, study.results)
    assert _rows(path) == first
    path.unlink()
    build_catalog(study.store, study.results)
    assert _rows(path) == first
    # Nothing but the catalog is left beside it (no temp files, no WAL).
    assert sorted(p.name for p in study.results.iterdir() if p.is_file()) == ["catalog.duckdb"]


def test_unreferenced_manifests_are_indexed_but_not_live(study):
    orphan = study.store.write_artifact(ReplicateArtifact(
        analysis_name="rg", condition_label="old", replicate=1, payload={"metrics": {"rg": 99.0}},
        provenance={"stage": "collect"}))
    build_catalog(study.store, study.results)   # the study's view: what its refs reach
    with open_catalog(study.results / "catalog.duckdb") as catalog:
        assert len(catalog.query(f"SELECT * FROM artifacts WHERE digest = '{orphan}'")) == 0
    build_catalog(study.store, study.results, store_wide=True)
    with open_catalog(study.results / "catalog.duckdb") as catalog:
        row = catalog.query(f"SELECT live, ref_count FROM artifacts WHERE digest = '{orphan}'")
        assert len(row) == 1 and not bool(row.live[0]) and row.ref_count[0] == 0
        assert 99.0 not in set(catalog.query_metrics(metric="rg").value)
        assert 99.0 in set(catalog.query_metrics(metric="rg", live_only=False).value)


def test_readers_never_see_a_half_built_catalog(study, monkeypatch):
    import assay.tools.catalog as catalog_module

    path = build_catalog(study.store, study.results, store_wide=True).path
    reader = open_catalog(path)            # a reader holding the old catalog open
    before = len(reader.query("SELECT * FROM artifacts"))
    study.store.write_artifact(RunArtifact(analysis_name="demo", condition_label="new",
                                           replicate=1, provenance={"stage": "run"}))
    seen_during_build = []
    real_connect = duckdb.connect

    def connect_and_look(database, *args, **kwargs):
        # While the new file is being written, the catalog path still opens read-only
        # (no lock conflict) and still holds the complete old catalog.
        if str(database) != str(path) and not kwargs.get("read_only"):
            with open_catalog(path) as other:
                seen_during_build.append(len(other.query("SELECT * FROM artifacts")))
            assert Path(database).parent == path.parent and Path(database) != path
        return real_connect(database, *args, **kwargs)

    monkeypatch.setattr(catalog_module.duckdb, "connect", connect_and_look)
    build_catalog(study.store, study.results, store_wide=True)
    monkeypatch.undo()
    assert seen_during_build == [before]
    assert len(reader.query("SELECT * FROM artifacts")) == before   # old file, still whole
    reader.close()
    with open_catalog(path) as fresh:
        assert len(fresh.query("SELECT * FROM artifacts")) == before + 1


def test_a_failed_build_leaves_the_old_catalog_and_no_temp_files(study, monkeypatch):
    import assay.tools.catalog as catalog_module

    path = build_catalog(study.store, study.results).path
    before = path.read_bytes()

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(catalog_module.os, "replace", broken)
    with pytest.raises(RuntimeError):
        build_catalog(study.store, study.results)
    assert path.read_bytes() == before
    assert [p.name for p in study.results.iterdir() if p.name.startswith(".")] == [".keys"]


def test_concurrent_readers_in_other_threads_keep_working(study):
    path = build_catalog(study.store, study.results).path
    errors: list[BaseException] = []
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            try:
                with open_catalog(path) as catalog:
                    assert len(catalog.query_metrics(statistic="mean")) >= 2
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)
                return

    threads = [threading.Thread(target=read) for _ in range(2)]
    for t in threads:
        t.start()
    for _ in range(3):
        build_catalog(study.store, study.results)
    stop.set()
    for t in threads:
        t.join()
    assert errors == []


def test_missing_catalog_and_bad_sql_are_clear_errors(study):
    with pytest.raises(assay.ArtifactStoreError, match="assay catalog build"):
        open_catalog(study.results / "catalog.duckdb")
    build_catalog(study.store, study.results)
    with open_catalog(study.results / "catalog.duckdb") as catalog:
        with pytest.raises(assay.ArtifactStoreError, match="catalog query failed"):
            catalog.query("SELECT nope FROM artifacts")
        with pytest.raises(assay.ArtifactStoreError):
            catalog.query("CREATE TABLE x (a INT)")    # read-only


def test_damaged_manifest_is_skipped_and_reported(study):
    victim = study.store.objects.path_for(study.replicates["ctrl", 1][len("sha256:"):])
    os.chmod(victim, 0o644)
    victim.write_bytes(victim.read_bytes().replace(b'"rg"', b'"RG"', 1))
    summary = build_catalog(study.store, study.results)
    assert study.replicates["ctrl", 1] in summary.skipped
    with open_catalog(summary.path) as catalog:
        ref = catalog.query("SELECT resolves, problem FROM refs WHERE path = "
                            "'replicates/rg/ctrl/1.json'")
        assert not bool(ref.resolves[0]) and "different bytes" in ref.problem[0]


def test_import_assay_stays_light():
    import subprocess
    import sys

    code = ("import sys, assay; assay.open_catalog; "
            "print(sorted(m for m in ('duckdb', 'pandas', 'numpy') if m in sys.modules))")
    before = subprocess.run([sys.executable, "-c", "import sys, assay; print(sorted(m for m in "
                             "('duckdb', 'pandas', 'numpy', 'pyarrow') if m in sys.modules))"],
                            capture_output=True, text=True, check=True)
    assert before.stdout.strip() == "[]"
    after = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=True)
    assert "duckdb" in after.stdout    # the lazy export loads it on first use


def _opened_during(fn) -> tuple[list[str], list[str]]:
    """Files opened and directories listed while ``fn`` runs (Python audit events)."""
    import sys

    opened, listed, active = [], [], [True]

    def hook(event, args):
        if not active[0]:
            return
        if event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
            opened.append(os.fsdecode(args[0]))
        elif event in ("os.scandir", "os.listdir") and args and args[0] is not None:
            listed.append(os.fsdecode(args[0]) if not isinstance(args[0], int) else "<fd>")

    sys.addaudithook(hook)   # hooks cannot be removed: this one switches itself off
    try:
        fn()
    finally:
        active[0] = False
    return opened, listed


@pytest.mark.slow   # several seconds: not in the quick loop
def test_a_study_catalog_costs_what_the_study_holds_not_the_store(study):
    """A lab store holds many studies: the study's catalog reads its refs, what they reach
    and the records behind them (results/.keys), never the other objects or records."""
    from assay import RunArtifact

    def build():
        build_catalog(study.store, study.results)

    alone, alone_listed = _opened_during(build)
    for i in range(300):   # other studies' artifacts, records and plain objects
        digest = study.store.write_artifact(RunArtifact(
            analysis_name="other", condition_label=f"c{i}", replicate=1,
            provenance={"stage": "run"}))
        study.store.record_action(f"{i:064x}", digest, stage="run", plugin="other")
        study.store.objects.put_bytes(os.urandom(64))
    crowded, crowded_listed = _opened_during(build)
    in_store = lambda paths: sorted(p for p in paths if str(study.store_root) in p)  # noqa: E731
    assert in_store(crowded) == in_store(alone)
    assert not [d for d in crowded_listed if str(study.store_root / "objects") in d
                or str(study.store_root / "actions") in d]
    with open_catalog(study.results / "catalog.duckdb") as catalog:
        assert len(catalog.query("SELECT * FROM actions")) == 15
        assert len(catalog.query("SELECT * FROM artifacts")) == 15
