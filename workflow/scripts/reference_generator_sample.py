from gantrace import stages
from gantrace.runlog import logged
from gantrace.torch_env import set_threads

with logged(snakemake.log[0]):
    set_threads(snakemake.threads)
    stages.reference_generator_sample(
        snakemake.input.model,
        snakemake.params.seed,
        snakemake.params.device,
        snakemake.params.size,
        list(snakemake.output),
    )
