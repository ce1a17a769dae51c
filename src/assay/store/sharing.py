"""A store shared by a lab: who may write it, with which modes, and whom its cache trusts.

The one place the permission model lives (docs/reliability.md, "Shared stores"):

* **Shared or private.** A store is shared when its root directory is setgid, or is
  group-writable by a group other than its owner's own (a private group with umask 002 is
  not sharing), or the study says so (``store_sharing.shared``). `assay share-store
  --group G` makes an existing store shared (``assay.store.share_store``).
* **Modes.** In a shared store every directory assay creates is group-writable and setgid
  (``drwxrwsr-x``: it keeps the store's group); objects stay read-only for everyone
  (``-r--r--r--``); action records, refs and work-dir state are ``-rw-r--r--``, readable
  but never writable by the group, so a file's owner is who wrote it; staging files are
  ``-rw-r-----``. A private store keeps the modes it always had.
* **Trust.** An action record counts as a cache hit only if its owner is trusted: the
  current user, root, and by default the members of the store root's group; or the
  names in ``store_sharing.trusted`` (users or groups), or ``any``. Pickles are loaded
  only from trusted writers.
* **Refusal.** A world-writable store root is refused unless the study allows it.
* **Errors.** A ``PermissionError`` on the store becomes a ``StorePermissionError`` that
  names the path, its owner and mode, and the command that fixes it.
* **Members' results.** In a shared store each job registers its results directory under
  ``roots/`` (``assay.store.member_roots``), so any member's ``assay gc`` marks from every
  member's refs.

Nothing here enters an action key or a digest: sharing changes who may do what, never
what is computed.
"""

from __future__ import annotations

import json
import os
import stat
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from ..errors import ArtifactStoreError, ConfigError

ENV_VAR = "ASSAY_STORE_SHARING"     # how the study's store_sharing block reaches the jobs
ANY = "any"
SHARED_DIR_MODE = 0o2770            # plus the root's read/search bits for others
TMP_MODE_PRIVATE, TMP_MODE_SHARED = 0o600, 0o640
JOB_UMASK_SHARED = 0o002            # what a job's runner creates stays group-writable
# A member's object used less than this long ago needs no refresh for gc (which warns
# when asked for a grace period under a minute).
FRESH_SECONDS = 60.0


class StorePermissionError(ArtifactStoreError, PermissionError):
    """The current user may not read or write a path of the store (or of the results)."""


class UntrustedWriterError(ArtifactStoreError):
    """A file was written by someone the store's trust rule does not trust."""


