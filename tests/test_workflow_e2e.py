"""Reruns a user can trust: real Snakemake runs, asserting exactly which jobs ran."""

from __future__ import annotations

import copy
import os
import shutil
import textwrap
import time
from pathlib import Path

import pytest

from assay import ArtifactStore
from workflow_helpers import SMALL_CONFIG, digests, jobs_run, rules_run, snakemake, write_config

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """One finished small study; tests copy it so each starts from the same state."""
    workdir = tmp_path_factory.mktemp("study")
    write_config(workdir, SMALL_CONFIG)
    proc = snakemake(workdir)
    assert (workdir / "results" / "catalog.duckdb").exists()
    ran = rules_run(proc)
    assert ran.count("run") == 4 and ran.count("collect") == 8
    return workdir


@pytest.fixture
def study(finished, tmp_path) -> Path:
    workdir = tmp_path / "study"
    shutil.copytree(finished, workdir, symlinks=True)
    return workdir


def test_nothing_changed_nothing_runs(study):
    proc = snakemake(study)
    assert jobs_run(proc) == set()
    assert "Nothing to be done" in proc.stdout + proc.stderr


def test_outputs_figures_report_and_catalog(study):
    for analysis in ("gyration", "contacts"):
        for name in ("summary", "detail"):
            figure = study / "results" / "plots" / analysis / f"{name}.png"
            assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    snakemake(study, "--report", "report.html")
    html = (study / "report.html").read_text(errors="replace")
    assert "summary.png" in html and "Welch" in html
    # the captions (report/*.rst from params.caption): what is plotted, n, test, correction
    for words in ("fraction of beads adsorbed", "2 replicates per condition",
                  "Holm-adjusted", "equilibration time t0"):
        assert words in html, words
    comparison = ArtifactStore(study / "store").read_comparison_result(
        study / "results" / "comparisons" / "contacts.json")
    stats = comparison.payload["comparisons"]["strong"]["fraction_adsorbed"]
    assert stats["difference"] > 0 and stats["p"] is not None


def _plot_context(workdir: Path, analysis: str):
    from assay import read_ref
    from assay.pipeline.config import Study
    from assay.pipeline.plotting import load_plot_context
    from assay.pipeline.stages import plot_spec

    study = Study.from_config(copy.deepcopy(SMALL_CONFIG))
    comparison = read_ref(workdir / "results" / "comparisons" / f"{analysis}.json").digest
    return load_plot_context(ArtifactStore(workdir / "store"), plot_spec(study, analysis),
                             comparison)


def test_figures_are_drawn_from_labelled_bounded_artifacts(finished):
    """The demo's figures through what they are drawn from: titles with units, n, intervals
    inside the declared bounds, and each replicate's series with its t0 and running mean."""
    import numpy as np

    from assay.pipeline.plotting import running_mean_band, series_panels, summary_panels

    gyration = _plot_context(finished, "gyration")
    panels = summary_panels(gyration)
    assert [p["title"] for p in panels] == ["radius of gyration (σ)", "SD of Rg over frames (σ)",
                                           "centre-of-mass height (σ)"]
    contacts = summary_panels(_plot_context(finished, "contacts"))
    for panel in panels + contacts:
        for row in panel["conditions"]:
            assert row["n"] == 2 and len(row["values"]) == 2
            assert row["low"] is None or 0 <= row["low"] <= row["mean"] <= row["high"]
            assert panel["bounds"] != "fraction" or row["high"] is None or row["high"] <= 1
    assert {p["metric"]: p["bounds"] for p in contacts}["fraction_adsorbed"] == "fraction"
    series = series_panels(gyration)
    assert [(p["metric"], p["condition"]) for p in series] == [
        ("mean_rg", "free"), ("mean_rg", "strong"), ("mean_com_height", "free"),
        ("mean_com_height", "strong")]
    for panel in series:
        assert [r["replicate"] for r in panel["runs"]] == [1, 2]
        for run in panel["runs"]:
            assert 0 <= run["t0"] < run["values"].size
            # the band ends at the stored production mean and its MCSE (assay.pipeline.diagnostics)
            where, mean, mcse = running_mean_band(run["values"], run["t0"], run["g"])
            assert where[0] == run["t0"] and where[-1] == run["values"].size - 1
            assert mean[-1] == pytest.approx(run["mean"], rel=1e-5)
            assert mcse[-1] == pytest.approx(run["mcse"], rel=1e-5, abs=1e-12)
            assert np.isnan(mcse[0])   # one sample has no spread


REFERENCE_FIGURES = Path(__file__).parent / "data" / "figures"


@pytest.mark.parametrize("analysis,name", [("gyration", "summary"), ("gyration", "detail"),
                                           ("contacts", "detail")],
                         ids=["summary", "series-detail", "plugin-detail"])
