"""A study's configuration: schema validation with defaults, then the checks a schema cannot do."""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any

from ..errors import ConfigError
from ..store.hashing import canonical_json, sha256_hex

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "schemas" / "config.schema.yaml"


@dataclass(frozen=True)
class PluginSpec:
    plugin: str
    settings: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Study:
    """The validated study: what to run, how often, and what to compute from it."""

    store: str
    results: str
    seed: int
    conditions: dict[str, dict[str, Any]]
    control: str
    replicates: list[int]
    runner: PluginSpec
    analyses: dict[str, PluginSpec]
    aggregation: dict[str, Any]
    plots: dict[str, Any]
    # Scheduler requests per stage, and per-condition overrides of the run stage's: never
    # part of a spec or a digest (see job_resources).
    resources: dict[str, dict[str, Any]] = field(default_factory=dict)
    condition_resources: dict[str, dict[str, Any]] = field(default_factory=dict)
    grace_seconds: float = 20.0
    claim_wait_seconds: float = 300.0
    comparison: dict[str, Any] = field(default_factory=dict)
    # How a lab's shared store is kept and whom its cache trusts: reaches the jobs through
    # the environment, never a spec (assay.store.sharing).
    store_sharing: dict[str, Any] = field(default_factory=dict)
    # Portable numerics (assay.pipeline.numerics): part of every spec, so of every key, when on.
    numerics: dict[str, Any] = field(default_factory=dict)
    # What validation could not check (a plugin that declares no settings): never a spec.
    warnings: tuple[str, ...] = ()
    # replicates: {min, max, batch, until}: replicates is then 1..max, of which the looks
    # decide how many run (assay.pipeline.adaptive).
    adaptive: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_config(cls, config: dict[str, Any], *, check_plugins: bool = True) -> "Study":
        """Validate (filling defaults) and build; raises ConfigError naming key and problem."""
        config = validate_config(config)
        labels = [c["label"] for c in config["conditions"]]
        seen: set[str] = set()
        for label in labels:
            if label in seen:
                raise ConfigError(f"conditions: duplicate condition label {label!r}; "
                                  "each condition needs its own label")
            seen.add(label)
        if config["control"] not in seen:
            raise ConfigError(f"control: {config['control']!r} is not one of the condition "
                              f"labels {labels}")
        for key in ("store", "results"):
            if ".." in PurePath(config[key]).parts:
                raise ConfigError(f"{key}: {config[key]!r} contains '..'; use a path inside "
                                  "the workflow directory or an absolute path")
        replicates = config["replicates"]
        adaptive: dict[str, Any] = {}
        if isinstance(replicates, dict):
            from .adaptive import check_design

            adaptive = check_design(replicates, config["analyses"])
            replicates = adaptive["max"]
        if isinstance(replicates, int):
            replicates = list(range(1, replicates + 1))
        study = cls(
            store=config["store"], results=config["results"], seed=config["seed"],
            conditions={c["label"]: dict(c.get("params", {})) for c in config["conditions"]},
            control=config["control"], replicates=sorted(replicates),
            runner=PluginSpec(config["runner"]["plugin"], dict(config["runner"]["settings"])),
            analyses={name: PluginSpec(a["plugin"], dict(a["settings"]))
                      for name, a in config["analyses"].items()},
            aggregation=dict(config["aggregation"]), plots=dict(config["plots"]),
            resources={k: dict(v) for k, v in config["resources"].items()},
            condition_resources={c["label"]: dict(c["resources"])
                                 for c in config["conditions"] if c.get("resources")},
            grace_seconds=float(config["runner"]["grace_seconds"]),
            claim_wait_seconds=float(config["runner"]["claim_wait_seconds"]),
            comparison=dict(config["comparison"]),
            store_sharing=dict(config["store_sharing"]),
            numerics=dict(config["numerics"]), adaptive=adaptive)
        study._check_partitions()
        if check_plugins:
            from ..errors import PluginError
            from .study_settings import check_plugin_settings

            try:   # a plugin the config names but that cannot be found is a config error
                warnings = check_plugin_settings(study)
            except PluginError as exc:
                raise ConfigError(str(exc)) from exc
            study = dataclasses.replace(study, warnings=tuple(warnings))
        return study

    def job_resources(self, stage: str, condition: str | None = None) -> dict[str, Any]:
        """A job's threads/mem_mb/runtime/gpu/partition/extra: the stage's, then (run jobs)
        its condition's own."""
        merged = dict(self.resources.get(stage, {}))
        if stage == "run" and condition is not None:
            merged.update(self.condition_resources.get(condition, {}))
        return merged

    def _check_partitions(self) -> None:
        """A condition's own partition needs a stage partition for the other conditions:
        a rule's resource cannot fall back to the profile's default per job."""
        for key in ("slurm_partition",):
            own = [c for c, r in self.condition_resources.items() if key in r]
            if own and key not in self.resources.get("run", {}):
                raise ConfigError(
                    f"conditions[{own[0]!r}].resources.{key} is set, but resources.run.{key} "
                    f"is not: set resources.run.{key} too (the partition of the other "
                    "conditions' runs)")

    def check_threads(self, cores: int | None) -> None:
        """Stop before any job when a stage asks for more threads than this run may use."""
        if not cores:
            return
        where = [(f"resources.{stage}.threads", r.get("threads", 1))
                 for stage, r in self.resources.items()]
        where += [(f"conditions[{c!r}].resources.threads", r["threads"])
                  for c, r in self.condition_resources.items() if "threads" in r]
        for key, threads in where:
            if threads > cores:
                raise ConfigError(
                    f"config key {key}: {threads} threads is more than the {cores} cores this "
                    "run may use (--cores, or `cores:` in the profile); lower it or raise "
                    "the cores")

    def seed_for(self, condition: str, replicate: int) -> int:
        """Independent, reproducible seeds per condition x replicate (not shared noise)."""
        digest = sha256_hex(canonical_json([self.seed, condition, replicate]))
        return int(digest[:8], 16)


