"""A study's plugin settings and condition params, checked against what each plugin declares.

Study.from_config runs this, so `assay config validate` and the workflow refuse a
misspelled, mistyped or out-of-range setting, and a param the runner does not take, before
any job. A plugin that declares nothing still runs; what it is given goes unchecked, and
that is returned as a warning for `assay config validate` to print.
"""

from __future__ import annotations

from typing import Any, Mapping

from ..errors import ConfigError
from .settings import (
    PARAMS_MERGED,
    PARAMS_TEMPLATES,
    Settings,
    declared_settings,
    unknown_keys_message,
    unknown_names,
)


def check_plugin_settings(study: Any) -> list[str]:
    """Raise ConfigError for the first problem; return warnings about unchecked settings."""
    from .plugins import resolve_analysis, resolve_runner

    runner = resolve_runner(study.runner.plugin, where="runner.plugin")
    warnings = _check_runner(study, runner)
    for name, spec in study.analyses.items():
        cls = resolve_analysis(spec.plugin, where=f"analyses.{name}.plugin")
        warnings += _check_analysis(name, spec.plugin, spec.settings, cls)
    return warnings


def _raise_first(problems: list[tuple[str | None, str]], where: str) -> None:
    if problems:
        key, message = problems[0]
        raise ConfigError(f"config key {where}{'.' + key if key else ''}: {message}")


def _unchecked(where: str, plugin: str, keys: list[str], to: str) -> str:
    return (f"{where}: {plugin} declares no SETTINGS, so {', '.join(map(repr, keys))} "
            f"go{'es' if len(keys) == 1 else ''} {to} unchecked (a misspelled key would be "
            "ignored); its author can declare them (assay.Settings)")


def check_runner_code(study: Any) -> None:
    """The modules a runner's settings name (the python runner's callable and
    code_dependencies) can be found from the study directory, the working directory of
    `assay config validate` and of snakemake: every run's key needs their source. And the
    optional packages the plugins import in their jobs are installed (assay.pipeline.preflight).
    Not part of Study.from_config, which tools run from elsewhere (`assay status DIR`)."""
    from ..errors import PluginError
    from .plugins import code_digest, resolve_runner

    runner = resolve_runner(study.runner.plugin, where="runner.plugin")
    if hasattr(runner, "settings_code_modules"):
        try:
            code_digest(runner, study.runner.settings)
        except PluginError as exc:
            raise ConfigError(f"config key runner.settings: {exc}") from None
    from .preflight import check_extras

    check_extras(study)   # a missing extra: one line naming the pip install to type


def _check_analysis(name: str, plugin: str, settings: dict[str, Any], cls: Any) -> list[str]:
    where = f"analyses.{name}.settings"
    declared = declared_settings(cls, where=f"config key analyses.{name}.plugin")
    if declared is None:
        return [_unchecked(where, plugin, sorted(settings), "to it")] if settings else []
    _raise_first(declared.problems(settings, owner=plugin), where)
    if declared.check is not None:
        declared.check({**declared.defaults(), **settings}, {})
    return []


def _check_runner(study: Any, runner: Any) -> list[str]:
    plugin, settings = study.runner.plugin, study.runner.settings
    owner = f"runner {plugin}"
    declared = declared_settings(runner, where="config key runner.plugin")
    merged_mode = declared is not None and declared.params == PARAMS_MERGED
    if declared is not None:
        _raise_first(declared.problems(settings, owner=owner, partial=merged_mode),
                     "runner.settings")
    checked: list[dict[str, Any]] = []
    for index, (label, params) in enumerate(study.conditions.items()):
        if declared is None:
            break
        where = f"conditions[{index}]"
        if merged_mode:
            _check_merged_params(declared, settings, params, where, owner)
        elif declared.params == PARAMS_TEMPLATES and params:
            _check_template_params(declared, settings, params, where, owner)
        merged = {**settings, **params} if merged_mode else dict(settings)
        if declared.check is not None and merged not in checked:
            checked.append(merged)
            _cross_check(declared, settings, merged, params, label)
    return _runner_warnings(study, declared, owner)


def _cross_check(declared: Settings, settings: dict[str, Any], merged: dict[str, Any],
                 params: dict[str, Any], label: str) -> None:
    """The runner's own check of a condition's settings; its message names the condition
    only when the runner settings alone pass or fail otherwise (the params are to blame)."""
    assert declared.check is not None
    try:
        declared.check({**declared.defaults(), **merged}, params)
    except ConfigError as exc:
        if params:
            try:
                declared.check({**declared.defaults(), **settings}, {})
            except ConfigError as alone:
                if str(alone) == str(exc):
                    raise ConfigError(str(exc)) from None
            raise ConfigError(f"condition {label!r}: {exc}") from None
        raise ConfigError(str(exc)) from None


def _runner_warnings(study: Any, declared: Settings | None, owner: str) -> list[str]:
    """One line naming what no declaration checks: settings and params of a runner that
    declares none, the extra keys of an open one (the python runner's function's own)."""
    settings = study.runner.settings
    extra = sorted(settings) if declared is None else declared.unchecked(settings)
    with_params = [label for label, params in study.conditions.items() if params]
    what = [f"runner.settings {', '.join(map(repr, extra))}"] if extra else []
    if with_params and (declared is None or declared.params is None):
        what.append(f"the params of conditions {', '.join(map(repr, with_params))}")
    if not what:
        return []
    why = (f"{owner} declares no SETTINGS (a misspelled key would be ignored)"
           if declared is None else f"{owner} cannot see which ones your code reads")
    return [f"{' and '.join(what)} go unchecked: {why}"]


def _check_merged_params(declared: Settings, settings: Mapping[str, Any],
                         params: Mapping[str, Any], where: str, owner: str) -> None:
    """Params override runner settings: each must be a setting the runner takes (or one
    its templates use), with a valid value; together they must give every required one."""
    merged = {**settings, **params}
    allowed = set(declared)
    referenced = declared.referenced(merged, "params") if declared.templates else set()
    if referenced is None:
        return
    unknown = [k for k in params if k not in allowed | referenced]
    if unknown:
        raise ConfigError(f"config key {where}.params: " + unknown_keys_message(
            unknown, allowed | referenced, what="param", known_label=f"{owner} takes"))
    _raise_first([(k, m) for k, m in declared.problems(params, owner=owner, partial=True)
                  if k is not None], f"{where}.params")
    missing = [(n, s) for n, s in declared.items() if s.required and n not in merged]
    if missing:
        name, setting = missing[0]
        raise ConfigError(f"config key {where}: {owner} needs setting {name!r} (in "
                          f"runner.settings or this condition's params): {setting.describe()}"
                          + (f" ({setting.help})" if setting.help else ""))


def _check_template_params(declared: Settings, settings: Mapping[str, Any],
                           params: Mapping[str, Any], where: str, owner: str) -> None:
    """Params reach the runner only through {params[name]} in its templates."""
    if declared.params != PARAMS_TEMPLATES:
        return
    used = declared.referenced(settings, "params")
    if used is None:
        return
    unknown = [k for k in params if k not in used]
    if unknown:
        templates = " and ".join(f"runner.settings.{t}" for t in declared.templates)
        raise ConfigError(
            f"config key {where}.params: {unknown_names(unknown, used, what='param')}; "
            f"{owner} passes params on only as {{params[name]}} in {templates}, which uses "
            + (", ".join(sorted(used)) if used else "none"))
