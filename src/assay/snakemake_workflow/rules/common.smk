# Helpers shared by the rules: everything comes from assay.workflow.WorkflowPlan.
import os

from assay.deploy import LIBRARY_DIR
from assay.workflow import WorkflowPlan

# Jobs run `python -m assay.jobs` with the very library this workflow was parsed with
# (with --use-conda the conda env holds only the dependencies): the directory holding the
# imported assay package goes first on the jobs' PYTHONPATH.
shell.prefix(f'export PYTHONPATH="{LIBRARY_DIR}${{{{PYTHONPATH:+:$PYTHONPATH}}}}"; ')

PLAN = WorkflowPlan(config)  # paths in the config are relative to the working directory
PLAN.check_cores(workflow.cores)  # a stage asking for more threads stops before any job
STORE = PLAN.store
RESULTS = PLAN.results
# Digest of assay's own stage code: a param of every stage rule, so upgrading or editing
# the framework reruns the jobs whose action keys it changes.
FRAMEWORK = PLAN.framework_digest


wildcard_constraints:
    condition=PLAN.condition_pattern,
    analysis=PLAN.analysis_pattern,
    replicate=r"[1-9][0-9]*",


# Inside a cluster job (Snakemake's remote mode) the job's rules run right in the job's
# allocation: otherwise the SLURM job step executor wraps every rule job in `srun` and a
# second `snakemake` start.
IN_CLUSTER_JOB = workflow.remote_exec
