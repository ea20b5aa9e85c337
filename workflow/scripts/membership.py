from gantrace import stages
from gantrace.runlog import logged

with logged(snakemake.log[0]):
    stages.membership(
        snakemake.input.features,
        snakemake.input.manifest,
        snakemake.params.method,
        snakemake.params.n_folds,
        snakemake.params.seed,
        snakemake.output[0],
        model_dir=snakemake.params.model_dir,
    )
