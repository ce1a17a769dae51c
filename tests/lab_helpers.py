"""Real Unix users and a group for the shared-store tests (tests/test_shared_store.py).

The tests run as root (CI does): ``make_lab`` creates a group and three users with
``groupadd``/``useradd`` -- two members of the group and one outsider -- and ``Lab.close``
deletes them again. Nothing about permissions is mocked: assay runs as those users, either

* in a forked child of the test process that calls ``os.setgroups``/``os.setgid``/
  ``os.setuid`` and then a function (``Lab.call``: library-level checks), or
* as a subprocess started with ``user=``/``group=``/``extra_groups=`` (the same calls,
  made by ``subprocess`` before ``exec``): the real ``snakemake`` and ``assay`` commands.

Those users must be able to run this Python. When it lives where others may not search
(pyenv under ``/root``, mode 0700), ``grant_search`` adds the search bit for others to
exactly the directories that lack it and ``Lab.close`` puts their modes back (once no other
test session on the machine still needs them). The code
under test is copied (with its compiled bytecode) into the lab's world-readable scratch
directory, so the clone's own location and modes do not matter.
"""

from __future__ import annotations

import atexit
import compileall
import fcntl
import grp
import json
import os
import pickle
import pwd
import shutil
import site
import stat
import subprocess
import sys
import tempfile
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from workflow_helpers import REPO, write_config


@dataclass(frozen=True)
class User:
    name: str
    uid: int
    gid: int                        # primary (its own private group)
    groups: tuple[int, ...]         # supplementary, as the kernel will see them
    home: Path


