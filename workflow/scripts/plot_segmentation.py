from gantrace import stages
from gantrace.runlog import logged

with logged(snakemake.log[0]):
    stages.plot_segmentation(
        list(snakemake.input.images),
        list(snakemake.input.masks),
        snakemake.params.true_mask_dir,
        snakemake.output[0],
        n=snakemake.params.n,
        title=snakemake.wildcards.dataset,
    )
