from gantrace.report import plots
from gantrace.runlog import logged

with logged(snakemake.log[0]):
    plots.attribution_tsne_plot(
        snakemake.input.scores,
        snakemake.params.methods,
        list(snakemake.input.results),
        list(snakemake.input.features),
        snakemake.input.truth or None,
        snakemake.output[0],
        seed=snakemake.params.seed,
    )
