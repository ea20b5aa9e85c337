from gantrace import stages
from gantrace.runlog import logged

with logged(snakemake.log[0]):
    stages.fusion(
        snakemake.params.task,
        list(snakemake.input.tables),
        snakemake.params.fusion,
        snakemake.output[0],
        snakemake.params.n_folds,
        snakemake.params.seed,
        manifest_path=snakemake.input.manifest,
    )
