"""What every command shares: opening the store, naming artifacts, printing, progress."""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from ..errors import ArtifactStoreError, AssayError
from ..store.hashing import format_digest, hex_of, is_digest
from ..tools.inventory import RefEntry, expand_ref_args

_PREFIX = re.compile(r"^(?:sha256:)?([0-9a-f]{6,64})$")
SHORT = 12


class UsageError(AssayError):
    """The command line itself is wrong (exit code 2)."""


# --- which study: store and results ------------------------------------------------------
# Where the store and results are, first found wins: --store/--results, $ASSAY_STORE/
# $ASSAY_RESULTS, the study whose config/config.yaml is in the working directory or a
# parent (its `store:` and `results:`, relative to that study directory, as snakemake
# reads them), else ./store and ./results. So `assay ls` in an md study (results-md/)
# needs no flag, and neither does it in a subdirectory of the study.
STUDY_CONFIG = Path("config") / "config.yaml"
_ENV = {"store": "ASSAY_STORE", "results": "ASSAY_RESULTS"}


def find_study_config(start: Path | None = None) -> Path | None:
    """The nearest ``config/config.yaml`` at or above ``start`` (default: the working
    directory) that holds a study (a mapping with a ``runner``), or None."""
    found = _find_study(start)
    return found[0] if found else None


def _find_study(start: Path | None = None) -> tuple[Path, dict[str, str]] | None:
    import os

    try:
        here = Path(os.path.abspath(start or Path.cwd()))
    except FileNotFoundError:   # the working directory was removed under us
        return None
    for directory in (here, *here.parents):
        candidate = directory / STUDY_CONFIG
        if candidate.is_file():
            paths = _study_paths_in(candidate)
            return (candidate, paths) if paths is not None else None
    return None


def _study_paths_in(config_file: Path) -> dict[str, str] | None:
    """``{"store": ..., "results": ...}`` of a study config, or None if it is no study's
    config. A study config that cannot be read stops the command: guessing the store of
    the wrong study would show the wrong numbers."""
    import yaml

    from ..errors import ConfigError

    try:
        data = yaml.safe_load(config_file.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read the study config {config_file} to find its store "
                          f"and results ({type(exc).__name__}); fix it, or pass --store "
                          "DIR --results DIR") from None
    if not isinstance(data, dict) or "runner" not in data:
        return None
    paths = {}
    for key in ("store", "results"):
        value = data.get(key, key)   # the schema's defaults: store, results
        if not isinstance(value, str) or not value:
            raise ConfigError(f"the study config {config_file} has {key}: {value!r}, not a "
                              f"path; fix it, or pass --{key} DIR")
        paths[key] = value
    return paths


def _study_path(args: Any, key: str) -> Path:
    """args.store or args.results, resolved once per command (see STUDY_CONFIG above)."""
    import os

    resolved = getattr(args, f"_resolved_{key}", None)
    if resolved is not None:
        return resolved
    given = getattr(args, key, None)
    if given is None:
        given = os.environ.get(_ENV[key]) or None
    if given is not None:
        resolved = Path(given)
    else:
        resolved = Path(key)
        found = _find_study()
        if found is not None:
            config, paths = found
            relative = Path(os.path.relpath(config.parent.parent))   # '.' in the study
            store, results = (relative / paths[k] if not Path(paths[k]).is_absolute()
                              else Path(paths[k]) for k in ("store", "results"))
            resolved = store if key == "store" else results
            if (store, results) != (Path("store"), Path("results")):
                _note_once(args, f"assay: the study of {os.path.relpath(config)}: store "
                           f"{store}, results {results} (--store/--results to choose others)")
    setattr(args, f"_resolved_{key}", resolved)
    return resolved


def _note_once(args: Any, line: str) -> None:
    """Say once, on stderr, which study a command reads when it is not ./store, ./results."""
    if not getattr(args, "_study_noted", False):
        setattr(args, "_study_noted", True)
        print(line, file=sys.stderr)


def store_path(args: Any) -> Path:
    """The store directory the command means (it may not exist yet: `assay import`)."""
    return _study_path(args, "store")


def store_root(args: Any) -> Path:
    """The store directory, which must exist: reading commands never create one."""
    root = store_path(args)
    from ..store.store_root import has_objects

    if not has_objects(root):
        raise ArtifactStoreError(
            f"no store at {root} (no objects/ directory); run in the study directory "
            "or pass --store DIR")
    from ..store.store_root import check_store_root

    check_store_root(root, adopt=False)   # never read or sweep what is not a store
    return root


def open_store(args: Any) -> Any:
    from ..store.artifact_store import ArtifactStore

    return ArtifactStore(store_root(args))


def results_dir(args: Any, *, must_exist: bool = False) -> Path:
    path = _study_path(args, "results")
    if must_exist and not path.is_dir():
        raise ArtifactStoreError(f"no results directory at {path}; run in the study "
                                 "directory or pass --results DIR")
    return path


def catalog_path(args: Any) -> Path:
    from ..tools.catalog import default_catalog_path

    return Path(args.catalog) if getattr(args, "catalog", None) else default_catalog_path(
        results_dir(args))


# --- registering subcommands ----------------------------------------------------------
def add_command(sub: Any, name: str, help: str, handler: Callable[[Any], int]) -> Any:
    p = sub.add_parser(name, help=help, description=help)
    p.set_defaults(handler=handler)
    return p


def add_json(p: Any) -> None:
    p.add_argument("--json", action="store_true", help="machine-readable JSON on stdout")


