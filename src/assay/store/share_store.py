"""`assay share-store`: give an existing store to a Unix group (and, on request, make its
records folders sticky). The permission model itself lives in ``assay.store.sharing``; this is
the one-off command that brings a store into it."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ArtifactStoreError
from .actions import ACTIONS_DIR
from .member_roots import ROOTS_DIR
from .store_root import has_objects
from .sharing import SHARED_DIR_MODE, _me, user_name, who


@dataclass
class ShareReport:
    root: str
    group: str
    root_before: str
    root_after: str = ""
    directories: int = 0            # directories changed
    files: int = 0                  # files changed
    unchanged: int = 0
    not_ours: dict[str, int] = field(default_factory=dict)   # owner -> entries we could not change
    members: list[str] = field(default_factory=list)
    dry_run: bool = False

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _wanted(mode: int, is_dir: bool, others: int) -> int:
    if is_dir:
        return (mode & ~0o7777) | SHARED_DIR_MODE | others | (stat.S_IMODE(mode) & 0o700)
    return mode | stat.S_IRGRP | (stat.S_IXGRP if mode & stat.S_IXUSR else 0)


# Folders whose files are records a member could otherwise replace or delete for another
# (action records, registered results): --sticky-records sets the sticky bit on them.
STICKY_FOLDERS = (ACTIONS_DIR, ROOTS_DIR)


def make_shared(root: str | os.PathLike[str], group: str, *, dry_run: bool = False,
                sticky_records: bool = False) -> ShareReport:
    """Give the store to ``group``: every directory group-writable and setgid, every file
    group-readable (objects stay read-only), all in that group. Only entries the current
    user owns can be changed (root changes all); the rest are counted by owner.

    ``sticky_records``: the records folders and their shards also get the sticky bit, so
    only a record's owner (or root) can rename or delete it."""
    import grp

    root = Path(root)
    if not has_objects(root):
        raise ArtifactStoreError(f"no store at {root} (no objects/ directory); pass --store DIR")
    try:
        entry = grp.getgrnam(group)
    except KeyError:
        raise ArtifactStoreError(f"there is no group {group!r} on this machine; "
                                 "create it (groupadd) or name an existing one") from None
    gid = entry.gr_gid
    euid = os.geteuid()
    if euid != 0 and gid not in os.getgroups() and gid != os.getegid():
        raise ArtifactStoreError(
            f"{_me()} is not a member of group {group}, so cannot give files to "
            f"it; a member of {group} (or root) runs this command")
    st = os.stat(root)
    report = ShareReport(str(root), group, f"{stat.filemode(st.st_mode)} {who(st)}",
                         dry_run=dry_run)
    report.members = sorted(set(entry.gr_mem) | _primary_members(gid))
    others = stat.S_IMODE(st.st_mode) & 0o005      # keep what others may do; never o+w

    sticky_tops = tuple(os.path.join(str(root), name) for name in STICKY_FOLDERS)

    def visit(path: str, st: os.stat_result, is_dir: bool) -> None:
        want_mode = _wanted(st.st_mode, is_dir, others) | (st.st_mode & stat.S_ISVTX)
        if is_dir and sticky_records and any(path == top or path.startswith(top + os.sep)
                                             for top in sticky_tops):
            want_mode |= stat.S_ISVTX
        if stat.S_IMODE(st.st_mode) == stat.S_IMODE(want_mode) and st.st_gid == gid:
            report.unchanged += 1
            return
        if euid != 0 and st.st_uid != euid:
            owner = user_name(st.st_uid)
            report.not_ours[owner] = report.not_ours.get(owner, 0) + 1
            return
        if is_dir:
            report.directories += 1
        else:
            report.files += 1
        if dry_run:
            return
        if st.st_gid != gid:
            os.chown(path, -1, gid, follow_symlinks=False)
        os.chmod(path, stat.S_IMODE(want_mode))   # after chown, which clears setgid bits

    visit(str(root), st, True)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            try:
                entry_st = os.lstat(path)
            except FileNotFoundError:
                continue
            if stat.S_ISLNK(entry_st.st_mode):
                continue
            visit(path, entry_st, stat.S_ISDIR(entry_st.st_mode))
    if dry_run:
        report.root_after = (f"{stat.filemode(_wanted(st.st_mode, True, others))} "
                             f"{user_name(st.st_uid)}:{group}")
    else:
        after = os.stat(root)
        report.root_after = f"{stat.filemode(after.st_mode)} {who(after)}"
    return report


def _primary_members(gid: int) -> set[str]:
    import pwd

    try:
        return {p.pw_name for p in pwd.getpwall() if p.pw_gid == gid}
    except OSError:
        return set()
