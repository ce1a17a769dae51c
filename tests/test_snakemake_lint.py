"""The workflow stays `snakemake --lint` clean (a house rule; rules/look.smk once indexed
its outputs by position in its shell command, and nothing said so)."""

from __future__ import annotations

import subprocess
import sys

from workflow_helpers import REPO, SMALL_CONFIG, write_config


def test_snakemake_lint_finds_nothing(tmp_path):
    write_config(tmp_path, SMALL_CONFIG)
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "workflow" / "Snakefile"),
         "--directory", str(tmp_path), "--lint"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "Lints for" not in out, out[-4000:]
    assert "Congratulations, your workflow is in a good condition!" in out, out[-4000:]
