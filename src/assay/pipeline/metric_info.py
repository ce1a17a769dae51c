"""What each metric is: a label, a unit and its bounds, declared once per analysis.

An analysis declares its metrics next to its settings::

    from assay import Metric, Setting, Settings

    class Contacts:
        SETTINGS = Settings({"cutoff": Setting(float, 1.5, gt=0, unit="σ")})
        METRIC_INFO = {
            "fraction_adsorbed": Metric("fraction of beads adsorbed", bounds="fraction"),
            "mean_event_frames": Metric("mean contact duration", "frames",
                                        bounds="non-negative"),
            "mean_rmsd_*": Metric("RMSD of group {}", "Å", bounds="non-negative"),
        }

Figures title their panels with label and unit, ``assay metrics`` and the catalog carry
them, and the bounds choose the interval drawn for a condition's mean (assay.pipeline.statistics
``bounded_interval``): a mean that cannot be negative never gets an interval below zero.
A metric a plugin does not declare (every third-party plugin written before this) gets a
readable label from its name, no unit and free bounds, so nothing breaks and nothing is
invented. The aggregate job records the metadata in the condition artifact, so everything
downstream (figures, catalog, report) reads it from stored bytes, not from code.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Any, Mapping

from ..errors import PluginError

METRIC_INFO_ATTRIBUTE = "METRIC_INFO"
FREE, NON_NEGATIVE, FRACTION = "free", "non-negative", "fraction"
BOUNDS = (FREE, NON_NEGATIVE, FRACTION)
# The condition payload key holding {metric: {label, unit, bounds}}.
METRIC_INFO_KEY = "metric_info"
# Words of a unit shown after a label; "" is a dimensionless number.
_ABBREVIATIONS = {"rmsd": "RMSD", "rmsf": "RMSF", "rg": "Rg", "com": "COM", "ca": "CA"}


@dataclass(frozen=True)
class Metric:
    """One metric: its label (for people), unit ("" when dimensionless) and bounds
    ("free", "non-negative", or "fraction" for values in [0, 1])."""

    label: str
    unit: str = ""
    bounds: str = FREE

    def __post_init__(self) -> None:
        if not isinstance(self.label, str) or not self.label.strip():
            raise PluginError(f"Metric label must be a non-empty string, got {self.label!r}")
        if not isinstance(self.unit, str):
            raise PluginError(f"Metric unit must be a string ('' when dimensionless), got "
                              f"{self.unit!r}")
        if self.bounds not in BOUNDS:
            raise PluginError(f"Metric bounds must be one of {', '.join(BOUNDS)}, got "
                              f"{self.bounds!r}")

    def as_dict(self) -> dict[str, str]:
        return {"label": self.label, "unit": self.unit, "bounds": self.bounds}


def fallback_label(name: str) -> str:
    """A readable label from a metric's name: ``mean_event_frames`` -> 'mean event frames',
    ``mean_rmsd`` -> 'mean RMSD'."""
    words = [w for w in name.replace("-", "_").split("_") if w]
    return " ".join(_ABBREVIATIONS.get(w.lower(), w) for w in words) or name


def declared_metrics(plugin: Any) -> dict[str, Metric]:
    """A plugin's ``METRIC_INFO`` (name or ``*`` pattern -> Metric), checked; {} if none."""
    declared = getattr(plugin, METRIC_INFO_ATTRIBUTE, None)
    if declared is None:
        return {}
    who = getattr(plugin, "__qualname__", type(plugin).__qualname__)
    if not isinstance(declared, Mapping) or not all(
            isinstance(k, str) and k and isinstance(v, Metric) for k, v in declared.items()):
        raise PluginError(f"{who}.{METRIC_INFO_ATTRIBUTE} must map metric names to "
                          "assay.Metric(label, unit, bounds=...), e.g. "
                          "{'mean_rg': Metric('radius of gyration', 'nm', "
                          f"bounds='non-negative')}}; got {declared!r:.80}")
    return dict(declared)


def metric_info(plugin: Any, name: str) -> Metric:
    """The declared Metric of ``name`` (exact name first, then the longest matching
    ``*`` pattern, whose ``{}`` in the label takes the matched part), or the fallback."""
    declared = declared_metrics(plugin) if plugin is not None else {}
    if name in declared:
        return declared[name]
    patterns = sorted((k for k in declared if "*" in k and fnmatch.fnmatchcase(name, k)),
                      key=len, reverse=True)
    if patterns:
        found = declared[patterns[0]]
        prefix, _, suffix = patterns[0].partition("*")
        part = name[len(prefix):len(name) - len(suffix)] if suffix else name[len(prefix):]
        return Metric(found.label.replace("{}", part), found.unit, found.bounds)
    return Metric(fallback_label(name))


def declaration_order(plugin: Any, names: Any) -> list[str]:
    """``names`` in the order the plugin declares them (a pattern's matches by name), the
    undeclared ones last by name: figures show the metrics the author put first first."""
    keys = list(declared_metrics(plugin)) if plugin is not None else []

    def rank(name: str) -> tuple[int, str]:
        for index, key in enumerate(keys):
            if key == name or ("*" in key and fnmatch.fnmatchcase(name, key)):
                return index, name
        return len(keys), name

    return sorted(set(names), key=rank)


def recorded_info(payload: Mapping[str, Any] | None, name: str) -> Metric:
    """The Metric a condition artifact recorded for ``name`` (artifacts made before metric
    metadata existed, or by other code: the fallback)."""
    entry = ((payload or {}).get(METRIC_INFO_KEY) or {}).get(name)
    if isinstance(entry, Mapping):
        try:
            return Metric(str(entry.get("label") or fallback_label(name)),
                          str(entry.get("unit") or ""), str(entry.get("bounds") or FREE))
        except PluginError:
            pass
    return Metric(fallback_label(name))


def with_unit(info: Metric) -> str:
    """'label (unit)', or the label alone for a dimensionless metric."""
    return f"{info.label} ({info.unit})" if info.unit else info.label
