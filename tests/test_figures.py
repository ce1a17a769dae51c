"""Figures a reviewer accepts: metric metadata, intervals inside a metric's bounds, and what
each figure draws, checked through the artifacts and the panel data the figures are drawn
from (not pixels). The studies' own figures (demo, MD, OpenMM) are checked in the tests
that build those studies: test_workflow_e2e, test_md, test_openmm_workflow."""

from __future__ import annotations

import copy
import json
import math
import subprocess
import sys

import numpy as np
import pytest
from workflow_helpers import SMALL_CONFIG

from assay import (
    ArtifactStore,
    AssayError,
    ConditionArtifact,
    Metric,
    PluginError,
    ReplicateArtifact,
)
from assay.pipeline.config import Study
from assay.pipeline.metric_info import declared_metrics, metric_info
from assay.pipeline.statistics import (
    INTERVAL_LOG,
    INTERVAL_LOGIT,
    INTERVAL_NO_SPREAD,
    INTERVAL_T,
    bounded_interval,
    summarize,
)
from assay.pipeline.stages import aggregate_spec, compare_spec, execute, plot_spec


def _study(**extra) -> Study:
    config = copy.deepcopy(SMALL_CONFIG)
    config["conditions"].append({"label": "weak", "params": {"surface_epsilon": 1.0}})
    config.update(extra)
    return Study.from_config(config)


@pytest.fixture
def store(tmp_path) -> ArtifactStore:
    return ArtifactStore(tmp_path / "store")


def _condition(store, study, label, metrics, analysis="contacts"):
    spec = aggregate_spec(study, analysis, label)
    n = len(next(iter(metrics.values())))
    reps = [store.write_artifact(ReplicateArtifact(
        analysis_name=analysis, condition_label=label, replicate=i + 1,
        payload={"metrics": {m: v[i] for m, v in metrics.items()}},
        metadata={"settings_fingerprint": spec["settings_fingerprint"]})) for i in range(n)]
    return execute(store, spec, reps)


# The contact_events plugin declares these: a fraction, a non-negative duration, a count.
CONTACTS = {
    "free": {"fraction_adsorbed": [0.02, 0.05, 0.01, 0.04], "mean_event_frames": [3.0, 4.0, 2.5, 3.5],
             "n_events": [0.0, 2.0, 1.0, 0.0]},
    "strong": {"fraction_adsorbed": [0.7, 0.8, 0.75, 0.9], "mean_event_frames": [20.0, 31.0, 25.0, 22.0],
               "n_events": [40.0, 52.0, 47.0, 45.0]},
    "weak": {"fraction_adsorbed": [0.2, 0.3, 0.25, 0.35], "mean_event_frames": [8.0, 9.0, 12.0, 10.0],
             "n_events": [10.0, 14.0, 12.0, 9.0]},
}


def _contacts_study(store, study=None):
    study = study or _study()
    digests = [_condition(store, study, label, metrics) for label, metrics in CONTACTS.items()]
    comparison = execute(store, compare_spec(study, "contacts"), digests)
    return study, digests, comparison


# --- metric metadata ---------------------------------------------------------------------
def test_undeclared_metrics_get_a_readable_label_no_unit_and_free_bounds():
    class ThirdParty:   # a plugin written before METRIC_INFO existed
        def collect(self, ctx): ...

    assert metric_info(ThirdParty, "mean_event_frames") == Metric("mean event frames", "",
                                                                   "free")
    assert metric_info(ThirdParty, "mean_rmsd").label == "mean RMSD"
    assert metric_info(None, "x") == Metric("x")


def test_declared_metrics_and_patterns():
    from assay.analyses.md import RMSD
    from assay.analyses.polymer import ContactEvents

    assert metric_info(ContactEvents, "fraction_adsorbed") == Metric(
        "fraction of beads adsorbed", "", "fraction")
    # a group selection's metric takes its group name into the label
    assert metric_info(RMSD, "mean_rmsd_lid") == Metric("mean RMSD of lid", "Å", "non-negative")
    assert metric_info(RMSD, "mean_rmsd") == Metric("mean RMSD", "Å", "non-negative")


