rule run:
    input:
        PLAN.run_sources,
    output:
        f"{RESULTS}/runs/{{condition}}/{{replicate}}.json",
    params:
        store=STORE,
        framework=FRAMEWORK,
        spec=lambda wildcards: PLAN.spec("run", wildcards),
    log:
        f"{RESULTS}/logs/run/{{condition}}/{{replicate}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/run/{{condition}}/{{replicate}}.tsv"
    conda:
        "../envs/assay.yaml"
    shell:
        "python -m assay.jobs run --store {params.store:q} --spec {params.spec} "
        "--output {output:q} > {log:q} 2>&1"
