from gantrace import stages
from gantrace.runlog import logged

with logged(snakemake.log[0]):
    stages.gather_features(list(snakemake.input), snakemake.output[0])
