"""One exception hierarchy, so callers can catch everything assay raises with one clause."""

from __future__ import annotations


class AssayError(Exception):
    """Base of every error assay raises on purpose."""


class ArtifactStoreError(AssayError):
    """The store could not do what was asked (bad path, missing ref, wrong artifact type)."""


class ArtifactIntegrityError(ArtifactStoreError):
    """Stored bytes are missing or do not match their recorded size or digest."""


class ArtifactSchemaError(ArtifactStoreError):
    """A manifest or ref does not follow the schema this library understands."""


class SidecarPathError(ArtifactStoreError, ValueError):
    """A sidecar path is not a safe artifact-relative POSIX path."""


class BundleError(ArtifactStoreError):
    """A bundle was refused; the store and the results were left untouched."""


class PayloadError(AssayError, ValueError):
    """A value cannot be stored as strict JSON in a manifest."""


class ConfigError(AssayError, ValueError):
    """A study configuration is invalid."""


class PluginError(AssayError):
    """An analysis or runner plugin could not be found or misbehaved."""


class RunFailed(AssayError):
    """A run's command or engine failed; its work directory is kept for the next attempt."""


class RunInterrupted(RunFailed):
    """A run stopped on SIGTERM after writing its checkpoint; the next attempt resumes."""
