from gantrace import stages
from gantrace.runlog import logged

with logged(snakemake.log[0]):
    stages.submission(
        snakemake.params.task,
        snakemake.input.result,
        snakemake.output[0],
        snakemake.params.n_generators,
    )
