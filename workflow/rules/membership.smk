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


rule copying:
    """Does the generator copy its training images? Meehan et al.'s data-copying test and
    Alaa et al.'s authenticity, on a dataset with labelled used / not-used images."""
    input:
        features=lambda wc: copying_features(wc.dataset),
        manifest=f"{R}/{{dataset}}/manifest.parquet",
    output:
        summary=f"{R}/{{dataset}}/copying.parquet",
        samples=f"{R}/{{dataset}}/copying_samples.parquet",
    log:
        f"{R}/logs/copying/{{dataset}}.log",
    benchmark:
        f"{R}/timings/copying/{{dataset}}.tsv"
    wildcard_constraints:
        dataset=names_regex(copying_datasets()),
    conda:
        "../../envs/gantrace.yaml"
    params:
        feature=lambda wc: copying_feature(wc.dataset),
        test=copying_params,
        seed=config["seed"],
    script:
        "../scripts/copying.py"
