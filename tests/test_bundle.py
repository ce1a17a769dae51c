"""assay export / import: round trips, and hostile bundles refused without a trace."""

from __future__ import annotations

import json
import stat
import warnings
import zipfile
from pathlib import Path

import pytest
from study_helpers import make_study

from assay import ArtifactStore, ArtifactStoreError, write_ref
from assay import BundleError
from assay.tools.bundle import export_bundle, import_bundle
from assay.tools.catalog import build_catalog, open_catalog
from assay.cli import main
from assay.store.hashing import canonical_json, sha256_hex
from assay.tools.inventory import expand_ref_args


@pytest.fixture
def study(tmp_path):
    return make_study(tmp_path / "a")


@pytest.fixture
def bundle(study, tmp_path) -> Path:
    out = tmp_path / "bundle.zip"
    code = main(["--store", str(study.store_root), "--results", str(study.results), "export",
                 "comparisons/rg.json", str(study.results / "conditions"), "-o", str(out)])
    assert code == 0
    return out


@pytest.fixture
def target(tmp_path):
    """A second study directory that already has some content of its own."""
    root = tmp_path / "b"
    store = ArtifactStore(root / "store")
    store.write_bytes_sidecar("own.bin", b"the target's own bytes")
    write_ref(root / "results" / "runs" / "x" / "1.json", "sha256:" + "0" * 64,
              artifact_type="run", condition="x", replicate=1)
    return root


def snapshot(root: Path) -> dict[str, bytes | None]:
    return {p.relative_to(root).as_posix(): p.read_bytes() if p.is_file() else None
            for p in sorted(root.rglob("*"))}


def members(path: Path) -> list[tuple[zipfile.ZipInfo, bytes]]:
    with zipfile.ZipFile(path) as archive:
        return [(info, archive.read(info)) for info in archive.infolist()]


def rewrite(source: Path, dest: Path, edit) -> Path:
    """Copy a bundle member by member through ``edit(name, data) -> [(ZipInfo|name, data)]``."""
    with zipfile.ZipFile(dest, "w", compression=zipfile.ZIP_DEFLATED) as out, \
            warnings.catch_warnings():
        warnings.simplefilter("ignore")    # duplicate names are the point of one test
        for info, data in members(source):
            for new_info, new_data in edit(info.filename, data):
                out.writestr(new_info, new_data)
    return dest


def index_of(path: Path) -> dict:
    with zipfile.ZipFile(path) as archive:
        return json.loads(archive.read("index.json"))


def run_import(root: Path, bundle: Path, *extra: str, capsys=None) -> tuple[int, str]:
    if capsys:
        capsys.readouterr()
    code = main(["--store", str(root / "store"), "--results", str(root / "results"),
                 "import", str(bundle), *extra])
    err = capsys.readouterr().err if capsys else ""
    return code, err


def test_round_trip_keeps_digests_refs_and_metrics(study, bundle, target, capsys):
    index = index_of(bundle)
    assert {r["path"] for r in index["refs"]} == {
        "comparisons/rg.json", "conditions/rg/ctrl.json", "conditions/rg/treat.json"}
    # The closure: every artifact (runs included, through inputs) and every sidecar.
    digests = {o["digest"] for o in index["objects"]}
    assert set(study.runs.values()) <= digests and study.comparison in digests
    assert sum(o["role"] == "manifest" for o in index["objects"]) == 15

    code, _ = run_import(target, bundle, capsys=capsys)
    assert code == 0
    dest = ArtifactStore(target / "store")
    for digest in [study.comparison, *study.runs.values()]:
        dest.verify_artifact(digest)      # manifests and sidecars, hashed
    imported = ArtifactStore.read_ref(target / "results" / "comparisons" / "rg.json")
    assert imported.digest == study.comparison
    assert main(["--store", str(target / "store"), "--results", str(target / "results"),
                 "verify", "--full"]) == 1   # the target's own ref points nowhere (see fixture)
    build_catalog(dest, target / "results")
    with open_catalog(target / "results" / "catalog.duckdb") as catalog:
        means = catalog.query_metrics(statistic="mean", metric="rg")
        assert dict(zip(means.condition, means.value)) == {"ctrl": 2.0, "treat": 3.0}
    # Importing the same bundle again changes nothing.
    before = snapshot(target)
    assert run_import(target, bundle)[0] == 0
    assert snapshot(target) == before


