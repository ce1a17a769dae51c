"""The plot stage: figures drawn only from artifacts and registered sidecars.

Figures are outputs for people, not artifacts; they are written atomically and the same
artifacts always give the same picture.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from .context import PlotContext
from .joblog import FIGURE_CACHE_HIT
from ..store.payload import (
    COMPARISONS,
    CONDITIONS,
    CONTROL,
    METRICS,
    OPTIONS,
    P_ADJUSTED,
    P_VALUE,
)
from .plugins import resolve_analysis
from ..store import ArtifactStore


class Replicates(Mapping[str, dict[int, Any]]):
    """Each condition's replicate artifacts, read only when a plot asks for them: the
    summary figure never does (conditions carry their replicates' values)."""

    def __init__(self, store: ArtifactStore, conditions: dict[str, Any]) -> None:
        self._store, self._conditions = store, conditions
        self._loaded: dict[str, dict[int, Any]] = {}

    def __getitem__(self, label: str) -> dict[int, Any]:
        if label not in self._loaded:
            artifacts = [self._store.read_replicate_result(item["digest"])
                         for item in self._conditions[label].inputs]
            self._loaded[label] = {a.replicate: a for a in artifacts}
        return self._loaded[label]

    def __iter__(self) -> Iterator[str]:
        return iter(self._conditions)

    def __len__(self) -> int:
        return len(self._conditions)


def load_plot_context(store: ArtifactStore, spec: dict[str, Any], comparison_digest: str) -> PlotContext:
    comparison = store.read_comparison_result(comparison_digest)
    conditions = {}
    for item in comparison.inputs:
        condition = store.read_condition_result(item["digest"])
        conditions[condition.condition_label] = condition
    order = spec.get("conditions") or comparison.payload.get(CONDITIONS, sorted(conditions))
    control = comparison.payload.get(CONTROL, spec["control"])
    order = [control] + [c for c in order if c != control]
    ordered = {c: conditions[c] for c in order}
    return PlotContext(
        analysis_name=spec["analysis"], control=control, settings=spec["settings"],
        comparison=comparison, conditions=ordered, replicates=Replicates(store, ordered),
        artifact_store=store, plot_options=spec.get("plots", {}),
        plugin=resolve_analysis(spec["plugin"])(), looks=list(spec.get("looks") or []))


# Okabe & Ito (2008) colours: told apart by every common colour-vision deficiency and in
# greyscale by their lightness; the control is black.
PALETTE = ("#000000", "#E69F00", "#56B4E9", "#009E73", "#0072B2", "#D55E00", "#CC79A7",
           "#F0E442")
REPLICATE_DOTS = "#7F7F7F"


def condition_colours(labels: list[str]) -> dict[str, str]:
    """One Okabe-Ito colour per condition, in the figure's order (the control first)."""
    return {label: PALETTE[i % len(PALETTE)] for i, label in enumerate(labels)}


def replicate_word(plugin: Any, settings: dict[str, Any]) -> str:
    """What a replicate is for this analysis: 'replicate', or 'block' when the plugin says
    its replicates are blocks of one trajectory (``replicate_kind(settings)``)."""
    hook = getattr(plugin, "replicate_kind", None)
    kind = hook(settings) if callable(hook) else "replicate"
    return "block" if kind == "block" else "replicate"


def _stars(p: float | None) -> str:
    if p is None:
        return "n/a"
    return "***" if p < 0.001 else "**" if p < 0.01 else "*" if p < 0.05 else "n.s."


def _starred_p(test: dict[str, Any]) -> float | None:
    """The adjusted p; a comparison made before corrections existed has only the raw one."""
    return test.get(P_ADJUSTED, test.get(P_VALUE))


def stars_legend(payload: dict[str, Any]) -> str:
    """Which test and which correction the stars stand for, for the figure's title."""
    from .comparison import CORRECTIONS, TESTS

    options = payload.get(OPTIONS, {"test": "welch", "correction": "none"})
    test = TESTS.get(options.get("test"), str(options.get("test")))
    correction = CORRECTIONS.get(options.get("correction"), str(options.get("correction")))
    return f"{test}, {correction} p: * p<0.05, ** p<0.01, *** p<0.001"


def _number(value: float) -> str:
    """Three significant digits, no exponent for everyday magnitudes."""
    return f"{value:.3g}" if 1e-3 <= abs(value) < 1e4 or value == 0 else f"{value:.2e}"


def effect_text(test: dict[str, Any]) -> str:
    """Hedges' g with its CI beside the stars; the difference with its CI when g has
    none (a group without spread); 'n/a' when neither exists."""
    if test.get("hedges_g") is not None and test.get("g_ci_low") is not None:
        return (f"g = {test['hedges_g']:.2f}\n[{test['g_ci_low']:.2f}, "
                f"{test['g_ci_high']:.2f}]")
    if test.get("difference") is not None and test.get("ci_low") is not None:
        return (f"Δ = {_number(test['difference'])}\n[{_number(test['ci_low'])}, "
                f"{_number(test['ci_high'])}]")
    if test.get("difference") is not None:
        return f"Δ = {_number(test['difference'])}\n(no CI)"
    return "n/a"


def interval_of(stats: dict[str, Any]) -> tuple[float | None, float | None, str]:
    """The interval a figure draws for a condition's mean: the bounded one the condition
    artifact recorded (assay.pipeline.statistics.bounded_interval), or for an artifact made before
    it existed, the t interval."""
    from .statistics import INTERVAL_T

    if "interval_method" in stats:
        return stats["interval_low"], stats["interval_high"], stats["interval_method"]
    return stats.get("ci_low"), stats.get("ci_high"), INTERVAL_T


def summary_panels(ctx: PlotContext) -> list[dict[str, Any]]:
    """What the summary figure draws, per metric panel, from the stored artifacts only:
    title (label and unit), per condition n, the mean and the interval drawn (with its
    method), the replicate values, and per non-control condition the stars, p and effect.
    Tests read this, not pixels."""
    from .aggregation import replicate_values
    from .metric_info import declaration_order, recorded_info, with_unit
    from ..store.payload import SKIPPED_REPLICATES

    metrics = declaration_order(ctx.plugin, {m for c in ctx.conditions.values()
                                             for m in c.payload[METRICS]})
    comparisons = ctx.comparison.payload.get(COMPARISONS, {})
    panels = []
    for metric in metrics:
        info = None
        rows = []
        for label, condition in ctx.conditions.items():
            stats = condition.payload[METRICS].get(metric)
            if stats is None:
                continue
            if info is None:
                info = recorded_info(condition.payload, metric)
            low, high, method = interval_of(stats)
            row = {"condition": label, "n": stats["n"], "mean": stats["mean"],
                   "low": low, "high": high, "method": method,
                   "confidence": stats.get("confidence"),
                   "values": replicate_values(stats) or [],
                   "skipped": len(condition.payload.get(SKIPPED_REPLICATES) or [])}
            if label != ctx.control:
                test = comparisons.get(label, {}).get(metric, {})
                p = _starred_p(test)
                row.update(p=p, stars=_stars(p), effect=effect_text(test))
            rows.append(row)
        info = info or recorded_info(None, metric)
        panels.append({"metric": metric, "title": with_unit(info), "label": info.label,
                       "unit": info.unit, "bounds": info.bounds, "conditions": rows})
    return panels


def adaptive_note(looks: list[dict[str, Any]] | None) -> str | None:
    """Why an adaptive study stopped, from its last look's decision (results/looks/)."""
    if not looks:
        return None
    last = looks[-1]
    state = "stopped" if last.get("stop") else "not stopped yet"
    return (f"adaptive replicates: {last.get('n')} per condition, {state} at look "
            f"{last.get('look')} of the rule: {last.get('why')}")


def draw_summary(ctx: PlotContext, figure: Any) -> None:
    """Per metric: condition means with the interval that respects the metric's bounds,
    replicate values as dots, n under each condition, and inside the axes, above each
    condition compared with the control, its stars and effect size (Hedges' g [CI]).

    Everything comes from the condition and comparison artifacts: each condition carries
    its replicates' values, so no replicate is opened here.
    """
    import textwrap

    panels = summary_panels(ctx)
    unconverged: set[str] = set()   # the thresholds of the conditions marked "!"
    ncols = min(3, len(panels)) or 1
    nrows = math.ceil(len(panels) / ncols) or 1
    axes = figure.subplots(nrows, ncols, squeeze=False).ravel()
    labels = list(ctx.conditions)
    colours = condition_colours(labels)
    word = replicate_word(ctx.plugin, ctx.settings)
    methods: dict[str, list[str]] = {}
    confidence = None
    for ax, panel in zip(axes, panels):
        ticks = []
        tops, bottoms = [], []
        # An interval reaching far beyond the data (n = 2: t quantile 12.7) is cut at twice
        # the data's span and its end written beside an arrow, so the data stay readable.
        data = [v for row in panel["conditions"] for v in (row["mean"], *row["values"])]
        d_span = (max(data) - min(data)) or abs(max(data)) or 1.0
        clip_low, clip_high = min(data) - 2 * d_span, max(data) + 2 * d_span
        for row in panel["conditions"]:
            x = labels.index(row["condition"])
            values = row["values"]
            jitter = [x + 0.07 * (i - (len(values) - 1) / 2) for i in range(len(values))]
            ax.scatter(jitter, values, s=12, color=REPLICATE_DOTS, alpha=0.8, linewidths=0,
                       zorder=2)
            mean, low, high = row["mean"], row["low"], row["high"]
            yerr = None
            if low is not None:
                shown_low, shown_high = max(low, clip_low), min(high, clip_high)
                yerr = [[mean - shown_low], [shown_high - mean]]
                for end, shown, arrow, va in ((low, shown_low, "↓", "top"),
                                              (high, shown_high, "↑", "bottom")):
                    if end != shown:
                        ax.annotate(f"{arrow} {_number(end)}", (x + 0.22, shown),
                                    xytext=(0, 2 if va == "bottom" else -2),
                                    textcoords="offset points", ha="center", va=va,
                                    fontsize=6.5, color=colours[row["condition"]])
                high, low = shown_high, shown_low
            ax.errorbar([x + 0.22], [mean], yerr=yerr, fmt="o", color=colours[row["condition"]],
                        markersize=6, capsize=4, linewidth=1.8, zorder=3)
            methods.setdefault(row["method"], []).append(panel["label"])
            confidence = row["confidence"] or confidence
            tops += [v for v in (high, mean, *values) if v is not None]
            bottoms += [v for v in (low, mean, *values) if v is not None]
            if _unconverged(ctx.conditions[row["condition"]], panel["metric"], unconverged):
                ax.annotate("!", (x + 0.22, mean), xytext=(6, 0), textcoords="offset points",
                            color="#D55E00", fontsize=11, fontweight="bold", va="center",
                            zorder=4)
            ticks.append((x, row))
        # Headroom inside the axes for the stars and effect sizes (never on the border).
        top, bottom = max(tops), min(bottoms)
        span = (top - bottom) or abs(top) or 1.0
        top += 0.06 * span if max(tops) >= clip_high else 0.0   # room for a cut end's value
        lower = bottom - 0.08 * span
        if panel["bounds"] in ("non-negative", "fraction"):
            lower = max(lower, 0.0 - 0.02 * span)
        ax.set_ylim(lower, top + 0.55 * span)
        if panel["bounds"] == "fraction":   # the headroom is for the text, not a value > 1
            ax.set_yticks([t for t in ax.get_yticks() if -1e-9 <= t <= 1 + 1e-9])
        for x, row in ticks:
            if row["condition"] == ctx.control:
                ax.annotate("control", (x, 0.97), xycoords=("data", "axes fraction"),
                            ha="center", va="top", fontsize=7, color="0.35")
            else:
                ax.annotate(f"{row['stars']}\n{row['effect']}", (x, 0.97),
                            xycoords=("data", "axes fraction"), ha="center", va="top",
                            fontsize=7, linespacing=1.1)
        tick_labels = []
        for label in labels:
            row = next((r for _, r in ticks if r["condition"] == label), None)
            if row is None:
                tick_labels.append(f"{label}\n(no data)")
                continue
            n_text = f"n = {row['n']}" + (f" {word}s" if word == "block" else "")
            if row["skipped"]:
                n_text += f"\n({row['skipped']} skipped)"
            tick_labels.append(f"{label}\n{n_text}")
        ax.set_xticks(range(len(labels)), tick_labels, fontsize=8)
        ax.set_xlim(-0.6, len(labels) - 0.4)
        ax.set_title(panel["title"], fontsize=10)
        ax.set_ylabel(panel["unit"] or panel["label"], fontsize=9)
        ax.tick_params(axis="y", labelsize=8)
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    level = f"{confidence:.0%}" if confidence else "95%"
    what = (f"{ctx.analysis_name}: mean ± {level} CI per condition; grey dots: "
            f"{'blocks of one trajectory (not independent runs)' if word == 'block' else 'replicates'}")
    lines = [what, f"{stars_legend(ctx.comparison.payload)}; g: Hedges' g [{level} CI, not "
                   f"adjusted] vs control {ctx.control!r}"]
    note = adaptive_note(ctx.looks)
    if note:
        lines.append(note)
    width = max(60, int(figure.get_figwidth() * 13))
    figure.suptitle("\n".join(textwrap.fill(line, width) for line in lines), fontsize=9)
    if len(methods) == 1:
        footer = [f"intervals: {next(iter(methods))}"]
    else:
        footer = ["intervals: " + "; ".join(
            f"{', '.join(dict.fromkeys(panels_of))}: {method}"
            for method, panels_of in sorted(methods.items()))]
    if unconverged:
        footer.append(f"! not converged ({'; '.join(sorted(unconverged))}): "
                      "`assay status` says which replicates")
    figure.supxlabel("\n".join(textwrap.fill(line, width) for line in footer), fontsize=8,
                     color="#D55E00" if unconverged else "0.25")


def _unconverged(condition: Any, metric: str, thresholds: set[str]) -> bool:
    """True when the condition's diagnostics of ``metric`` fail (assay.pipeline.diagnostics); adds
    the thresholds it was judged by to ``thresholds``."""
    from .diagnostics import CONVERGED, problem_text
    from ..store.payload import CONVERGENCE

    entry = (condition.payload.get(CONVERGENCE) or {}).get(metric)
    text = problem_text(entry)
    if text is None or text == CONVERGED:
        return False
    limits = entry.get("thresholds") or {}
    thresholds.add(f"N_eff < {limits.get('min_n_eff', 10):g} or "
                   f"R-hat > {limits.get('max_rhat', 1.01):g}")
    return True


def series_panels(ctx: PlotContext) -> list[dict[str, Any]]:
    """What the series detail figure draws, per (series metric, condition), from the
    replicate artifacts and their series sidecars: each replicate's series with its stored
    t0, g, N_eff and MCSE (assay.pipeline.diagnostics). Tests read this, not pixels."""
    import numpy as np

    from .diagnostics import declared_series
    from .metric_info import Metric, declaration_order, fallback_label, recorded_info, with_unit
    from ..store.payload import CONVERGENCE

    series = declared_series(ctx.plugin) if ctx.plugin is not None else {}
    panels = []
    for metric in declaration_order(ctx.plugin, series):
        for label, condition in ctx.conditions.items():
            runs = []
            for number, artifact in sorted(ctx.replicates[label].items()):
                entry = (artifact.payload.get(CONVERGENCE) or {}).get(metric)
                if not entry or "sidecar" not in entry:
                    continue
                sidecar = artifact.sidecar(path=entry["sidecar"])
                with ctx.artifact_store.load_npz_sidecar(sidecar) as data:
                    values = np.asarray(data[entry["series"]], dtype=np.float64)
                    frames = (np.asarray(data["frames"], dtype=np.float64)
                              if "frames" in data.files and data["frames"].shape == values.shape
                              else None)
                # a series too short for diagnostics is drawn without t0 and running mean
                runs.append({"replicate": number, "values": values, "frames": frames,
                             **{k: entry.get(k) for k in ("t0", "g", "n_eff", "mcse", "mean")}})
            info = recorded_info(condition.payload, metric)
            limits = ((condition.payload.get(CONVERGENCE) or {}).get(metric) or {}).get(
                "thresholds") or {}
            # the y axis is the per-frame series ("rmsd"), in the metric's unit
            shown = Metric(fallback_label(series[metric]), info.unit)
            panels.append({"metric": metric, "condition": label, "title": with_unit(shown),
                           "unit": info.unit, "runs": runs,
                           "min_n_eff": limits.get("min_n_eff", 10.0)})
    return panels


def running_mean_band(values: Any, t0: int, g: float) -> tuple[Any, Any, Any]:
    """(positions, running mean, its MCSE) of the production part values[t0:]: after k
    samples the mean of those k and sd_k / sqrt(k / g), g the stored statistical
    inefficiency of the whole production part (so the band narrows as N_eff grows)."""
    import numpy as np

    production = np.asarray(values[t0:], dtype=np.float64)
    k = np.arange(1, production.size + 1, dtype=np.float64)
    # Centred first: an energy of -5e5 ± 0.1 would lose its variance to cancellation in
    # sum(x²) - k·mean² (the variance does not change with the shift).
    shift = production.mean()
    centred = production - shift
    partial = np.cumsum(centred) / k
    squares = np.cumsum(centred * centred)
    with np.errstate(invalid="ignore", divide="ignore"):
        var = np.where(k > 1, (squares - k * partial * partial) / (k - 1), np.nan)
        mcse = np.sqrt(np.maximum(var, 0.0)) / np.sqrt(k / max(g, 1.0))
    return np.arange(t0, t0 + production.size), partial + shift, mcse


def draw_series(ctx: PlotContext, figure: Any) -> None:
    """The detail figure of an analysis with SERIES: one row per series metric, one
    column per condition; each replicate's series (faint), its equilibration time t0
    (triangle), and the running mean of its production part with a ±1 MCSE band."""
    import numpy as np
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    panels = series_panels(ctx)
    labels = list(ctx.conditions)
    metrics = list(dict.fromkeys(p["metric"] for p in panels))
    if not panels:
        figure.text(0.5, 0.5, "no replicate carries convergence diagnostics", ha="center")
        return
    # x not shared: conditions may be different trajectories (the MD template)
    axes = figure.subplots(len(metrics), len(labels), squeeze=False, sharey="row")
    word = replicate_word(ctx.plugin, ctx.settings)
    for panel in panels:
        ax = axes[metrics.index(panel["metric"]), labels.index(panel["condition"])]
        notes = []
        for i, run in enumerate(panel["runs"]):
            colour = PALETTE[1:][i % (len(PALETTE) - 1)]
            values = run["values"]
            x = run["frames"] if run["frames"] is not None else np.arange(values.size)
            if run["t0"] is None:   # too short for diagnostics: the series alone
                ax.plot(x, values, color=colour, linewidth=1.2, marker=".", markersize=3)
                notes.append(f"{word[0]}{run['replicate']}: {values.size} values, too few "
                             "for t0")
                continue
            ax.plot(x, values, color=colour, linewidth=0.7, alpha=0.35)
            t0 = int(run["t0"])
            ax.plot([x[t0]], [values[t0]], marker="v", color=colour, markersize=6,
                    markeredgecolor="black", markeredgewidth=0.5, zorder=4)
            where, mean, mcse = running_mean_band(values, t0, float(run["g"]))
            xs = x[where]
            ax.plot(xs, mean, color=colour, linewidth=1.6, zorder=3)
            ax.fill_between(xs, mean - mcse, mean + mcse, color=colour, alpha=0.25,
                            linewidth=0, zorder=2)
            flag = " !" if run["n_eff"] < panel["min_n_eff"] else ""
            notes.append(f"{word[0]}{run['replicate']}: t0 {t0}, N_eff {run['n_eff']:.3g}"
                         f"{flag}")
        ax.text(0.98, 0.02, "\n".join(notes), transform=ax.transAxes, ha="right",
                va="bottom", fontsize=6.5, family="monospace",
                bbox={"boxstyle": "round,pad=0.2", "facecolor": "white", "alpha": 0.8,
                      "linewidth": 0})
        if ax in axes[0]:
            ax.set_title(f"{panel['condition']} (n = {len(panel['runs'])} {word}s)",
                         fontsize=9)
        if ax in axes[:, 0]:
            ax.set_ylabel(panel["title"], fontsize=9)
        if ax in axes[-1]:
            has_frames = any(r["frames"] is not None for r in panel["runs"])
            ax.set_xlabel("frame" if has_frames else "sample", fontsize=9)
        ax.tick_params(labelsize=8)
    for row in axes:   # room under the lines for each panel's t0 / N_eff box
        low, high = row[0].get_ylim()
        n_notes = max(len(p["runs"]) for p in panels)
        row[0].set_ylim(low - (high - low) * (0.12 + 0.09 * n_notes), high)
    handles = [Line2D([], [], color="0.4", linewidth=0.7, alpha=0.5, label=f"{word} series"),
               Line2D([], [], color="0.4", marker="v", linestyle="", markeredgecolor="black",
                      label="t0 (equilibration detected)"),
               Line2D([], [], color="0.4", linewidth=1.6,
                      label="running mean after t0"),
               Patch(color="0.4", alpha=0.25, label="± 1 MCSE")]
    figure.legend(handles=handles, loc="outside lower center", ncols=4, fontsize=8,
                  frameon=False)
    kind = ("blocks of one trajectory (not independent runs)" if word == "block"
            else "independent replicates")
    figure.suptitle(f"{ctx.analysis_name}: time series of {kind}; ! marks N_eff below "
                    f"{panels[0]['min_n_eff']:g}", fontsize=9)


def _rst_name(name: str) -> str:
    return f"``{name}``"


def figure_caption(study: Any, analysis: str, figure: str) -> str:
    """A figure's report caption (reStructuredText) from the study's config and the
    plugin's declarations alone: what is plotted, n, the test and the correction. Never
    from results: Snakemake reruns a job whose params changed."""
    from .comparison import CORRECTIONS, TESTS, comparison_options
    from .diagnostics import declared_series
    from .metric_info import declared_metrics, with_unit

    spec = study.analyses[analysis]
    plugin_cls = resolve_analysis(spec.plugin)
    try:
        plugin = plugin_cls()
    except TypeError:   # a plugin that needs arguments: its hooks are not asked
        plugin = plugin_cls
    word = replicate_word(plugin, spec.settings)
    options = comparison_options(study.comparison)
    test = TESTS.get(options["test"], options["test"])
    correction = CORRECTIONS.get(options["correction"], options["correction"])
    level = f"{study.aggregation['confidence']:.0%}"
    if study.adaptive:
        design = study.adaptive
        n_text = (f"adaptive replicates: at least {design['min']} and at most "
                  f"{design['max']} per condition, added {design['batch']} at a time until "
                  "the stop rule holds; the title gives the n reached and why the study "
                  "stopped, the n under each condition the replicates used")
    else:
        n_text = (f"{len(study.replicates)} {word}s per condition planned; the n under each "
                  "condition counts those used (skipped ones are named)")
    blocks = (f" The {word}s are consecutive blocks of ONE trajectory (block averaging, not "
              "independent simulations): the intervals describe variation within that run."
              if word == "block" else "")
    declared = declared_metrics(plugin_cls)
    labels = ", ".join(with_unit(m) for k, m in declared.items() if "*" not in k)
    test_text = (f"**Test**: {test} of each condition against the control "
                 f"{_rst_name(study.control)}, p-values {correction} "
                 f"({options['correction']}) over all tests of the analysis; "
                 "``*`` p<0.05, ``**`` p<0.01, ``***`` p<0.001, n.s. otherwise.")
    if figure == "summary":
        return "\n\n".join([
            f"**What is plotted**: analysis {_rst_name(analysis)}, one panel per metric"
            + (f" ({labels})" if labels else "") + ". Per condition the mean over its "
            f"{word}s (coloured point) with its {level} confidence interval, and each "
            f"{word}'s value (grey dots).{blocks}",
            f"**n**: {n_text}.",
            "**Intervals** respect each metric's declared bounds: the t interval for a "
            "free metric; for a non-negative one the t interval of log(mean) by the delta "
            "method, back-transformed; for a fraction the same on logit(mean). The method "
            "is recorded per metric in the condition artifact (``interval_method``) and "
            "printed under the figure.",
            test_text + f" Beside the stars, inside the axes: Hedges' g with its {level} "
            "CI, not adjusted for multiplicity (the difference of means with its Welch CI "
            "when g is undefined). Every "
            "test, with raw and adjusted p, is in the comparison's "
            "``sidecars/comparison_table.csv``.",
            "A **!** beside a mean marks a metric that is not converged: a replicate's "
            "series holds fewer effectively independent samples than "
            "``aggregation.min_n_eff``, or its replicates disagree (R-hat above "
            "``aggregation.max_rhat``); ``assay status`` names them."])
    if hasattr(plugin_cls, "plot"):
        what = (f"**What is plotted**: the analysis-specific view of {_rst_name(analysis)} "
                f"(plugin {_rst_name(spec.plugin)}), drawn from the registered sidecars "
                f"of every {word}.{blocks}")
    else:
        series = ", ".join(_rst_name(s) for s in declared_series(plugin_cls))
        what = (f"**What is plotted**: for each series metric of {_rst_name(analysis)} "
                f"({series}) and each condition, every {word}'s time series (faint), its "
                "equilibration time t0 (triangle, detected as in pymbar), and the running "
                "mean of its production part (after t0) with a band of ±1 Monte-Carlo "
                "standard error (sd / sqrt(k / g), g the statistical inefficiency). The "
                "box gives each series' t0 and N_eff; ! marks N_eff below "
                f"``aggregation.min_n_eff``.{blocks}")
    return "\n\n".join([what, f"**n**: {n_text}.",
                         test_text.replace("**Test**:", "**Test** (in the summary figure, "
                                           "none drawn here):")])


def save_figure(figure: Any, path: Path, *, dpi: int) -> None:
    """Render to a temp file beside the target and publish it atomically. The metadata
    that carries a date or version (PNG Software, SVG Date, PDF CreationDate/Producer) is
    left out so the same artifacts give the same bytes."""
    from ..store.atomic import atomic_path

    fmt = path.suffix.lstrip(".")
    metadata = {"png": {"Software": None}, "svg": {"Date": None, "Creator": None},
                "pdf": {"CreationDate": None, "Producer": None, "Creator": None}}.get(fmt)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=dpi, format=fmt, metadata=metadata)


