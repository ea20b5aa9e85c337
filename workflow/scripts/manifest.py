from gantrace import stages
from gantrace.runlog import logged

with logged(snakemake.log[0]):
    stages.manifest(
        list(snakemake.input.status),
        snakemake.output.manifest,
        snakemake.output.rejected,
        snakemake.params.invalid_images,
        snakemake.wildcards.dataset,
        groups=snakemake.params.groups,
    )
