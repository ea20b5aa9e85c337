from gantrace import stages
from gantrace.runlog import logged

with logged(snakemake.log[0]):
    stages.benchmark_subset_split(
        snakemake.params.source,
        snakemake.params.split,
        snakemake.params.k,
        snakemake.params.seed,
        snakemake.output.split,
        list(snakemake.output.training),
    )
