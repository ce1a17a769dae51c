"""Convergence diagnostics: the estimators against pymbar 4 and arviz-stats, and the
verdict a user sees (condition warnings, `assay metrics`, `assay status`, the figure) for
a short real demo study and a long one."""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from assay import ArtifactStore, PluginError, ReplicateArtifact, read_ref
from assay.pipeline import convergence as cv
from assay.pipeline.diagnostics import (
    MAX_RHAT,
    MIN_N_EFF,
    declared_series,
    with_replicate_diagnostics,
)
from workflow_helpers import SMALL_CONFIG, snakemake, write_config


@pytest.fixture(scope="module")
def pymbar_timeseries():
    """pymbar 4's timeseries module, imported without its banners (JAX, timeseries)."""
    pytest.importorskip("pymbar")
    logging.getLogger("pymbar").setLevel(logging.ERROR)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        from pymbar import timeseries
    return timeseries


@pytest.fixture(scope="module")
def arviz():
    return pytest.importorskip("arviz_stats.base").array_stats


def ar1(phi: float, n: int, seed: int) -> np.ndarray:
    """A stationary AR(1) series: g = (1 + phi) / (1 - phi)."""
    rng = np.random.default_rng(seed)
    noise = rng.normal(size=n)
    x = np.empty(n)
    x[0] = noise[0] / np.sqrt(1 - phi ** 2)
    for i in range(1, n):
        x[i] = phi * x[i - 1] + noise[i]
    return x


# --- the estimators, against the reference implementations --------------------------------
@pytest.mark.parametrize("phi", [0.0, 0.5, 0.8, 0.9])
def test_statistical_inefficiency_is_pymbars_and_near_the_known_g(phi, pymbar_timeseries):
    x = ar1(phi, 100_000, seed=int(phi * 10))
    ours = cv.statistical_inefficiency(x)
    assert ours == pytest.approx(pymbar_timeseries.statistical_inefficiency(x), rel=1e-12)
    fast = cv.statistical_inefficiency(x, fast=True)
    assert fast == pytest.approx(pymbar_timeseries.statistical_inefficiency(x, fast=True),
                                 rel=1e-12)
    # The estimator's own spread at N = 100,000 is up to ~10% of g at phi = 0.9 (six seeds:
    # 17.9-20.8 for g = 19); rtol 12%.
    assert ours == pytest.approx((1 + phi) / (1 - phi), rel=0.12)


@pytest.mark.parametrize("phi,seed", [(0.5, 1), (0.8, 2), (0.9, 3)])
def test_equilibration_time_is_pymbars(phi, seed, pymbar_timeseries):
    """A series relaxing from 4 SD above its stationary AR(1): the same t0 and g as
    pymbar, every origin tried (nskip 1) and every few (as assay does for long series)."""
    sd = 1 / np.sqrt(1 - phi ** 2)
    x = ar1(phi, 600, seed) + np.r_[np.linspace(4 * sd, 0, 80), np.zeros(520)]
    for nskip in (1, cv.origin_stride(x.size), 7):
        t_ref, g_ref, _ = pymbar_timeseries.detect_equilibration(x, nskip=nskip)
        t0, g = cv.detect_equilibration(x, nskip=nskip)
        assert (t0, g) == (int(t_ref), pytest.approx(float(g_ref), rel=1e-6))
        assert t0 > 0


def test_series_diagnostics_of_a_demo_series_follow_pymbar(pymbar_timeseries):
    """The demo's radius of gyration: t0 as pymbar picks it, g on the production part,
    N_eff = (n - t0) / g and MCSE = sd / sqrt(N_eff) (stored to 6 significant digits)."""
    from assay.demo.physics import radius_of_gyration, simulate_polymer

    positions = simulate_polymer(n_beads=12, n_frames=400, steps_per_frame=10,
                                 equilibration_steps=0, surface_epsilon=3.0,
                                 seed=5)["positions"]
    rg = radius_of_gyration(positions)
    found = cv.series_diagnostics(rg)
    t_ref, _, _ = pymbar_timeseries.detect_equilibration(rg, nskip=cv.origin_stride(rg.size))
    g_ref = pymbar_timeseries.statistical_inefficiency(rg[int(t_ref):])
    n_prod = rg.size - int(t_ref)
    assert found["t0"] == int(t_ref) and found["n"] == rg.size
    assert found["g"] == pytest.approx(g_ref, rel=1e-5)
    assert found["n_eff"] == pytest.approx(n_prod / g_ref, rel=1e-5)
    assert found["mcse"] == pytest.approx(rg[int(t_ref):].std(ddof=1) / np.sqrt(n_prod / g_ref),
                                          rel=1e-5)