def _format_path(path: Any) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


MAX_CONFIG_VALUES = 100_000   # a large real study has a few thousand
MAX_CONFIG_DEPTH = 64


def check_config_size(config: Any) -> None:
    """Refuse a config that YAML aliases expand beyond any real study ("billion laughs":
    870 bytes of nested anchors became 3.2 GB in the workflow). Counted without expanding:
    a node shared through an alias counts once per use, computed once per node."""
    sizes: dict[int, int] = {}

    def size(value: Any, depth: int) -> int:
        if depth > MAX_CONFIG_DEPTH:
            raise ConfigError(f"config nests deeper than {MAX_CONFIG_DEPTH} levels; a study "
                              "config is a few levels deep (YAML anchors referring to "
                              "themselves?)")
        if not isinstance(value, (dict, list)):
            return 1
        known = sizes.get(id(value))
        if known is not None:
            return known
        children = value.values() if isinstance(value, dict) else value
        total = 1
        for child in children:
            total += size(child, depth + 1)
            if total > MAX_CONFIG_VALUES:
                raise ConfigError(
                    f"config expands to more than {MAX_CONFIG_VALUES:,} values through YAML "
                    "aliases (anchors `&name` reused as `*name`): refused before it is "
                    "expanded. Write the values out, or reuse fewer nested anchors")
        sizes[id(value)] = total
        return total

    size(config, 0)


def validate_config(config: dict[str, Any]) -> dict[str, Any]:
    """jsonschema validation that also fills the schema's defaults, on a copy."""
    import jsonschema
    import yaml

    if not isinstance(config, dict):
        raise ConfigError(f"config must be a mapping, got {type(config).__name__}")
    check_config_size(config)
    schema = yaml.safe_load(SCHEMA_PATH.read_text())
    base = jsonschema.validators.validator_for(schema)

    def fill_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, sub in properties.items():
                if "default" in sub and name not in instance:
                    instance[name] = copy.deepcopy(sub["default"])
        yield from base.VALIDATORS["properties"](validator, properties, instance, schema)

    validator_cls = jsonschema.validators.extend(base, {"properties": fill_defaults})
    config = copy.deepcopy(config)
    errors = sorted(validator_cls(schema).iter_errors(config), key=lambda e: list(e.path))
    if errors:
        first = _explain(errors[0])
        raise ConfigError(f"config key {_format_path(first.absolute_path)}: "
                          f"{_message(first)}")
    return config


_LABEL_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,127}\Z"   # \Z: "$" also matches before a final newline


def _explain(error: Any) -> Any:
    """For "a count or a list" (oneOf), the error of the alternative the value was meant
    for, instead of jsonschema's "is not valid under any of the given schemas"."""
    if error.validator in ("oneOf", "anyOf") and error.context:
        meant = [e for e in error.context if e.validator not in ("type", "const")]
        if meant:
            return _explain(min(meant, key=lambda e: len(e.absolute_path)))
    return error


def _message(error: Any) -> str:
    if error.validator in ("oneOf", "anyOf") and error.context:
        types = " or ".join(dict.fromkeys(repr(e.validator_value) for e in error.context
                                          if e.validator == "type"))
        consts = [repr(e.validator_value) for e in error.context if e.validator == "const"]
        return f"{error.instance!r} is not " + " or ".join(
            consts + ([f"of type {types}"] if types else []))
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        from .settings import unknown_keys_message

        allowed = sorted(error.schema.get("properties", {}))
        return unknown_keys_message(sorted(set(error.instance) - set(allowed)), allowed)
    if error.validator == "pattern" and error.validator_value == _LABEL_PATTERN:
        return (f"{error.instance!r} is not a valid label: it must start with a letter or "
                "digit and contain only letters, digits, '_', '.', '+' or '-' (at most 128 "
                "characters)")
    return error.message


def load_config(path: str | Path) -> Study:
    import yaml

    path = Path(path)
    try:
        config = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
    return Study.from_config(config or {})
