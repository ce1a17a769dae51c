"""Random store trees with links, FIFOs, devices, folders in place of files and foreign
owners: no command follows them, hangs on them, or deletes anything outside the store.

Property-based (hypothesis, derandomized): each example builds a small study through the
public API, plants 1-4 traps at random places of its store, then runs the store-reading
commands in-process, each under an alarm (a hang fails the example). Outside the store
lies a "home" whose names look like what gc sweeps (``*.part``, ``staging-*``,
``.x.json.<hex>.tmp``, a 64-hex name); it must be byte-for-byte and mtime unchanged.
"""

from __future__ import annotations

import os
import shutil
import signal
import stat
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from assay.cli import main
from study_helpers import make_study

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="devices and foreign owners need root")

TRAPS = ("link to a file outside", "link to a folder outside", "link to /dev/zero", "fifo",
         "character device", "folder in place of a file", "foreign owner", "no permissions")
COMMANDS = (["verify"], ["verify", "--full"], ["stats"], ["ls"], ["catalog", "build"],
            ["gc"], ["gc", "--delete", "--grace", "0", "--work-grace", "0"],
            ["verify", "--repair"])
HANG_SECONDS = 30


def _bait(home: Path) -> None:
    (home / "notes").mkdir(parents=True)
    (home / "staging-thesis").mkdir()
    (home / "staging-thesis" / "chapter1.tex").write_text("thesis")
    (home / "big-download.part").write_bytes(b"x" * 1000)
    (home / "notes" / ".draft.tmp").write_text("draft")
    (home / ".notes.json.0123456789abcdef.tmp").write_text("{}")
    (home / ("ab" * 32)).write_bytes(b"looks like an object")


def _snapshot(home: Path) -> dict[str, tuple[bytes | None, int]]:
    out = {}
    for path in sorted(home.rglob("*")):
        st_ = path.lstat()
        out[path.relative_to(home).as_posix()] = (
            path.read_bytes() if path.is_file() else None, st_.st_mtime_ns)
    return out


def _plant(path: Path, trap: str, home: Path) -> None:
    was_dir = path.is_dir() and not path.is_symlink()
    if trap == "foreign owner":
        os.chown(path, 4242, 4242, follow_symlinks=False)
        return
    if trap == "no permissions":
        if not path.is_symlink():
            os.chmod(path, 0)
        return
    if was_dir:
        shutil.rmtree(path)
    else:
        path.unlink()
    if trap == "link to a file outside":
        path.symlink_to(home / "big-download.part")
    elif trap == "link to a folder outside":
        path.symlink_to(home)
    elif trap == "link to /dev/zero":
        path.symlink_to("/dev/zero")
    elif trap == "fifo":
        os.mkfifo(path)
    elif trap == "character device":
        os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 5))   # what /dev/zero is
    else:   # a folder in place of a file, holding a name gc would like
        path.mkdir()
        (path / "x.part").write_text("keep")


class Hang(Exception):
    pass


def _on_alarm(signum, frame):
    raise Hang("a command did not finish within the alarm")


@pytest.mark.stress   # randomized, many trials: not in the quick loop
@settings(max_examples=24, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture,
                                 HealthCheck.too_slow])
@given(data=st.data())
def test_random_traps_in_a_store_are_never_followed_hung_on_or_deleted_through(tmp_path_factory,
                                                                                data):
    root = tmp_path_factory.mktemp("tricks")
    home = root / "home"
    _bait(home)
    study = make_study(root / "study")
    store = study.store_root
    (store / "tmp" / "staging-x").mkdir(parents=True, exist_ok=True)
    (store / "tmp" / "staging-x" / "y.part").write_text("old staging")
    entries = sorted(p for p in store.rglob("*") if p.name != ".assay-store")
    entries += [store / name for name in ("objects", "actions", "tmp", "work", "roots")
                if (store / name).exists()]
    before = _snapshot(home)
    planted = []
    for _ in range(data.draw(st.integers(1, 4), label="traps")):
        candidates = [p for p in entries if os.path.lexists(p)]
        target = data.draw(st.sampled_from(candidates), label="where")
        trap = data.draw(st.sampled_from(TRAPS), label="trap")
        _plant(target, trap, home)
        planted.append((target.relative_to(store).as_posix(), trap))

    previous = signal.signal(signal.SIGALRM, _on_alarm)
    try:
        for command in COMMANDS:
            signal.alarm(HANG_SECONDS)
            try:
                code = main(["--store", str(store), "--results", str(study.results), *command])
            finally:
                signal.alarm(0)
            assert code in (0, 1), (command, planted, code)
            assert _snapshot(home) == before, (command, planted)
    finally:
        signal.signal(signal.SIGALRM, previous)
