from gantrace.report import plots
from gantrace.runlog import logged

with logged(snakemake.log[0]):
    plots.attribution_confusion_plot(
        snakemake.input.scores,
        snakemake.params.names,
        list(snakemake.input.results),
        snakemake.input.truth or None,
        snakemake.output[0],
    )
