from gantrace import stages
from gantrace.runlog import logged
from gantrace.torch_env import set_threads

with logged(snakemake.log[0]):
    set_threads(snakemake.threads)
    stages.reference_generator_train(
        list(snakemake.input),
        snakemake.params.spec,
        snakemake.params.resolution,
        snakemake.params.seed,
        snakemake.params.device,
        snakemake.output.model,
        snakemake.output.losses,
        snakemake.params.checkpoint,
    )