def can_make_users() -> str | None:
    """Why these tests cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root to create Unix users and groups (CI runs as root)"
    for tool in ("useradd", "groupadd", "userdel", "groupdel"):
        if shutil.which(tool) is None:
            return f"needs {tool}"
    return None


def _run(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True, text=True)


# Test sessions that run at the same time (two checkouts on one machine) share the grants:
# a directory's mode is put back only when the last session that needed it is done.
GRANTS = Path(tempfile.gettempdir()) / "assay-lab-search-grants.json"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def _grants() -> Iterator[dict[str, Any]]:
    """{directory: {"mode": its own mode, "pids": sessions using the grant}}, locked; a
    session that died without releasing (SIGKILL) no longer counts."""
    with open(os.open(GRANTS, os.O_RDWR | os.O_CREAT, 0o600), "r+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        text = handle.read()
        grants = json.loads(text) if text.strip() else {}
        for key, grant in list(grants.items()):
            grant["pids"] = [p for p in grant["pids"] if p != os.getpid() and _alive(p)]
            if not grant["pids"]:
                try:
                    os.chmod(key, grant["mode"])
                except OSError:
                    pass
                del grants[key]
        yield grants
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps(grants))


def grant_search(paths: list[Path]) -> list[str]:
    """Add o+x to every directory on these paths that lacks it; returns the directories
    this session holds a grant on (``release_search`` gives them back)."""
    held: list[str] = []
    with _grants() as grants:
        for path in paths:
            path = Path(path).resolve()
            for directory in [*reversed(path.parents), path]:
                key = str(directory)
                if key in held or not directory.is_dir():
                    continue
                if key in grants:
                    grants[key]["pids"].append(os.getpid())
                    held.append(key)
                    continue
                mode = stat.S_IMODE(directory.stat().st_mode)
                if not mode & stat.S_IXOTH:
                    os.chmod(directory, mode | stat.S_IXOTH)
                    grants[key] = {"mode": mode, "pids": [os.getpid()]}
                    held.append(key)
    return held


def release_search(held: list[str]) -> None:
    """Give this session's grants back (opening the grants drops this pid from each, and
    puts back the mode of a directory no live session still needs)."""
    if held:
        with _grants():
            pass


@dataclass
class Lab:
    """A group, two members (alice, bob), an outsider (mallory), and a scratch directory
    every one of them may search."""

    tag: str
    group: str
    gid: int
    top: Path
    code: Path
    users: dict[str, User] = field(default_factory=dict)
    restore: list[str] = field(default_factory=list)
    closed: bool = False

    @property
    def alice(self) -> User:
        return self.users["alice"]

    @property
    def bob(self) -> User:
        return self.users["bob"]

    @property
    def mallory(self) -> User:
        return self.users["mallory"]

    # --- directories ---------------------------------------------------------------------
    def shared_store(self, name: str) -> Path:
        """What an admin does for a lab: a directory owned by the group, mode 2775."""
        path = self.top / name
        path.mkdir()
        os.chown(path, 0, self.gid)
        os.chmod(path, 0o2775)
        return path

    def own_dir(self, user: User, name: str) -> Path:
        path = self.top / name
        path.mkdir()
        os.chown(path, user.uid, user.gid)
        return path

    def study(self, user: User, name: str, config: dict[str, Any]) -> Path:
        """A study directory owned by ``user`` holding ``config``."""
        path = self.own_dir(user, name)
        self.write_config(user, path, config)
        return path

    def write_config(self, user: User, workdir: Path, config: dict[str, Any]) -> None:
        written = write_config(workdir, config)
        for path in (written.parent, written):
            os.chown(path, user.uid, user.gid)

    # --- running as a user ---------------------------------------------------------------
    def env(self, user: User, **extra: str) -> dict[str, str]:
        """The test's environment (as `runuser` without -l keeps it: OPENBLAS_* settings
        change floating-point results), with the user's own home and this code."""
        inherited = {k: v for k, v in os.environ.items()
                     if not k.startswith(("ASSAY_", "XDG_", "PYTEST_"))}
        return {**inherited, "HOME": str(user.home), "USER": user.name, "LOGNAME": user.name,
                "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}",
                "PYTHONPATH": str(self.code / "src"),
                "MPLCONFIGDIR": str(user.home / ".matplotlib"),
                "XDG_CACHE_HOME": str(user.home / ".cache"), **extra}

    def popen_args(self, user: User, argv: list[str], cwd: Path,
                   env: dict[str, str] | None) -> dict[str, Any]:
        return dict(args=argv, cwd=cwd, env={**self.env(user), **(env or {})}, user=user.uid,
                    group=user.gid, extra_groups=list(user.groups), text=True,
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def snakemake_argv(self, workdir: Path, *args: str) -> list[str]:
        snakefile = self.code / "src" / "assay" / "snakemake_workflow" / "Snakefile"
        return [sys.executable, "-m", "snakemake", "--snakefile", str(snakefile),
                "--directory", str(workdir), "--cores", "2", "--workflow-profile", "none",
                "--scheduler", "greedy", *args]

    def snakemake(self, user: User, workdir: Path, *args: str, check: bool = True,
                  env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        proc = subprocess.run(**self.popen_args(user, self.snakemake_argv(workdir, *args),
                                                workdir, env), timeout=600)
        if check and proc.returncode != 0:
            raise AssertionError(f"snakemake as {user.name} failed ({proc.returncode}):\n"
                                 f"{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}")
        return proc

    def assay(self, user: User, *argv: str, cwd: Path | None = None,
              env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        """The real `assay` command as ``user``."""
        return subprocess.run(**self.popen_args(
            user, [sys.executable, "-m", "assay.cli", "--no-progress", *argv],
            cwd or self.top, env), timeout=300)

    def call(self, user: User, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``fn(*args)`` in a forked child running as ``user``; its result, or its
        exception re-raised here."""
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:   # the child: become the user, run, report, never return
            code = 0
            try:
                os.close(read_end)
                os.setgroups(list(user.groups))
                os.setgid(user.gid)
                os.setuid(user.uid)
                os.environ.update(HOME=str(user.home), USER=user.name, LOGNAME=user.name)
                os.environ.pop("ASSAY_STORE_SHARING", None)
                try:
                    outcome: tuple[str, Any] = ("ok", fn(*args, **kwargs))
                except BaseException as exc:  # noqa: BLE001 - sent back to the parent
                    outcome = ("error", exc)
                try:
                    data = pickle.dumps(outcome)
                except Exception as exc:  # noqa: BLE001
                    data = pickle.dumps(("error", RuntimeError(f"unpicklable: {exc!r}")))
                with os.fdopen(write_end, "wb") as pipe:
                    pipe.write(data)
            except BaseException:  # noqa: BLE001
                code = 1
            finally:
                os._exit(code)
        os.close(write_end)
        with os.fdopen(read_end, "rb") as pipe:
            data = pipe.read()
        _, status = os.waitpid(pid, 0)
        if not data:
            raise AssertionError(f"child as {user.name} died (status {status})")
        kind, value = pickle.loads(data)
        if kind == "error":
            raise value
        return value

    # --- cleanup -------------------------------------------------------------------------
    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        shutil.rmtree(self.top, ignore_errors=True)
        for user in self.users.values():
            subprocess.run(["userdel", user.name], capture_output=True)
            subprocess.run(["groupdel", user.name], capture_output=True)  # if userdel left it
        subprocess.run(["groupdel", self.group], capture_output=True)
        release_search(self.restore)


def make_lab() -> Lab:
    tag = uuid.uuid4().hex[:6]
    group = f"lab{tag}"
    top = Path(tempfile.mkdtemp(prefix="assay-lab-"))
    os.chmod(top, 0o755)
    lab = Lab(tag, group, -1, top, top / "code")
    atexit.register(lab.close)
    try:
        lab.restore = grant_search([Path(sys.base_prefix), Path(sys.prefix),
                                    Path(sys.executable).resolve().parent,
                                    *map(Path, site.getsitepackages()), top])
        _run("groupadd", group)
        lab.gid = grp.getgrnam(group).gr_gid
        for role, member in (("alice", True), ("bob", True), ("mallory", False)):
            name = f"{role}{tag}"
            _run("useradd", "-M", "-U", "-s", "/usr/sbin/nologin",
                 *(["-G", group] if member else []), name)
            entry = pwd.getpwnam(name)
            home = top / f"home-{role}"
            home.mkdir()
            os.chown(home, entry.pw_uid, entry.pw_gid)
            groups = tuple(os.getgrouplist(name, entry.pw_gid))
            lab.users[role] = User(name, entry.pw_uid, entry.pw_gid, groups, home)
        _copy_code(lab.code)
    except BaseException:
        lab.close()
        raise
    return lab


def _copy_code(code: Path) -> None:
    """The checkout's src/ (the library and the workflow it ships) and environment.yml
    (the workflow's conda env links to it), compiled, readable by everyone."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    code.mkdir()
    shutil.copy2(REPO / "environment.yml", code / "environment.yml")
    shutil.copytree(REPO / "src", code / "src", symlinks=True, ignore=ignore)
    compileall.compile_dir(code / "src", quiet=1)
    for dirpath, dirnames, filenames in os.walk(code):
        for name in dirnames:
            os.chmod(os.path.join(dirpath, name), 0o755)
        for name in filenames:
            path = os.path.join(dirpath, name)
            if not os.path.islink(path):
                os.chmod(path, 0o644)


@pytest.fixture(scope="module")
def lab() -> Iterator["Lab"]:
    """Two real users and their group for one test module (skipped where users cannot be
    made); imported by the modules that use it."""
    if can_make_users() is not None:
        pytest.skip(can_make_users())
    made = make_lab()
    yield made
    made.close()
