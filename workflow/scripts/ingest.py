from gantrace import stages
from gantrace.runlog import logged

with logged(snakemake.log[0]):
    stages.ingest(
        snakemake.params.table,
        snakemake.output.images,
        snakemake.output.status,
        snakemake.params.ingest,
        snakemake.wildcards.dataset,
        snakemake.wildcards.shard,
    )
