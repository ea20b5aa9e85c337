from gantrace import stages
from gantrace.runlog import logged

with logged(snakemake.log[0]):
    stages.plot_leaderboard(snakemake.input[0], snakemake.output[0])
