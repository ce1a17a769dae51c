"""assay ls / show / cat / stats: looking at what a study holds."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

from ..errors import ArtifactIntegrityError, ArtifactStoreError
from ..tools.inventory import load_refs, store_stats
from ._common import (
    add_command,
    add_json,
    UsageError,
    human_bytes,
    open_store,
    print_json,
    print_table,
    progress_for,
    resolve,
    results_dir,
    short,
    store_root,
)

_TEXT_TYPES = ("text/", "application/json")


def run_ls(args: Any) -> int:
    results = results_dir(args, must_exist=True)
    rows = []
    for entry in load_refs(results):
        ident = entry.identity
        if args.artifact_type and ident.get("artifact_type") != args.artifact_type:
            continue
        if args.analysis and ident.get("analysis") != args.analysis:
            continue
        if args.condition and ident.get("condition") != args.condition:
            continue
        rows.append({"ref": entry.name, "type": ident.get("artifact_type"),
                     "analysis": ident.get("analysis"), "condition": ident.get("condition"),
                     "replicate": ident.get("replicate"), "digest": entry.digest,
                     "problem": entry.problem})
    if args.json:
        print_json(rows)
        return 0
    if not rows:
        print("(no refs)", file=sys.stderr)
        return 0
    columns = ["ref", "type", "analysis", "condition", "replicate", "digest"]
    shown = [{**r, "digest": short(r["digest"])} for r in rows]
    if any(r["problem"] for r in rows):
        columns.append("problem")
    print_table(shown, columns)
    return 1 if any(r["problem"] for r in rows) else 0


def run_show(args: Any) -> int:
    root, results = store_root(args), results_dir(args)
    digest, entry = resolve(args.target, root, results)
    store = open_store(args)
    _, data = store.manifest_bytes(digest)   # hashed: the bytes match the digest
    try:
        manifest = json.loads(data)
    except ValueError:
        raise ArtifactStoreError(f"{digest} is not an artifact manifest (a sidecar or other "
                                 "object); `assay show` prints manifests") from None
    if not isinstance(manifest, dict) or "artifact_type" not in manifest:
        raise ArtifactStoreError(f"{digest} is not an artifact manifest")
    if args.json:
        print_json({"digest": digest, "ref": entry.name if entry else None,
                    "manifest": manifest})
        return 0
    print(f"# {digest}" + (f"  ({entry.name})" if entry else ""))
    print(json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False))
    return 0


def run_cat(args: Any) -> int:
    root, results = store_root(args), results_dir(args)
    digest, _ = resolve(args.target, root, results)
    store = open_store(args)
    artifact = store.read_artifact(digest)
    matches = [s for s in artifact.sidecars if s.path == args.sidecar]
    if not matches:
        have = ", ".join(s.path for s in artifact.sidecars) or "none"
        raise UsageError(f"{artifact.artifact_type} artifact {short(digest)} has no sidecar "
                         f"{args.sidecar!r} (it has: {have})")
    ref = matches[0]
    if args.output in (None, "-"):
        if args.output is None and sys.stdout.isatty() and not ref.media_type.startswith(
                _TEXT_TYPES):
            raise UsageError(f"{ref.path} is binary ({ref.media_type}); use -o FILE, or "
                             "-o - to write it to the terminal anyway")
        path = store.validate_sidecar(ref, verify="full")  # hash first, then hand out
        out = sys.stdout.buffer
        with open(path, "rb") as handle:
            while chunk := handle.read(1 << 20):
                out.write(chunk)
        out.flush()
        return 0
    _copy_verified(store.objects.path_for(ref.sha256), ref.sha256, ref.size_bytes,
                   Path(args.output), what=f"artifact {digest} sidecar {ref.path!r}")
    print(f"wrote {args.output} ({human_bytes(ref.size_bytes)}, sha256:{ref.sha256})",
          file=sys.stderr)
    return 0


def _copy_verified(source: Path, sha256: str, size: int, target: Path, *, what: str) -> None:
    """Copy while hashing; the target appears only if every byte matched."""
    from ..store.atomic import atomic_file

    digest, copied = hashlib.sha256(), 0
    try:
        with open(source, "rb") as src, atomic_file(target) as dst:
            while chunk := src.read(1 << 20):
                digest.update(chunk)
                dst.write(chunk)
                copied += len(chunk)
            if digest.hexdigest() != sha256 or copied != size:
                raise ArtifactIntegrityError(
                    f"{what}: object sha256:{sha256} is damaged (its {copied} bytes hash to "
                    f"sha256:{digest.hexdigest()}); run `assay verify --repair`")
    except FileNotFoundError as exc:
        if Path(exc.filename or "") == source:
            raise ArtifactIntegrityError(f"{what}: object sha256:{sha256} is missing; run "
                                         "`assay verify --repair`") from None
        raise


def run_stats(args: Any) -> int:
    progress = progress_for(args)
    try:
        stats = store_stats(store_root(args), results_dir(args), progress=progress,
                            rescan=args.rescan)
    finally:
        progress.close()
    if stats["note"]:
        print(f"assay stats: note: {stats['note']}", file=sys.stderr)
    if args.json:
        print_json(stats)
        return 0
    by_type = ", ".join(f"{n} {t}" for t, n in stats["artifacts_by_type"].items()) or "none"
    lines = [
        ("objects", f"{stats['objects']} ({human_bytes(stats['bytes'])})"),
        ("artifacts", f"{stats['artifacts']} ({by_type})"),
        ("refs", f"{stats['refs']}" + (f" ({stats['broken_refs']} broken)"
                                       if stats["broken_refs"] else "")),
        ("action records", str(stats["action_records"])),
        ("reachable from refs", f"{stats['live_objects']} objects "
                                f"({human_bytes(stats['live_bytes'])})"),
        ("unreferenced", f"{stats['unreferenced_objects']} objects "
                         f"({human_bytes(stats['unreferenced_bytes'])}; `assay gc` "
                         "reclaims those past the grace period)"),
        ("deduplication", f"{stats['dedup_ratio']:.2f}x ({human_bytes(stats['logical_bytes'])}"
                          f" named by artifacts, {human_bytes(stats['physical_bytes'])} "
                          "stored)"),
    ]
    width = max(len(k) for k, _ in lines)
    for key, value in lines:
        print(f"{key.ljust(width)}  {value}")
    return 0


# Order of this group in `assay --help`.
HELP_ORDER = 10


def register(sub: Any) -> None:
    """Add this module's subcommands to the `assay` parser."""
    p = add_command(sub, "ls", "list the refs under results/ (one per artifact the workflow made)",
                run_ls)
    p.add_argument("--type", dest="artifact_type",
                   choices=["run", "replicate", "condition", "comparison"])
    p.add_argument("--analysis")
    p.add_argument("--condition")
    add_json(p)

    p = add_command(sub, "show", "print an artifact's manifest", run_show)
    p.add_argument("target", metavar="REF|DIGEST",
                   help="ref file, path under results/, or digest (a unique prefix of 6+ hex)")
    add_json(p)

    p = add_command(sub, "cat", "write a sidecar's verified bytes to stdout or a file",
                run_cat)
    p.add_argument("target", metavar="REF|DIGEST")
    p.add_argument("sidecar", metavar="SIDECAR_PATH", help="e.g. sidecars/profile.npz")
    p.add_argument("-o", "--output", metavar="FILE", help="write here instead of stdout")

    p = add_command(sub, "stats", "objects, bytes, artifacts by type, deduplication ratio",
                run_stats)
    p.add_argument("--rescan", action="store_true",
                   help="list and read objects/ instead of reading the object index, and "
                        "rebuild the index from that scan")
    add_json(p)
