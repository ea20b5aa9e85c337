from gantrace import stages
from gantrace.runlog import logged

with logged(snakemake.log[0]):
    stages.fetch_weights(snakemake.params.features, snakemake.output[0])
