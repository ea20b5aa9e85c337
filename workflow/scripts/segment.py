from gantrace import stages
from gantrace.runlog import logged
from gantrace.torch_env import set_threads

with logged(snakemake.log[0]):
    set_threads(snakemake.threads)
    stages.segment(
        snakemake.input.model,
        snakemake.input.images,
        snakemake.output[0],
        snakemake.params.device,
        snakemake.params.num_workers,
    )
