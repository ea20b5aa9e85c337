from gantrace import stages
from gantrace.runlog import logged

with logged(snakemake.log[0]):
    stages.plot_attribution_tsne(
        snakemake.input.scores,
        snakemake.params.methods,
        list(snakemake.input.results),
        list(snakemake.input.features),
        snakemake.input.truth or None,
        snakemake.output[0],
        seed=snakemake.params.seed,
    )
