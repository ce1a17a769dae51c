"""assay reproduce / config validate: provenance and configuration."""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from ._common import add_command, add_json, add_tolerance, open_store, print_json, resolve, results_dir, store_root


def run_reproduce(args: Any) -> int:
    from ..tools.diffing import diff_artifacts
    from ..pipeline.stages import recompute
    from ..store.artifact_store import ArtifactStore

    root, results = store_root(args), results_dir(args)
    digest, entry = resolve(args.target, root, results)
    store = open_store(args)
    original = store.read_artifact(digest)   # fails early, naming it, if it is not there
    code = recorded_code(original.provenance)
    if code is not None and not args.run_recorded_code:
        from ..errors import AssayError

        raise AssayError(
            f"reproducing {args.target} runs {code}, as its provenance records it (which a "
            "bundle or another store may have written). assay runs code named by a "
            "provenance only when you ask: read it, then `assay reproduce "
            f"{args.target} --run-recorded-code`")
    numerics = original.provenance.get("numerics")
    if isinstance(numerics, dict) and numerics.get("portable"):
        from ..pipeline.numerics import apply_portable

        apply_portable()   # before the recomputation loads numpy; execute() checks it held
    if args.scratch:
        Path(args.scratch).mkdir(parents=True, exist_ok=True)
    scratch_dir = Path(tempfile.mkdtemp(prefix="assay-reproduce-", dir=args.scratch))
    try:
        with ArtifactStore(scratch_dir) as scratch:
            new_digest = recompute(store, digest, scratch)
            # Read while the scratch store exists: how much, not only whether, it differs.
            report = diff_artifacts(store, digest, scratch, new_digest, rtol=args.rtol,
                                    atol=args.atol, names=("recorded", "recomputed"))
    finally:
        if not args.keep:
            shutil.rmtree(scratch_dir, ignore_errors=True)
    same = new_digest == digest
    if args.json:
        print_json({"digest": digest, "reproduced": new_digest, "match": same,
                    "equal_within_tolerance": report.equal, "differences": report.lines(),
                    "diff": report.to_dict(),
                    "scratch": str(scratch_dir) if args.keep else None})
    else:
        name = entry.name if entry else f"{original.artifact_type} artifact"
        if same:
            print(f"reproduced {name}: {digest} (identical, sidecars included)")
        else:
            verdict = "EQUAL WITHIN TOLERANCE" if report.equal else "DIFFERS"
            print(f"{verdict} {name}: recorded {digest}, recomputed {new_digest}")
            for line in report.lines():
                print(f"  {line}")
            print(f"  {report.summary()}")
        if args.keep:
            print(f"scratch store kept at {scratch_dir}", file=sys.stderr)
    return 0 if report.equal else 1


def recorded_code(provenance: dict[str, Any]) -> str | None:
    """What code, beyond assay's own plugins, recomputing an artifact would run."""
    plugin = provenance.get("plugin")
    settings = provenance.get("settings") if isinstance(provenance.get("settings"), dict) else {}
    if plugin == "shell":
        return f"the shell command {settings.get('command')!r}"
    if plugin == "python":
        return f"the Python function {settings.get('callable')!r}"
    if isinstance(plugin, str) and ":" in plugin:
        return f"the plugin {plugin!r} (code imported from the study)"
    return None


def run_config(args: Any) -> int:
    from ..pipeline.config import load_config
    from ..errors import ConfigError

    path = Path(args.file)
    if not path.is_file():
        raise ConfigError(f"no config file at {path}")
    study = load_config(path)
    from ..pipeline.study_settings import check_runner_code

    check_runner_code(study)   # from here, the study directory, as snakemake would
    from ..pipeline.preflight import missing_import_files

    missing = missing_import_files(study)   # paths from here, as snakemake takes them
    warnings = list(study.warnings) + ([missing] if missing else [])
    summary = {"path": str(path), "ok": True,
               "conditions": sorted(getattr(study, "conditions", {}) or {}),
               "replicates": len(getattr(study, "replicates", []) or []),
               "analyses": sorted(getattr(study, "analyses", {}) or {}),
               "warnings": warnings}
    if args.json:
        print_json(summary)
    else:
        for warning in warnings:   # unchecked settings, files not yet there to import
            print(f"warning: {warning}", file=sys.stderr)
        print(f"{path}: ok ({len(summary['conditions'])} conditions x "
              f"{summary['replicates']} replicates, analyses: "
              f"{', '.join(summary['analyses']) or 'none'})")
    return 0


# Order of this group in `assay --help`.
HELP_ORDER = 50


def register(sub: Any) -> None:
    """Add this module's subcommands to the `assay` parser."""
    p = add_command(sub, "reproduce", "recompute an artifact from its provenance in a scratch "
                    "store and compare digests (and, if they differ, by how much); exit 1 if "
                    "it differs beyond --rtol/--atol", run_reproduce)
    p.add_argument("target", metavar="REF|DIGEST")
    p.add_argument("--scratch", metavar="DIR", help="where to make the scratch store")
    p.add_argument("--keep", action="store_true", help="keep the scratch store")
    p.add_argument("--run-recorded-code", action="store_true",
                   help="allow running the shell command, Python function or study plugin "
                        "that the artifact's provenance names (refused otherwise)")
    add_tolerance(p)
    add_json(p)

    p = add_command(sub, "config", "study configuration", run_config)
    config_sub = p.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    v = config_sub.add_parser("validate", help="validate a config file (default "
                                               "config/config.yaml)")
    v.add_argument("file", nargs="?", default="config/config.yaml")
    add_json(v)
