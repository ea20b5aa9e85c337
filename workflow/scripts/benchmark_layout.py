from gantrace import stages
from gantrace.runlog import logged

with logged(snakemake.log[0]):
    stages.benchmark_layout(
        snakemake.input.split,
        snakemake.params.generators,
        list(snakemake.input.samples),
        snakemake.params.bench,
        snakemake.params.root,
        snakemake.output.config,
        snakemake.output.metadata,
    )
