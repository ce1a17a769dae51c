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

from ..store.atomic import atomic_write_bytes
from ..errors import AssayError
from ..store.hashing import canonical_json, sha256_hex

RECORD = ".assay-init.json"


@dataclass(frozen=True)
class Template:
    """What a template adds to the study's README (written for that study, not for a
    checkout of assay's repository)."""

    files: tuple[str, ...] = ()       # its own files beside config.yaml (study_extras/)
    rows: tuple[str, ...] = ()        # lines for the README's table of files
    setup: tuple[str, ...] = ()       # commands to type before the first run
    extras: str = ""                  # the extras of assay-workflow it needs ("md,openmm")
    summary: str = ""


TEMPLATES: dict[str, Template] = {
    "demo": Template(summary="the built-in polymer demo (numpy only), runs as is"),
    "python": Template(("simulate.py",), (
        "| `simulate.py` | your simulation: `run(ctx)` returns the run's artifact |",),
        summary="each run calls a Python function of yours (simulate.py's run)"),
    "shell": Template(("simulate.py",), (
        "| `simulate.py` | the command the shell runner runs (replace it with yours) |",),
        summary="each run runs a command of yours (simulate.py as a script)"),
    "import": Template(("fetch_sample.py",), (
        "| `sims/<condition>/<replicate>/` | your existing simulation files "
        "(`runner.settings.files` says where) |",
        "| `fetch_sample.py` | writes a small sample into `sims/` to try the study with "
        "(a demonstration, not a result) |"),
        ("python fetch_sample.py       # a small sample into sims/ (or put your own files there)",),
        "md", "simulations made elsewhere, imported into the store, analysed with MDAnalysis"),
    "md": Template((), (
        "| `data/md/` | the example trajectories (two AdK systems from MDAnalysisTests) |",),
        ("python -m assay.analyses.md fetch-example data/md   # the example trajectories",),
        "md", "MDAnalysis analyses of two example trajectories (block averaging, not "
              "independent replicates: see the config's header)"),
    "openmm": Template((), (), (), "openmm,md",
                       "OpenMM simulations of a small peptide at three temperatures, "
                       "analysed with MDAnalysis (about two minutes on 2 cores)"),
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
    spec = TEMPLATES[template]
    config = _template_bytes(f"{template}/config.yaml")
    files = {"Snakefile": _template_bytes("study/Snakefile"),
             "config/config.yaml": config,
             "README.md": readme(template, spec, config).encode()}
    for name in _PROFILES:
        files[name] = _template_bytes(name)
    for name in spec.files:
        files[name] = _template_bytes(f"study_extras/{name}")
    return files


def readme(template: str, spec: Template, config: bytes) -> str:
    """The study's README, with its own results and store paths and its own first steps."""
    import yaml

    from ..deploy import DISTRIBUTION

    data = yaml.safe_load(config)
    setup = "".join(f"{line}\n" for line in spec.setup)
    needs = (f"It needs the `{spec.extras}` extra{'s' if ',' in spec.extras else ''} of "
             f"assay: `pip install '{DISTRIBUTION}[{spec.extras}]'` (`assay config validate` "
             "names what is missing).\n\n" if spec.extras else "")
    return _template_bytes("study/README.md").decode().format(
        template=template, summary=spec.summary, needs=needs,
        rows="".join(f"{row}\n" for row in spec.rows), setup=setup,
        results=data.get("results", "results"), store=data.get("store", "store"),
        distribution=DISTRIBUTION)


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
