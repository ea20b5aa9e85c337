from gantrace import stages
from gantrace.runlog import logged

with logged(snakemake.log[0]):
    stages.plot_membership(
        snakemake.params.names,
        list(snakemake.input.results),
        snakemake.input.truth or None,
        snakemake.output.hist,
        snakemake.output.curves,
        snakemake.output.log_roc,
        snakemake.params.fprs,
    )
