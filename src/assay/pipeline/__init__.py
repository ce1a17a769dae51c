"""The pipeline: from a study's config to its artifacts and figures.

Owns: config loading and validation, settings declarations, the study layout (results
folders, ref and key paths), the plan (``WorkflowPlan``: the jobs and their specs), action
keys and code scopes, the stages (run, collect, aggregate, compare, plot; their entry point
is ``python -m assay.jobs``, beside the command line), plugins and the built-in runners, statistics,
convergence diagnostics, adaptive replicates, plotting, and the SLURM executor watch.

May import: ``assay.store``, ``assay.errors``, ``assay.deploy``, the built-in plugins
(``assay.analyses``, ``assay.demo``) and the public API ``assay``. Never ``assay.tools`` or
the command line.
"""
