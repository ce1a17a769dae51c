"""assay reproduce / config validate: provenance and configuration."""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from ._common import open_store, print_json, resolve, results_dir, store_root


def run_reproduce(args: Any) -> int:
    from ..diffing import diff_artifacts
    from ..stages import recompute
    from ..store import ArtifactStore

    root, results = store_root(args), results_dir(args)
    digest, entry = resolve(args.target, root, results)
    store = open_store(args)
    original = store.read_artifact(digest)   # fails early, naming it, if it is not there
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


def run_config(args: Any) -> int:
    from ..config import load_config
    from ..errors import ConfigError

    path = Path(args.file)
    if not path.is_file():
        raise ConfigError(f"no config file at {path}")
    study = load_config(path)
    summary = {"path": str(path), "ok": True,
               "conditions": sorted(getattr(study, "conditions", {}) or {}),
               "replicates": len(getattr(study, "replicates", []) or []),
               "analyses": sorted(getattr(study, "analyses", {}) or {})}
    if args.json:
        print_json(summary)
    else:
        print(f"{path}: ok ({len(summary['conditions'])} conditions x "
              f"{summary['replicates']} replicates, analyses: "
              f"{', '.join(summary['analyses']) or 'none'})")
    return 0
