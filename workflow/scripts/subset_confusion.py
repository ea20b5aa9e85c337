from gantrace import stages
from gantrace.runlog import logged

with logged(snakemake.log[0]):
    stages.subset_confusion(
        snakemake.params.names,
        list(snakemake.input.results),
        snakemake.input.truth or None,
        snakemake.output[0],
    )