# --- what the study says -----------------------------------------------------------------
@dataclass(frozen=True)
class SharingSettings:
    """The study config's ``store_sharing`` block (defaults: decide from the store root,
    trust yourself and the store's group, refuse a world-writable store)."""

    shared: bool | None = None
    trusted: tuple[str, ...] | None = None
    allow_world_writable: bool = False

    @classmethod
    def from_config(cls, block: dict[str, Any] | None, *, where: str = "store_sharing"
                    ) -> "SharingSettings":
        block = dict(block or {})
        unknown = sorted(set(block) - {"shared", "trusted", "allow_world_writable"})
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {unknown}; known keys: "
                              "allow_world_writable, shared, trusted")
        shared = block.get("shared", "auto")
        if shared not in ("auto", True, False):
            raise ConfigError(f"{where}.shared: {shared!r} is not one of 'auto', true, false")
        trusted = block.get("trusted")
        if trusted is not None:
            if trusted == ANY:
                trusted = [ANY]
            if not isinstance(trusted, (list, tuple)) or not all(
                    isinstance(t, str) and t for t in trusted):
                raise ConfigError(f"{where}.trusted: {trusted!r} is neither 'any' nor a list "
                                  "of user and group names")
            trusted = tuple(trusted)
        return cls(None if shared == "auto" else shared, trusted,
                   bool(block.get("allow_world_writable", False)))

    def to_config(self) -> dict[str, Any]:
        out: dict[str, Any] = {"shared": "auto" if self.shared is None else self.shared,
                               "allow_world_writable": self.allow_world_writable}
        if self.trusted is not None:
            out["trusted"] = ANY if self.trusted == (ANY,) else list(self.trusted)
        return out

    def env_value(self) -> str:
        return json.dumps(self.to_config(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> "SharingSettings":
        text = (os.environ if environ is None else environ).get(ENV_VAR, "")
        if not text.strip():
            return cls()
        try:
            block = json.loads(text)
        except ValueError:
            raise ConfigError(f"environment variable {ENV_VAR} is not JSON: {text[:80]!r}; "
                              "the workflow sets it from the study's store_sharing") from None
        if not isinstance(block, dict):
            raise ConfigError(f"environment variable {ENV_VAR} must hold a JSON object")
        return cls.from_config(block, where=ENV_VAR)


# --- names for people --------------------------------------------------------------------
def user_name(uid: int) -> str:
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def group_name(gid: int) -> str:
    import grp

    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return f"gid {gid}"


def who(st: os.stat_result) -> str:
    """``alice:lab``, the owner and group of a stat result."""
    return f"{user_name(st.st_uid)}:{group_name(st.st_gid)}"


def _me() -> str:
    return user_name(os.geteuid())


def _nearest_existing(path: Path) -> Path:
    while not os.path.lexists(path) and path != path.parent:
        path = path.parent
    return path


def _denied(path: Path, *, write: bool) -> Path:
    """The path component that refuses us: a directory we may not search, the directory
    we may not write into, or the file we may not read."""
    path = Path(os.path.abspath(path))
    for ancestor in reversed(path.parents):
        if os.path.isdir(ancestor) and not os.access(ancestor, os.X_OK, effective_ids=True):
            return ancestor
    if write:
        parent = _nearest_existing(path.parent)
        if not os.access(parent, os.W_OK | os.X_OK, effective_ids=True):
            return parent
        return path if os.path.lexists(path) else parent
    return path


def _describe(path: Path) -> str:
    try:
        st = os.lstat(path)
    except OSError:
        return f"{path} (cannot be inspected)"
    return f"{path} (owner {who(st)}, mode {stat.filemode(st.st_mode)})"


# --- the policy of one store ---------------------------------------------------------------
@dataclass(eq=False)
class SharingPolicy:
    """The permission model applied to one store root (``root=None``: not a store, e.g. the
    results directory; private modes, generic errors)."""

    root: Path | None = None
    settings: SharingSettings = field(default_factory=SharingSettings)
    shared: bool = False
    gid: int | None = None          # the store root's group
    root_mode: int = 0o755
    _trust_any: bool = False
    _trusted_uids: set[int] = field(default_factory=set)
    _trusted_gids: set[int] = field(default_factory=set)
    _trust_cache: dict[int, bool] = field(default_factory=dict)

    @classmethod
    def for_store(cls, root: str | os.PathLike[str],
                  settings: SharingSettings | None = None, *,
                  check_world_writable: bool = True,
                  st: os.stat_result | None = None) -> "SharingPolicy":
        """Read the root's owner, group and mode (one stat, or ``st`` if the caller has it)
        and apply the settings."""
        settings = settings if settings is not None else SharingSettings.from_env()
        policy = cls(Path(root), settings)
        try:
            st = st if st is not None else os.stat(policy.root)
        except FileNotFoundError:
            policy.shared = bool(settings.shared)
            policy._set_trust(None)
            return policy
        policy.gid, policy.root_mode = st.st_gid, stat.S_IMODE(st.st_mode)
        if settings.shared is not None:
            policy.shared = settings.shared
        else:
            policy.shared = bool(st.st_mode & stat.S_ISGID) or (
                bool(st.st_mode & stat.S_IWGRP) and not _owners_own_group(st))
        if check_world_writable and st.st_mode & stat.S_IWOTH and \
                not settings.allow_world_writable:
            raise StorePermissionError(
                f"store {policy.root} is world-writable ({stat.filemode(st.st_mode)}, owner "
                f"{who(st)}): any user of this machine could plant action records in it. "
                f"Remove the write bit for others (`chmod o-w {policy.root}`, or share it "
                f"with a group: `assay --store {policy.root} share-store --group GROUP`), "
                "or allow it in the study config: store_sharing: {allow_world_writable: true}")
        policy._set_trust(st.st_gid)
        return policy

    # modes -------------------------------------------------------------------------------
    @property
    def tmp_mode(self) -> int:
        """Mode of staging files (``.part``): group-readable in a shared store."""
        return TMP_MODE_SHARED if self.shared else TMP_MODE_PRIVATE

    @property
    def dir_mode(self) -> int:
        return SHARED_DIR_MODE | (self.root_mode & 0o005)

    def make_dirs(self, path: str | os.PathLike[str]) -> None:
        """Create ``path`` and missing parents; in a shared store each one we create gets
        the shared directory mode and the store's group."""
        if os.path.isdir(path):   # the common case: one stat
            return
        path = Path(path)
        try:
            if not self.shared:
                path.mkdir(parents=True, exist_ok=True)
                return
            self._make_shared_dirs(path)
        except StorePermissionError:
            raise
        except PermissionError as exc:
            raise self.permission_error(exc.filename or path) from None

    def _make_shared_dirs(self, path: Path) -> None:
        missing: list[Path] = []
        while not path.is_dir():
            missing.append(path)
            if path == path.parent:
                break
            path = path.parent
        for directory in reversed(missing):
            try:
                os.mkdir(directory, self.dir_mode)
            except FileExistsError:
                continue
            self._fix_new_dir(directory)

    def _fix_new_dir(self, directory: Path) -> None:
        """A directory we just created: the shared mode (mkdir's mode passes the umask) and
        the store's group (inherited from a setgid parent; set here when it is not). The
        kernel passes setgid on, not the sticky bit: a shard of a sticky records folder
        (``share-store --sticky-records``) gets it here."""
        if self.gid is not None:
            try:
                os.chown(directory, -1, self.gid)
            except PermissionError:
                pass    # not a member of the store's group: it keeps ours
        sticky = os.stat(directory.parent).st_mode & stat.S_ISVTX
        os.chmod(directory, self.dir_mode | sticky)

    def job_umask(self) -> int | None:
        """The umask a job sets so files its runner creates stay group-writable."""
        return JOB_UMASK_SHARED if self.shared else None

    # trust -------------------------------------------------------------------------------
    def _set_trust(self, store_gid: int | None) -> None:
        names = self.settings.trusted
        self._trust_any = names == (ANY,)
        self._trusted_uids = {0}
        self._trusted_gids = set()
        if names is None:
            if store_gid is not None:
                self._trusted_gids.add(store_gid)
            return
        import grp
        import pwd

        for name in names:
            if name == ANY:
                continue
            found = False
            try:
                self._trusted_uids.add(pwd.getpwnam(name).pw_uid)
                found = True
            except KeyError:
                pass
            try:
                self._trusted_gids.add(grp.getgrnam(name).gr_gid)
                found = True
            except KeyError:
                pass
            if not found:
                raise ConfigError(f"store_sharing.trusted: {name!r} is neither a user nor a "
                                  "group on this machine; list users and groups that exist, "
                                  "or 'any'")

    def is_trusted(self, uid: int) -> bool:
        """Whether a file owned by ``uid`` counts (as a cache hit, as a pickle to load)."""
        if uid == os.geteuid() or uid == 0 or self._trust_any or uid in self._trusted_uids:
            return True
        hit = self._trust_cache.get(uid)
        if hit is None:
            hit = bool(self._trusted_gids & _groups_of(uid))
            self._trust_cache[uid] = hit
        return hit

    def trusted_description(self) -> str:
        if self._trust_any:
            return "any writer"
        users = sorted(user_name(u) for u in self._trusted_uids | {os.geteuid()})
        groups = sorted(group_name(g) for g in self._trusted_gids)
        return ", ".join(users + [f"members of {g}" for g in groups])

    def writer(self, uid: int) -> str:
        return f"{user_name(uid)} (uid {uid})"

    def untrusted(self, what: str, path: Path | str, uid: int) -> str:
        return (f"{what} {path} was written by {self.writer(uid)}, who is not trusted "
                f"(trusted: {self.trusted_description()})")

    # errors ------------------------------------------------------------------------------
    def fix_hint(self, denied: Path) -> str:
        try:
            st = os.lstat(denied)
        except OSError:
            return ""
        owner = user_name(st.st_uid)
        group = group_name(st.st_gid)
        hint = "GROUP" if group == owner else group
        return (f". To share the store with a group, {owner} (or root) runs: "
                f"assay --store {self.root} share-store --group {hint}")

    def permission_error(self, path: str | os.PathLike[str], *, write: bool = True,
                         what: str | None = None) -> StorePermissionError:
        """The error for a refused read or write of ``path``: names the component that
        refused, its owner and mode, and the fix."""
        path = Path(os.path.abspath(path))
        denied = _denied(path, write=write)
        in_store = self.root is not None and Path(os.path.abspath(self.root)) in (
            path, *path.parents)
        if write and in_store:
            text = f"cannot write to the store at {self.root}: {_me()} may not write"
        elif write:
            text = f"cannot write {what or path}: {_me()} may not write"
        else:
            text = f"cannot read {what or path}: {_me()} may not read"
        hint = self.fix_hint(denied) if in_store else \
            f"; make it {'writable' if write else 'readable'} for {_me()} or use another directory"
        return StorePermissionError(f"{text} {_describe(denied)}{hint}")

    @contextmanager
    def writing(self, path: str | os.PathLike[str]) -> Iterator[None]:
        """Turn a PermissionError raised while writing at ``path`` into a clear error."""
        try:
            yield
        except StorePermissionError:
            raise
        except PermissionError as exc:
            raise self.permission_error(exc.filename or path) from None

    @staticmethod
    def kept_by_sticky(path: str | os.PathLike[str]) -> int | None:
        """The uid of another user's file at ``path`` in a sticky directory (only its owner
        or root may replace or delete it), or None."""
        try:
            st = os.lstat(path)
            sticky = os.stat(os.path.dirname(os.fspath(path)) or ".").st_mode & stat.S_ISVTX
        except OSError:
            return None
        euid = os.geteuid()
        return st.st_uid if sticky and euid != 0 and st.st_uid != euid else None

    def reading_error(self, path: str | os.PathLike[str], what: str) -> StorePermissionError:
        return self.permission_error(path, write=False, what=what)


PRIVATE = SharingPolicy()


def _owners_own_group(st: os.stat_result) -> bool:
    """True when the root's group is its owner's primary group (umask 002 with private
    groups makes every directory group-writable; that is not sharing)."""
    import pwd

    try:
        return pwd.getpwuid(st.st_uid).pw_gid == st.st_gid
    except KeyError:
        return False


def _groups_of(uid: int) -> set[int]:
    import pwd

    try:
        entry = pwd.getpwuid(uid)
    except KeyError:
        return set()
    return set(os.getgrouplist(entry.pw_name, entry.pw_gid))


# --- refreshing another member's object ----------------------------------------------------
def is_fresh(st: os.stat_result, now: float | None = None) -> bool:
    return st.st_mtime > (time.time() if now is None else now) - FRESH_SECONDS

