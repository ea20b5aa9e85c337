from gantrace import stages
from gantrace.runlog import logged

with logged(snakemake.log[0]):
    stages.benchmark_subset_layout(
        snakemake.input.split,
        snakemake.params.subsets,
        list(snakemake.input.samples),
        snakemake.params.bench,
        snakemake.params.root,
        snakemake.output.config,
    )
