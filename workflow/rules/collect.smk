rule collect:
    input:
        run=f"{RESULTS}/runs/{{condition}}/{{replicate}}.json",
    output:
        f"{RESULTS}/replicates/{{analysis}}/{{condition}}/{{replicate}}.json",
    params:
        store=STORE,
        framework=FRAMEWORK,
        spec=lambda wildcards: PLAN.spec("collect", wildcards),
    log:
        f"{RESULTS}/logs/collect/{{analysis}}/{{condition}}/{{replicate}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/collect/{{analysis}}/{{condition}}/{{replicate}}.tsv"
    conda:
        "../envs/assay.yaml"
    shell:
        "python -m assay.jobs collect --store {params.store:q} --spec {params.spec} "
        "--inputs {input.run:q} --output {output:q} > {log:q} 2>&1"
