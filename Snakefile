# The demo study of this repository: `snakemake --cores 2` here runs config/config.yaml.
# assay's workflow ships inside the package (src/assay/snakemake_workflow, also reachable as
# workflow/); this file uses it as a Snakemake module, exactly as a study made by
# `assay init` does, so the repository runs the rules every study runs. (An `include:`
# would not do: Snakemake keeps the default target of the including file, which has none.)
configfile: "config/config.yaml"


module assay:
    snakefile:
        "workflow/Snakefile"
    config:
        config


use rule * from assay
