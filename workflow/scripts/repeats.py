from gantrace import stages
from gantrace.runlog import logged

with logged(snakemake.log[0]):
    stages.repeats(
        snakemake.params.task,
        snakemake.wildcards.dataset,
        snakemake.params.methods,
        list(snakemake.input.tables),
        snakemake.input.truth or None,
        snakemake.output[0],
        seed=snakemake.params.seed,
    )
