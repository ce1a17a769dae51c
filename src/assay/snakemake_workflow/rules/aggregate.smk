rule aggregate:
    localrule: True  # light: on the submit host unless the profile groups it
    input:
        PLAN.replicate_refs,
    output:
        PLAN.ref_output("aggregate"),
    threads: PLAN.threads("aggregate")
    resources:
        **PLAN.resources("aggregate"),
    params:
        store=STORE,
        spec=lambda wildcards: PLAN.spec("aggregate", wildcards),
    log:
        PLAN.log_output("aggregate"),
    benchmark:
        PLAN.benchmark_output("aggregate")
    conda:
        "../envs/assay.yaml"
    shell:
        "python -m assay.jobs aggregate --store {params.store:q} --spec {params.spec} "
        "--inputs {input:q} --output {output:q} > {log:q} 2>&1"
