import sys

from gantrace.features.finetuned import train_features
from gantrace.runlog import logged
from gantrace.torch_env import set_threads

with logged(snakemake.log[0]):
    set_threads(snakemake.threads)
    train_features(
        snakemake.wildcards.feature,
        dict(snakemake.params.spec),
        list(snakemake.input.images),
        snakemake.input.manifest,
        snakemake.output.features,
        snakemake.output.models,
        snakemake.params.checkpoints,
        seed=snakemake.params.seed,
        device=snakemake.params.device,
        train_shards=list(snakemake.input.train_images),
        train_manifest=snakemake.input.train_manifest or None,
        log=sys.stdout,
    )
