rule embed:
    """Features of one shard in one region (streamed from HDF5, batched, GPU when present)."""
    input:
        images=f"{R}/{{dataset}}/images/{{shard}}.h5",
        masks=lambda wc: (
            [] if wc.region == "full" else f"{R}/{wc.dataset}/lung_masks/{wc.shard}.h5"
        ),
        validated=ancient(f"{R}/{{dataset}}/manifest.parquet"),
    output:
        f"{R}/{{dataset}}/features/{{feature}}/{{region}}/shards/{{shard}}.h5",
    log:
        f"{R}/logs/embed/{{dataset}}/{{feature}}/{{region}}/{{shard}}.log",
    benchmark:
        f"{R}/timings/embed/{{dataset}}/{{feature}}/{{region}}/{{shard}}.tsv"
    wildcard_constraints:
        feature=names_regex(shard_features()),  # learned features: finetune.smk
    conda:
        "../../envs/gantrace.yaml"
    threads: 4
    resources:
        gpu=lambda wc: uses_gpu(wc.feature),
    params:
        spec=lambda wc: FEATURES[wc.feature],
        seed=config["seed"],
        device=config["device"],
        num_workers=config["num_workers"],
    script:
        "../scripts/embed.py"


rule gather_features:
    """One feature file per (dataset, feature, region), rows sorted by image id."""
    input:
        lambda wc: expand(
            f"{R}/{wc.dataset}/features/{wc.feature}/{wc.region}/shards/{{shard}}.h5",
            shard=shards(wc.dataset),
        ),
    output:
        f"{R}/{{dataset}}/features/{{feature}}/{{region}}.h5",
    log:
        f"{R}/logs/gather_features/{{dataset}}/{{feature}}/{{region}}.log",
    benchmark:
        f"{R}/timings/gather_features/{{dataset}}/{{feature}}/{{region}}.tsv"
    wildcard_constraints:
        feature=names_regex(shard_features()),
    conda:
        "../../envs/gantrace.yaml"
    script:
        "../scripts/gather_features.py"
