from gantrace import stages
from gantrace.runlog import logged
from gantrace.torch_env import set_threads

with logged(snakemake.log[0]):
    set_threads(snakemake.threads)
    stages.train_features(
        snakemake.wildcards.feature,
        snakemake.params.spec,
        list(snakemake.input.images),
        snakemake.input.manifest,
        snakemake.output.features,
        snakemake.output.models,
        snakemake.params.checkpoints,
        snakemake.params.seed,
        snakemake.params.device,
        train_images=list(snakemake.input.train_images),
        train_manifest=snakemake.input.train_manifest or None,
    )