def has_detail(analysis_plugin: Any) -> bool:
    """A plugin's own plot, or the framework's series figure for one with SERIES."""
    from .diagnostics import declared_series

    return hasattr(analysis_plugin, "plot") or bool(declared_series(analysis_plugin))


def plot_outputs(analysis_plugin: Any, results: str, analysis: str, fmt: str) -> list[str]:
    names = ["summary"] + (["detail"] if has_detail(analysis_plugin) else [])
    return [f"{results}/plots/{analysis}/{name}.{fmt}" for name in names]


def figure_action_key(spec: dict[str, Any], comparison_digest: str, output: Path) -> str:
    """What a figure depends on: the plot spec, its name and format, the comparison (and so
    everything below it), the plugin and framework code, and matplotlib's version."""
    from importlib.metadata import version

    from .stages import stage_action_key

    keyed = {**spec, "figure": output.name, "matplotlib": version("matplotlib")}
    return stage_action_key(keyed, [comparison_digest])


def run_plot_cached(store: ArtifactStore, spec: dict[str, Any], comparison_digest: str,
                    outputs: list[str], log=lambda _m: None) -> None:
    """Copy figures drawn before from the store; draw (and store) only the missing ones.

    Figure bytes live in objects/ like everything else, named in the action cache only:
    no ref reaches them; `assay gc` keeps those of the figures under results/plots (it
    hashes them) and may sweep the rest, which the next plot job redraws.
    """
    import time

    from ..store.actions import RecordKeptError, run_facts
    from ..store.atomic import atomic_write_bytes
    from .numerics import numeric_environment
    from ..errors import ArtifactIntegrityError
    from ..store.hashing import parse_digest

    keys = {Path(o): figure_action_key(spec, comparison_digest, Path(o)) for o in outputs}
    missing = []
    for output, key in keys.items():
        record = store.actions.read(key, trusted_only=True)   # the trust rule, as for artifacts
        try:
            if record is None:
                raise ArtifactIntegrityError("not cached")
            sha = parse_digest(record["digest"])
            data = store.objects.read_bytes(sha, None, what=f"figure {output.name}")
        except ArtifactIntegrityError:
            missing.append(str(output))
            continue
        store.objects.touch(sha)
        atomic_write_bytes(output, data)
        log(f"{FIGURE_CACHE_HIT} {key[:12]}: {output}")
    if not missing:
        return
    started = time.monotonic()
    run_plot(store, spec, comparison_digest, missing)
    for output in map(Path, missing):
        stored = store.objects.put_bytes(output.read_bytes())
        try:
            store.record_action(keys[output], stored.digest, stage="plot",
                                plugin=spec["plugin"], figure=output.name,
                                **run_facts(started), numerics=numeric_environment())
        except RecordKeptError as exc:   # a sticky store: another member's record stays
            log(str(exc))


