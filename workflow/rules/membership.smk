rule membership:
    """One membership method: a score and a used / not-used decision per real image."""
    input:
        features=lambda wc: feature_path(wc.dataset, "membership", wc.method),
        manifest=f"{R}/{{dataset}}/manifest.parquet",
    output:
        f"{R}/{{dataset}}/membership/{{method}}.parquet",
    log:
        f"{R}/logs/membership/{{dataset}}/{{method}}.log",
    benchmark:
        f"{R}/timings/membership/{{dataset}}/{{method}}.tsv"
    conda:
        "../../envs/gantrace.yaml"
    resources:
        gpu=lambda wc: trains_network("membership", wc.method),
    params:
        method=lambda wc: method_spec("membership", wc.method),
        n_folds=config["membership"]["n_folds"],
        seed=config["seed"],
        model_dir=lambda wc: f"{R}/models/{wc.dataset}/membership/{wc.method}",
    script:
        "../scripts/membership.py"
