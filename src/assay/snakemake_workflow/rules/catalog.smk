# The catalog is an index rebuilt from refs and manifests: one local job, never on the
# cluster, because DuckDB allows one writer process per file.
localrules:
    catalog,


rule catalog:
    input:
        PLAN.all_refs,
    output:
        PLAN.catalog,
    params:
        store=STORE,
        results=lambda wildcards, output: os.path.dirname(output[0]) or ".",
    log:
        catalog_log_path(RESULTS),
    conda:
        "../envs/assay.yaml"
    shell:
        "assay --store {params.store:q} --results {params.results:q} catalog build "
        "--output {output:q} > {log:q} 2>&1"