def test_rank_rhat_and_bulk_ess_are_arviz_stats(arviz):
    chains = np.stack([ar1(0.3, 1000, seed) for seed in range(4)])
    shifted = chains + np.array([[0.0], [0.0], [0.0], [0.8]])
    tied = np.round(chains * 2)   # ties: average ranks
    for sample in (chains, shifted, tied, chains[:2], chains[:, :9]):
        assert cv.rank_rhat(sample) == pytest.approx(float(arviz.rhat(sample)), rel=1e-12)
        assert cv.bulk_ess(sample) == pytest.approx(float(arviz.ess(sample, method="bulk")),
                                                    rel=1e-10)
    assert cv.rank_rhat(chains) < MAX_RHAT < cv.rank_rhat(shifted)


def test_a_constant_series_counts_as_one_sample():
    found = cv.series_diagnostics(np.full(50, 2.5))
    assert (found["t0"], found["n_eff"], found["mcse"], found["mean"]) == (0, 1.0, 0.0, 2.5)
    with pytest.raises(ValueError, match="NaN"):
        cv.series_diagnostics(np.r_[1.0, np.nan, 2.0])


def test_threshold_defaults_are_the_documented_ones():
    schema = yaml.safe_load((Path(__file__).parents[1] / "src" / "assay" / "schemas"
                             / "config.schema.yaml").read_text())
    aggregation = schema["properties"]["aggregation"]["properties"]
    assert (aggregation["min_n_eff"]["default"], aggregation["max_rhat"]["default"]) == (
        MIN_N_EFF, MAX_RHAT) == (10, 1.01)
    docs = (Path(__file__).parents[1] / "docs" / "statistics.md").read_text()
    assert "min_n_eff: 10" in docs and "max_rhat: 1.01" in docs


# --- the declaration ---------------------------------------------------------------------------
def test_series_are_declared_in_one_line_and_checked(tmp_path):
    from assay.analyses.polymer import RadiusOfGyration

    assert declared_series(RadiusOfGyration) == {"mean_com_height": "com_height",
                                                 "mean_rg": "radius_of_gyration"}

    class Wrong:
        SERIES = ["mean_rg"]

    with pytest.raises(PluginError, match="must map metric names to array names"):
        declared_series(Wrong)

    class Elsewhere:
        SERIES = {"mean_x": "x"}

    store = ArtifactStore(tmp_path / "store")
    sidecar = store.write_npz_sidecar("sidecars/s.npz", y=np.arange(20.0))
    result = ReplicateArtifact(analysis_name="a", condition_label="c", replicate=1,
                               payload={"metrics": {"mean_x": 1.0}}, sidecars=[sidecar])
    with pytest.raises(PluginError, match="no NPZ sidecar of its result holds an array 'x'"):
        with_replicate_diagnostics(store, Elsewhere, result, "analysis 'mine'")
    skipped = ReplicateArtifact(analysis_name="a", condition_label="c", replicate=1,
                                payload={"metrics": {}, "skipped": "no frames"})
    assert with_replicate_diagnostics(store, Elsewhere, skipped, "x") is skipped


# --- what a user sees: a short and a long demo condition, through real snakemake ---------
def _config() -> dict:
    """One study, two conditions of the demo chain adsorbed on the surface (condition
    params override the runner's settings): 'short' keeps the small study's 12 beads and
    35 frames after equilibration, far too few; 'long' runs 2 x 1,000 frames of a 4-bead
    chain 20 steps of 0.02 apart, which decorrelate well (N_eff ~ 400 per replicate)."""
    config = copy.deepcopy(SMALL_CONFIG)
    config["conditions"] = [
        {"label": "long", "params": {"surface_epsilon": 3.0, "n_beads": 4, "n_frames": 1000,
                                     "steps_per_frame": 20, "dt": 0.02}},
        {"label": "short", "params": {"surface_epsilon": 3.0}}]
    config["control"] = "long"
    config["analyses"] = {"gyration": config["analyses"]["gyration"]}
    return config


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("study")
    write_config(root, _config())
    snakemake(root, "results/catalog.duckdb")   # no figure jobs: the figure test draws one
    return root


