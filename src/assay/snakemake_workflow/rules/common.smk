# Helpers shared by the rules: everything comes from assay.pipeline.workflow.WorkflowPlan.
import os

from assay.deploy import LIBRARY_DIR
from assay.pipeline.layout import catalog_log_path, plot_log_path

# Jobs run `python -m assay.jobs` with the very library this workflow was parsed with
# (with --use-conda the conda env holds only the dependencies): the directory holding the
# imported assay package goes first on the jobs' PYTHONPATH.
shell.prefix(f'export PYTHONPATH="{LIBRARY_DIR}${{{{PYTHONPATH:+:$PYTHONPATH}}}}"; ')

# PLAN (assay.pipeline.workflow.WorkflowPlan) is made, and the config validated, in the Snakefile.
STORE = PLAN.store
RESULTS = PLAN.results
# Adaptive replicates: the aggregate and catalog inputs ask the looks (rules/look.smk).
PLAN.bind_checkpoints(checkpoints)
# Each stage rule's params hold its job spec: settings, inputs' identity and the digest of
# exactly the code that computes its bytes (assay.pipeline.keys), so Snakemake reruns what a code
# change affects and nothing else.


wildcard_constraints:
    condition=PLAN.condition_pattern,
    analysis=PLAN.analysis_pattern,
    replicate=r"[1-9][0-9]*",
    look=r"[1-9][0-9]*",


# Where jobs run on a cluster (profiles/slurm/README.md, "Where each rule runs"):
# * aggregate, compare and the plots are light local rules: they run on the submit host
#   unless the profile puts them in a group (a grouped rule always goes with its group);
# * inside a cluster job (Snakemake's remote mode) every rule is local, so that job's
#   snakemake runs its rules as plain processes in the job's allocation. Otherwise the SLURM
#   job-step executor wraps each of them in `srun` and a second snakemake start (~2.5 s per
#   rule job, for every member of a group job). Without that attribute (another Snakemake)
#   the rules take that slower path, with the same results.
# * except in a SLURM array task (`--slurm-array-jobs`): there the job-step executor picks
#   the task's own rule job from SLURM_ARRAY_TASK_ID; a local rule would skip it and every
#   task would run the array's first job (tests/slurm/NOTES.md, pitfall 19).
IN_CLUSTER_JOB = (getattr(workflow, "remote_exec", False)
                  and "SLURM_ARRAY_TASK_ID" not in os.environ)

# In the main snakemake: the SLURM executor keeps polling jobs through a failing status
# query and says why a cluster job failed in one line (assay.pipeline.slurm_watch; docs/hpc.md).
if not getattr(workflow, "remote_exec", False):
    from assay.pipeline.slurm_watch import install as _watch_slurm_executor

    _watch_slurm_executor()
