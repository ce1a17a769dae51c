# Helpers shared by the rules: everything comes from assay.workflow.WorkflowPlan.
import os

from assay.workflow import WorkflowPlan

# Jobs run `python -m assay.jobs`; with --use-conda the job's Python finds this checkout's
# library through PYTHONPATH (the conda env holds only the dependencies).
shell.prefix(f'export PYTHONPATH="{workflow.basedir}/src${{{{PYTHONPATH:+:$PYTHONPATH}}}}"; ')

PLAN = WorkflowPlan(config)  # paths in the config are relative to the working directory
PLAN.check_cores(workflow.cores)  # a stage asking for more threads stops before any job
PLAN.export_sharing(os.environ)  # store_sharing reaches the jobs; a refused store stops here
STORE = PLAN.store
RESULTS = PLAN.results
# Digest of assay's own stage code: a param of every stage rule, so upgrading or editing
# the framework reruns the jobs whose action keys it changes.
FRAMEWORK = PLAN.framework_digest


wildcard_constraints:
    condition=PLAN.condition_pattern,
    analysis=PLAN.analysis_pattern,
    replicate=r"[1-9][0-9]*",