def _condition(root: Path, condition: str):
    store = ArtifactStore(root / "store")
    return store.read_condition_result(read_ref(
        root / "results" / "conditions" / "gyration" / f"{condition}.json").digest)


def assay(root: Path, capsys, *args: str) -> str:
    """`assay ARGS` on the study in ``root``; its standard output."""
    from assay.cli import main

    capsys.readouterr()
    assert main(["--store", str(root / "store"), "--results", str(root / "results"),
                 *args]) == 0
    return capsys.readouterr().out


@pytest.mark.slow
def test_a_short_condition_is_marked_not_converged_and_a_long_one_converged(finished, capsys):
    short = _condition(finished, "short")
    entry = short.payload["convergence"]["mean_rg"]
    assert entry["converged"] is False and entry["thresholds"] == {"min_n_eff": 10.0,
                                                                  "max_rhat": 1.01}
    assert entry["replicates"]["1"]["n"] == 35 and entry["n_eff_min"] < 10
    assert (f"metric 'mean_rg': NOT CONVERGED: {'; '.join(entry['problems'])}"
            in short.warnings)

    long = _condition(finished, "long")
    for metric in ("mean_rg", "mean_com_height"):
        entry = long.payload["convergence"][metric]
        assert entry["converged"] is True and entry["problems"] == []
        assert entry["n_eff_min"] > 100 and entry["rhat"] <= 1.01 and entry["ess"] > 500
    assert long.warnings == []


@pytest.mark.slow
def test_assay_metrics_shows_the_verdict_beside_each_row(finished, capsys):
    rows = yaml.safe_load(assay(finished, capsys, "metrics", "--metric", "mean_rg", "--json"))
    verdict = {(r["artifact_type"], r["condition"], r["replicate"], r["statistic"]):
               r["convergence"] for r in rows}
    assert verdict[("condition", "short", None, "mean")] == (
        "NOT CONVERGED: N_eff < 10 in replicates 1 (6.44), 2 (4); R-hat 2.999 > 1.01")
    assert verdict[("replicate", "short", 1, "value")] == "NOT CONVERGED: N_eff 6.44 < 10"
    assert verdict[("condition", "long", None, "mean")] == "converged"
    assert verdict[("replicate", "long", 2, "value")] == "converged"
    assert verdict[("comparison", "short", None, "p")] == "NOT CONVERGED: condition 'short'"
    assert verdict[("comparison", "long", None, "rank")] == "converged"
    table = assay(finished, capsys, "metrics", "--metric", "mean_rg", "--statistic", "mean",
                  "--type", "condition")
    lines = table.splitlines()   # the verdict is the last column, after label and unit
    assert lines[0].split()[-3:] == ["label", "unit", "convergence"]
    assert lines[1].split()[-3:] == ["gyration", "σ", "converged"]
    assert lines[2].rstrip().endswith(
        "σ NOT CONVERGED: N_eff < 10 in replicates 1 (6.44), 2 (4); R-hat 2.999 > 1.01")
    others = yaml.safe_load(assay(finished, capsys, "metrics", "--metric", "std_rg", "--json"))
    assert others and {r["convergence"] for r in others} == {None}   # not a series


