rule collect:
    localrule: IN_CLUSTER_JOB
    input:
        run=PLAN.ref_output("run"),
    output:
        PLAN.ref_output("collect"),
    threads: PLAN.threads("collect")
    resources:
        **PLAN.resources("collect"),
    params:
        store=STORE,
        spec=lambda wildcards: PLAN.spec("collect", wildcards),
    log:
        PLAN.log_output("collect"),
    benchmark:
        PLAN.benchmark_output("collect")
    conda:
        "../envs/assay.yaml"
    shell:
        "python -m assay.jobs collect --store {params.store:q} --spec {params.spec} "
        "--inputs {input.run:q} --output {output:q} > {log:q} 2>&1"
