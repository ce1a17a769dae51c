rule aggregate:
    input:
        PLAN.replicate_refs,
    output:
        f"{RESULTS}/conditions/{{analysis}}/{{condition}}.json",
    params:
        store=STORE,
        framework=FRAMEWORK,
        spec=lambda wildcards: PLAN.spec("aggregate", wildcards),
    log:
        f"{RESULTS}/logs/aggregate/{{analysis}}/{{condition}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/aggregate/{{analysis}}/{{condition}}.tsv"
    conda:
        "../envs/assay.yaml"
    shell:
        "python -m assay.jobs aggregate --store {params.store:q} --spec {params.spec} "
        "--inputs {input:q} --output {output:q} > {log:q} 2>&1"
