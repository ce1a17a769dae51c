rule run:
    input:
        PLAN.run_sources,
    output:
        PLAN.ref_output("run"),
    params:
        store=STORE,
        framework=FRAMEWORK,
        spec=lambda wildcards: PLAN.spec("run", wildcards),
    log:
        PLAN.log_output("run"),
    benchmark:
        PLAN.benchmark_output("run")
    conda:
        "../envs/assay.yaml"
    shell:
        "python -m assay.jobs run --store {params.store:q} --spec {params.spec} "
        "--output {output:q} > {log:q} 2>&1"
