from gantrace import stages
from gantrace.runlog import logged

with logged(snakemake.log[0]):
    stages.plot_leaderboard(
        snakemake.input.board, snakemake.output[0], copying=list(snakemake.input.copying)
    )