def add_tolerance(p: Any) -> None:
    p.add_argument("--rtol", type=float, default=0.0, metavar="R",
                   help="relative tolerance: numbers a, b are equal if |a-b| <= atol + "
                        "rtol*max(|a|,|b|) (default 0)")
    p.add_argument("--atol", type=float, default=0.0, metavar="A",
                   help="absolute tolerance (default 0)")


def add_jobs(p: Any, what: str) -> None:
    p.add_argument("--jobs", "-j", type=int, metavar="N",
                   help=f"parallel threads for {what} (default: one per CPU for hashing, "
                        "one reader for small files; raise it on network filesystems)")


# --- naming artifacts ------------------------------------------------------------------
def resolve(text: str, root: Path, results: Path) -> tuple[str, RefEntry | None]:
    """A ref file, a path under results/, a digest or a unique digest prefix -> digest."""
    for candidate in (Path(text), results / text):
        if candidate.is_file():
            entry = expand_ref_args([candidate], results)[0]
            if entry.digest is None:
                raise ArtifactStoreError(entry.problem or f"cannot read ref {candidate}")
            return entry.digest, entry
    if is_digest(text):
        return text, None
    match = _PREFIX.match(text)
    if match:
        prefix = match.group(1)
        from ..store.objects import ObjectStore

        found = ObjectStore(root).with_prefix(prefix)
        if len(found) == 1:
            return format_digest(found[0]), None
        if len(found) > 1:
            raise UsageError(f"digest prefix {text!r} is ambiguous ({len(found)} objects); "
                             "give more hex digits")
        raise ArtifactStoreError(f"no object in {root} has a digest starting with {prefix!r}")
    raise UsageError(f"{text!r} is neither a ref file, a path under {results}/, nor a digest "
                     "('sha256:<hex>', a unique prefix of 6+ hex digits is enough)")


def resolve_many(texts: Sequence[str], root: Path, results: Path
                 ) -> tuple[list[RefEntry], list[str]]:
    """Command-line targets -> (refs, digests); directories expand to the refs below."""
    refs: list[RefEntry] = []
    digests: list[str] = []
    for text in texts:
        if Path(text).is_dir() or (results / text).is_dir():
            directory = Path(text) if Path(text).is_dir() else results / text
            found = expand_ref_args([directory], results)
            if not found:
                raise ArtifactStoreError(f"no refs (*.json) under {directory}")
            refs.extend(found)
            continue
        digest, entry = resolve(text, root, results)
        if entry is not None:
            refs.append(entry)
        else:
            digests.append(digest)
    return refs, digests


def short(digest: str | None) -> str:
    if not digest:
        return "-"
    hex_digest = hex_of(digest)
    return hex_digest[:SHORT] if hex_digest else digest


# --- output ----------------------------------------------------------------------------
def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, sort_keys=True, default=str) + "\n")


def print_table(rows: Iterable[dict[str, Any]], columns: Sequence[str],
                headers: Sequence[str] | None = None) -> None:
    """Aligned plain-text columns; numbers right-aligned, missing values as '-'."""
    rows = list(rows)
    headers = list(headers or [c.upper() for c in columns])
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    numeric = [all(isinstance(row.get(c), (int, float)) and not isinstance(row.get(c), bool)
                   for row in rows if row.get(c) is not None) and rows for c in columns]
    out = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip()]
    for r in cells:
        out.append("  ".join(v.rjust(w) if num else v.ljust(w)
                             for v, w, num in zip(r, widths, numeric)).rstrip())
    sys.stdout.write("\n".join(out) + "\n")


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def human_bytes(n: int | float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def print_frame(frame: Any, fmt: str, output: str | None = None) -> None:
    """A pandas DataFrame as a table, CSV, JSON records or Parquet (to a file)."""
    if fmt == "parquet":
        if not output:
            raise UsageError("--format parquet needs -o FILE (Parquet is binary)")
        frame.to_parquet(output, index=False)
        return
    if fmt == "csv":
        text = frame.to_csv(index=False)
    elif fmt == "json":
        text = frame.to_json(orient="records", date_format="iso", indent=2) + "\n"
    elif frame.empty:
        text = "(no rows)\n"
    else:
        import pandas as pd

        frame = frame.copy()
        for column in frame.columns:   # people read short digests; scripts use csv/json
            if frame[column].dtype == object or str(frame[column].dtype).startswith("str"):
                frame[column] = frame[column].map(
                    lambda v: short(v) if isinstance(v, str) and is_digest(v) else v)
        frame = frame.astype(object).where(frame.notna(), "-")
        with pd.option_context("display.max_rows", None, "display.max_columns", None,
                               "display.width", 0, "display.max_colwidth", 80):
            text = frame.to_string(index=False) + "\n"
    if output:
        Path(output).write_text(text)
    else:
        sys.stdout.write(text)


# --- progress --------------------------------------------------------------------------
class Progress:
    """Progress lines on stderr, at most ten a second, only when asked (or a terminal)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._last = 0.0
        self._stage: str | None = None
        self._shown = False

    def __call__(self, stage: str, done: int, total: int | None) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        final = total is not None and done >= total
        if stage == self._stage and not final and now - self._last < 0.1:
            return
        if stage != self._stage and self._shown:
            sys.stderr.write("\n")
        self._stage, self._last = stage, now
        count = f"{done}/{total}" if total else f"{done}"
        sys.stderr.write(f"\r{stage}: {count}\x1b[K" if sys.stderr.isatty()
                         else f"{stage}: {count}\n")
        self._shown = sys.stderr.isatty()
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled and self._shown:
            sys.stderr.write("\n")
            sys.stderr.flush()
        self._shown = False


def progress_for(args: Any) -> Progress:
    return Progress(bool(getattr(args, "progress", False)))

