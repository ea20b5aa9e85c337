from gantrace.benchmark_builder.report import write_report
from gantrace.runlog import logged

with logged(snakemake.log[0]):
    write_report(
        snakemake.wildcards.generator,
        snakemake.input.samples,
        snakemake.input.split,
        snakemake.params.resolution,
        snakemake.output.grid,
        snakemake.output.table,
        snakemake.output.summary,
    )
