from gantrace import stages
from gantrace.runlog import logged

with logged(snakemake.log[0]):
    stages.subset_attribution(
        snakemake.input.features,
        snakemake.input.manifest,
        snakemake.params.method,
        snakemake.params.subsets,
        snakemake.params.n_folds,
        snakemake.params.seed,
        snakemake.output[0],
        train_features=snakemake.input.get("train_features"),
        train_manifest=snakemake.input.get("train_manifest"),
    )
