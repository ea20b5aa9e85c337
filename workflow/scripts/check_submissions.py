from gantrace import stages
from gantrace.runlog import logged

with logged(snakemake.log[0]):
    stages.check_submissions(
        list(snakemake.input.runs),
        snakemake.input.manifest,
        snakemake.params.task,
        snakemake.params.label_counts,
        snakemake.output[0],
    )
