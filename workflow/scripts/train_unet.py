from gantrace import stages
from gantrace.runlog import logged
from gantrace.torch_env import set_threads

with logged(snakemake.log[0]):
    set_threads(snakemake.threads)
    stages.train_unet(
        list(snakemake.input.images),
        snakemake.params.segmentation,
        snakemake.params.mask_dirs,
        snakemake.params.seed,
        snakemake.params.device,
        snakemake.output.model,
        snakemake.output.metrics,
        checkpoint=snakemake.params.checkpoint,
    )
