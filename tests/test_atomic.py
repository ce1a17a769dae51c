"""Every kind of file assay writes is published the same durable way.

For each target: the temp file's bytes are fsynced before the rename onto the target, and
the target's directory is fsynced after it, so a power loss leaves the old file or the
whole new one, and keeps the new name. The syscalls are recorded, not mocked: they run.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest

from assay import ArtifactStore, RunArtifact, write_ref
from assay.store.atomic import atomic_write_bytes


class Syscalls:
    """Records open/fsync/replace in order, naming fds by the path they were opened on."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.events: list[tuple[str, str, str]] = []
        self._fds: dict[int, str] = {}
        real_open, real_fsync, real_replace = os.open, os.fsync, os.replace

        def recording_open(path, flags, mode=0o777, *, dir_fd=None):
            fd = real_open(path, flags, mode, dir_fd=dir_fd)
            self._fds[fd] = os.path.abspath(os.fspath(path))
            return fd

        def recording_fsync(fd):
            path = self._fds.get(fd if isinstance(fd, int) else fd.fileno(), "?")
            kind = "dir" if os.path.isdir(path) else "file"
            self.events.append(("fsync", kind, path))
            return real_fsync(fd)

        def recording_replace(src, dst, **kwargs):
            self.events.append(("replace", os.path.abspath(os.fspath(src)),
                                os.path.abspath(os.fspath(dst))))
            return real_replace(src, dst, **kwargs)

        monkeypatch.setattr(os, "open", recording_open)
        monkeypatch.setattr(os, "fsync", recording_fsync)
        monkeypatch.setattr(os, "replace", recording_replace)

    def assert_durable(self, target: Path, staged_in: Path | None = None) -> None:
        """fsync(tmp) < replace(tmp, target) < fsync(dir of target), for the last publish.

        The temp file sits beside the target, or in ``staged_in`` (objects: store/tmp).
        """
        target = os.path.abspath(target)
        renames = [i for i, e in enumerate(self.events) if e[0] == "replace" and e[2] == target]
        assert renames, f"{target} was never published by a rename"
        at = renames[-1]
        tmp = self.events[at][1]
        assert Path(tmp).parent == Path(staged_in or Path(target).parent).absolute(), tmp
        assert ("fsync", "file", tmp) in self.events[:at], f"{tmp} renamed before fsync"
        assert ("fsync", "dir", os.path.dirname(target)) in self.events[at + 1:], \
            f"directory of {target} not fsynced after the rename"

    def published(self, under: Path) -> list[str]:
        under = os.path.abspath(under)
        return [e[2] for e in self.events if e[0] == "replace" and e[2].startswith(under)]


@pytest.fixture
def calls(monkeypatch) -> Syscalls:
    return Syscalls(monkeypatch)


def test_objects_manifests_refs_and_action_records(tmp_path, calls):
    store = ArtifactStore(tmp_path / "store")
    sidecar = store.write_npz_sidecar("sidecars/x.npz", x=np.arange(10))
    table = store.write_table_sidecar("sidecars/t.csv", {"a": [1, 2]})
    digest = store.write_artifact(RunArtifact(analysis_name="r", condition_label="c",
                                              replicate=1, sidecars=[sidecar, table]))
    ref = write_ref(tmp_path / "results" / "runs" / "c" / "1.json", digest,
                    artifact_type="run")
    record = store.record_action("ab" * 32, digest, stage="run")
    for sha in (sidecar.sha256, table.sha256, digest.removeprefix("sha256:")):
        calls.assert_durable(store.objects.path_for(sha), staged_in=store.root / "tmp")
    calls.assert_durable(ref.path)
    calls.assert_durable(record)
    assert stat.S_IMODE(store.objects.path_for(sidecar.sha256).stat().st_mode) == 0o444


def test_figures_catalog_and_bundles(tmp_path, calls):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from assay import open_catalog
    from assay.tools.bundle import export_bundle
    from assay.tools.catalog import build_catalog
    from assay.tools.inventory import load_refs
    from assay.pipeline.plotting import save_figure

    store = ArtifactStore(tmp_path / "store")
    digest = store.write_artifact(RunArtifact(analysis_name="r", condition_label="c",
                                              replicate=1))
    write_ref(tmp_path / "results" / "runs" / "c" / "1.json", digest, artifact_type="run")

    figure = plt.figure()
    save_figure(figure, tmp_path / "results" / "plots" / "a" / "summary.png", dpi=30)
    plt.close(figure)
    calls.assert_durable(tmp_path / "results" / "plots" / "a" / "summary.png")

    build_catalog(store, tmp_path / "results", tmp_path / "results" / "catalog.duckdb")
    calls.assert_durable(tmp_path / "results" / "catalog.duckdb")
    assert len(open_catalog(tmp_path / "results" / "catalog.duckdb").query(
        "select * from artifacts")) == 1

    refs = load_refs(tmp_path / "results")
    export_bundle(store.root, tmp_path / "out" / "b.zip", refs=refs)
    calls.assert_durable(tmp_path / "out" / "b.zip")


def test_a_failed_write_leaves_the_old_file_and_no_temp(tmp_path):
    target = tmp_path / "ref.json"
    atomic_write_bytes(target, b"old")

    class Boom(Exception):
        pass

    from assay.store.atomic import atomic_file

    with pytest.raises(Boom):
        with atomic_file(target) as handle:
            handle.write(b"half of the new")
            raise Boom
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ref.json"]
