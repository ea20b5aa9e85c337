from gantrace.benchmark_builder.split import GroupSplit, assign_groups, list_slices
from gantrace.runlog import logged

with logged(snakemake.log[0]):
    files = list_slices(snakemake.params.source)
    split = snakemake.params.split
    groups = assign_groups(files, split.get("groups"))
    table = GroupSplit(
        split["used_fraction"], split["unknown_fraction"], seed=snakemake.params.seed
    ).fit_transform(files, groups)
    table.to_csv(snakemake.output[0], index=False)
    print(table.groupby(["used", "part"]).size().to_string())
