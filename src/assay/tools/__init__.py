"""Tools: what reads a study or a store once it exists.

Owns: the DuckDB catalog, verify and repair, gc and stats, bundles and RO-Crates, diffs of
two artifacts, ``assay status`` (staleness, ``--why``, leftover cluster jobs), scaffolding
(``assay init``), and the inventory that walks a study's refs and the closure they reach.

May import: ``assay.pipeline``, ``assay.store``, ``assay.errors``, ``assay.deploy``. Never
the command line (``assay.cli``, ``assay.commands``), which imports tools, not the reverse.
"""
