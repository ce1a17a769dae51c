# Adaptive replicates (replicates: {min, max, batch, until}): look k aggregates the first
# n_k replicates of the analyses its rule names and decides whether to add a batch. A
# checkpoint: the aggregate and catalog inputs ask it, so Snakemake schedules the next
# batch only after a look said to go on (assay.pipeline.adaptive).
checkpoint look:
    localrule: True  # light: a few aggregates from the action cache
    input:
        PLAN.look_inputs,
    output:
        decision=PLAN.look_path(),  # first: the file the plan reads (checkpoints.look)
        ref=PLAN.decision_ref_output(),  # the decision artifact's ref (catalog, gc)
    params:
        store=STORE,
        spec=PLAN.look_spec,
    log:
        f"{RESULTS}/logs/looks/{{look}}.log",
    conda:
        "../envs/assay.yaml"
    shell:
        "python -m assay.pipeline.adaptive --store {params.store:q} --spec {params.spec} "
        "--inputs {input:q} --output {output.decision:q} --ref {output.ref:q} > {log:q} 2>&1"
