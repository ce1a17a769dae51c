rule run:
    localrule: IN_CLUSTER_JOB
    input:
        PLAN.run_sources,
    output:
        PLAN.ref_output("run"),
    threads: PLAN.threads("run")
    resources:
        **PLAN.resources("run"),
        # Not a param: resources are no rerun trigger, so changing the grace reruns nothing.
        grace_s=PLAN.grace_seconds,
        claim_wait_s=PLAN.claim_wait_seconds,
    params:
        store=STORE,
        # Without the runner's code digest and the storage format: the command below
        # carries those, so a code change is Snakemake's `code` trigger, not `params`
        # (`--rerun-triggers mtime params input` keeps finished runs; assay.pipeline.keys).
        spec=lambda wildcards: PLAN.spec("run", wildcards, rule_params=True),
    log:
        PLAN.log_output("run"),
    benchmark:
        PLAN.benchmark_output("run")
    conda:
        "../envs/assay.yaml"
    shell:
        "python -m assay.jobs run --store {params.store:q} --spec {params.spec} "
        f"{PLAN.rule_code('run')} "
        "--output {output:q} --threads {threads} --grace {resources.grace_s} "
        "--claim-wait {resources.claim_wait_s} --log {log:q} "
        "> {log:q} 2>&1"