def test_export_is_deterministic_and_refuses_a_damaged_store(study, bundle, tmp_path):
    again = tmp_path / "again.zip"
    refs = expand_ref_args([study.results / "comparisons" / "rg.json",
                            study.results / "conditions"], study.results)
    export_bundle(study.store_root, again, refs=refs)
    assert again.read_bytes() == bundle.read_bytes()

    sidecar = study.store.read_artifact(study.runs["ctrl", 2]).sidecars[0]
    path = study.store.objects.path_for(sidecar.sha256)
    path.chmod(0o644)
    data = path.read_bytes()
    path.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    broken = tmp_path / "broken.zip"
    with pytest.raises(ArtifactStoreError, match=sidecar.sha256):
        export_bundle(study.store_root, broken, refs=refs)
    assert not broken.exists() and not list(tmp_path.glob(".broken.zip.*"))


def _object_member(bundle: Path) -> tuple[str, bytes]:
    for info, data in members(bundle):
        if info.filename.startswith("objects/"):
            return info.filename, data
    raise AssertionError


def _hostile(bundle: Path, tmp_path: Path, kind: str) -> Path:
    name, data = _object_member(bundle)
    dest = tmp_path / f"{kind}.zip"
    if kind == "zip-slip":
        return rewrite(bundle, dest, lambda n, d: [(n, d)] + (
            [("refs/../../../escape.json", b"{}")] if n == "index.json" else []))
    if kind == "dotdot":
        return rewrite(bundle, dest, lambda n, d: [("../x" if n == name else n, d)])
    if kind == "absolute":
        return rewrite(bundle, dest, lambda n, d: [("/x" if n == name else n, d)])
    if kind == "symlink":
        def link(n, d):
            if n != name:
                return [(n, d)]
            info = zipfile.ZipInfo(n)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            return [(info, b"/etc/passwd")]
        return rewrite(bundle, dest, link)
    if kind == "duplicate":
        return rewrite(bundle, dest, lambda n, d: [(n, d)] * (2 if n == name else 1))
    if kind == "digest-mismatch":
        forged = bytes([data[0] ^ 1]) + data[1:]
        return rewrite(bundle, dest, lambda n, d: [(n, forged if n == name else d)])
    if kind == "unknown-schema":
        def newer(n, d):
            if n != "index.json":
                return [(n, d)]
            index = json.loads(d)
            index["schema_version"] = 99
            return [(n, json.dumps(index).encode())]
        return rewrite(bundle, dest, newer)
    if kind == "size-lie":          # index and zip header disagree about a member's size
        def lie(n, d):
            if n != "index.json":
                return [(n, d)]
            index = json.loads(d)
            index["objects"][0]["size_bytes"] += 1
            return [(n, json.dumps(index).encode())]
        return rewrite(bundle, dest, lie)
    if kind == "zip-bomb":          # a member that unpacks to far more than the cap
        bomb = b"\0" * (8 * 1024 * 1024)
        sha = sha256_hex(bomb)

        def add(n, d):
            if n != "index.json":
                return [(n, d)]
            index = json.loads(d)
            index["objects"].append({"digest": f"sha256:{sha}", "size_bytes": len(bomb),
                                     "role": "sidecar"})
            return [(n, json.dumps(index).encode()), (f"objects/{sha}", bomb)]
        return rewrite(bundle, dest, add)
    if kind == "extra-member":
        return rewrite(bundle, dest, lambda n, d: [(n, d)] + (
            [("notes/readme.txt", b"hi")] if n == "index.json" else []))
    if kind == "incomplete":        # a sidecar dropped from members and index alike
        index = index_of(bundle)
        victim = next(o for o in index["objects"] if o["role"] == "sidecar")
        vname = "objects/" + victim["digest"][len("sha256:"):]
        index["objects"].remove(victim)

        def drop(n, d):
            if n == vname:
                return []
            return [(n, json.dumps(index).encode() if n == "index.json" else d)]
        return rewrite(bundle, dest, drop)
    if kind == "newer-manifest":    # a manifest whose own schema_version is from the future
        index = index_of(bundle)
        entry = next(o for o in index["objects"] if o["role"] == "manifest")
        old_name = "objects/" + entry["digest"][len("sha256:"):]
        with zipfile.ZipFile(bundle) as archive:
            manifest = json.loads(archive.read(old_name))
        manifest["schema_version"] = 2
        new = canonical_json(manifest)
        entry.update(digest=f"sha256:{sha256_hex(new)}", size_bytes=len(new))

        def swap(n, d):
            if n == old_name:
                return [(f"objects/{sha256_hex(new)}", new)]
            return [(n, json.dumps(index).encode() if n == "index.json" else d)]
        return rewrite(bundle, dest, swap)
    raise AssertionError(kind)


