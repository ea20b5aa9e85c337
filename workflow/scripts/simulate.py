from gantrace import stages
from gantrace.runlog import logged

with logged(snakemake.log[0]):
    stages.simulate(snakemake.params.simulate, snakemake.params.out_dir)
