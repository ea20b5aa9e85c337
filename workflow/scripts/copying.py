from gantrace import stages
from gantrace.runlog import logged

with logged(snakemake.log[0]):
    stages.copying(
        snakemake.input.features,
        snakemake.input.manifest,
        snakemake.params.feature,
        snakemake.params.test,
        snakemake.params.seed,
        snakemake.wildcards.dataset,
        snakemake.output.summary,
        snakemake.output.samples,
    )
