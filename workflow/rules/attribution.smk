rule attribution:
    """One attribution method: a cluster id (1..k) per generated image. An open-set method
    (`known_from`) also reads its dev dataset's features and manifest."""
    input:
        unpack(known_inputs),
        features=lambda wc: feature_path(wc.dataset, "attribution", wc.method),
        manifest=f"{R}/{{dataset}}/manifest.parquet",
    output:
        f"{R}/{{dataset}}/attribution/{{method}}.parquet",
    log:
        f"{R}/logs/attribution/{{dataset}}/{{method}}.log",
    benchmark:
        f"{R}/timings/attribution/{{dataset}}/{{method}}.tsv"
    conda:
        "../../envs/gantrace.yaml"
    resources:
        gpu=lambda wc: trains_network("attribution", wc.method),
    params:
        method=lambda wc: method_spec("attribution", wc.method),
        n_generators=lambda wc: DATASETS[wc.dataset].get("n_generators"),
        seed=config["seed"],
        model_dir=lambda wc: f"{R}/models/{wc.dataset}/attribution/{wc.method}",
    script:
        "../scripts/attribution.py"
