"""Strict JSON for manifests, and the payload keys the framework itself reads."""

from __future__ import annotations

import math
from pathlib import PurePath
from typing import Any

from ..errors import PayloadError

# Payload keys the framework reads. Plugins use these names, never string literals.
METRICS = "metrics"          # {name: finite float} aggregated across replicates
SKIP_REASON = "skipped"      # a collector sets payload[SKIP_REASON] = why to drop a replicate
SKIPPED_REPLICATES = "skipped_replicates"  # [{replicate, reason}] in condition artifacts
VALUES = "values"            # a condition's metric summary: {replicate number: its value}
CONVERGENCE = "convergence"  # {metric: diagnostics} of series metrics (assay.pipeline.diagnostics)
CONDITIONS = "conditions"
CONTROL = "control"
# Comparison artifacts (see docs/statistics.md):
COMPARISONS = "comparisons"  # {condition: {metric: test}} each condition vs the control
PAIRWISE = "pairwise"        # {reference: {condition: {metric: test}}} pairs without the control
ANOVA = "anova"              # {metric: Welch's one-way ANOVA across the conditions}
RANKING = "ranking"          # {metric: [{condition, rank, mean, ..., tied_with}]}
MISSING_METRICS = "missing_metrics"  # {metric: [conditions that lack it]}
OPTIONS = "options"          # the comparison settings used: pairs, test, correction, ...
P_VALUE = "p"                # a test's raw p
P_ADJUSTED = "p_adjusted"    # the same p after the correction named in OPTIONS

MAX_ARRAY_ITEMS = 1024
MAX_DEPTH = 32
# Integers must survive every JSON reader the catalog and users meet (and Python's own
# 4300-digit limit on int <-> str): the signed and unsigned 64-bit range.
MIN_INT, MAX_INT = -(2 ** 63), 2 ** 64 - 1


def _short(value: Any) -> str:
    try:
        text = repr(value)
    except ValueError:   # an int too long to print
        return f"<{type(value).__name__}>"
    return text if len(text) <= 80 else text[:77] + "..."


def _fail(analysis_name: str, key_path: str, problem: str) -> PayloadError:
    return PayloadError(f"{analysis_name}: payload{key_path or ''} {problem}")


def strict_json_payload(value: Any, *, analysis_name: str,
                        max_array_items: int = MAX_ARRAY_ITEMS) -> Any:
    """Return ``value`` as plain JSON primitives or raise naming the offending key path.

    Manifests must be small, portable and hash the same everywhere: numpy scalars become
    Python numbers, relative Paths become POSIX strings; NaN/inf, non-string keys, long
    arrays (use a sidecar) and runtime containers such as MDAnalysis ``Results`` are refused.
    """
    return _convert(value, analysis_name, "", 0, max_array_items)


def _text(value: str, name: str, where: str, *, key: bool = False) -> str:
    """A plain str that UTF-8 can encode (a lone surrogate from a JSON escape cannot).

    A numpy string is the text numpy says it holds (``str(v)``, trailing NULs dropped as
    numpy drops them), never its raw buffer: ``np.str_('\\x00')`` is ``''`` to numpy.
    """
    if type(value) is not str and type(value).__module__ == "numpy":
        value = str(value)
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            problem = (f"has a key {value!r} that" if key else f"is {value!r}, which")
            raise _fail(name, where, f"{problem} is not valid Unicode (a lone surrogate); "
                        "manifests are UTF-8") from None
    return value if type(value) is str else str.__str__(value)


def _convert(value: Any, name: str, where: str, depth: int, limit: int) -> Any:
    if depth > MAX_DEPTH:
        raise _fail(name, where, f"is nested deeper than {MAX_DEPTH} levels")
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return _text(value, name, where)
    if isinstance(value, int):
        if not MIN_INT <= value <= MAX_INT:
            raise _fail(name, where, "is an integer outside the 64-bit range; store it as a "
                        "string or a float")
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _fail(name, where, f"is {value!r}; only finite numbers are allowed")
        return float(value)
    if type(value).__name__ == "Results":
        raise _fail(name, where, "is a raw framework Results container; map it to metrics, "
                    "arrays (NPZ sidecar) and tables (CSV/Parquet sidecar) first")
    if isinstance(value, PurePath):
        if value.is_absolute():
            raise _fail(name, where, f"is an absolute path {str(value)!r}; manifests must be "
                        "portable, store a relative path")
        return value.as_posix()
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise _fail(name, where, f"has a non-string key {_short(key)}")
            key = _text(key, name, where, key=True)
            if key in out:   # e.g. np.str_('a\x00') and 'a': one key in JSON, never a silent pick
                raise _fail(name, where, f"has two keys that are both {key!r} as JSON text")
            out[key] = _convert(item, name, f"{where}[{key!r}]", depth + 1, limit)
        return out
    module = type(value).__module__
    if module == "numpy":
        import numpy as np

        if isinstance(value, np.ndarray):
            if value.size > limit:
                raise _fail(name, where, f"is an array of {value.size} items (limit {limit}); "
                            "store it in an NPZ sidecar")
            return _convert(value.tolist(), name, where, depth, limit)
        if isinstance(value, np.bool_):
            return bool(value)
        if isinstance(value, np.integer):
            return _convert(int(value), name, where, depth, limit)
        if isinstance(value, np.floating):
            return _convert(float(value), name, where, depth, limit)
        if isinstance(value, np.str_):
            return _text(str(value), name, where)
    if isinstance(value, (list, tuple)):
        if len(value) > limit:
            raise _fail(name, where, f"is a list of {len(value)} items (limit {limit}); "
                        "store it in a sidecar")
        return [_convert(item, name, f"{where}[{i}]", depth + 1, limit)
                for i, item in enumerate(value)]
    raise _fail(name, where, f"has unsupported type {type(value).__qualname__}; use JSON "
                "primitives, or a sidecar for arrays and tables")
