rule check_submissions:
    """Target: every run file of every dataset re-checked against the official rules."""
    input:
        expand(f"{R}/submissions/{{dataset}}/checked.txt", dataset=DATASETS),


rule check_run_files:
    """Re-validate a dataset's run files (every id once, labels in range, no header)."""
    input:
        runs=lambda wc: [
            f"{R}/submissions/{wc.dataset}/{name}.csv"
            for name in results_of(wc.dataset)
        ],
        manifest=f"{R}/{{dataset}}/manifest.parquet",
    output:
        f"{R}/submissions/{{dataset}}/checked.txt",
    log:
        f"{R}/logs/check_run_files/{{dataset}}.log",
    benchmark:
        f"{R}/timings/check_run_files/{{dataset}}.tsv"
    localrule: True
    conda:
        "../../envs/gantrace.yaml"
    params:
        task=lambda wc: DATASETS[wc.dataset]["task"],
        label_counts=lambda wc: [
            label_count(wc.dataset, name) for name in results_of(wc.dataset)
        ],
    script:
        "../scripts/check_submissions.py"
