rule train_features:
    """A learned feature: CNNs trained on the labelled images, cross-fitted so no image's
    features come from a net that saw its label (finetuned), or a self-supervised encoder
    trained on the real slices, no label read (contrastive)."""
    input:
        images=lambda wc: image_shards(wc.dataset),
        manifest=f"{R}/{{dataset}}/manifest.parquet",
        train_images=lambda wc: (
            image_shards(train_from(wc)) if train_from(wc) != wc.dataset else []
        ),
        train_manifest=lambda wc: (
            f"{R}/{train_from(wc)}/manifest.parquet"
            if train_from(wc) != wc.dataset
            else []
        ),
    output:
        features=f"{R}/{{dataset}}/features/{{feature}}/full.h5",
        models=directory(f"{R}/models/{{dataset}}/{{feature}}"),
    log:
        f"{R}/logs/train_features/{{dataset}}/{{feature}}.log",
    benchmark:
        f"{R}/timings/train_features/{{dataset}}/{{feature}}.tsv"
    wildcard_constraints:
        feature=names_regex(learned_features()),
    conda:
        "../../envs/gantrace.yaml"
    threads: 4
    resources:
        gpu=1,
    params:
        spec=lambda wc: FEATURES[wc.feature],
        seed=config["seed"],
        device=config["device"],
        # Per-epoch training state: not an output (Snakemake deletes a failed job's
        # outputs), so a killed job resumes; removed once the features are written.
        checkpoints=f"{R}/models/{{dataset}}/{{feature}}.checkpoints",
    script:
        "../scripts/train_features.py"