@pytest.mark.parametrize("kind, message", [
    ("zip-slip", "contains '..'"),
    ("dotdot", "contains '..'"),
    ("absolute", "is an absolute path"),
    ("symlink", "is a symbolic link"),
    ("duplicate", "duplicate member names"),
    ("digest-mismatch", "does not match its digest"),
    ("unknown-schema", "schema_version 99 is unknown"),
    ("size-lie", "but index.json says"),
    ("zip-bomb", "would unpack to"),
    ("extra-member", "is not part of the bundle format"),
    ("incomplete", "not self-contained"),
    ("newer-manifest", "newer than this assay understands"),
])
def test_hostile_bundles_are_refused_and_change_nothing(bundle, target, tmp_path, capsys,
                                                        kind, message):
    hostile = _hostile(bundle, tmp_path, kind)
    before = snapshot(target)
    code, err = run_import(target, hostile, "--max-bytes", str(1024 * 1024), capsys=capsys)
    assert code == 1, err
    assert message in err
    assert snapshot(target) == before      # store and results, byte for byte
    assert not (target / "escape.json").exists() and not Path("/x").exists()


def test_ref_conflicts_are_refused_unless_overwriting(study, bundle, target, capsys):
    conflict = target / "results" / "comparisons" / "rg.json"
    write_ref(conflict, "sha256:" + "1" * 64, artifact_type="comparison", analysis="rg")
    before = snapshot(target)
    code, err = run_import(target, bundle, capsys=capsys)
    assert code == 1 and "already points to" in err and "--overwrite-refs" in err
    assert snapshot(target) == before
    assert run_import(target, bundle, "--no-refs")[0] == 0
    assert ArtifactStore.read_ref(conflict).digest == "sha256:" + "1" * 64
    assert run_import(target, bundle, "--overwrite-refs")[0] == 0
    assert ArtifactStore.read_ref(conflict).digest == study.comparison


def test_not_a_zip_is_refused(target, tmp_path):
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"not a zip at all")
    with pytest.raises(BundleError, match="not a readable zip"):
        import_bundle(ArtifactStore(target / "store"), junk, target / "results")


def test_export_by_digest_prefix_and_directory(study, tmp_path, capsys):
    out = tmp_path / "one.zip"
    prefix = study.replicates["treat", 2][len("sha256:"):][:10]
    code = main(["--store", str(study.store_root), "--results", str(study.results), "export",
                 prefix, "-o", str(out), "--json"])
    summary = json.loads(capsys.readouterr().out)
    assert code == 0 and summary["artifacts"] == 2 and summary["refs"] == []
    index = index_of(out)
    assert index["roots"] == [study.replicates["treat", 2]]


