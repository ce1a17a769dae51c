"""The `assay` subcommands, one module per group; `assay.cli` imports them on demand."""
