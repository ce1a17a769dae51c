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
        artifact_store=store, plot_options=spec.get("plots", {}))


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


def draw_summary(ctx: PlotContext, figure: Any) -> None:
    """Per metric: condition means with t confidence intervals, replicate values as dots.

    Everything comes from the condition and comparison artifacts: each condition carries
    its replicates' values, so no replicate is opened here.
    """
    from .aggregation import replicate_values

    metrics = sorted({m for c in ctx.conditions.values() for m in c.payload[METRICS]})
    unconverged: set[str] = set()   # the thresholds of the conditions marked "!"
    ncols = min(3, len(metrics)) or 1
    nrows = math.ceil(len(metrics) / ncols) or 1
    axes = figure.subplots(nrows, ncols, squeeze=False).ravel()
    comparisons = ctx.comparison.payload.get(COMPARISONS, {})
    labels = list(ctx.conditions)
    for ax, metric in zip(axes, metrics):
        confidence = None
        for x, label in enumerate(labels):
            stats = ctx.conditions[label].payload[METRICS].get(metric)
            if stats is None:
                continue
            confidence = stats["confidence"]
            values = replicate_values(stats) or []
            jitter = [x + 0.08 * (i - (len(values) - 1) / 2) for i in range(len(values))]
            ax.scatter(jitter, values, s=14, color="0.55", zorder=2)
            lower = stats["mean"] - stats["ci_low"] if stats["ci_low"] is not None else 0.0
            upper = stats["ci_high"] - stats["mean"] if stats["ci_high"] is not None else 0.0
            ax.errorbar([x], [stats["mean"]], yerr=[[lower], [upper]], fmt="o", color="C0",
                        markersize=7, capsize=6, linewidth=2, zorder=3)
            if _unconverged(ctx.conditions[label], metric, unconverged):
                ax.annotate("!", (x, stats["mean"]), xytext=(7, 0), textcoords="offset points",
                            color="C3", fontsize=12, fontweight="bold", va="center", zorder=4)
            if label != ctx.control:
                p = _starred_p(comparisons.get(label, {}).get(metric, {}))
                ax.annotate(_stars(p), (x, 1.0), xycoords=("data", "axes fraction"),
                            ha="center", va="top", fontsize=9)
        ax.set_xticks(range(len(labels)), labels, rotation=20)
        ax.set_xlim(-0.6, len(labels) - 0.4)
        ax.set_title(metric, fontsize=10)
        ax.margins(y=0.15)
        if confidence is not None:
            ax.set_ylabel(f"mean ± {confidence:.0%} CI")
    for ax in axes[len(metrics):]:
        ax.set_visible(False)
    figure.suptitle(f"{ctx.analysis_name}: conditions vs control {ctx.control!r}\n"
                    f"({stars_legend(ctx.comparison.payload)})", fontsize=10)
    if unconverged:
        figure.supxlabel(f"! not converged ({'; '.join(sorted(unconverged))}): "
                         "`assay status` says which replicates", color="C3", fontsize=9)


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


def save_figure(figure: Any, path: Path, *, dpi: int) -> None:
    """Render to a temp file beside the target and publish it atomically."""
    from ..store.atomic import atomic_path

    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=dpi, format=path.suffix.lstrip("."),
                       metadata={"Software": None} if path.suffix == ".png" else None)


def plot_outputs(analysis_plugin: Any, results: str, analysis: str, fmt: str) -> list[str]:
    names = ["summary"] + (["detail"] if hasattr(analysis_plugin, "plot") else [])
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


def run_plot(store: ArtifactStore, spec: dict[str, Any], comparison_digest: str,
             outputs: list[str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    ctx = load_plot_context(store, spec, comparison_digest)
    dpi = int(ctx.plot_options.get("dpi", 120))
    plugin = resolve_analysis(spec["plugin"])()
    n_metrics = len({m for c in ctx.conditions.values() for m in c.payload[METRICS]})
    for output in map(Path, outputs):
        if output.stem == "summary":
            figure = Figure(figsize=(4.2 * min(3, max(n_metrics, 1)),
                                     3.6 * math.ceil(max(n_metrics, 1) / 3)),
                            layout="constrained")
            draw_summary(ctx, figure)
        else:
            figure = Figure(figsize=(10, 4.2), layout="constrained")
            plugin.plot(ctx, figure)
        save_figure(figure, output, dpi=dpi)
