rule compare:
    input:
        PLAN.condition_refs,
    output:
        f"{RESULTS}/comparisons/{{analysis}}.json",
    params:
        store=STORE,
        framework=FRAMEWORK,
        spec=lambda wildcards: PLAN.spec("compare", wildcards),
    log:
        f"{RESULTS}/logs/compare/{{analysis}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/compare/{{analysis}}.tsv"
    conda:
        "../envs/assay.yaml"
    shell:
        "python -m assay.jobs compare --store {params.store:q} --spec {params.spec} "
        "--inputs {input:q} --output {output:q} > {log:q} 2>&1"
