from gantrace import stages
from gantrace.runlog import logged

with logged(snakemake.log[0]):
    stages.benchmark_report(
        snakemake.wildcards.generator,
        snakemake.input.samples,
        snakemake.input.split,
        snakemake.params.resolution,
        snakemake.output.grid,
        snakemake.output.table,
        snakemake.output.summary,
    )
