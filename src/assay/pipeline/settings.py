"""Plugin settings, each declared once: type, default, unit, allowed range or choices, help.

A study's config is checked against these declarations before any job runs (`assay config
validate`, the workflow: ``assay.pipeline.study_settings``), and a job reads its settings through the
same declaration (``SETTINGS.read(ctx)``), which fills in the defaults and refuses to hand a
plugin a key it did not declare. So a misspelled ``cutof: 3.0`` is an error, never a silent
default. The check is plain Python rather than jsonschema: a job must not import jsonschema
(~55 ms, as much as ``import assay``) to read three numbers, and one checker gives one
message wherever it fires. ``Setting.json_schema`` exports a declaration for docs and editors.

A plugin declares, in a few lines::

    from assay import Setting, Settings

    class Contacts:
        SETTINGS = Settings({
            "cutoff": Setting(float, 1.5, gt=0, unit="Å", help="contact distance"),
        })

        def collect(self, ctx):
            s = self.SETTINGS.read(ctx)        # s.cutoff or s["cutoff"]; defaults filled
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping

from ..errors import ConfigError, PluginError


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()   # a Setting default meaning "the config must give it"

# JSON-schema name and the words of a message, per Python type a Setting may take.
_TYPES: dict[type, tuple[str, str]] = {
    bool: ("boolean", "true or false"), int: ("integer", "an integer"),
    float: ("number", "a number"), str: ("string", "a string"), list: ("array", "a list"),
    dict: ("object", "a mapping"),
}
# How a condition's params reach a runner (Settings(params=...)).
PARAMS_MERGED = "merged"        # they override runner settings: checked as settings
PARAMS_TEMPLATES = "templates"  # they fill {params[name]} of the template settings


def _is(value: Any, kind: type) -> bool:
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


def _number(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


@dataclass(frozen=True)
class Setting:
    """One setting: its type(s), default (REQUIRED: none), unit, bounds or choices, help.

    ``items`` is the type of a list's items or a mapping's values; ``check`` returns why a
    value is wrong (or None) for what the rest cannot say (a pattern, a cross-check);
    ``schema`` adds JSON-schema keywords to the export (a mapping's own keys)."""

    type: type | tuple[type, ...]
    default: Any = REQUIRED
    help: str = ""
    unit: str = ""
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    choices: tuple[Any, ...] = ()
    items: type | None = None
    nullable: bool = False
    check: Callable[[Any], str | None] | None = field(default=None, compare=False)
    schema: Mapping[str, Any] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        types = self.types
        unknown = [t for t in types if t not in _TYPES]
        if unknown:
            raise PluginError(f"Setting type {unknown[0]!r} is not one of "
                              f"{', '.join(t.__name__ for t in _TYPES)}")
        if self.default is None:
            object.__setattr__(self, "nullable", True)
        elif self.default is not REQUIRED and self.problem(self.default):
            raise PluginError(f"Setting default {self.default!r}: {self.problem(self.default)}")

    @property
    def types(self) -> tuple[type, ...]:
        return self.type if isinstance(self.type, tuple) else (self.type,)

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    def problem(self, value: Any) -> str | None:
        """Why ``value`` is not allowed, or None."""
        if value is None:
            return None if self.nullable else f"{value!r} is not {self._type_words()}"
        kind = next((t for t in self.types if _is(value, t)), None)
        if kind is None:
            return f"{value!r} is not {self._type_words()}"
        if kind in (int, float) and isinstance(value, float) and not math.isfinite(value):
            return f"{value!r} is not a finite number"
        if self.choices and value not in self.choices:
            return f"{value!r} is not one of the choices"
        if kind in (int, float) and not self._in_range(value):
            return f"{value!r} is out of range"
        if self.items is not None and kind in (list, dict):
            members = value.items() if kind is dict else enumerate(value)
            for key, item in members:
                if kind is dict and not isinstance(key, str):
                    return f"key {key!r} is not a string"
                if not _is(item, self.items):
                    return f"{item!r} (at {key!r}) is not {_TYPES[self.items][1]}"
        return self.check(value) if self.check is not None else None

    def _in_range(self, value: float) -> bool:
        return not ((self.ge is not None and value < self.ge)
                    or (self.gt is not None and value <= self.gt)
                    or (self.le is not None and value > self.le)
                    or (self.lt is not None and value >= self.lt))

    def _type_words(self) -> str:
        words = [_TYPES[t][1] for t in self.types]
        if self.items is not None:
            words = [f"{w} of {_TYPES[self.items][0]}s" if w in ("a list", "a mapping") else w
                     for w in words]
        return " or ".join(words + (["null"] if self.nullable else []))

    def _range_words(self) -> str:
        parts = [f"{op} {_number(bound)}" for op, bound in
                 ((">=", self.ge), (">", self.gt), ("<=", self.le), ("<", self.lt))
                 if bound is not None]
        return " and ".join(parts)

    def describe(self) -> str:
        """'a number > 0 (Å); default 1.5': what is allowed, in a few words."""
        text = (f"one of {', '.join(repr(c) for c in self.choices)}" if self.choices
                else self._type_words())
        if self._range_words():
            text += f" {self._range_words()}"
        if self.unit:
            text += f" ({self.unit})"
        return text + ("; required" if self.required else f"; default {self.default!r}")

    def json_schema(self) -> dict[str, Any]:
        """The same declaration as a JSON-schema fragment (docs, editors)."""
        names = [_TYPES[t][0] for t in self.types] + (["null"] if self.nullable else [])
        schema: dict[str, Any] = {"type": names[0] if len(names) == 1 else names}
        for key, bound in (("minimum", self.ge), ("exclusiveMinimum", self.gt),
                           ("maximum", self.le), ("exclusiveMaximum", self.lt)):
            if bound is not None:
                schema[key] = bound
        if self.choices:
            schema["enum"] = list(self.choices) + ([None] if self.nullable else [])
        if self.items is not None:
            inner = {"type": _TYPES[self.items][0]}
            if list in self.types:
                schema["items"] = inner
            if dict in self.types:
                schema["additionalProperties"] = inner
        if not self.required:
            schema["default"] = copy.deepcopy(self.default)
        if self.help:
            schema["description"] = self.help
        if self.unit:
            schema["x-unit"] = self.unit
        if self.schema:
            schema.update(copy.deepcopy(dict(self.schema)))
        return schema


def did_you_mean(name: str, known: Any) -> str:
    """" (did you mean 'cutoff'?)" for a near miss among ``known``, else ""."""
    import difflib   # only when something is wrong: not at every job's start

    close = difflib.get_close_matches(str(name), [str(k) for k in known], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def unknown_names(unknown: list[str], known: Any, *, what: str = "key") -> str:
    """"unknown setting 'cutof' (did you mean 'cutoff'?)"."""
    unknown = sorted(unknown, key=str)
    listed = ", ".join(f"{u!r}{did_you_mean(u, known)}" for u in unknown)
    return f"unknown {what}{'s' if len(unknown) > 1 else ''} {listed}"


def unknown_keys_message(unknown: list[str], known: Any, *, what: str = "key",
                         known_label: str = "known keys") -> str:
    """"unknown setting 'cutof' (did you mean 'cutoff'?); contact_events takes: ..."."""
    return (f"{unknown_names(unknown, known, what=what)}; {known_label}: "
            f"{', '.join(sorted(map(str, known))) or '(none)'}")


def _fields(template: str) -> list[tuple[str, str | None]]:
    """(top-level name, first [index] or None) of each replacement field of a template."""
    import string

    out = []
    for _, name, spec, _ in string.Formatter().parse(template):
        if name is None:
            continue
        head, _, rest = name.partition("[")
        head = head.partition(".")[0]
        out.append((head, rest.partition("]")[0] if rest else None))
        if spec and "{" in spec:
            out.extend(_fields(spec))
    return out


class SettingsView(Mapping[str, Any]):
    """Read-only settings with defaults filled; reading a key nobody declared is a bug in
    the plugin, so it raises instead of returning a default."""

    def __init__(self, values: dict[str, Any], owner: str) -> None:
        self._values = values
        self._owner = owner

    def __getitem__(self, key: str) -> Any:
        if key not in self._values:
            raise PluginError(f"{self._owner} reads setting {key!r}, which it does not "
                              f"declare{did_you_mean(key, self._values)}: add it to its "
                              "SETTINGS")
        return self._values[key]

    def __getattr__(self, key: str) -> Any:
        if key.startswith("_"):
            raise AttributeError(key)
        return self[key]

    def __contains__(self, key: object) -> bool:
        return key in self._values

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"SettingsView({self._values!r})"


class Settings(Mapping[str, Setting]):
    """A plugin's declared settings (name -> Setting), and how it reads them.

    Runners also say what a condition's params are to them (``params``): ``"merged"``
    (they override runner settings, so they are checked as settings) or ``"templates"``
    (they fill ``{params[name]}`` in the settings named by ``templates``, whose fields must
    be among ``template_fields``). ``open``: keys beyond the declared ones pass unchecked
    (the ``python`` runner hands them to the user's function). ``check(values, params)``
    raises ConfigError for what involves several settings at once.
    """

    def __init__(self, declared: Mapping[str, Setting] | None = None, *,
                 params: str | None = None, templates: tuple[str, ...] = (),
                 template_fields: tuple[str, ...] = (), open: bool = False,
                 check: Callable[[Mapping[str, Any], Mapping[str, Any]], None] | None = None
                 ) -> None:
        self._declared = dict(declared or {})
        for name, setting in self._declared.items():
            if not isinstance(setting, Setting):
                raise PluginError(f"setting {name!r} is declared as {setting!r}, not a "
                                  "Setting(type, default, ...)")
        if params not in (None, PARAMS_MERGED, PARAMS_TEMPLATES):
            raise PluginError(f"Settings(params={params!r}): use 'merged' or 'templates'")
        self.params = params
        self.templates = tuple(templates)
        self.template_fields = tuple(template_fields)
        self.open = open
        self.check = check

    def __getitem__(self, name: str) -> Setting:
        return self._declared[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._declared)

    def __len__(self) -> int:
        return len(self._declared)

    # --- what the config may hold ---------------------------------------------------
    def referenced(self, values: Mapping[str, Any], kind: str) -> set[str] | None:
        """Names the template settings use as {kind[name]}; None when one uses {kind} whole
        (then any name goes)."""
        names: set[str] = set()
        for template in self._template_strings(values):
            for head, index in _fields(template):
                if head == kind:
                    if index is None:
                        return None
                    names.add(index)
        return names

    def _template_strings(self, values: Mapping[str, Any]) -> Iterator[str]:
        for name in self.templates:
            value = values.get(name)
            if isinstance(value, str):
                yield value
            elif isinstance(value, dict):
                yield from (v for v in value.values() if isinstance(v, str))

    def problems(self, values: Mapping[str, Any], *, what: str = "setting",
                 owner: str = "it", partial: bool = False) -> list[tuple[str | None, str]]:
        """(key or None, message) for everything wrong with ``values``; ``partial``: do not
        ask for required keys (runner settings whose params may still give them)."""
        out: list[tuple[str | None, str]] = []
        allowed = set(self._declared)
        if self.templates:
            referenced = self.referenced(values, "settings")
            allowed |= set(values) if referenced is None else referenced
        unknown = [k for k in values if k not in allowed]
        if unknown and not self.open:
            also = (" and what its templates use as {settings[name]}" if self.templates
                    else "")
            out.append((None, unknown_keys_message(unknown, self._declared, what=what,
                                                   known_label=f"{owner} takes") + also))
        for name, setting in self._declared.items():
            if name in values:
                problem = setting.problem(values[name])
                if problem:
                    out.append((name, f"{problem}; expected {setting.describe()}"))
            elif setting.required and not partial:
                out.append((None, f"{owner} needs setting {name!r}: {setting.describe()}"
                            + (f" ({setting.help})" if setting.help else "")))
        for name in self.templates:
            if isinstance(values.get(name), (str, dict)):
                out.extend((name, p) for p in self._template_problems(values[name]))
        return out

    def _template_problems(self, value: str | dict[str, Any]) -> list[str]:
        if not self.template_fields:
            return []
        templates = [value] if isinstance(value, str) else [
            v for v in value.values() if isinstance(v, str)]
        for template in templates:
            try:
                fields = _fields(template)
            except ValueError as exc:
                return [f"{template!r} is not a valid template ({exc}); write a literal "
                        "brace as {{ or }}"]
            for head, _ in fields:
                if head not in self.template_fields:
                    braced = ["{" + f + "}" for f in self.template_fields]
                    return [f"unknown template field {{{head}}}"
                            f"{did_you_mean('{' + head + '}', braced)}; known fields: "
                            f"{', '.join(braced)}"]
        return []

    def unchecked(self, values: Mapping[str, Any]) -> list[str]:
        """Keys of an ``open`` declaration that nothing declares."""
        return sorted(k for k in values if k not in self._declared) if self.open else []

    # --- what a job reads -------------------------------------------------------------
    def read(self, source: Any, *, where: str | None = None) -> SettingsView:
        """The settings of a context (a runner's merged with its params when they are
        ``merged``) or of a mapping: checked, defaults filled, undeclared reads refused."""
        values, default_where = self._source(source)
        where = where or default_where
        problems = self.problems(values)
        if problems:
            key, message = problems[0]
            raise ConfigError(f"config key {where}{'.' + key if key else ''}: {message}")
        filled = {name: copy.deepcopy(s.default) for name, s in self._declared.items()
                  if name not in values}
        return SettingsView({**filled, **values}, owner=f"the plugin of {where}")

    def _source(self, source: Any) -> tuple[dict[str, Any], str]:
        if isinstance(source, Mapping):
            return dict(source), "settings"
        if hasattr(source, "analysis_name"):
            return dict(source.settings), f"analyses.{source.analysis_name}.settings"
        if hasattr(source, "condition_label") and hasattr(source, "params"):
            if self.params == PARAMS_MERGED:
                return ({**source.settings, **source.params},
                        f"runner.settings (with the params of {source.condition_label!r})")
            return dict(source.settings), "runner.settings"
        raise PluginError(f"Settings.read() takes a context or a mapping, not "
                          f"{type(source).__name__}")

    def defaults(self) -> dict[str, Any]:
        return {n: copy.deepcopy(s.default) for n, s in self._declared.items()
                if not s.required}

    def json_schema(self) -> dict[str, Any]:
        schema: dict[str, Any] = {
            "type": "object", "additionalProperties": self.open,
            "properties": {n: s.json_schema() for n, s in self._declared.items()}}
        required = [n for n, s in self._declared.items() if s.required]
        if required:
            schema["required"] = required
        return schema


def declared_settings(plugin: Any, *, where: str = "plugin") -> Settings | None:
    """A plugin's ``SETTINGS`` as Settings (a plain dict of Setting is accepted), or None
    when it declares none."""
    declared = getattr(plugin, "SETTINGS", None)
    if declared is None or isinstance(declared, Settings):
        return declared
    if isinstance(declared, Mapping):
        try:
            return Settings(declared)
        except PluginError as exc:
            raise PluginError(f"{where}: {exc}") from None
    raise PluginError(f"{where}: {getattr(plugin, '__qualname__', plugin)}.SETTINGS is a "
                      f"{type(declared).__name__}, not Settings({{name: Setting(...)}})")
