rule fusion:
    """Late fusion of named methods (clusterings aligned to the first method before voting)."""
    input:
        tables=lambda wc: expand(
            f"{R}/{wc.dataset}/{wc.task}/{{method}}.parquet",
            method=FUSIONS[wc.task][wc.fusion]["methods"],
        ),
        manifest=f"{R}/{{dataset}}/manifest.parquet",
    output:
        f"{R}/{{dataset}}/{{task}}/fused_{{fusion}}.parquet",
    log:
        f"{R}/logs/fusion/{{dataset}}/{{task}}_{{fusion}}.log",
    benchmark:
        f"{R}/timings/fusion/{{dataset}}/{{task}}_{{fusion}}.tsv"
    wildcard_constraints:
        task="attribution|membership|subset_attribution",
    conda:
        "../../envs/gantrace.yaml"
    params:
        fusion=lambda wc: FUSIONS[wc.task][wc.fusion],
        task=lambda wc: wc.task,
        n_folds=config["membership"]["n_folds"],
        seed=config["seed"],
    script:
        "../scripts/fusion.py"
