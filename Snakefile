# assay: run -> collect -> aggregate -> compare -> plot -> catalog.
# Every rule is a thin call into the assay library; see README.md.
from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "config/config.yaml"


validate(config, "workflow/schemas/config.schema.yaml")


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/run.smk"
include: "workflow/rules/collect.smk"
include: "workflow/rules/aggregate.smk"
include: "workflow/rules/compare.smk"
include: "workflow/rules/plot.smk"
include: "workflow/rules/catalog.smk"


rule all:
    input:
        PLAN.targets(),
    default_target: True
