from gantrace import stages
from gantrace.runlog import logged

with logged(snakemake.log[0]):
    stages.benchmark_split(
        snakemake.params.source,
        snakemake.params.split,
        snakemake.params.seed,
        snakemake.output[0],
    )
