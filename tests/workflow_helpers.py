"""Run the real workflow in a scratch directory and tell which jobs ran."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]

SMALL_CONFIG = {
    "store": "store",
    "results": "results",
    "seed": 7,
    "conditions": [{"label": "free", "params": {"surface_epsilon": 0.0}},
                   {"label": "strong", "params": {"surface_epsilon": 3.0}}],
    "control": "free",
    "replicates": 2,
    "runner": {"plugin": "polymer_langevin",
               "settings": {"n_beads": 12, "n_frames": 40, "steps_per_frame": 10,
                            "equilibration_steps": 200}},
    "analyses": {"gyration": {"plugin": "radius_of_gyration",
                              "settings": {"equilibration_frames": 5}},
                 "contacts": {"plugin": "contact_events", "settings": {"cutoff": 1.5}}},
    "aggregation": {"confidence": 0.95, "min_replicates": 2, "allow_partial": False},
    "plots": {"format": "png", "dpi": 40},
}


def write_config(workdir: Path, config: dict) -> Path:
    path = workdir / "config" / "config.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def snakemake(workdir: Path, *args: str, check: bool = True, env: dict | None = None,
              timeout: float = 600) -> subprocess.CompletedProcess:
    """The real `snakemake` on the project's Snakefile, run inside ``workdir``."""
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "workflow" / "Snakefile"),
               "--directory", str(workdir), "--cores", "2", "--workflow-profile", "none",
               "--scheduler", "greedy", *args]
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run(command, cwd=workdir, capture_output=True, text=True, env=full_env,
                          timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n"
                             f"{proc.stderr[-6000:]}")
    return proc


_JOB = re.compile(r"^(?:local)?rule (\w+):\n(?P<body>(?:    .*\n)+)", re.M)


def jobs_run(proc: subprocess.CompletedProcess) -> set[tuple[str, str]]:
    """(rule, first output) of every job Snakemake started, from its log."""
    text = proc.stderr + proc.stdout
    found = set()
    for match in _JOB.finditer(text):
        body = match.group("body")
        out = re.search(r"^    output: ([^,\n]+)", body, re.M)
        found.add((match.group(1), out.group(1).strip() if out else ""))
    return {(rule, out) for rule, out in found if rule != "all"}


def rules_run(proc: subprocess.CompletedProcess) -> list[str]:
    return sorted(rule for rule, _ in jobs_run(proc))


def digests(workdir: Path) -> dict[str, str]:
    """Ref path -> digest for every ref under results/."""
    from assay import read_ref
    from assay.pipeline.layout import REF_DIRS

    out = {}
    for sub in REF_DIRS:
        for path in sorted((workdir / "results" / sub).rglob("*.json")):
            out[str(path.relative_to(workdir))] = read_ref(path).digest
    return out
