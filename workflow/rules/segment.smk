rule train_unet:
    """Train the lung U-Net on the configured training shards and mask source."""
    input:
        images=unet_training_images(),
        manifests=expand(f"{R}/{{ds}}/manifest.parquet", ds=segmentation_datasets()),
        truth=[
            truth_file(ds)
            for ds in segmentation_datasets()
            if "simulate" in DATASETS[ds]
        ],
    output:
        model=f"{R}/models/lung_unet.safetensors",
        metrics=f"{R}/models/lung_unet_metrics.json",
    log:
        f"{R}/logs/train_unet.log",
    benchmark:
        f"{R}/timings/train_unet.tsv"
    conda:
        "../../envs/gantrace.yaml"
    threads: 4
    resources:
        gpu=1,
    params:
        segmentation=config["segmentation"],
        mask_dirs={
            ds: f"{sim_dir(ds)}/masks"
            for ds in segmentation_datasets()
            if "simulate" in DATASETS[ds]
        },
        seed=config["seed"],
        device=config["device"],
        # Per-epoch training state: deliberately not an output (Snakemake deletes the
        # outputs of a failed or killed job), so a rerun resumes after the last epoch.
        # Deleted once the model is saved.
        checkpoint=f"{R}/models/lung_unet.checkpoint.safetensors",
    script:
        "../scripts/train_unet.py"


rule segment:
    """Predict lung masks for one shard."""
    input:
        model=rules.train_unet.output.model,
        images=f"{R}/{{dataset}}/images/{{shard}}.h5",
        validated=ancient(f"{R}/{{dataset}}/manifest.parquet"),
    output:
        f"{R}/{{dataset}}/lung_masks/{{shard}}.h5",
    log:
        f"{R}/logs/segment/{{dataset}}/{{shard}}.log",
    benchmark:
        f"{R}/timings/segment/{{dataset}}/{{shard}}.tsv"
    conda:
        "../../envs/gantrace.yaml"
    threads: 4
    resources:
        gpu=1,
    params:
        device=config["device"],
        num_workers=config["num_workers"],
    script:
        "../scripts/segment.py"
