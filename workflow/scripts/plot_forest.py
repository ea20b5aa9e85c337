from gantrace import stages
from gantrace.runlog import logged

with logged(snakemake.log[0]):
    stages.plot_forest(
        snakemake.input.scores,
        snakemake.params.metric,
        snakemake.output[0],
        ci=snakemake.params.ci,
        title=snakemake.wildcards.dataset,
    )