def test_each_figure_kind_looks_like_its_reference(finished, tmp_path, analysis, name):
    """One image comparison per figure kind (the summary, the framework's series figure, a
    plugin's own figure) against tests/data/figures/, RMS tolerance 3 of 255 (fonts and
    antialiasing of another FreeType may move pixels; a lost panel, marker or label moves
    far more). After a deliberate change: ASSAY_UPDATE_REFERENCE_FIGURES=1 rewrites them;
    look at them before committing."""
    from matplotlib.testing.compare import compare_images

    drawn = tmp_path / f"{analysis}_{name}.png"
    shutil.copyfile(finished / "results" / "plots" / analysis / f"{name}.png", drawn)
    reference = REFERENCE_FIGURES / f"{analysis}_{name}.png"
    if os.environ.get("ASSAY_UPDATE_REFERENCE_FIGURES"):
        REFERENCE_FIGURES.mkdir(exist_ok=True)
        shutil.copyfile(drawn, reference)
    assert compare_images(str(reference), str(drawn), tol=3) is None


def test_changing_one_condition_reruns_only_that_condition(study):
    config = copy.deepcopy(SMALL_CONFIG)
    config["conditions"][1]["params"]["surface_epsilon"] = 2.5
    write_config(study, config)
    before = digests(study)
    ran = jobs_run(snakemake(study))
    runs = {out for rule, out in ran if rule == "run"}
    assert runs == {"results/runs/strong/1.json", "results/runs/strong/2.json"}
    collects = {out for rule, out in ran if rule == "collect"}
    assert collects == {f"results/replicates/{a}/strong/{r}.json"
                        for a in ("gyration", "contacts") for r in (1, 2)}
    aggregates = {out for rule, out in ran if rule == "aggregate"}
    assert aggregates == {"results/conditions/gyration/strong.json",
                          "results/conditions/contacts/strong.json"}
    after = digests(study)
    unchanged = [k for k in before if "/free" in k]
    assert all(before[k] == after[k] for k in unchanged)


def test_changing_one_analysis_reruns_only_that_analysis(study):
    config = copy.deepcopy(SMALL_CONFIG)
    config["analyses"]["contacts"]["settings"]["cutoff"] = 1.2
    write_config(study, config)
    ran = jobs_run(snakemake(study))
    assert ran, "changing settings must rerun something"
    for rule, out in ran:
        if rule in ("collect", "aggregate", "compare"):
            assert "/contacts" in out, (rule, out)
        assert rule != "run"
    assert {r for r, _ in ran} >= {"collect", "aggregate", "compare", "plot_summary"}


def test_forceall_uses_action_cache_and_keeps_digests(study):
    before = digests(study)
    figure = study / "results" / "plots" / "contacts" / "summary.png"
    drawn = figure.read_bytes()
    start = time.monotonic()
    proc = snakemake(study, "--forceall")
    forced = time.monotonic() - start
    assert "run" in rules_run(proc)
    assert digests(study) == before
    logs = (study / "results" / "logs" / "run" / "free" / "1.log").read_text()
    assert "action cache hit" in logs
    plot_log = (study / "results" / "logs" / "plot" / "contacts" / "summary.log").read_text()
    assert "figure cache hit" in plot_log  # copied from the store, not redrawn
    assert figure.read_bytes() == drawn
    assert forced < 600


def test_fresh_clone_on_same_store_computes_nothing(study, tmp_path):
    clone = tmp_path / "clone"
    clone.mkdir()
    config = copy.deepcopy(SMALL_CONFIG)
    config["store"] = str(study / "store")
    write_config(clone, config)
    snakemake(clone)
    assert digests(clone) == digests(study)
    for log in (clone / "results" / "logs").rglob("*.log"):
        if log.parent.name in ("plot", "summary") or "plot" in log.parts or log.name == "catalog.log":
            continue
        assert "action cache hit" in log.read_text(), log


def test_same_digest_does_not_rerun_downstream(study):
    ref = study / "results" / "runs" / "free" / "1.json"
    data = ref.read_bytes()
    time.sleep(1.1)
    ref.write_bytes(data)  # newer mtime, same bytes: Snakemake compares checksums
    ran = jobs_run(snakemake(study))
    assert ran == set()


