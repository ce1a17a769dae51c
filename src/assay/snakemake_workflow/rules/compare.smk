rule compare:
    localrule: True  # light: on the submit host unless the profile groups it
    input:
        PLAN.condition_refs,
    output:
        PLAN.ref_output("compare"),
    threads: PLAN.threads("compare")
    resources:
        **PLAN.resources("compare"),
    params:
        store=STORE,
        spec=lambda wildcards: PLAN.spec("compare", wildcards),
    log:
        PLAN.log_output("compare"),
    benchmark:
        PLAN.benchmark_output("compare")
    conda:
        "../envs/assay.yaml"
    shell:
        "python -m assay.jobs compare --store {params.store:q} --spec {params.spec} "
        "--inputs {input:q} --output {output:q} > {log:q} 2>&1"
