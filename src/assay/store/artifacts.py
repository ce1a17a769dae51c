"""The artifact envelope: what a manifest holds, validated when it is built or read."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ..errors import ArtifactSchemaError, PayloadError, SidecarPathError
from .hashing import canonical_json, is_digest, is_sha256_hex
from .payload import strict_json_payload
from .sidecar_paths import check_sidecar_path

SCHEMA_VERSION = 1
_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,127}\Z")   # not "$": it allows "x\n"
_ENVELOPE = ("schema_version", "artifact_type", "analysis_name", "condition_label",
             "replicate", "replicates", "payload", "sidecars", "inputs", "provenance",
             "metadata", "warnings")


def check_label(kind: str, value: object) -> str:
    """Names that become path components (analysis, condition) must be plain words."""
    if not isinstance(value, str) or not _LABEL.fullmatch(value):
        raise ArtifactSchemaError(
            f"{kind} {value!r} must start with a letter or digit and contain only "
            "letters, digits, '_', '.', '+' or '-' (at most 128 characters)")
    return value


@dataclass(frozen=True)
class Sidecar:
    """A registered file of an artifact: where it sits in the artifact, and its exact bytes.

    (Called ``ArtifactSidecarRef`` in the seed API, still importable under that name; here
    a "ref" is only ever the small results/ file that names an artifact.)
    """

    path: str
    sha256: str
    size_bytes: int
    media_type: str = "application/octet-stream"
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_sidecar_path(self.path)
        if not is_sha256_hex(self.sha256):
            raise ArtifactSchemaError(
                f"sidecar {self.path!r}: sha256 must be 64 lowercase hex characters, "
                f"got {self.sha256!r}")
        if (not isinstance(self.size_bytes, int) or isinstance(self.size_bytes, bool)
                or self.size_bytes < 0):
            raise ArtifactSchemaError(
                f"sidecar {self.path!r}: size_bytes must be a non-negative int, "
                f"got {self.size_bytes!r}")
        if not isinstance(self.media_type, str) or not self.media_type:
            raise ArtifactSchemaError(f"sidecar {self.path!r}: media_type must be a string")
        object.__setattr__(self, "media_type", strict_json_payload(   # valid UTF-8 text
            self.media_type, analysis_name=f"sidecar {self.path} media_type"))
        object.__setattr__(self, "metadata", strict_json_payload(
            self.metadata, analysis_name=f"sidecar {self.path}"))
        if not isinstance(self.metadata, dict):
            raise ArtifactSchemaError(f"sidecar {self.path!r}: metadata must be a mapping")

    @property
    def kind(self) -> str | None:
        return self.metadata.get("kind")

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "sha256": self.sha256, "size_bytes": self.size_bytes,
                "media_type": self.media_type, "metadata": self.metadata}

    @classmethod
    def from_dict(cls, data: Any) -> "Sidecar":
        if not isinstance(data, dict):
            raise ArtifactSchemaError(f"sidecar entry must be an object, got {data!r:.80}")
        missing = {"path", "sha256", "size_bytes"} - data.keys()
        if missing:
            raise ArtifactSchemaError(f"sidecar entry lacks {sorted(missing)}")
        return cls(path=data["path"], sha256=data["sha256"], size_bytes=data["size_bytes"],
                   media_type=data.get("media_type", "application/octet-stream"),
                   metadata=data.get("metadata", {}))


def _inputs(value: Any, owner: str) -> list[dict[str, str]]:
    out = []
    for item in value or []:
        if isinstance(item, str):
            item = {"role": "input", "digest": item}
        if not isinstance(item, dict) or not is_digest(item.get("digest")):
            raise ArtifactSchemaError(
                f"{owner}: each input must be 'sha256:<hex>' or {{'role', 'digest'}}, "
                f"got {item!r:.120}")
        role = item.get("role", "input")
        if not isinstance(role, str) or not role:
            raise ArtifactSchemaError(f"{owner}: input role must be a non-empty string")
        role = strict_json_payload(role, analysis_name=f"{owner} input role")
        out.append({"role": role, "digest": item["digest"]})
    return out


@dataclass
class Artifact:
    """Envelope shared by every artifact type; subclasses fix ``artifact_type``."""

    artifact_type: ClassVar[str] = ""

    analysis_name: str
    condition_label: str | None = None
    replicate: int | None = None
    payload: dict[str, Any] = field(default_factory=dict)
    sidecars: list[Sidecar] = field(default_factory=list)
    inputs: list[dict[str, str]] = field(default_factory=list)
    provenance: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    replicates: list[int] | None = None
    schema_version: int = SCHEMA_VERSION
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        owner = f"{self.artifact_type} artifact"
        check_label("analysis_name", self.analysis_name)
        owner = f"{self.artifact_type} artifact {self.analysis_name!r}"
        if self.condition_label is not None:
            check_label("condition_label", self.condition_label)
        if self.replicate is not None and (
                not isinstance(self.replicate, int) or isinstance(self.replicate, bool)
                or self.replicate < 1):
            raise ArtifactSchemaError(f"{owner}: replicate must be an int >= 1, "
                                      f"got {self.replicate!r}")
        if self.replicates is not None:
            if not isinstance(self.replicates, (list, tuple)) or not all(
                    isinstance(r, int) and not isinstance(r, bool) and r >= 1
                    for r in self.replicates):
                raise ArtifactSchemaError(f"{owner}: replicates must be ints >= 1")
            self.replicates = list(self.replicates)
        self._check_identity(owner)
        self.payload = strict_json_payload(self.payload, analysis_name=self.analysis_name)
        self.provenance = strict_json_payload(self.provenance,
                                              analysis_name=f"{self.analysis_name} provenance")
        self.metadata = strict_json_payload(self.metadata,
                                            analysis_name=f"{self.analysis_name} metadata")
        self.extra = strict_json_payload(self.extra, analysis_name=f"{self.analysis_name} extra")
        for name in ("payload", "provenance", "metadata"):
            if not isinstance(getattr(self, name), dict):
                raise ArtifactSchemaError(f"{owner}: {name} must be a mapping")
        if not isinstance(self.warnings, list) or not all(isinstance(w, str) for w in self.warnings):
            raise ArtifactSchemaError(f"{owner}: warnings must be a list of strings")
        self.warnings = strict_json_payload(list(self.warnings),
                                            analysis_name=f"{self.analysis_name} warnings",
                                            max_array_items=1 << 20)
        self.sidecars = [s if isinstance(s, Sidecar) else Sidecar.from_dict(s)
                         for s in self.sidecars]
        paths = [s.path for s in self.sidecars]
        if len(set(paths)) != len(paths):
            raise ArtifactSchemaError(f"{owner}: duplicate sidecar paths {sorted(paths)}")
        self.inputs = _inputs(self.inputs, owner)
        if (not isinstance(self.schema_version, int) or isinstance(self.schema_version, bool)
                or self.schema_version < 1):
            raise ArtifactSchemaError(f"{owner}: schema_version must be an int >= 1")
        if self.schema_version > SCHEMA_VERSION:
            raise ArtifactSchemaError(
                f"{owner}: manifest schema_version {self.schema_version} is newer than this "
                f"assay understands ({SCHEMA_VERSION}); upgrade assay to read it")
        clash = set(self.extra) & set(_ENVELOPE)
        if clash:
            raise ArtifactSchemaError(f"{owner}: extra fields shadow envelope fields {sorted(clash)}")

    def _check_identity(self, owner: str) -> None:
        pass

    def sidecar(self, *, kind: str | None = None, path: str | None = None) -> Sidecar:
        """The one sidecar with this metadata kind or path; refuses zero or several."""
        matches = [s for s in self.sidecars
                   if (kind is None or s.kind == kind) and (path is None or s.path == path)]
        if len(matches) != 1:
            raise ArtifactSchemaError(
                f"expected one sidecar with kind={kind!r} path={path!r} in "
                f"{self.artifact_type} artifact {self.analysis_name!r}, found {len(matches)}")
        return matches[0]

    @property
    def metrics(self) -> dict[str, float]:
        from .payload import METRICS
        return dict(self.payload.get(METRICS, {}))

    def to_manifest(self) -> dict[str, Any]:
        manifest: dict[str, Any] = dict(self.extra)
        manifest.update({
            "schema_version": self.schema_version,
            "artifact_type": self.artifact_type,
            "analysis_name": self.analysis_name,
            "condition_label": self.condition_label,
            "replicate": self.replicate,
            "payload": self.payload,
            "sidecars": [s.to_dict() for s in self.sidecars],
            "inputs": self.inputs,
            "provenance": self.provenance,
            "metadata": self.metadata,
            "warnings": self.warnings,
        })
        if self.replicates is not None:
            manifest["replicates"] = self.replicates
        return manifest

    def manifest_bytes(self) -> bytes:
        return canonical_json(self.to_manifest())


@dataclass
class RunArtifact(Artifact):
    """Raw output of one condition x replicate run; ``analysis_name`` names the runner."""

    artifact_type: ClassVar[str] = "run"

    @property
    def runner_name(self) -> str:
        """The runner that made it (stored in the envelope's ``analysis_name`` field)."""
        return self.analysis_name

    def _check_identity(self, owner: str) -> None:
        if self.condition_label is None or self.replicate is None:
            raise ArtifactSchemaError(f"{owner}: a run needs condition_label and replicate")


@dataclass
class ReplicateArtifact(Artifact):
    """One analysis of one replicate."""

    artifact_type: ClassVar[str] = "replicate"

    def _check_identity(self, owner: str) -> None:
        if self.condition_label is None or self.replicate is None:
            raise ArtifactSchemaError(
                f"{owner}: a replicate artifact needs condition_label and replicate")


@dataclass
class ConditionArtifact(Artifact):
    """One analysis aggregated over the replicates of one condition."""

    artifact_type: ClassVar[str] = "condition"

    def _check_identity(self, owner: str) -> None:
        if self.condition_label is None:
            raise ArtifactSchemaError(f"{owner}: a condition artifact needs condition_label")
        if self.replicate is not None:
            raise ArtifactSchemaError(
                f"{owner}: a condition artifact has no single replicate; use replicates=[...]")


@dataclass
class ComparisonArtifact(Artifact):
    """One analysis compared across conditions (each against the control)."""

    artifact_type: ClassVar[str] = "comparison"

    def _check_identity(self, owner: str) -> None:
        if self.replicate is not None:
            raise ArtifactSchemaError(f"{owner}: a comparison artifact has no replicate")


@dataclass
class DecisionArtifact(Artifact):
    """One look of an adaptive study (assay.pipeline.adaptive): its payload is the decision (look,
    n, rule, the numbers compared, stop, why); its inputs the artifacts it judged."""

    artifact_type: ClassVar[str] = "decision"

    def _check_identity(self, owner: str) -> None:
        if self.condition_label is not None or self.replicate is not None:
            raise ArtifactSchemaError(f"{owner}: a decision has no condition or replicate")


ARTIFACT_CLASSES: dict[str, type[Artifact]] = {
    cls.artifact_type: cls
    for cls in (RunArtifact, ReplicateArtifact, ConditionArtifact, ComparisonArtifact,
                DecisionArtifact)
}


def artifact_from_manifest(manifest: Any, *, where: str = "manifest") -> Artifact:
    """Rebuild an artifact from a decoded manifest; unknown fields are kept in ``extra``."""
    if not isinstance(manifest, dict):
        raise ArtifactSchemaError(f"{where}: a manifest must be a JSON object")
    version = manifest.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise ArtifactSchemaError(f"{where}: schema_version missing or not an int")
    if version > SCHEMA_VERSION:
        raise ArtifactSchemaError(
            f"{where}: manifest schema_version {version} is newer than this assay "
            f"understands ({SCHEMA_VERSION}); upgrade assay to read it")
    kind = manifest.get("artifact_type")
    cls = ARTIFACT_CLASSES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise ArtifactSchemaError(f"{where}: unknown artifact_type {kind!r}; expected one of "
                                  f"{sorted(ARTIFACT_CLASSES)}")
    for key, expected in (("payload", dict), ("provenance", dict), ("metadata", dict),
                          ("sidecars", list), ("inputs", list), ("warnings", list)):
        if key in manifest and not isinstance(manifest[key], expected):
            raise ArtifactSchemaError(f"{where}: {key} must be a {expected.__name__}")
    extra = {k: v for k, v in manifest.items() if k not in _ENVELOPE}
    try:
        return cls(
            analysis_name=manifest.get("analysis_name"),  # type: ignore[arg-type]
            condition_label=manifest.get("condition_label"),
            replicate=manifest.get("replicate"),
            replicates=manifest.get("replicates"),
            payload=manifest.get("payload", {}),
            sidecars=manifest.get("sidecars", []),
            inputs=manifest.get("inputs", []),
            provenance=manifest.get("provenance", {}),
            metadata=manifest.get("metadata", {}),
            warnings=manifest.get("warnings", []),
            schema_version=version,
            extra=extra,
        )
    except PayloadError as exc:
        raise ArtifactSchemaError(f"{where}: {exc}") from exc
    except (ArtifactSchemaError, SidecarPathError) as exc:
        raise ArtifactSchemaError(f"{where}: {exc}") from exc


# The seed API's name for a sidecar entry.
ArtifactSidecarRef = Sidecar