@pytest.mark.slow
def test_assay_status_lists_what_is_not_converged(finished):
    proc = subprocess.run([sys.executable, "-m", "assay.cli", "status", "--no-slurm"],
                          cwd=finished, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    start = lines.index("NOT CONVERGED (2): below aggregation.min_n_eff or above "
                        "aggregation.max_rhat (docs/statistics.md)")
    assert lines[start + 1:start + 3] == [
        "  gyration/short mean_com_height: N_eff < 10 in replicates 1 (4), 2 (4); "
        "R-hat 2.999 > 1.01",
        "  gyration/short mean_rg: N_eff < 10 in replicates 1 (6.44), 2 (4); R-hat 2.999 > 1.01"]
    assert "gyration/long" not in proc.stdout


@pytest.mark.slow
def test_the_summary_figure_marks_what_is_not_converged(finished):
    """The plot job's figure: the '!' marker and its note are drawn for 'short' only."""
    from matplotlib.figure import Figure

    from assay.pipeline.plotting import draw_summary, load_plot_context
    from assay.pipeline.stages import plot_spec
    from assay.pipeline.config import load_config

    study = load_config(finished / "config" / "config.yaml")
    store = ArtifactStore(finished / "store")
    comparison = read_ref(finished / "results" / "comparisons" / "gyration.json").digest
    ctx = load_plot_context(store, plot_spec(study, "gyration"), comparison)
    figure = Figure()
    draw_summary(ctx, figure)
    marks = [t for ax in figure.axes for t in ax.texts if t.get_text() == "!"]
    assert len(marks) == 2   # mean_com_height and mean_rg of 'short'; std_rg is no series
    # beside the mean, drawn just right of the condition's replicate dots
    assert all(round(m.xy[0]) == list(ctx.conditions).index("short") for m in marks)
    assert "! not converged (N_eff < 10 or R-hat > 1.01)" in (
        figure._supxlabel.get_text().replace("\n", " "))


def _replicate_with_series(store, number: int, values: np.ndarray) -> ReplicateArtifact:
    from assay.analyses.polymer import RadiusOfGyration

    sidecar = store.write_npz_sidecar("sidecars/timeseries.npz", radius_of_gyration=values,
                                      com_height=values + 1)
    result = ReplicateArtifact(
        analysis_name="g", condition_label="c", replicate=number,
        payload={"metrics": {"mean_rg": float(values.mean()),
                             "mean_com_height": float(values.mean() + 1)}},
        sidecars=[sidecar])
    return with_replicate_diagnostics(store, RadiusOfGyration, result, "test")


def test_what_a_condition_cannot_judge_is_said(tmp_path):
    """One replicate: no R-hat, and why; series of other lengths (an adaptive run length):
    R-hat over the common window, up to the shortest series' end; a replicate with a
    series too short for diagnostics: not converged, and why."""
    from assay.pipeline.diagnostics import condition_convergence

    store = ArtifactStore(tmp_path / "store")
    one = {1: _replicate_with_series(store, 1, ar1(0.2, 400, 1))}
    entry = condition_convergence(store, one, 10, 1.01)[0]["mean_rg"]
    assert (entry["rhat"], entry["rhat_note"], entry["converged"]) == (
        None, "fewer than 2 replicates", True)
    uneven = {**one, 2: _replicate_with_series(store, 2, ar1(0.2, 300, 2))}
    entry = condition_convergence(store, uneven, 10, 1.01)[0]["mean_rg"]
    start = max(entry["replicates"][r]["t0"] for r in ("1", "2"))
    assert (entry["window_start"], entry["window_end"], entry["rhat_note"]) == (
        start, 300, None)
    from assay.pipeline.convergence import rank_rhat, rounded

    assert entry["rhat"] == rounded(rank_rhat(
        [ar1(0.2, 400, 1)[start:300], ar1(0.2, 300, 2)[start:300]]))
    assert "window_end" not in condition_convergence(   # equal lengths: as before
        store, {**one, 2: _replicate_with_series(store, 2, ar1(0.2, 400, 2))}, 10,
        1.01)[0]["mean_rg"]
    short = {**one, 3: _replicate_with_series(store, 3, ar1(0.2, 5, 3))}
    found, warnings = condition_convergence(store, short, 10, 1.01)
    assert found["mean_rg"]["problems"] == ["no diagnostics for replicate 3"]
    assert warnings[-1] == "metric 'mean_rg': NOT CONVERGED: no diagnostics for replicate 3"


def test_assay_plugins_names_an_analysis_series(capsys):
    from assay.cli import main

    assert main(["plugins", "radius_of_gyration"]) == 0
    assert ("series (convergence diagnostics): mean_com_height <- com_height, "
            "mean_rg <- radius_of_gyration") in capsys.readouterr().out.splitlines()
    assert main(["plugins", "contact_events"]) == 0
    assert "series" not in capsys.readouterr().out
