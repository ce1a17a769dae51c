"""Comparisons from condition artifacts: tests, correction, effect sizes, ranking, and the
inputs a comparison refuses. Statistics are checked against scipy.stats and statsmodels."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests
from workflow_helpers import SMALL_CONFIG

from assay import (
    ArtifactStore,
    AssayError,
    ConditionArtifact,
    ConfigError,
    ReplicateArtifact,
)
from assay.pipeline.config import Study
from assay.pipeline.stages import aggregate_spec, compare_spec, execute, stage_action_key

VALUES = {
    "free": {"x": [1.0, 2.0, 3.0, 2.5], "y": [10.0, 11.0, 10.5, 10.2]},
    "strong": {"x": [5.0, 6.0, 7.5, 6.1], "y": [10.1, 11.2, 10.4, 10.9]},
    "weak": {"x": [1.5, 2.5, 2.9, 3.1], "y": [9.0, 9.5, 9.9, 9.4]},
}


def _study(**comparison) -> Study:
    config = copy.deepcopy(SMALL_CONFIG)
    config["conditions"].append({"label": "weak", "params": {"surface_epsilon": 1.0}})
    if comparison:
        config["comparison"] = comparison
    return Study.from_config(config)


@pytest.fixture
def store(tmp_path) -> ArtifactStore:
    return ArtifactStore(tmp_path / "store")


def _condition(store, study, label, metrics, analysis="contacts"):
    spec = aggregate_spec(study, analysis, label)
    reps = []
    n = len(next(iter(metrics.values())))
    for i in range(n):
        values = {m: v[i] for m, v in metrics.items() if i < len(v)}
        reps.append(store.write_artifact(ReplicateArtifact(
            analysis_name=analysis, condition_label=label, replicate=i + 1,
            payload={"metrics": values},
            metadata={"settings_fingerprint": spec["settings_fingerprint"]})))
    return execute(store, spec, reps)


def _compare(store, study, values=VALUES):
    digests = [_condition(store, study, label, metrics) for label, metrics in values.items()]
    digest = execute(store, compare_spec(study, "contacts"), digests)
    return store.read_comparison_result(digest), digests


def test_default_is_welch_against_the_control_with_holm(store):
    art, _ = _compare(store, _study())
    payload = art.payload
    assert payload["options"] == {"pairs": "control", "test": "welch", "correction": "holm"}
    assert sorted(payload["comparisons"]) == ["strong", "weak"] and "pairwise" not in payload
    family = []
    for label in ("strong", "weak"):
        for metric in ("x", "y"):
            result = payload["comparisons"][label][metric]
            reference = stats.ttest_ind(VALUES[label][metric], VALUES["free"][metric],
                                        equal_var=False)
            assert result["test"] == "welch"
            assert result["statistic"] == result["t"] == pytest.approx(reference.statistic)
            assert result["p"] == pytest.approx(reference.pvalue, rel=1e-9)
            family.append(result)
    holm = multipletests([r["p"] for r in family], method="holm")[1]
    assert [r["p_adjusted"] for r in family] == pytest.approx(list(holm), rel=1e-12)
    assert payload["missing_metrics"] == {} and art.warnings == []


def test_all_pairs_with_benjamini_hochberg(store):
    art, _ = _compare(store, _study(pairs="all", correction="bh"))
    payload = art.payload
    pair = payload["pairwise"]["strong"]["weak"]["x"]      # weak - strong
    assert pair["difference"] == pytest.approx(np.mean(VALUES["weak"]["x"])
                                               - np.mean(VALUES["strong"]["x"]))
    family = [payload["comparisons"][c][m] for c in ("strong", "weak") for m in ("x", "y")]
    family += [payload["pairwise"]["strong"]["weak"][m] for m in ("x", "y")]
    bh = multipletests([r["p"] for r in family], method="fdr_bh")[1]
    assert sorted(r["p_adjusted"] for r in family) == pytest.approx(sorted(bh), rel=1e-12)
    assert payload["options"]["correction"] == "bh"


def test_mann_whitney_replaces_the_test_not_the_interval(store):
    art, _ = _compare(store, _study(test="mannwhitney", correction="none"))
    result = art.payload["comparisons"]["strong"]["x"]
    reference = stats.mannwhitneyu(VALUES["strong"]["x"], VALUES["free"]["x"], method="exact")
    assert result["test"] == "mannwhitney" and result["method"] == "exact"
    assert (result["statistic"], result["p"]) == (reference.statistic,
                                                  pytest.approx(reference.pvalue))
    assert result["p_adjusted"] == result["p"]
    welch = stats.ttest_ind(VALUES["strong"]["x"], VALUES["free"]["x"], equal_var=False)
    assert "t" not in result and result["df"] == pytest.approx(welch.df)
    low, high = welch.confidence_interval(0.95)
    assert (result["ci_low"], result["ci_high"]) == pytest.approx((low, high))


def test_permutation_test_is_exact_for_small_n_and_seeded(store):
    study = _study(test="permutation", permutations=99, seed=5)
    art, digests = _compare(store, study)
    result = art.payload["comparisons"]["strong"]["x"]   # C(8, 4) = 70 <= 99: every split
    reference = stats.permutation_test(
        (VALUES["strong"]["x"], VALUES["free"]["x"]),
        lambda a, b, axis=-1: np.mean(a, axis=axis) - np.mean(b, axis=axis),
        permutation_type="independent", n_resamples=np.inf, vectorized=True)
    assert result["method"] == "exact" and result["p"] == pytest.approx(reference.pvalue)
    assert art.payload["options"] == {"pairs": "control", "test": "permutation",
                                      "correction": "holm", "permutations": 99, "seed": 5}
    again = store.read_comparison_result(execute(store, compare_spec(study, "contacts"),
                                                 digests, use_cache=False))
    assert again.payload == art.payload


def test_options_enter_the_action_key_only_where_they_change_numbers():
    def key(**options):
        return stage_action_key(compare_spec(_study(**options), "contacts"), [])

    assert key() == key(test="welch", correction="holm", pairs="control")
    assert key(seed=1) == key(seed=2)                     # the seed of an unused test
    assert len({key(), key(correction="bh"), key(pairs="all"), key(test="mannwhitney"),
                key(test="permutation", seed=1), key(test="permutation", seed=2),
                key(test="permutation", permutations=999)}) == 7


def test_effect_sizes(store):
    art, _ = _compare(store, _study())
    result = art.payload["comparisons"]["strong"]["x"]
    a, b = np.array(VALUES["strong"]["x"]), np.array(VALUES["free"]["x"])
    pooled = np.sqrt((3 * a.var(ddof=1) + 3 * b.var(ddof=1)) / 6)
    j = 1 - 3 / (4 * 6 - 1)   # Hedges' approximation, close to the exact J(6)=0.8686 used
    assert result["hedges_g"] == pytest.approx(j * (a.mean() - b.mean()) / pooled, rel=2e-3)
    assert result["g_ci_low"] < result["hedges_g"] < result["g_ci_high"]
    assert result["ratio"] == pytest.approx(a.mean() / b.mean())


def test_welch_anova_per_metric_corrected_across_metrics(store):
    art, _ = _compare(store, _study())
    anova = art.payload["anova"]
    for metric in ("x", "y"):
        reference = stats.f_oneway(*(VALUES[c][metric] for c in ("free", "strong", "weak")),
                                   equal_var=False)
        assert anova[metric]["F"] == pytest.approx(reference.statistic, rel=1e-10)
        assert anova[metric]["p"] == pytest.approx(reference.pvalue, rel=1e-8)
        assert anova[metric]["conditions"] == ["free", "strong", "weak"]
    holm = multipletests([anova["x"]["p"], anova["y"]["p"]], method="holm")[1]
    assert [anova["x"]["p_adjusted"], anova["y"]["p_adjusted"]] == pytest.approx(list(holm))


def test_ranking_marks_the_ties_intervals_cannot_separate(store):
    art, _ = _compare(store, _study())
    ranking = {m: [(e["condition"], e["rank"], e["tied_with"]) for e in entries]
               for m, entries in art.payload["ranking"].items()}
    assert ranking["x"] == [("strong", 1, []), ("weak", 2, ["free"]), ("free", 3, ["weak"])]
    # y: free and strong overlap; weak is lower than free (Welch interval excludes 0)
    assert ranking["y"][2] == ("weak", 3, [])
    assert {ranking["y"][0][0], ranking["y"][1][0]} == {"free", "strong"}
    assert ranking["y"][0][2] == [ranking["y"][1][0]]
    entry = art.payload["ranking"]["x"][0]
    assert entry["mean"] == pytest.approx(np.mean(VALUES["strong"]["x"]))


def test_metrics_in_some_conditions_only_are_reported_not_dropped(store):
    values = copy.deepcopy(VALUES)
    values["strong"]["extra"] = [1.0, 2.0, 3.0, 4.0]
    values["weak"]["extra"] = [2.0, 2.0, 3.0, 5.0]
    art, _ = _compare(store, _study(), values)
    assert art.payload["missing_metrics"] == {"extra": ["free"]}
    assert art.warnings == [("metric 'extra' is missing from condition(s) ['free']: no test "
                             "involves them for this metric")]
    assert "extra" not in art.payload["comparisons"]["strong"]
    assert art.payload["anova"]["extra"]["conditions"] == ["strong", "weak"]


def test_comparison_table_lists_every_test(store):
    art, _ = _compare(store, _study(pairs="all"))
    [sidecar] = art.sidecars
    assert sidecar.path == "sidecars/comparison_table.csv" and sidecar.kind == "comparison_table"
    table = store.load_table_sidecar(sidecar)
    assert list(table["test"]) == ["welch_anova", "welch", "welch", "welch"] * 2
    pairs = table[table["test"] == "welch"]
    assert set(zip(pairs["condition"], pairs["reference"])) == {
        ("strong", "free"), ("weak", "free"), ("weak", "strong")}
    row = pairs[(pairs["metric"] == "x") & (pairs["condition"] == "strong")].iloc[0]
    result = art.payload["comparisons"]["strong"]["x"]
    assert row["p_adjusted"] == pytest.approx(result["p_adjusted"], rel=1e-15)
    assert row["hedges_g"] == pytest.approx(result["hedges_g"], rel=1e-15)
    assert row["n_condition"] == 4 and row["correction"] == "holm"


# --- inputs that cannot lie ----------------------------------------------------------------
def test_duplicate_condition_labels_are_refused(store):
    study = _study()
    free = _condition(store, study, "free", VALUES["free"])
    again = _condition(store, study, "free", {"x": [9.0, 9.5], "y": [1.0, 2.0]})
    strong = _condition(store, study, "strong", VALUES["strong"])
    with pytest.raises(AssayError) as info:
        execute(store, compare_spec(study, "contacts"), [free, strong, again])
    assert str(info.value) == (f"compare contacts: condition 'free' is given twice ({free} "
                               f"and {again}); pass one condition artifact per label")


def test_conditions_of_another_analysis_are_refused(store):
    study = _study()
    free = _condition(store, study, "free", VALUES["free"])
    other = _condition(store, study, "strong", VALUES["strong"], analysis="gyration")
    with pytest.raises(AssayError) as info:
        execute(store, compare_spec(study, "contacts"), [free, other])
    assert str(info.value).startswith(
        f"compare job for contacts was given {other}, which is condition gyration/strong: "
        "analysis 'gyration' (expected 'contacts'). A ref names the wrong artifact")


def _forged(store, digest, change):
    """A copy of a condition artifact with its payload edited by ``change``."""
    art = store.read_condition_result(digest)
    payload = copy.deepcopy(art.payload)
    metadata = dict(art.metadata)
    change(payload, metadata)
    return store.write_artifact(ConditionArtifact(
        analysis_name=art.analysis_name, condition_label=art.condition_label,
        replicates=art.replicates, payload=payload, metadata=metadata, inputs=art.inputs))


def test_conditions_of_other_settings_are_refused(store):
    study = _study()
    free = _condition(store, study, "free", VALUES["free"])
    strong = _forged(store, _condition(store, study, "strong", VALUES["strong"]),
                     lambda p, m: m.update(settings_fingerprint="sha256:" + "1" * 64))
    spec = compare_spec(study, "contacts")
    with pytest.raises(AssayError) as info:
        execute(store, spec, [free, strong])
    assert str(info.value) == (
        f"compare contacts: condition 'strong' ({strong}) was aggregated with settings "
        f"fingerprint sha256:{'1' * 64}, not {spec['settings_fingerprint']}; rerun its "
        "aggregate job")


def test_a_summary_that_does_not_match_its_values_is_refused(store):
    study = _study()
    free = _condition(store, study, "free", VALUES["free"])
    edited = _forged(store, _condition(store, study, "strong", VALUES["strong"]),
                     lambda p, m: p["metrics"]["x"].update(mean=7.0))
    with pytest.raises(AssayError) as info:
        execute(store, compare_spec(study, "contacts"), [free, edited])
    assert str(info.value) == (
        f"compare contacts: condition 'strong' ({edited}) metric 'x': stored mean 7.0 does "
        "not match its 4 replicate values (mean 6.15); the artifact was edited or made by "
        "other code: rerun its aggregate job")


def test_an_edited_replicate_value_is_refused_too(store):
    study = _study()
    free = _condition(store, study, "free", VALUES["free"])
    edited = _forged(store, _condition(store, study, "strong", VALUES["strong"]),
                     lambda p, m: p["metrics"]["y"]["values"].update({"2": 11.2000001}))
    with pytest.raises(AssayError, match=r"metric 'y': stored mean 10\.65 does not match its "
                                         r"4 replicate values"):
        execute(store, compare_spec(study, "contacts"), [free, edited])


def test_a_summary_without_replicate_values_is_refused(store):
    study = _study()
    free = _condition(store, study, "free", VALUES["free"])
    old = _forged(store, _condition(store, study, "strong", VALUES["strong"]),
                  lambda p, m: p["metrics"]["x"].pop("values"))
    with pytest.raises(AssayError) as info:
        execute(store, compare_spec(study, "contacts"), [free, old])
    assert str(info.value) == (
        f"compare contacts: condition 'strong' ({old}) metric 'x' has no replicate values, so "
        "no test can be made from it (made by an older assay, or an aggregate hook added it "
        "without them); rerun its aggregate job")


def test_values_within_the_tight_tolerance_pass(store):
    study = _study()
    free = _condition(store, study, "free", VALUES["free"])
    nudged = _forged(store, _condition(store, study, "strong", VALUES["strong"]),
                     lambda p, m: p["metrics"]["x"].update(mean=p["metrics"]["x"]["mean"]
                                                           * (1 + 1e-12)))
    execute(store, compare_spec(study, "contacts"), [free, nudged])


# --- configuration -------------------------------------------------------------------------
def test_config_defaults_and_refusals():
    assert _study().comparison == {"pairs": "control", "test": "welch", "correction": "holm",
                                   "permutations": 9999, "seed": 0}
    with pytest.raises(ConfigError) as info:
        _study(test="ttest")
    assert str(info.value) == ("config key comparison.test: 'ttest' is not one of "
                               "['welch', 'mannwhitney', 'permutation']")
    with pytest.raises(ConfigError, match=r"^config key comparison: unknown key 'alpha'; "
                                          r"known keys: correction, pairs, permutations, "
                                          r"seed, test$"):
        _study(alpha=0.1)


# --- where the results show up -------------------------------------------------------------
def test_catalog_metrics_expose_every_test_and_its_adjusted_p(store, tmp_path):
    from assay.tools.catalog import build_catalog, open_catalog

    art, _ = _compare(store, _study(pairs="all"))
    summary = build_catalog(store, tmp_path / "results", store_wide=True)   # no refs
    with open_catalog(summary.path) as catalog:
        rows = catalog.query_metrics(analysis="contacts", artifact_type="comparison",
                                     statistic="p_adjusted", live_only=False)
        ranks = catalog.query_metrics(artifact_type="comparison", statistic="rank",
                                      live_only=False)
        anova = catalog.query_metrics(artifact_type="comparison", statistic="anova_p",
                                      live_only=False)
    found = {(r.condition, r.control, r.metric): r.value for r in rows.itertuples()}
    assert found[("weak", "strong", "x")] == pytest.approx(
        art.payload["pairwise"]["strong"]["weak"]["x"]["p_adjusted"])
    assert found[("strong", "free", "y")] == pytest.approx(
        art.payload["comparisons"]["strong"]["y"]["p_adjusted"])
    assert len(found) == 6
    assert set(zip(ranks.condition, ranks.metric, ranks.value)) >= {("strong", "x", 1.0)}
    assert sorted(anova.metric) == ["x", "y"] and anova.condition.isna().all()


def test_summary_figure_stars_adjusted_p_and_names_the_correction(store):
    from matplotlib.collections import PathCollection
    from matplotlib.figure import Figure

    from assay.pipeline.plotting import draw_summary, load_plot_context
    from assay.pipeline.stages import plot_spec

    study = _study()
    values = {"free": {"x": [1.0, 1.2, 1.4, 1.1]}, "strong": {"x": [1.0, 1.3, 1.4, 1.2]},
              "weak": {"x": [1.35, 1.45, 1.5, 1.6]}}
    digests = [_condition(store, study, label, metrics) for label, metrics in values.items()]
    comparison = execute(store, compare_spec(study, "contacts"), digests)
    art = store.read_comparison_result(comparison)
    weak = art.payload["comparisons"]["weak"]["x"]
    assert weak["p"] < 0.05 < weak["p_adjusted"]          # significant only before Holm
    for digest in digests:   # the summary is drawn from condition artifacts alone
        for item in store.read_condition_result(digest).inputs:
            store.objects.path_for(item["digest"].split(":")[1]).unlink()
    store.clear_cache()
    figure = Figure()
    draw_summary(load_plot_context(store, plot_spec(study, "contacts"), comparison), figure)
    assert ("Welch t-test, Holm-adjusted p: * p<0.05, ** p<0.01, *** p<0.001"
            in figure._suptitle.get_text().replace("\n", " "))
    [ax] = [a for a in figure.axes if a.get_visible()]
    texts = [t.get_text() for t in ax.texts]
    assert texts[0] == "control" and [t.split("\n")[0] for t in texts[1:]] == ["n.s.", "n.s."]
    dots = [c.get_offsets()[:, 1].tolist() for c in ax.collections
            if isinstance(c, PathCollection)]   # the scatter of replicate values
    assert sorted(map(sorted, dots)) == sorted(sorted(v["x"]) for v in values.values())