def look_summaries(paths: list[str]) -> list[dict[str, Any]]:
    """The look decisions an adaptive study's figures show (look, n, stop, why), in look
    order; a path that holds no decision is an error, not a figure without its reason."""
    from .adaptive import read_decision
    from ..errors import AssayError

    out = []
    for path in paths:
        decision = read_decision(path)
        if decision is None:
            raise AssayError(f"{path} is not a look decision; rerun the study's looks "
                             "(snakemake reruns them when they are missing)")
        out.append({k: decision.get(k) for k in ("look", "n", "stop", "why")})
    return sorted(out, key=lambda d: d["look"] or 0)


def with_looks(spec: dict[str, Any], look_paths: list[str]) -> dict[str, Any]:
    """The plot spec a figure is drawn and keyed by: with an adaptive study's look
    decisions (their look, n, stop and why), so a figure never shows a stale reason. The
    plot job and `assay crate` (which proves each figure by its key) both call this."""
    return {**spec, "looks": look_summaries(look_paths)} if look_paths else spec


def summary_size(n_metrics: int, n_conditions: int = 3) -> tuple[float, float]:
    """Inches: panels wide enough for each condition's stars and 'g = … [… , …]' (about
    0.95 in at 7 pt), three panels a row."""
    n = max(n_metrics, 1)
    panel = max(4.2, 0.95 * n_conditions + 0.8)
    return panel * min(3, n), 1.4 + 3.5 * math.ceil(n / 3)