def test_user_plugin_outside_the_package_and_code_change_rerun(study):
    plugins = study / "userplugins"
    plugins.mkdir()
    source = textwrap.dedent('''
        from assay import METRICS

        class EndToEnd:
            """A user's own analysis: reads the run's trajectory through the store."""

            def collect(self, ctx):
                with ctx.artifact_store.load_npz_sidecar(ctx.run_sidecar("trajectory")) as data:
                    positions = data["positions"]
                distance = ((positions[:, -1] - positions[:, 0]) ** 2).sum(axis=1) ** 0.5
                return ctx.result(payload={METRICS: {"end_to_end": float(distance.mean())}})
        ''')
    (plugins / "my_analysis.py").write_text(source)
    config = copy.deepcopy(SMALL_CONFIG)
    config["analyses"]["e2e"] = {"plugin": "my_analysis:EndToEnd", "settings": {}}
    write_config(study, config)
    env = {"PYTHONPATH": os.pathsep.join(   # keep the caller's path (e.g. a worktree's src)
        p for p in (str(plugins), os.environ.get("PYTHONPATH", "")) if p)}
    ran = jobs_run(snakemake(study, env=env))
    assert {out for rule, out in ran if rule == "collect"} == {
        f"results/replicates/e2e/{c}/{r}.json" for c in ("free", "strong") for r in (1, 2)}
    assert (study / "results" / "plots" / "e2e" / "summary.png").exists()
    art = ArtifactStore(study / "store").read_condition_result(
        study / "results" / "conditions" / "e2e" / "strong.json")
    assert art.payload["metrics"]["end_to_end"]["n"] == 2

    # a comment inside the plugin's own code changes its digest (one after it, outside any
    # definition, would not: assay.pipeline.codescope)
    (plugins / "my_analysis.py").write_text(source.replace(
        "    def collect(self, ctx):\n", "    def collect(self, ctx):\n        # edited\n"))
    ran = jobs_run(snakemake(study, env=env))
    collects = {out for rule, out in ran if rule == "collect"}
    assert collects == {f"results/replicates/e2e/{c}/{r}.json"
                        for c in ("free", "strong") for r in (1, 2)}
    assert all("/e2e" in out or rule in ("catalog",) or out.endswith("e2e.json")
               for rule, out in ran if rule != "plot_summary"), ran


def test_invalid_config_stops_before_any_job(tmp_path):
    config = copy.deepcopy(SMALL_CONFIG)
    config["replicates"] = 0
    write_config(tmp_path, config)
    proc = snakemake(tmp_path, check=False)
    assert proc.returncode != 0
    assert "replicates" in proc.stderr + proc.stdout
    assert not (tmp_path / "store").exists() or not any((tmp_path / "store" / "objects").iterdir())
    assert not (tmp_path / "results").exists()


def data_pins(workdir: Path) -> dict[str, dict]:
    """Per ref: the digest of the artifact's payload and of each sidecar (the numbers)."""
    import hashlib

    from assay import canonical_json, read_ref
    from assay.pipeline.layout import REF_DIRS

    store = ArtifactStore(workdir / "store")
    out = {}
    for sub in REF_DIRS:
        for path in sorted((workdir / "results" / sub).rglob("*.json")):
            artifact = store.read_artifact(read_ref(path).digest)
            out[str(path.relative_to(workdir / "results"))] = {
                "payload": hashlib.sha256(canonical_json(artifact.payload)).hexdigest(),
                "sidecars": {s.path: s.sha256 for s in artifact.sidecars}}
    return out


def test_numbers_are_pinned(finished):
    """Refactors change no number: payloads and sidecar bytes equal the pinned ones.

    (Manifest digests also cover each plugin's code digest, so they move whenever a plugin
    module is edited; the data they describe must not.) Regenerate the pins only for a
    change that is meant to change results, and say so in the commit. Serialization code
    is in no action key: a change that writes other bytes must also bump
    assay.pipeline.keys.STORAGE_FORMAT, or finished studies keep their old bytes under the new code.
    """
    import json

    pinned = json.loads((Path(__file__).parent / "data" / "small_study_pins.json").read_text())
    assert data_pins(finished) == pinned, (
        "payload or sidecar bytes moved: if meant, regenerate the pins and bump "
        "assay.pipeline.keys.STORAGE_FORMAT (serialization code is in no action key)")


def test_numbers_do_not_depend_on_the_cpu(tmp_path):
    """A node with other BLAS kernels and an older SIMD level computes the pinned numbers
    too (the variables are set before any job loads numpy)."""
    import json

    write_config(tmp_path, SMALL_CONFIG)
    snakemake(tmp_path, env={"OPENBLAS_CORETYPE": "Prescott",
                             "NPY_DISABLE_CPU_FEATURES": "X86_V3 X86_V4 AVX512_ICL AVX512_SPR "
                                                         "AVX2 FMA3 AVX512F AVX512_SKX"})
    pinned = json.loads((Path(__file__).parent / "data" / "small_study_pins.json").read_text())
    assert data_pins(tmp_path) == pinned
    store = ArtifactStore(tmp_path / "store")
    records = [store.actions.read(Path(p).stem) for p in store.actions.paths()]
    assert records and all(r["numerics"]["env"]["OPENBLAS_CORETYPE"] == "Prescott"
                           for r in records)
