from gantrace import stages
from gantrace.runlog import logged

with logged(snakemake.log[0]):
    stages.attribution(
        snakemake.input.features,
        snakemake.input.manifest,
        snakemake.params.method,
        snakemake.params.n_generators,
        snakemake.params.seed,
        snakemake.output[0],
        model_dir=snakemake.params.model_dir,
        known_features=snakemake.input.get("known_features"),
        known_manifest=snakemake.input.get("known_manifest"),
    )
