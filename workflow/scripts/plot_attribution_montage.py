from gantrace import stages
from gantrace.runlog import logged

with logged(snakemake.log[0]):
    stages.plot_attribution_montage(
        snakemake.input.scores,
        snakemake.params.names,
        list(snakemake.input.results),
        list(snakemake.input.images),
        snakemake.input.truth or None,
        snakemake.output[0],
        seed=snakemake.params.seed,
    )