def test_a_pickle_imported_from_a_bundle_is_data_not_authority(tmp_path):
    """Imported objects keep their origin; unpickling (which runs code) refuses them until
    the user says they trust the bundle, or saves the object again themselves."""
    from assay.store.sharing import UntrustedWriterError

    source = ArtifactStore(tmp_path / "source")
    from assay.store.artifacts import RunArtifact

    digest = source.save_object({"weights": [1, 2, 3]}, "Model", "model")
    run = RunArtifact(analysis_name="trainer", condition_label="x", replicate=1,
                      sidecars=[source.sidecar_ref_for(digest, "sidecars/model.joblib")])
    bundle = tmp_path / "model.zip"
    export_bundle(source.root, bundle, digests=[source.write_artifact(run)])
    target = ArtifactStore(tmp_path / "target")
    import_bundle(target, bundle, None)
    with pytest.raises(UntrustedWriterError) as err:
        target.load_object(digest)
    assert "it came from model.zip (sha256:" in str(err.value)
    assert "trust_imported=True" in str(err.value)
    assert target.load_object(digest, trust_imported=True) == {"weights": [1, 2, 3]}
    assert target.save_object({"weights": [1, 2, 3]}, "Model", "model") == digest
    assert target.load_object(digest) == {"weights": [1, 2, 3]}   # now our own bytes


def _rival_bundle(tmp_path: Path) -> tuple[Path, str]:
    """A bundle whose comparisons/rg.json names another comparison than ``bundle``'s."""
    from assay.store.artifacts import ComparisonArtifact

    rival = make_study(tmp_path / "c")
    digest = rival.store.write_artifact(ComparisonArtifact(
        analysis_name="rg", payload={"control": "ctrl", "comparisons": {"treat": {"rg": {
            "difference": 2.0, "ci_low": 0.5, "ci_high": 3.5, "t": 3.1, "p": 0.02,
            "df": 4.0}}}},
        inputs=[{"role": "condition", "digest": d} for d in rival.conditions.values()],
        provenance={"stage": "compare", "plugin": "rg"}))
    write_ref(rival.results / "comparisons" / "rg.json", digest, artifact_type="comparison",
              analysis="rg")
    out = tmp_path / "rival.zip"
    assert main(["--store", str(rival.store_root), "--results", str(rival.results), "export",
                 "comparisons/rg.json", "-o", str(out)]) == 0
    return out, digest


def _waiters_on(path: Path) -> int:
    """Processes blocked on a POSIX lock of ``path`` (the '->' lines of /proc/locks)."""
    inode = str(path.stat().st_ino)
    return sum(1 for line in Path("/proc/locks").read_text().splitlines()
               if "->" in line and line.split()[-3].split(":")[-1] == inode)


def test_two_conflicting_imports_at_once_one_wins_the_other_fails(study, bundle, tmp_path):
    """Both pass their first check (no ref yet) and then wait for the results directory's
    lock (held here until both wait): the second must see the first's ref and fail."""
    import fcntl
    import os
    import subprocess
    import sys
    import time

    rival, rival_digest = _rival_bundle(tmp_path)
    target = tmp_path / "fresh"
    (target / "results").mkdir(parents=True)
    lock = target / "results" / ".import.lock"
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.lockf(fd, fcntl.LOCK_EX)
    procs = [subprocess.Popen([sys.executable, "-m", "assay.cli", "--store",
                               str(target / "store"), "--results", str(target / "results"),
                               "import", str(b)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for b in (bundle, rival)]
    deadline = time.monotonic() + 120
    while _waiters_on(lock) < 2:
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs), \
            [p.communicate() for p in procs]
        time.sleep(0.05)
    os.close(fd)
    results = [(p.wait(timeout=120), p.communicate()[1]) for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 1], results
    loser = next(err for code, err in results if code == 1)
    assert "already points to" in loser and "written meanwhile, by another import?" in loser
    won = ArtifactStore.read_ref(target / "results" / "comparisons" / "rg.json").digest
    assert won == (study.comparison if results[0][0] == 0 else rival_digest)
