"""A job's spec on its command line, or, when too long for one, in a file named by its digest.

Snakemake runs a rule's shell command as one ``bash -c`` argument, and Linux caps a single
argument at 128 KiB (MAX_ARG_STRLEN): a study whose settings made a spec longer failed every
job with "Argument list too long" and no word from assay. A long spec is written once to
``<results>/.specs/<sha256>.json`` (atomically, content-addressed) and the command carries
``@<that path>``; the job reads it back and checks the bytes hash to the name, so an edited
or swapped file is refused rather than run.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path

from ..errors import AssayError
from .hashing import read_regular, sha256_hex

# Well under MAX_ARG_STRLEN (128 KiB), which also holds the rest of the command.
SPEC_ARGV_LIMIT = 32 * 1024
MAX_SPEC_FILE_BYTES = 64 * 1024 * 1024
SPECS_DIR = ".specs"

# Arguments this process made, so a plan's own reader (assay status) never needs the file.
_MADE: dict[str, str] = {}


def spec_argument(spec_json: bytes, results_dir: str, workdir: str | os.PathLike[str] = "."
                  ) -> str:
    """The shell-quoted ``--spec`` value for a canonical JSON spec. ``results_dir`` is as
    the jobs see it (relative to the workflow's working directory ``workdir``)."""
    if len(spec_json) <= SPEC_ARGV_LIMIT:
        return shlex.quote(spec_json.decode())
    relative = f"{results_dir}/{SPECS_DIR}/{sha256_hex(spec_json)}.json"
    path = Path(workdir) / relative
    if not path.is_file():
        from .atomic import atomic_write_bytes

        atomic_write_bytes(path, spec_json)
    _MADE[f"@{relative}"] = spec_json.decode()
    return shlex.quote(f"@{relative}")


def spec_text(argument: str) -> str:
    """The JSON text a ``--spec`` value stands for (inverse of ``spec_argument``)."""
    if not argument.startswith("@"):
        return argument
    if argument in _MADE:
        return _MADE[argument]
    path = Path(argument[1:])
    try:
        data = read_regular(path, MAX_SPEC_FILE_BYTES)
    except OSError as exc:
        raise AssayError(f"cannot read the job spec file {path}: {exc.strerror}; rerun "
                         "snakemake, which writes it again") from None
    if len(data) > MAX_SPEC_FILE_BYTES or path.suffix != ".json" \
            or sha256_hex(data) != path.stem:
        raise AssayError(f"the job spec file {path} does not hash to its name: it was changed "
                         "after snakemake wrote it. Delete it and rerun snakemake")
    return data.decode()
