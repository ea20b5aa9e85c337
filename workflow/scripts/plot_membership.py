from gantrace.report import plots
from gantrace.runlog import logged

with logged(snakemake.log[0]):
    plots.membership_plots(
        snakemake.params.names,
        list(snakemake.input.results),
        snakemake.input.truth or None,
        snakemake.output.hist,
        snakemake.output.curves,
    )
