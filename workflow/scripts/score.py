from gantrace import stages
from gantrace.runlog import logged

with logged(snakemake.log[0]):
    stages.score(
        snakemake.params.task,
        snakemake.wildcards.dataset,
        snakemake.params.names,
        snakemake.params.fusions,
        list(snakemake.input.results),
        snakemake.input.truth or None,
        snakemake.output[0],
        manifest_path=snakemake.input.manifest,
        metric=snakemake.params.metric,
        evaluation=snakemake.params.evaluation,
        seed=snakemake.params.seed,
    )
