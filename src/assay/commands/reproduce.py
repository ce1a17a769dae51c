"""assay reproduce / config validate: provenance and configuration."""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from ._common import add_command, add_json, open_store, print_json, resolve, results_dir, short, store_root


def run_reproduce(args: Any) -> int:
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
            _, new_bytes = scratch.manifest_bytes(new_digest)
        _, old_bytes = store.manifest_bytes(digest)
        differences = diff_manifests(json.loads(old_bytes), json.loads(new_bytes))
    finally:
        if not args.keep:
            shutil.rmtree(scratch_dir, ignore_errors=True)
    same = new_digest == digest
    if args.json:
        print_json({"digest": digest, "reproduced": new_digest, "match": same,
                    "differences": differences,
                    "scratch": str(scratch_dir) if args.keep else None})
    else:
        name = entry.name if entry else f"{original.artifact_type} artifact"
        if same:
            print(f"reproduced {name}: {digest} (identical, sidecars included)")
        else:
            print(f"DIFFERS {name}: recorded {digest}, recomputed {new_digest}")
            for item in differences:
                print(f"  {item}")
        if args.keep:
            print(f"scratch store kept at {scratch_dir}", file=sys.stderr)
    return 0 if same else 1


def diff_manifests(old: Any, new: Any, where: str = "") -> list[str]:
    """Human-readable differences between two manifests; sidecars matched by path."""
    if where == "" and isinstance(old, dict) and isinstance(new, dict):
        out = []
        old_side = {s.get("path"): s for s in old.get("sidecars", []) if isinstance(s, dict)}
        new_side = {s.get("path"): s for s in new.get("sidecars", []) if isinstance(s, dict)}
        for path in sorted(set(old_side) | set(new_side), key=str):
            a, b = old_side.get(path), new_side.get(path)
            if a is None or b is None:
                out.append(f"sidecar {path}: {'only recomputed' if a is None else 'only recorded'}")
            elif a.get("sha256") != b.get("sha256"):
                out.append(f"sidecar {path}: sha256 {short(a.get('sha256'))} -> "
                           f"{short(b.get('sha256'))} ({a.get('size_bytes')} -> "
                           f"{b.get('size_bytes')} bytes)")
            elif a != b:
                out += diff_manifests(a, b, f"sidecar {path}")
        for key in sorted(set(old) | set(new)):
            if key != "sidecars":
                out += diff_manifests(old.get(key), new.get(key), key)
        return out
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in sorted(set(old) | set(new), key=str):
            out += diff_manifests(old.get(key), new.get(key), f"{where}.{key}")
        return out
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        out = []
        for i, (a, b) in enumerate(zip(old, new)):
            out += diff_manifests(a, b, f"{where}[{i}]")
        return out
    if old != new:
        return [f"{where}: {json.dumps(old)[:80]} -> {json.dumps(new)[:80]}"]
    return []


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


# Order of this group in `assay --help`.
HELP_ORDER = 50


def register(sub: Any) -> None:
    """Add this module's subcommands to the `assay` parser."""
    p = add_command(sub, "reproduce", "recompute an artifact from its provenance in a scratch store "
                             "and compare digests; exit 1 if anything differs",
                run_reproduce)
    p.add_argument("target", metavar="REF|DIGEST")
    p.add_argument("--scratch", metavar="DIR", help="where to make the scratch store")
    p.add_argument("--keep", action="store_true", help="keep the scratch store")
    add_json(p)

    p = add_command(sub, "config", "study configuration", run_config)
    config_sub = p.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    v = config_sub.add_parser("validate", help="validate a config file (default "
                                               "config/config.yaml)")
    v.add_argument("file", nargs="?", default="config/config.yaml")
    add_json(v)
