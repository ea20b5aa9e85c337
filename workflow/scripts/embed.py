from gantrace import stages
from gantrace.runlog import logged
from gantrace.torch_env import set_threads

with logged(snakemake.log[0]):
    set_threads(snakemake.threads)
    stages.embed(
        snakemake.input.images,
        snakemake.input.masks,
        snakemake.wildcards.region,
        snakemake.params.spec,
        snakemake.output[0],
        snakemake.params.seed,
        snakemake.params.device,
        snakemake.params.num_workers,
    )
