"""`assay init`: a new study directory from a template, outside this repository.

The study declares assay's workflow (shipped inside the package, see ``assay.deploy``) as
a Snakemake module, so the science lives in its own directory and an upgrade of assay is
a ``pip install -U``, not a git merge. What ``init`` writes is recorded in
``.assay-init.json`` (path -> sha256 of the bytes written): ``--force`` rewrites only files
that are still exactly as ``init`` left them and never touches anything else.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from .atomic import atomic_write_bytes
from .errors import AssayError
from .hashing import canonical_json, sha256_hex

RECORD = ".assay-init.json"

# template -> (files of its own beside config.yaml, a line for the README's table)
TEMPLATES: dict[str, tuple[tuple[str, ...], str]] = {
    "demo": ((), "the built-in polymer demo: runs as is"),
    "python": (("simulate.py",), "| `simulate.py` | your simulation: `run(ctx)` returns the run's artifact |"),
    "shell": (("simulate.py",), "| `simulate.py` | the command the shell runner runs (replace it with yours) |"),
    "import": ((), "| `sims/<condition>/<replicate>/` | your existing simulation files (see `runner.settings.files`) |"),
    "md": ((), "| `data/md/` | fetch the example trajectories: `python -m assay.analyses.md fetch-example data/md` |"),
    "openmm": ((), "| (nothing else) | needs `pip install 'assay[openmm,md]'`; the structure ships with MDAnalysisTests |"),
}
_PROFILES = ("profiles/default/config.yaml", "profiles/slurm/config.yaml",
             "profiles/slurm/README.md")


@dataclass
class InitReport:
    directory: Path
    template: str
    written: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)      # existing files init did not write

    def to_dict(self) -> dict[str, object]:
        return {"directory": str(self.directory), "template": self.template,
                "written": self.written, "kept": self.kept}


def _template_bytes(name: str) -> bytes:
    return resources.files("assay").joinpath("templates", *name.split("/")).read_bytes()


def study_files(template: str) -> dict[str, bytes]:
    """Relative path -> bytes of everything a study of ``template`` starts with."""
    if template not in TEMPLATES:
        raise AssayError(f"unknown template {template!r}; choose one of "
                         f"{', '.join(TEMPLATES)}")
    extras, line = TEMPLATES[template]
    readme = _template_bytes("study/README.md").decode().format(
        template=template, extra=line + "\n" if line.startswith("|") else "")
    files = {"Snakefile": _template_bytes("study/Snakefile"),
             "config/config.yaml": _template_bytes(f"{template}/config.yaml"),
             "README.md": readme.encode()}
    for name in _PROFILES:
        files[name] = _template_bytes(name)
    for name in extras:
        files[name] = _template_bytes(f"study_extras/{name}")
    return files


def init_study(directory: str | os.PathLike[str], template: str = "demo", *,
               force: bool = False) -> InitReport:
    """Write a study of ``template`` into ``directory`` (new or empty unless ``force``)."""
    directory = Path(directory)
    files = study_files(template)
    if directory.exists() and not directory.is_dir():
        raise AssayError(f"{directory} exists and is not a directory")
    if directory.is_dir() and any(directory.iterdir()) and not force:
        raise AssayError(f"{directory} is not empty; choose a new directory, or add --force "
                         "to fill in what is missing (files you changed or wrote yourself "
                         "are never overwritten)")
    record_path = directory / RECORD
    try:
        written_before = json.loads(record_path.read_text())
    except (FileNotFoundError, ValueError):
        written_before = {}
    report = InitReport(directory, template)
    record = dict(written_before) if isinstance(written_before, dict) else {}
    for name, data in sorted(files.items()):
        target = directory / name
        if target.exists():
            try:
                ours = sha256_hex(target.read_bytes()) == record.get(name)
            except OSError:
                ours = False
            if not ours:
                report.kept.append(name)
                continue
        atomic_write_bytes(target, data)
        record[name] = sha256_hex(data)
        report.written.append(name)
    atomic_write_bytes(record_path, canonical_json(record) + b"\n")
    return report