def run_plot(store: ArtifactStore, spec: dict[str, Any], comparison_digest: str,
             outputs: list[str]) -> None:
    """Draw the figures; an adaptive study's look decisions come in ``spec["looks"]``
    (so they are part of each figure's key)."""
    import matplotlib

    matplotlib.use("Agg")
    matplotlib.rcParams["svg.hashsalt"] = "assay"   # the same SVG ids on every run
    # Vector figures keep their text as text (journals ask for editable labels): SVG
    # <text> elements, PDF TrueType (Type 42) fonts rather than Type 3
    matplotlib.rcParams["svg.fonttype"] = "none"
    matplotlib.rcParams["pdf.fonttype"] = 42
    from cycler import cycler

    # "C0", "C1", ... in every plugin's plot are the colour-blind-safe palette too
    matplotlib.rcParams["axes.prop_cycle"] = cycler(color=list(PALETTE))
    from matplotlib.figure import Figure

    ctx = load_plot_context(store, spec, comparison_digest)
    dpi = int(ctx.plot_options.get("dpi", 120))
    plugin = ctx.plugin
    n_metrics = len({m for c in ctx.conditions.values() for m in c.payload[METRICS]})
    for output in map(Path, outputs):
        if output.stem == "summary":
            figure = Figure(figsize=summary_size(n_metrics, len(ctx.conditions)),
                            layout="constrained")
            draw_summary(ctx, figure)
        elif hasattr(plugin, "plot"):
            figure = Figure(figsize=(10, 4.2), layout="constrained")
            plugin.plot(ctx, figure)
        else:
            from .diagnostics import declared_series

            rows, cols = len(declared_series(plugin)), len(ctx.conditions)
            figure = Figure(figsize=(max(6.0, 3.3 * cols), 0.9 + 2.7 * rows),
                            layout="constrained")
            draw_series(ctx, figure)
        save_figure(figure, output, dpi=dpi)
