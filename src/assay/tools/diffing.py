"""How two artifacts differ, beyond their digests: numbers, arrays and tables.

Two digests that differ say nothing about how much. A study rerun on another numpy or
Python can give trajectories that diverge by 1e-3 (chaotic dynamics amplify last-bit
differences), so every digest changes; this module says which payload numbers, which
arrays and which table columns moved, and by how much.

Tolerance is symmetric: ``|a - b| <= atol + rtol * max(|a|, |b|)``, so diff(A, B) and
diff(B, A) agree. The result (identity, payload, metadata, warnings, sidecars) decides
equality; provenance and inputs are reported as context only (another numpy version, or
upstream artifacts that differ, are the usual reasons, not differences of the result).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from ..store import ArtifactStore

COMPARED = ("artifact_type", "analysis_name", "condition_label", "replicate", "replicates",
            "schema_version", "payload", "metadata", "warnings")
CONTEXT = ("provenance", "inputs")


@dataclass
class Finding:
    """One difference: where, what each side holds, and how far apart numbers are."""

    where: str
    kind: str                  # number, value, only_a, only_b, array, table, sidecar
    a: Any = None
    b: Any = None
    abs_diff: float | None = None
    rel_diff: float | None = None
    within: bool = False
    detail: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"where": self.where, "kind": self.kind, "a": self.a, "b": self.b,
                "abs_diff": self.abs_diff, "rel_diff": self.rel_diff, "within": self.within,
                **({"detail": self.detail} if self.detail else {})}

    def line(self, names: tuple[str, str] = ("A", "B")) -> str:
        verdict = " (within tolerance)" if self.within else ""
        if self.kind in ("only_a", "only_b"):
            side = names[0] if self.kind == "only_a" else names[1]
            return f"{self.where}: only in {side}{verdict}"
        if self.kind == "number":
            return (f"{self.where}: {self.a!r} -> {self.b!r} "
                    f"(|Δ| {_num(self.abs_diff)}, rel {_num(self.rel_diff)}){verdict}")
        if self.kind == "array":
            return f"{self.where}: {_array_text(self.detail)}{verdict}"
        if self.kind == "sidecar":
            return f"{self.where}: {self.detail.get('note', 'bytes differ')}{verdict}"
        return f"{self.where}: {_short(self.a)} -> {_short(self.b)}{verdict}"


@dataclass
class DiffReport:
    a: str
    b: str
    rtol: float
    atol: float
    findings: list[Finding] = field(default_factory=list)
    context: list[Finding] = field(default_factory=list)
    names: tuple[str, str] = ("A", "B")
    # How the two computations' numeric environments differ (from their action records):
    # the usual reason two runs of the same spec give other bytes.
    numerics: list[str] = field(default_factory=list)

    @property
    def identical(self) -> bool:
        return self.a == self.b

    @property
    def equal(self) -> bool:
        """Equal within tolerance (identical digests are equal)."""
        return self.identical or all(f.within for f in self.findings)

    def to_dict(self) -> dict[str, Any]:
        return {"a": self.a, "b": self.b, "identical": self.identical, "equal": self.equal,
                "rtol": self.rtol, "atol": self.atol,
                "differences": [f.to_dict() for f in self.findings],
                "context": [f.to_dict() for f in self.context],
                "numeric_environment": self.numerics}

    def lines(self) -> list[str]:
        out = [f.line(self.names) for f in self.findings]
        out += [f"context (not compared): {f.line(self.names)}" for f in self.context]
        if self.numerics:
            out.append("computed in other numeric environments (docs/reliability.md, "
                       "\"The same numbers on any machine\"):")
            out += [f"  {line}" for line in self.numerics]
        return out

    def summary(self) -> str:
        if self.identical:
            return "identical (same digest)"
        beyond = sum(not f.within for f in self.findings)
        tolerance = f"rtol={self.rtol:g}, atol={self.atol:g}"
        if beyond:
            return f"DIFFERS: {beyond} difference(s) beyond {tolerance}"
        within = len(self.findings)
        return (f"equal within {tolerance}" + (f" ({within} difference(s) within it)"
                                               if within else "; only the context differs"))


def _num(value: Any) -> str:
    return "-" if value is None else f"{value:.6g}" if isinstance(value, float) else str(value)


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= 80 else text[:77] + "..."


def _array_text(d: dict[str, Any]) -> str:
    if "note" in d:
        return d["note"]
    text = f"{d['shape']} {d['dtype']}"
    if d.get("max_abs") is not None:
        text += (f": max |Δ| {_num(d['max_abs'])}, max rel Δ {_num(d['max_rel'])}, "
                 f"{d['n_differ']} of {d['n']} elements differ")
    else:
        text += f": {d['n_differ']} of {d['n']} elements differ"
    return text


# --- tolerance -------------------------------------------------------------------------
def _close(abs_diff: float, scale: float, rtol: float, atol: float) -> bool:
    return abs_diff <= atol + rtol * scale


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def diff_values(a: Any, b: Any, where: str, *, rtol: float = 0.0,
                atol: float = 0.0) -> list[Finding]:
    """Differences between two JSON values; numbers get |Δ| and relative Δ."""
    out: list[Finding] = []
    _walk(a, b, where, out, rtol, atol)
    return out


def _walk(a: Any, b: Any, where: str, out: list[Finding], rtol: float, atol: float) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b), key=str):
            path = f"{where}.{key}" if where else str(key)
            if key not in b:
                out.append(Finding(path, "only_a", a=a[key]))
            elif key not in a:
                out.append(Finding(path, "only_b", b=b[key]))
            else:
                _walk(a[key], b[key], path, out, rtol, atol)
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            _walk(x, y, f"{where}[{i}]", out, rtol, atol)
    elif _is_number(a) and _is_number(b):
        if a != b:
            abs_diff = abs(a - b)
            scale = max(abs(a), abs(b))
            out.append(Finding(where, "number", a=a, b=b, abs_diff=float(abs_diff),
                               rel_diff=float(abs_diff / scale),
                               within=_close(abs_diff, scale, rtol, atol)))
    elif a != b or type(a) is not type(b):
        out.append(Finding(where, "value", a=a, b=b))


# --- arrays and tables -----------------------------------------------------------------
def diff_arrays(a: Any, b: Any, where: str, *, rtol: float = 0.0,
                atol: float = 0.0) -> Finding | None:
    """Shape, dtype, max |Δ| and max relative Δ of two arrays; None if they are equal."""
    import numpy as np

    a, b = np.asarray(a), np.asarray(b)
    detail: dict[str, Any] = {"shape": list(a.shape), "dtype": str(a.dtype), "n": int(a.size)}
    if a.shape != b.shape:
        return Finding(where, "array", detail={"note": f"shape {list(a.shape)} {a.dtype} -> "
                                                       f"{list(b.shape)} {b.dtype}"})
    numeric = a.dtype.kind in "iufc" and b.dtype.kind in "iufc"
    if not numeric:
        same = (a == b) if a.dtype.kind == b.dtype.kind else np.zeros(a.shape, bool)
        n_differ = int(a.size - np.count_nonzero(same))
        if n_differ == 0 and a.dtype == b.dtype:
            return None
        detail.update(n_differ=n_differ)
        if a.dtype != b.dtype:
            detail["dtype"] = f"{a.dtype} -> {b.dtype}"
        return Finding(where, "array", detail=detail)
    x, y = a.astype(np.complex128 if "c" in a.dtype.kind + b.dtype.kind else np.float64), \
        b.astype(np.complex128 if "c" in a.dtype.kind + b.dtype.kind else np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        both_nan = np.isnan(x) & np.isnan(y)
        delta = np.where(both_nan | (x == y), 0.0, np.abs(x - y))
        delta = np.where(np.isnan(delta), np.inf, delta)   # NaN on one side only
        scale = np.maximum(np.abs(x), np.abs(y))
        rel = np.where(delta == 0, 0.0, np.divide(delta, scale, out=np.full(delta.shape, np.inf),
                                                  where=scale > 0))
        close = delta <= atol + rtol * np.where(np.isfinite(scale), scale, 0.0)
    n_differ = int(np.count_nonzero(delta))
    if n_differ == 0 and a.dtype == b.dtype:
        return None
    max_abs = float(delta.max()) if delta.size else 0.0
    max_rel = float(np.nan_to_num(rel, nan=np.inf).max()) if rel.size else 0.0
    detail.update(max_abs=max_abs, max_rel=max_rel, n_differ=n_differ)
    if a.dtype != b.dtype:
        detail["dtype"] = f"{a.dtype} -> {b.dtype}"
    return Finding(where, "array", abs_diff=max_abs, rel_diff=max_rel,
                   within=bool(close.all()) and a.dtype == b.dtype, detail=detail)


def _diff_npz(store_a: ArtifactStore, ref_a: Any, store_b: ArtifactStore, ref_b: Any,
              where: str, rtol: float, atol: float) -> list[Finding]:
    out = []
    with store_a.load_npz_sidecar(ref_a) as data_a, store_b.load_npz_sidecar(ref_b) as data_b:
        names_a, names_b = set(data_a.files), set(data_b.files)
        for name in sorted(names_a | names_b):
            path = f"{where} array {name!r}"
            if name not in names_b:
                out.append(Finding(path, "only_a"))
            elif name not in names_a:
                out.append(Finding(path, "only_b"))
            else:
                found = diff_arrays(data_a[name], data_b[name], path, rtol=rtol, atol=atol)
                if found is not None:
                    out.append(found)
    return out


def _diff_table(store_a: ArtifactStore, ref_a: Any, store_b: ArtifactStore, ref_b: Any,
                where: str, rtol: float, atol: float) -> list[Finding]:
    a, b = store_a.load_table_sidecar(ref_a), store_b.load_table_sidecar(ref_b)
    out = []
    if len(a) != len(b):
        out.append(Finding(f"{where} rows", "number", a=len(a), b=len(b),
                           abs_diff=float(abs(len(a) - len(b))), rel_diff=1.0))
    for column in list(a.columns) + [c for c in b.columns if c not in a.columns]:
        path = f"{where} column {column!r}"
        if column not in b.columns:
            out.append(Finding(path, "only_a"))
        elif column not in a.columns:
            out.append(Finding(path, "only_b"))
        elif len(a) == len(b):
            found = diff_arrays(_column(a[column]), _column(b[column]), path, rtol=rtol,
                                atol=atol)
            if found is not None:
                out.append(found)
    return out


def _column(series: Any) -> Any:
    """Numbers as floats (missing = NaN); anything else as text (missing = '')."""
    import numpy as np

    if series.dtype.kind in "iufcb" or str(series.dtype) in ("Int64", "Float64"):
        return series.to_numpy(dtype=np.float64, na_value=np.nan)
    return series.fillna("").astype(str).to_numpy()


def _diff_sidecars(store_a: ArtifactStore, art_a: Any, store_b: ArtifactStore, art_b: Any,
                   rtol: float, atol: float) -> list[Finding]:
    from ..store.tables import TABLE_FORMATS

    side_a = {s.path: s for s in art_a.sidecars}
    side_b = {s.path: s for s in art_b.sidecars}
    out: list[Finding] = []
    for path in sorted(set(side_a) | set(side_b)):
        where = f"sidecar {path}"
        ref_a, ref_b = side_a.get(path), side_b.get(path)
        if ref_b is None or ref_a is None:
            out.append(Finding(where, "only_a" if ref_b is None else "only_b"))
            continue
        out += diff_values({"media_type": ref_a.media_type, "metadata": ref_a.metadata},
                           {"media_type": ref_b.media_type, "metadata": ref_b.metadata},
                           where, rtol=rtol, atol=atol)
        if ref_a.sha256 == ref_b.sha256:
            continue
        suffix = PurePosixPath(path).suffix.lower()
        if suffix == ".npz":
            found = _diff_npz(store_a, ref_a, store_b, ref_b, where, rtol, atol)
        elif suffix in TABLE_FORMATS:
            found = _diff_table(store_a, ref_a, store_b, ref_b, where, rtol, atol)
        else:
            found = [Finding(where, "sidecar", detail={
                "note": f"bytes differ ({ref_a.size_bytes} -> {ref_b.size_bytes} bytes); "
                        "not a format whose values can be compared"})]
        if not found:   # other bytes, same values (e.g. compressed vs stored)
            found = [Finding(where, "sidecar", within=True,
                             detail={"note": "bytes differ, values are equal"})]
        out += found
    return out


def diff_artifacts(store_a: ArtifactStore, ref_a: Any, store_b: ArtifactStore | None = None,
                   ref_b: Any = None, *, rtol: float = 0.0, atol: float = 0.0,
                   names: tuple[str, str] = ("A", "B")) -> DiffReport:
    """Compare artifact ``ref_a`` in ``store_a`` with ``ref_b`` in ``store_b`` (refs or
    digests); sidecars are verified as they are read."""
    if rtol < 0 or atol < 0 or math.isnan(rtol) or math.isnan(atol):
        from ..errors import AssayError

        raise AssayError(f"rtol and atol must be >= 0, got rtol={rtol}, atol={atol}")
    store_b = store_b or store_a
    digest_a, raw_a = store_a.manifest_bytes(ref_a)
    digest_b, raw_b = store_b.manifest_bytes(ref_b if ref_b is not None else ref_a)
    report = DiffReport(digest_a, digest_b, rtol, atol, names=names)
    if digest_a == digest_b:   # same manifest bytes, and so the same sidecar bytes
        return report
    a, b = json.loads(raw_a), json.loads(raw_b)
    for key in COMPARED:
        report.findings += diff_values(a.get(key), b.get(key), key, rtol=rtol, atol=atol)
    art_a, art_b = store_a.read_artifact(digest_a), store_b.read_artifact(digest_b)
    report.findings += _diff_sidecars(store_a, art_a, store_b, art_b, rtol, atol)
    for key in CONTEXT:
        report.context += diff_values(a.get(key), b.get(key), key)
    report.numerics = _numeric_differences(store_a, digest_a, store_b, digest_b, names)
    return report


def _numeric_differences(store_a: ArtifactStore, digest_a: str, store_b: ArtifactStore,
                         digest_b: str, names: tuple[str, str]) -> list[str]:
    from ..pipeline.numerics import environment_differences
    from ..pipeline.stages import action_record_for

    records = [action_record_for(store, digest)
               for store, digest in ((store_a, digest_a), (store_b, digest_b))]
    envs = [r.get("numerics") if isinstance(r, dict) else None for r in records]
    return environment_differences(envs[0], envs[1], names)
