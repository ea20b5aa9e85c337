from gantrace.report import plots
from gantrace.runlog import logged

with logged(snakemake.log[0]):
    plots.leaderboard_table(snakemake.input[0], snakemake.output[0])
