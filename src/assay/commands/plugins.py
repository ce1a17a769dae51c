"""assay plugins: the analyses and runners there are, and the settings each declares."""

from __future__ import annotations

import sys
from typing import Any

from ._common import add_command, add_json, print_json, print_table

# Order of this group in `assay --help`: right after `config validate`.
HELP_ORDER = 55


def _known() -> list[tuple[str, str, str]]:
    """(kind, name, 'module:attr') of every plugin a config may name."""
    from ..pipeline.plugins import (
        ANALYSES_GROUP,
        BUILTIN_ANALYSES,
        BUILTIN_RUNNERS,
        RUNNERS_GROUP,
        _entry_points,
    )

    out = []
    for kind, builtins, group in (("analysis", BUILTIN_ANALYSES, ANALYSES_GROUP),
                                  ("runner", BUILTIN_RUNNERS, RUNNERS_GROUP)):
        for name, target in sorted({**_entry_points(group), **builtins}.items()):
            out.append((kind, name, target))
    return out


def _resolve(name: str) -> tuple[str, str, Any]:
    from ..errors import PluginError
    from ..pipeline.plugins import resolve_analysis, resolve_runner

    for kind, known, target in _known():
        if name in (known, target):
            resolve = resolve_analysis if kind == "analysis" else resolve_runner
            return kind, known, resolve(known, where=name)
    if ":" in name:   # a study's own 'module:Class'
        try:
            return "analysis", name, resolve_analysis(name, where=name)
        except PluginError:
            return "runner", name, resolve_runner(name, where=name)
    from ..pipeline.settings import did_you_mean

    raise PluginError(f"no plugin {name!r}{did_you_mean(name, [k[1] for k in _known()])}; "
                      "`assay plugins` lists them")


def run_plugins(args: Any) -> int:
    from ..pipeline.settings import declared_settings

    if not args.name:
        rows = [{"kind": kind, "name": name, "target": target}
                for kind, name, target in _known()]
        if args.json:
            print_json(rows)
        else:
            print_table(rows, ["kind", "name", "target"])
            print("\n`assay plugins NAME` shows the settings a plugin takes", file=sys.stderr)
        return 0
    kind, name, plugin = _resolve(args.name)
    declared = declared_settings(plugin)
    from ..pipeline.diagnostics import declared_series

    series = declared_series(plugin) if kind == "analysis" else {}
    from ..pipeline.metric_info import declared_metrics

    metrics = declared_metrics(plugin) if kind == "analysis" else {}
    if args.json:
        print_json({"kind": kind, "name": name,
                    "params": None if declared is None else declared.params,
                    "settings": None if declared is None else declared.json_schema(),
                    **({"series": series} if series else {}),
                    **({"metrics": {k: m.as_dict() for k, m in metrics.items()}}
                       if metrics else {})})
        return 0
    doc = (plugin.__doc__ or "").strip().splitlines()
    print(f"{kind} {name}" + (f": {doc[0]}" if doc else ""))
    if metrics:   # METRIC_INFO: what the figures, `assay metrics` and the catalog show
        print_table([{"metric": k, "label": m.label, "unit": m.unit or "-", "bounds": m.bounds}
                     for k, m in metrics.items()], ["metric", "label", "unit", "bounds"])
    if series:   # metric -> array: convergence diagnostics (docs/statistics.md)
        print("series (convergence diagnostics): " + ", ".join(
            f"{metric} <- {array}" for metric, array in series.items()))
    if declared is None:
        print("declares no settings: whatever the config gives it goes unchecked")
        return 0
    rows = [{"setting": key, "allowed": setting.describe(), "help": setting.help}
            for key, setting in declared.items()]
    if rows:
        print_table(rows, ["setting", "allowed", "help"])
    if declared.open:
        print("other settings go unchecked to your code")
    if declared.params == "merged":
        print("condition params: any of these settings, overriding runner.settings")
    elif declared.params == "templates":
        print("condition params: those its templates use as {params[name]} "
              f"({', '.join(declared.templates)})")
    return 0


def register(sub: Any) -> None:
    """Add `assay plugins` to the `assay` parser."""
    p = add_command(sub, "plugins", "list the analyses and runners a config may name, or "
                    "the settings one declares (type, default, unit, range, help)",
                    run_plugins)
    p.add_argument("name", nargs="?", metavar="NAME", help="a plugin name or module:attr")
    add_json(p)
