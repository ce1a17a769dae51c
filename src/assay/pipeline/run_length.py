"""Adaptive run length for resumable runners (issue 26, item 3; OpenMM first).

``run_length: {segment: 1000, max: 20000, until: {n_eff: 50, series: <column>}}`` instead
of a fixed number of steps: the runner stops at the first segment end where the effective
sample size of one of its own series, over every frame so far, reaches the target, or at
``max``. Each decision reads only the frames written so far, so a run extended to N steps
is the run of N steps in one go, and a resumed run decides again from the same frames.
N_eff is the stored diagnostics' estimator (assay.pipeline.convergence.series_diagnostics), so the
number a run stopped on is the number `assay metrics` would show for that series.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from ..errors import ConfigError

KEYS = ("segment", "max", "until")
UNTIL_KEYS = ("n_eff", "series")


def json_schema(series: Sequence[str]) -> dict[str, Any]:
    """The keys as JSON-schema keywords (`assay plugins --json`, editors); parse_run_length
    is the check that runs, with the cross-checks a schema cannot say (multiples of
    report_interval and segment), and tests/test_openmm_runner.py holds the two together."""
    steps = {"type": "integer", "minimum": 1}
    return {"properties": {
        "segment": {**steps, "description": "steps per segment (a multiple of "
                                            "report_interval, at least 8 frames)"},
        "max": {**steps, "description": "at most this many steps (a multiple of segment)"},
        "until": {"type": "object", "additionalProperties": False, "required": ["n_eff"],
                  "properties": {
                      "n_eff": {"type": "number", "exclusiveMinimum": 0,
                                "description": "stop when N_eff of the series reaches it"},
                      "series": {"enum": list(series), "default": series[0]}}}},
        "required": list(KEYS), "additionalProperties": False}


@dataclass(frozen=True)
class RunLength:
    """Extend by ``segment`` steps until N_eff of ``series`` >= ``n_eff``, at most ``max``."""
    segment: int
    max: int
    n_eff: float
    series: str


def _mapping(value: Any, name: str, keys: tuple[str, ...], required: tuple[str, ...]
             ) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{name} must be a mapping with keys {list(keys)}, got "
                          f"{value!r:.80}")
    unknown = sorted(set(value) - set(keys))
    if unknown:
        raise ConfigError(f"{name}: unknown key(s) {unknown}; it accepts {list(keys)}")
    missing = [k for k in required if k not in value]
    if missing:
        raise ConfigError(f"{name}: {missing[0]} is required")
    return value


def parse_run_length(value: Any, where: str, *, report_interval: int, max_steps: int,
                     series: Sequence[str]) -> RunLength:
    """``value`` checked key by key (unknown keys, types, multiples); ``series`` are the
    runner's series names, the first the default. Errors name the key to fix."""
    from .diagnostics import MIN_SERIES

    def steps(key: str, number: Any) -> int:
        if isinstance(number, bool) or not isinstance(number, int) \
                or not 1 <= number <= max_steps:
            raise ConfigError(f"{where}.{key} must be an integer number of steps in "
                              f"[1, {max_steps}], got {number!r}")
        return number

    rl = _mapping(value, where, KEYS, KEYS)
    segment, most = steps("segment", rl["segment"]), steps("max", rl["max"])
    if segment % report_interval or segment // report_interval < MIN_SERIES:
        raise ConfigError(f"{where}.segment ({segment}) must be a multiple of report_interval "
                          f"({report_interval}) holding at least {MIN_SERIES} frames (N_eff "
                          "needs them)")
    if most % segment:
        raise ConfigError(f"{where}.max ({most}) must be a multiple of segment ({segment})")
    until = _mapping(rl["until"], f"{where}.until", UNTIL_KEYS, ("n_eff",))
    target = until["n_eff"]
    if isinstance(target, bool) or not isinstance(target, (int, float)) \
            or not math.isfinite(target) or target <= 0:
        raise ConfigError(f"{where}.until.n_eff must be a number > 0, got {target!r}")
    name = until.get("series", series[0])
    if name not in series:
        raise ConfigError(f"{where}.until.series must be one of {list(series)}, got {name!r}")
    return RunLength(segment=segment, max=most, n_eff=float(target), series=name)


class Ends:
    """Whether a run ends at a step: a fixed run at ``steps``; an adaptive one at the first
    segment end where N_eff of its series (``read_series()``: every value so far) reaches
    the target, or at max. Each decision is logged; ``short_of_target`` is the warning of
    a run that ended at max without reaching it."""

    def __init__(self, steps: int, run_length: RunLength | None, frame_steps: int,
                 read_series: Callable[[str], list[float]], log: Callable[[str], Any]) -> None:
        self.steps, self.rl, self.frame_steps = steps, run_length, frame_steps
        self.read_series, self.log = read_series, log
        self.short_of_target = ""

    def __call__(self, step: int) -> bool:
        rl = self.rl
        if rl is None:
            return step >= self.steps
        if step % rl.segment:
            return False
        n_eff = n_eff_of(self.read_series(rl.series))
        reached = n_eff >= rl.n_eff
        if reached:
            why = f"N_eff {n_eff:.4g} >= {rl.n_eff:g}: done"
        elif step >= rl.max:
            why = f"N_eff {n_eff:.4g} < {rl.n_eff:g} at max {rl.max}: done, short of target"
            self.short_of_target = (
                f"run_length: {rl.series} reached N_eff {n_eff:.4g} of the {rl.n_eff:g} "
                f"asked for at max {rl.max} steps; raise run_length.max")
        else:
            why = f"N_eff {n_eff:.4g} < {rl.n_eff:g}: extend by {rl.segment}"
        self.log(f"run_length: step {step} ({step // self.frame_steps} frames), "
                 f"{rl.series} {why}")
        return reached or step >= rl.max


def n_eff_of(values: Sequence[float]) -> float:
    """N_eff of the production part of a series, as collect's diagnostics store it."""
    from .convergence import series_diagnostics

    return float(series_diagnostics(values)["n_eff"])


def csv_column(table: Path, column: str) -> list[float]:
    """One column of a CSV table with a header row, as written so far (the exact values
    the published table will hold)."""
    with open(table, "rb") as handle:
        lines = handle.read().decode().splitlines()
    index = lines[0].split(",").index(column)
    return [float(line.split(",")[index]) for line in lines[1:] if line]
