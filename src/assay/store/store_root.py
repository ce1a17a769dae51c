"""A store is a store: a marker file, real folders, nothing of anyone else's inside.

``store: ~`` validated, and the workflow then made ``objects/ actions/ work/`` among a
user's files, where ``gc --delete`` later removed ``~/tmp/*.part``; a store folder replaced
by a link made gc delete files wherever it pointed. So every tool that opens a store
checks it first (``check_store_root``):

* the root holds ``.assay-store`` (written when assay creates the store). A directory
  without one is adopted only if it is empty or holds nothing but assay's own folders (a
  store made before the marker existed); anything else is refused, with the fix;
* every store folder (objects, actions, tmp, work, claims, roots) that exists is a real
  directory, not a symbolic link or a file, owned by a user the store trusts (its owner
  could otherwise replace anything in it).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

from ..errors import ArtifactStoreError

MARKER = ".assay-store"
MARKER_TEXT = b"assay store, format 1: do not put other files in this directory\n"
STORE_FOLDERS = ("objects", "actions", "tmp", "work", "claims", "roots", "origins",
                 "index")


def has_objects(root: str | os.PathLike[str]) -> bool:
    """Whether ``root`` holds a store's objects folder: a quick "is there a store here"
    for commands that only read one (they still run ``check_store_root``)."""
    return (Path(root) / "objects").is_dir()


def _is_marker(path: Path) -> bool:
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except FileNotFoundError:
        return False


def _policy(root: Path) -> Any:
    from .sharing import SharingPolicy

    return SharingPolicy.for_store(root, check_world_writable=False)


def check_store_root(root: str | os.PathLike[str], *, adopt: bool = True,
                     sharing: Any = None) -> None:
    """Refuse a directory that is not an assay store, or whose folders are links.

    ``adopt``: mark an empty directory, or an unmarked store of assay's folders only.
    """
    root = Path(root)
    for name in STORE_FOLDERS:
        try:
            st = os.lstat(root / name)
        except FileNotFoundError:
            continue
        if not stat.S_ISDIR(st.st_mode):
            what = (f"a symbolic link to {os.readlink(root / name)}"
                    if stat.S_ISLNK(st.st_mode) else "not a directory")
            raise ArtifactStoreError(
                f"store folder {root / name} is {what}: assay never follows links in a "
                "store (gc would delete files wherever it points). Remove it "
                f"(`rm {root / name}`); assay makes the folder again")
        if st.st_uid not in (0, os.geteuid()):
            sharing = sharing if sharing is not None else _policy(root)
            if not sharing.is_trusted(st.st_uid):
                raise ArtifactStoreError(
                    f"store folder {root / name} belongs to {sharing.writer(st.st_uid)}, "
                    f"whom this store does not trust ({sharing.trusted_description()}): "
                    "whoever owns a folder can swap what is in it. Its owner or root moves it "
                    f"aside (`mv {root / name} {root / name}.untrusted`); assay makes the "
                    "folder again")
    if _is_marker(root / MARKER):
        return
    try:
        entries = sorted(os.listdir(root))
    except FileNotFoundError:
        return
    # ("..assay-store.XXXX.tmp": another process writing the marker this very moment)
    foreign = [e for e in entries
               if e not in STORE_FOLDERS and not e.lstrip(".").startswith(MARKER.lstrip("."))]
    if foreign:
        shown = ", ".join(repr(e) for e in foreign[:3]) + (", ..." if len(foreign) > 3 else "")
        raise ArtifactStoreError(
            f"{root} is not an assay store: it has no {MARKER} marker and holds "
            f"{len(foreign)} other entr{'y' if len(foreign) == 1 else 'ies'} ({shown}). "
            "A store needs a directory of its own (gc deletes what it does not recognise "
            f"there): set `store:` to a new or empty directory, e.g. {root / 'assay-store'}")
    if adopt:
        from .atomic import atomic_write_bytes
        from .object_index import create_empty, has_index

        if "objects" not in entries and not has_index(root):
            # A new store: its object index starts empty and complete. (A store made
            # before the marker keeps its objects unindexed until `assay gc --rescan`.)
            create_empty(root, sharing if sharing is not None else _policy(root))
        if sharing is not None:
            atomic_write_bytes(root / MARKER, MARKER_TEXT, sharing=sharing)
        else:
            atomic_write_bytes(root / MARKER, MARKER_TEXT)
