"""A ref, an action record or a job's input must be what it claims: one place for the checks.

Digests prove bytes, not meaning. A ref at ``runs/free/1.json`` that names run
``strong/2``'s manifest (a forged bundle, ``--overwrite-refs``, a hand edit) or an action
record for ``free/1`` that is a link to ``strong/1``'s would hand one condition's run to
another's analysis, with every digest verifying. So whoever reads one checks it against
the identity it stands for:

* a ref against its place under ``results/`` (``ref_path_identity``) and its manifest;
* a job's inputs against the job: a collect of ``free/1`` reads run ``free/1``, an
  aggregate of ``gyration/free`` reads replicates of ``gyration`` and ``free``, ...;
* an action record against the key it was looked up by, and its artifact's provenance
  against the spec that made the key.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any

from ..errors import AssayError
from .layout import BY_REF_DIR, STAGE_LAYOUTS

IDENTITY_FIELDS = {"artifact_type": "artifact_type", "analysis": "analysis_name",
                   "condition": "condition_label", "replicate": "replicate"}


class IdentityMismatch(AssayError):
    """Bytes that verify but stand for something else than they claim."""


def ref_path_identity(relative: str) -> dict[str, Any] | None:
    """What a ref's place under results/ says it is: ``runs/free/1.json`` is run free/1."""
    parts = PurePosixPath(relative).parts
    if not parts or parts[0] not in BY_REF_DIR or not relative.endswith(".json"):
        return None
    layout = BY_REF_DIR[parts[0]]
    names = layout.identity_keys
    values = list(parts[1:])
    if len(values) != len(names):
        return None
    values[-1] = values[-1][: -len(".json")]
    identity: dict[str, Any] = {"artifact_type": layout.artifact_type}
    for name, value in zip(names, values):
        identity[name] = int(value) if name == "replicate" and value.isdigit() else value
    return identity


def manifest_identity(manifest: dict[str, Any]) -> dict[str, Any]:
    """The same names, read from a manifest (a run's analysis_name is its runner: omitted)."""
    out = {name: manifest.get(field) for name, field in IDENTITY_FIELDS.items()}
    if out["artifact_type"] == "run":
        out.pop("analysis")
    return {k: v for k, v in out.items() if v is not None}


def mismatch(expected: dict[str, Any], actual: dict[str, Any]) -> str | None:
    """How ``actual`` differs from ``expected`` on the names ``expected`` gives, or None."""
    wrong = [f"{name} {actual.get(name)!r} (expected {value!r})"
             for name, value in expected.items() if actual.get(name) != value]
    return ", ".join(wrong) if wrong else None


def describe(identity: dict[str, Any]) -> str:
    where = "/".join(str(identity[k]) for k in ("analysis", "condition", "replicate")
                     if identity.get(k) is not None)
    return f"{identity.get('artifact_type', 'artifact')} {where}".strip()


def expected_inputs(spec: dict[str, Any]) -> dict[str, Any]:
    """What every input artifact of this job must be (by the job's own spec)."""
    stage = spec.get("stage")
    role = STAGE_LAYOUTS[stage].input_role if stage in STAGE_LAYOUTS else (
        "comparison" if stage == "plot" else None)
    if role is None:
        return {}
    expected: dict[str, Any] = {"artifact_type": role}
    if role != "run" and spec.get("analysis") is not None:
        expected["analysis"] = spec["analysis"]
    if stage == "collect":
        expected["condition"], expected["replicate"] = spec.get("condition"), spec.get("replicate")
    elif stage == "aggregate":
        expected["condition"] = spec.get("condition")
    return {k: v for k, v in expected.items() if v is not None}


def check_inputs(spec: dict[str, Any], inputs: list[tuple[str, dict[str, Any]]]) -> None:
    """Raise IdentityMismatch if an input (digest, manifest) is not what this job reads."""
    expected = expected_inputs(spec)
    for digest, manifest in inputs:
        problem = mismatch(expected, manifest_identity(manifest))
        if problem:
            raise IdentityMismatch(
                f"{spec.get('stage')} job for {describe({**expected, 'artifact_type': ''})}"
                f" was given {digest}, which is {describe(manifest_identity(manifest))}: "
                f"{problem}. A ref names the wrong artifact (a forged or mismatched bundle, "
                "`assay import --overwrite-refs`, an edited ref); nothing was computed. "
                "`assay verify` lists such refs and `assay verify --repair` removes them; "
                "then rerun the workflow.")


def check_provenance(spec: dict[str, Any], input_digests: list[str],
                     manifest: dict[str, Any]) -> str | None:
    """Whether an artifact found by an action key was made by this spec from these inputs
    (the key's own content, minus ``sources``, which never enters a manifest)."""
    provenance = manifest.get("provenance") or {}
    for name, value in spec.items():
        if name != "sources" and provenance.get(name) != value:
            return f"its provenance has {name}={provenance.get(name)!r}, the key {value!r}"
    recorded = sorted(item.get("digest") for item in manifest.get("inputs") or []
                      if isinstance(item, dict))
    if recorded != sorted(input_digests):
        return "its inputs are not the ones the key was made from"
    return None