def test_a_bad_declaration_is_refused_naming_the_fix():
    with pytest.raises(PluginError, match="bounds must be one of free, non-negative, fraction"):
        Metric("height", "nm", bounds="positive")

    class Bad:
        METRIC_INFO = {"height": "height in nm"}

    with pytest.raises(PluginError, match=r"Bad.METRIC_INFO must map metric names to "
                                          r"assay.Metric"):
        declared_metrics(Bad)


def test_assay_plugins_lists_each_metric_label_unit_and_bounds(capsys):
    import re

    from assay.cli import main

    assert main(["plugins", "contact_events"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^fraction_adsorbed +fraction of beads adsorbed +- +fraction$", out, re.M)
    assert re.search(r"^mean_event_frames +mean contact duration +frames +non-negative$", out,
                     re.M)
    assert main(["plugins", "md_rmsd", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["metrics"]["mean_rmsd_*"] == {
        "label": "mean RMSD of {}", "unit": "Å", "bounds": "non-negative"}


# --- intervals inside the bounds ---------------------------------------------------------
def _t(n: int, confidence: float) -> float:
    from scipy import stats

    return float(stats.t.ppf(0.5 + confidence / 2, n - 1))


@pytest.mark.parametrize("values", [[1.0, 2.0, 4.0], [0.0, 0.0, 3.0, 1.0], [5.1, 5.3, 5.2]])
def test_non_negative_interval_is_the_delta_method_log_interval_by_hand(values):
    n, mean, sd = len(values), float(np.mean(values)), float(np.std(values, ddof=1))
    se_log = sd / math.sqrt(n) / mean
    expected = (math.exp(math.log(mean) - _t(n, 0.95) * se_log),
                math.exp(math.log(mean) + _t(n, 0.95) * se_log))
    got = bounded_interval(summarize(values, 0.95), "non-negative")
    assert got["interval_method"] == INTERVAL_LOG
    assert (got["interval_low"], got["interval_high"]) == pytest.approx(expected, rel=1e-12)
    assert 0 < got["interval_low"] < mean < got["interval_high"]


@pytest.mark.parametrize("values", [[0.01, 0.05, 0.0, 0.02], [0.5, 0.6, 0.7], [0.97, 1.0, 0.99]])
def test_fraction_interval_is_the_delta_method_logit_interval_by_hand(values):
    n, mean, sd = len(values), float(np.mean(values)), float(np.std(values, ddof=1))
    logit = math.log(mean / (1 - mean))
    half = _t(n, 0.9) * sd / math.sqrt(n) / (mean * (1 - mean))
    expected = (1 / (1 + math.exp(-(logit - half))), 1 / (1 + math.exp(-(logit + half))))
    got = bounded_interval(summarize(values, 0.9), "fraction")
    assert got["interval_method"] == INTERVAL_LOGIT
    assert (got["interval_low"], got["interval_high"]) == pytest.approx(expected, rel=1e-12)
    assert 0 < got["interval_low"] < mean < got["interval_high"] < 1


def test_free_interval_is_scipys_t_interval_and_no_spread_has_none():
    from scipy import stats

    values = [-1.0, 0.5, 2.0, 0.1]
    summary = summarize(values, 0.95)
    got = bounded_interval(summary, "free")
    expected = stats.t.interval(0.95, 3, loc=np.mean(values), scale=stats.sem(values))
    assert got["interval_method"] == INTERVAL_T
    assert (got["interval_low"], got["interval_high"]) == pytest.approx(expected, rel=1e-12)
    for same in ([0.0, 0.0, 0.0], [2.0]):
        assert bounded_interval(summarize(same, 0.95), "non-negative") == {
            "interval_low": None, "interval_high": None, "interval_method": INTERVAL_NO_SPREAD}


@pytest.mark.parametrize("bounds,draw,truth", [
    ("non-negative", lambda rng, size: rng.gamma(2.0, 1.0, size), 2.0),
    ("fraction", lambda rng, size: rng.beta(1.0, 9.0, size), 0.1),
])
def test_bounded_intervals_cover_where_t_leaves_the_bounds_and_the_bootstrap_undercovers(
        bounds, draw, truth):
    """Why the delta-method intervals and not the alternatives, at the replicate counts
    studies use (n = 4, 2,000 simulated conditions): they cover about 95 % (Monte-Carlo SE
    0.5 %) and never leave the bounds; the t interval leaves them in most draws; the
    percentile bootstrap (scipy.stats.bootstrap, the reference implementation) covers only
    about 77 %."""
    from scipy import stats

    rng = np.random.default_rng(2027)
    samples = draw(rng, (2000, 4))
    inside = below = boot_inside = 0
    for values in samples:
        summary = summarize(values.tolist(), 0.95)
        got = bounded_interval(summary, bounds)
        assert got["interval_low"] >= 0 and (bounds != "fraction" or got["interval_high"] <= 1)
        inside += got["interval_low"] <= truth <= got["interval_high"]
        below += summary["ci_low"] < 0
        boot = stats.bootstrap((values,), np.mean, confidence_level=0.95, n_resamples=999,
                               method="percentile", vectorized=True, rng=rng).confidence_interval
        boot_inside += boot.low <= truth <= boot.high
    assert 0.93 <= inside / 2000 <= 0.97
    assert below / 2000 > 0.4
    assert boot_inside / 2000 < 0.85


# --- the condition artifact records metadata and the interval -----------------------------
def test_condition_artifact_records_label_unit_bounds_and_its_interval(store):
    study, digests, _ = _contacts_study(store)
    free = store.read_condition_result(digests[0])
    assert free.payload["metric_info"] == {
        "fraction_adsorbed": {"label": "fraction of beads adsorbed", "unit": "",
                              "bounds": "fraction"},
        "mean_event_frames": {"label": "mean contact duration", "unit": "frames",
                              "bounds": "non-negative"},
        "n_events": {"label": "surface-contact events per replicate", "unit": "",
                     "bounds": "non-negative"}}
    events = free.payload["metrics"]["n_events"]   # 0, 2, 1, 0: the t interval goes below 0
    assert events["ci_low"] < 0 < events["interval_low"] < events["mean"]
    assert events["interval_method"] == INTERVAL_LOG
    fraction = free.payload["metrics"]["fraction_adsorbed"]
    assert fraction["interval_method"] == INTERVAL_LOGIT
    assert 0 < fraction["interval_low"] < fraction["interval_high"] < 1


def test_a_value_outside_its_declared_bounds_is_refused(store):
    study = _study()
    with pytest.raises(AssayError) as info:
        _condition(store, study, "free", {"fraction_adsorbed": [0.2, 1.5]})
    assert str(info.value) == (
        "aggregate contacts/free: metric 'fraction_adsorbed' is declared fraction in its "
        "plugin's METRIC_INFO, but a replicate value 1.5 is outside [0, 1]; fix the "
        "collector or the declaration")


def test_compare_refuses_a_condition_whose_interval_was_edited(store):
    study = _study()
    digests = [_condition(store, study, label, {"n_events": metrics["n_events"]})
               for label, metrics in CONTACTS.items()]
    free = store.read_condition_result(digests[0])
    payload = copy.deepcopy(free.payload)
    payload["metrics"]["n_events"]["interval_low"] = 0.0   # "tidied up" by hand
    edited = store.write_artifact(ConditionArtifact(
        analysis_name=free.analysis_name, condition_label="free", replicates=free.replicates,
        payload=payload, metadata=free.metadata))
    with pytest.raises(AssayError, match="stored interval_low 0.0 is not the interval its "
                                         "values and declared bounds give"):
        execute(store, compare_spec(study, "contacts"), [edited, *digests[1:]])


# --- what the summary figure draws --------------------------------------------------------
def _context(store, study, comparison, **spec):
    from assay.pipeline.plotting import load_plot_context

    return load_plot_context(store, {**plot_spec(study, "contacts"), **spec}, comparison)


def test_summary_panels_have_labels_units_n_bounded_intervals_and_effects(store):
    from assay.pipeline.plotting import summary_panels

    study, _, comparison = _contacts_study(store)
    panels = summary_panels(_context(store, study, comparison))
    # the plugin's declaration order, titles with units
    assert [p["title"] for p in panels] == ["surface-contact events per replicate",
                                           "mean contact duration (frames)",
                                           "fraction of beads adsorbed"]
    for panel in panels:
        assert [r["condition"] for r in panel["conditions"]] == ["free", "strong", "weak"]
        for row in panel["conditions"]:
            assert row["n"] == 4 and len(row["values"]) == 4
            assert 0 <= row["low"] <= row["mean"] <= row["high"]
            if panel["bounds"] == "fraction":
                assert row["high"] <= 1
            if row["condition"] != "free":
                assert row["stars"] in ("*", "**", "***", "n.s.")
                assert row["effect"].startswith("g = ")
    table = store.read_comparison_result(comparison).payload["comparisons"]
    strong = next(r for r in panels[2]["conditions"] if r["condition"] == "strong")
    test = table["strong"]["fraction_adsorbed"]
    assert strong["p"] == test["p_adjusted"]
    assert strong["effect"] == (f"g = {test['hedges_g']:.2f}\n[{test['g_ci_low']:.2f}, "
                                f"{test['g_ci_high']:.2f}]")


def test_summary_figure_puts_titles_n_and_stars_inside_the_axes(store):
    from matplotlib.figure import Figure

    from assay.pipeline.plotting import PALETTE, draw_summary

    study, _, comparison = _contacts_study(store)
    figure = Figure(layout="constrained")
    draw_summary(_context(store, study, comparison), figure)
    axes = [a for a in figure.axes if a.get_visible()]
    assert [a.get_title() for a in axes][1] == "mean contact duration (frames)"
    for ax in axes:
        assert [t.get_text() for t in ax.get_xticklabels()] == [
            "free\nn = 4", "strong\nn = 4", "weak\nn = 4"]
        for text in ax.texts:   # every star and effect size inside the axes
            assert text.xycoords == ("data", "axes fraction") and 0 < text.xy[1] < 1
        colours = {tuple(line.get_color()) if not isinstance(line.get_color(), str)
                   else line.get_color() for line in ax.lines}
        assert set(PALETTE[:3]) <= colours   # the colour-blind-safe palette
    title = figure._suptitle.get_text().replace("\n", " ")
    assert "Welch t-test, Holm-adjusted p" in title and "Hedges' g" in title


def test_blocks_are_labelled_as_blocks(store):
    from matplotlib.figure import Figure

    from assay.pipeline.plotting import draw_summary

    study, _, comparison = _contacts_study(store)
    ctx = _context(store, study, comparison)

    class Blocks:   # an analysis whose replicates are blocks of one trajectory
        @staticmethod
        def replicate_kind(settings):
            return "block"

    ctx.plugin = Blocks()
    figure = Figure(layout="constrained")
    draw_summary(ctx, figure)
    ax = figure.axes[0]
    assert ax.get_xticklabels()[0].get_text() == "free\nn = 4 blocks"
    assert "blocks of one trajectory (not independent runs)" in figure._suptitle.get_text(
    ).replace("\n", " ")


def test_an_adaptive_summary_says_how_many_ran_and_why_it_stopped(store, tmp_path):
    from matplotlib.figure import Figure

    from assay.pipeline.plotting import draw_summary, look_summaries

    paths = []
    for look, (n, stop, why) in enumerate([(2, False, "precision not reached: x; add 2"),
                                           (4, True, "precision reached at n = 4")], 1):
        path = tmp_path / "looks" / f"{look}.json"
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps({"look": look, "n": n, "rule": {}, "stop": stop,
                                    "why": why, "numbers": {}}))
        paths.append(str(path))
    looks = look_summaries(paths[::-1])
    assert [d["look"] for d in looks] == [1, 2]
    study, _, comparison = _contacts_study(store)
    figure = Figure(layout="constrained")
    draw_summary(_context(store, study, comparison, looks=looks), figure)
    assert ("adaptive replicates: 4 per condition, stopped at look 2 of the rule: precision "
            "reached at n = 4") in figure._suptitle.get_text().replace("\n", " ")
    (tmp_path / "looks" / "3.json").write_text("{}")
    with pytest.raises(AssayError, match="3.json is not a look decision"):
        look_summaries([str(tmp_path / "looks" / "3.json")])


@pytest.mark.parametrize("fmt", ["svg", "pdf"])
def test_vector_figures_are_the_same_bytes_every_time(store, tmp_path, fmt):
    from assay.pipeline.plotting import run_plot

    study = _study(plots={"format": fmt, "dpi": 50})
    _, _, comparison = _contacts_study(store, study)
    spec = plot_spec(study, "contacts")
    first, second = tmp_path / f"a/summary.{fmt}", tmp_path / f"b/summary.{fmt}"
    for path in (first, second):
        path.parent.mkdir()
        run_plot(store, spec, comparison, [str(path)])
    data = first.read_bytes()
    assert data[:5] == (b"%PDF-" if fmt == "pdf" else b"<?xml")
    assert data == second.read_bytes()
    if fmt == "svg":   # text stays text, so a journal's editor can fix a label
        assert b">fraction of beads adsorbed</text>" in data
    else:
        assert b"/FontFile2" in data and b"/Type3" not in data   # TrueType, not Type 3


def test_running_mean_band_is_each_prefix_mean_and_mcse_even_far_from_zero():
    """The band after k production samples is their mean ± sd_k / sqrt(k / g), computed
    directly per prefix; values near -5e5 with fluctuations of 0.1 (an energy) too."""
    from assay.pipeline.plotting import running_mean_band

    rng = np.random.default_rng(3)
    values = -5e5 + 0.1 * np.cumsum(rng.normal(size=400)) / 10
    t0, g = 37, 6.5
    where, mean, mcse = running_mean_band(values, t0, g)
    assert where[0] == t0 and where[-1] == values.size - 1
    for k in (2, 3, 50, 363):
        prefix = values[t0:t0 + k]
        assert mean[k - 1] == pytest.approx(prefix.mean(), rel=1e-15)
        assert mcse[k - 1] == pytest.approx(prefix.std(ddof=1) / math.sqrt(k / g), rel=1e-6)


# --- report captions ----------------------------------------------------------------------
def test_captions_say_what_is_plotted_n_the_test_and_the_correction():
    from docutils.core import publish_parts

    from assay.pipeline.plotting import figure_caption

    study = _study(comparison={"test": "mannwhitney", "correction": "bh"})
    summary = figure_caption(study, "contacts", "summary")
    for words in ("one panel per metric (surface-contact events per replicate, mean contact "
                  "duration (frames), fraction of beads adsorbed)", "2 replicates per "
                  "condition", "Mann-Whitney U test", "Benjamini-Hochberg-adjusted",
                  "Hedges' g", "log(mean)"):
        assert words in summary.replace("\n", " ")
    series = figure_caption(study, "gyration", "detail")
    assert "equilibration time t0" in series and "Mann-Whitney U test" in series
    for text in (summary, series):   # valid reStructuredText: the report renders it
        publish_parts(text, writer="html",
                      settings_overrides={"halt_level": 2, "report_level": 5})


@pytest.mark.slow
def test_an_adaptive_study_figure_says_why_it_stopped(tmp_path):
    """The plot rule takes the looks as inputs: a real (small) adaptive study, drawn as
    SVG, whose text names how many replicates ran and the stop rule's reason."""
    from workflow_helpers import snakemake, write_config

    config = copy.deepcopy(SMALL_CONFIG)
    config["replicates"] = {"min": 2, "max": 4, "batch": 2, "until": {"precision": [
        {"analysis": "gyration", "metric": "mean_rg", "half_width": 2.0}]}}
    config["analyses"] = {"gyration": config["analyses"]["gyration"]}
    config["plots"] = {"format": "svg"}
    write_config(tmp_path, config)
    snakemake(tmp_path)   # the whole study: `assay crate` below needs every figure
    svg = (tmp_path / "results" / "plots" / "gyration" / "summary.svg").read_text()
    assert json.loads((tmp_path / "results" / "looks" / "1.json").read_text())["stop"]
    assert "adaptive replicates: 2 per condition, stopped at look 1 of the rule: precision" \
        in svg.replace("\n", " ")
    assert "n = 2" in svg
    # `assay crate` proves each figure by the key its plot job used, looks included
    crate = subprocess.run([sys.executable, "-m", "assay.cli", "crate", "-o",
                            str(tmp_path / "study.crate.zip")], cwd=tmp_path,
                           capture_output=True, text=True, timeout=300)
    assert crate.returncode == 0, crate.stderr
