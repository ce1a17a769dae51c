# Figures are drawn from the comparison artifact and everything it was built from,
# read through the store; they are outputs for people (and the report), not artifacts.
# An adaptive study's look decisions are inputs too: its figures say why it stopped. The
# report's captions come from the plan (params.caption: what is plotted, n, the test and
# the correction), made from the config alone so they never change between invocations.
rule plot_summary:
    localrule: True  # light: on the submit host unless the profile groups it
    input:
        comparison=PLAN.ref_output("compare"),
        looks=PLAN.plot_looks,
    output:
        report(
            f"{RESULTS}/plots/{{analysis}}/summary.{PLAN.plot_format}",
            caption="../report/summary.rst",
            category="Conditions",
            subcategory="{analysis}",
        ),
    threads: PLAN.threads("plot")
    resources:
        **PLAN.resources("plot"),
    params:
        store=STORE,
        spec=lambda wildcards: PLAN.spec("plot", wildcards),
        caption=lambda wildcards: PLAN.caption("summary", wildcards),
    log:
        plot_log_path(RESULTS, figure="summary"),
    conda:
        "../envs/assay.yaml"
    shell:
        "python -m assay.jobs plot --store {params.store:q} --spec {params.spec} "
        "--inputs {input.comparison:q} --looks {input.looks:q} --plots {output:q} "
        "> {log:q} 2>&1"


rule plot_detail:
    localrule: True  # light: on the submit host unless the profile groups it
    input:
        comparison=PLAN.ref_output("compare"),
        looks=PLAN.plot_looks,
    output:
        report(
            f"{RESULTS}/plots/{{analysis}}/detail.{PLAN.plot_format}",
            caption="../report/detail.rst",
            category="Details",
            subcategory="{analysis}",
        ),
    threads: PLAN.threads("plot")
    resources:
        **PLAN.resources("plot"),
    params:
        store=STORE,
        spec=lambda wildcards: PLAN.spec("plot", wildcards),
        caption=lambda wildcards: PLAN.caption("detail", wildcards),
    log:
        plot_log_path(RESULTS, figure="detail"),
    conda:
        "../envs/assay.yaml"
    shell:
        "python -m assay.jobs plot --store {params.store:q} --spec {params.spec} "
        "--inputs {input.comparison:q} --looks {input.looks:q} --plots {output:q} "
        "> {log:q} 2>&1"
