# Subset attribution's confusion matrices, beside the dataset's scores (score.smk).
SUBSET_DATASETS = [d for d, s in DATASETS.items() if s["task"] == "subset_attribution"]


rule subset_confusion:
    """Confusion matrix (method, true, predicted, count) of every method and fusion."""
    input:
        results=result_tables,
        truth=lambda wc: truth_file(wc.dataset),
    output:
        f"{R}/{{dataset}}/subset_confusion.csv",
    log:
        f"{R}/logs/subset_confusion/{{dataset}}.log",
    benchmark:
        f"{R}/timings/subset_confusion/{{dataset}}.tsv"
    wildcard_constraints:
        dataset=names_regex(SUBSET_DATASETS),
    localrule: True
    conda:
        "../../envs/gantrace.yaml"
    params:
        names=lambda wc: results_of(wc.dataset),
    script:
        "../scripts/subset_confusion.py"
