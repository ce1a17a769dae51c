"""The source text of one plugin: its definition plus the module-level code it reaches.

A module may hold several plugins (runners.py holds four runners); editing one must not
rerun the jobs of the others. Names are followed statically through the module's top
level (functions, classes, assignments, imports), so a helper a plugin calls is part of
its code, and a helper only another plugin calls is not. Other modules are not followed:
a plugin names those in ``code_dependencies``.

Where a module sits is not code: ``placeless`` reads ``from ..store.hashing import x`` as
``from .hashing import x`` (and ``assay.pipeline.keys`` as ``assay.keys``), so moving a module between assay's layer packages (issue 24)
reruns nothing, as renaming one does not (``plugins.modules_digest`` leaves names out).
"""

from __future__ import annotations

import ast
import re

from ..errors import PluginError

LAYER_PACKAGES = ("store", "pipeline", "tools")
_RELATIVE_IMPORT = re.compile(r"\bfrom[ \t]+(\.+)([\w.]*)[ \t]+import\b")


def _placeless_import(match: re.Match[str]) -> str:
    parts = match.group(2).split(".") if match.group(2) else []
    if len(parts) > 1 and parts[0] in LAYER_PACKAGES:
        parts = parts[1:]
    return f"from .{'.'.join(parts)} import"


_ABSOLUTE_NAME = re.compile(r"\bassay\.(store|pipeline|tools)\.([a-z_][a-z0-9_]*)\b")


def _placeless_name(match: re.Match[str]) -> str:
    if match.group(1) == "store" and match.group(2) == "artifact_store":
        return "assay.store"
    return f"assay.{match.group(2)}"


def placeless(source: str) -> str:
    """``source`` with each relative import's package path dropped: ``from ..store.refs
    import`` and ``from .refs import`` read the same, ``from ..store import`` stays ``from
    .store import`` (the store's facade, as before the packages). Identity on a module
    whose relative imports are all ``from .name import`` (every module before the move), so
    no key changed. Dotted names read the same way (``assay.pipeline.openmm_files`` in a
    plugin's ``code_dependencies`` or a docstring is ``assay.openmm_files``)."""
    return _ABSOLUTE_NAME.sub(_placeless_name, _RELATIVE_IMPORT.sub(_placeless_import, source))


def _bound(node: ast.stmt) -> set[str]:
    """Names a top-level statement binds (for if/try/with blocks: those inside them)."""
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return {node.name}
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        return {(a.asname or a.name).split(".")[0] for a in node.names}
    if isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        return {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
    if isinstance(node, (ast.If, ast.Try, ast.With)):
        return {name for child in ast.iter_child_nodes(node) if isinstance(child, ast.stmt)
                for name in _bound(child)}
    return set()


def _used(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


def _is_main_guard(node: ast.stmt) -> bool:
    """``if __name__ == "__main__":`` never runs on import, so never computes a result."""
    return (isinstance(node, ast.If) and isinstance(node.test, ast.Compare)
            and isinstance(node.test.left, ast.Name) and node.test.left.id == "__name__")


def _is_docstring(index: int, node: ast.stmt) -> bool:
    return (index == 0 and isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str))


def own_source(module_source: str, name: str) -> str:
    """The statements of ``module_source`` that define ``name`` and what it uses, in file
    order, with their text as written (comments inside them count: a comment added to a
    plugin reruns it, as Snakemake would for a script)."""
    tree = ast.parse(module_source)
    body = tree.body
    binders: dict[str, list[int]] = {}
    for index, node in enumerate(body):
        for bound in _bound(node):
            binders.setdefault(bound, []).append(index)
    if name not in binders:
        raise PluginError(f"cannot find the definition of {name!r} at its module's top "
                          "level; define a plugin at module level (not inside a function)")
    # statements that bind nothing still run on import (configuration calls): always kept
    unbound = [i for i, node in enumerate(body)
               if not _bound(node) and not _is_docstring(i, node) and not _is_main_guard(node)]
    keep: set[int] = set()
    imported: set[tuple[int, str]] = set()   # an import line may serve several plugins
    pending = [(i, name) for i in binders[name]] + [(i, "") for i in unbound]
    while pending:
        index, wanted = pending.pop()
        node = body[index]
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            imported.add((index, wanted))
            continue
        if index not in keep:
            keep.add(index)
            for used in _used(node):
                pending.extend((i, used) for i in binders.get(used, []))
    lines = module_source.splitlines(keepends=True)
    parts = []
    for index in sorted(keep | {i for i, _ in imported}):
        node = body[index]
        if index not in keep:   # an import: only the names this plugin uses
            parts.append(_import_text(node, {n for i, n in imported if i == index}))
            continue
        first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
        parts.append("".join(lines[first - 1:node.end_lineno]))
    return "\n".join(parts)


def _import_text(node: ast.Import | ast.ImportFrom, names: set[str]) -> str:
    aliases = [a for a in node.names if (a.asname or a.name).split(".")[0] in names]
    return ast.unparse(type(node)(**{**{f: getattr(node, f) for f in node._fields},
                                      "names": aliases}))
