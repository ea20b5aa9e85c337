from gantrace import stages
from gantrace.runlog import logged

with logged(snakemake.log[0]):
    stages.leaderboard(
        list(snakemake.input.scores),
        snakemake.output.csv,
        snakemake.params.metrics,
        snakemake.params.catalogue,
        snakemake.params.dev_datasets,
        repeats=list(snakemake.input.repeats),
    )
