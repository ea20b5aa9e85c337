# Subset attribution (ImageCLEFmedical GANs 2025 subtask 2): the real-image subset each
# generated image's generator trained on (gantrace.subset).
subsets_of = checked(PLAN.subsets)


rule subset_attribution:
    """One subset-attribution method: a subset name (and its 1-based label) per generated image."""
    input:
        unpack(subset_train_inputs),
        features=lambda wc: feature_path(wc.dataset, "subset_attribution", wc.method),
        manifest=f"{R}/{{dataset}}/manifest.parquet",
    output:
        f"{R}/{{dataset}}/subset_attribution/{{method}}.parquet",
    log:
        f"{R}/logs/subset_attribution/{{dataset}}/{{method}}.log",
    benchmark:
        f"{R}/timings/subset_attribution/{{dataset}}/{{method}}.tsv"
    conda:
        "../../envs/gantrace.yaml"
    resources:
        gpu=lambda wc: trains_network("subset_attribution", wc.method),
    params:
        method=lambda wc: method_spec("subset_attribution", wc.method),
        subsets=lambda wc: subsets_of(wc.dataset),
        n_folds=config["subset_attribution"]["n_folds"],
        seed=config["seed"],
    script:
        "../scripts/subset_attribution.py"
