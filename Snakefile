# gantrace: lung masks -> cached embeddings -> attribution / membership -> fusion -> scores.
from snakemake.utils import min_version

min_version("9.0")


# The demo config, unless --configfile names another: that one replaces it (not merged),
# here and in the jobs submitted to a cluster (which get the same --configfile). `--config
# key=value` alone extends the demo config. (Snakemake's `replace-workflow-config` would
# instead drop the demo config for a bare `--config`, and is not passed on to cluster jobs.)
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/benchmark.smk"
include: "workflow/rules/benchmark_subsets.smk"
include: "workflow/rules/simulate.smk"
include: "workflow/rules/reference_generator.smk"
include: "workflow/rules/ingest.smk"
include: "workflow/rules/segment.smk"
include: "workflow/rules/embed.smk"
include: "workflow/rules/finetune.smk"
include: "workflow/rules/attribution.smk"
include: "workflow/rules/membership.smk"
include: "workflow/rules/subset.smk"
include: "workflow/rules/fusion.smk"
include: "workflow/rules/score.smk"
include: "workflow/rules/repeats.smk"
include: "workflow/rules/subset_score.smk"
include: "workflow/rules/check.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/weights.smk"


rule all:
    default_target: True
    input:
        all_targets(),
