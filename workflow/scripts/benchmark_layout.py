from gantrace.benchmark_builder.layout import write_benchmark
from gantrace.runlog import logged

with logged(snakemake.log[0]):
    write_benchmark(
        snakemake.input.split,
        dict(zip(snakemake.params.generators, snakemake.input.samples, strict=True)),
        snakemake.params.bench,
        snakemake.params.root,
        snakemake.output.config,
        snakemake.output.metadata,
    )
