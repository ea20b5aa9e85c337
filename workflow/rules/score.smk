rule score:
    """Every method and fusion of a dataset against its ground truth (where known)."""
    input:
        results=result_tables,
        manifest=f"{R}/{{dataset}}/manifest.parquet",
        truth=lambda wc: truth_file(wc.dataset),
    output:
        f"{R}/{{dataset}}/scores.parquet",
    log:
        f"{R}/logs/score/{{dataset}}.log",
    benchmark:
        f"{R}/timings/score/{{dataset}}.tsv"
    localrule: True
    conda:
        "../../envs/gantrace.yaml"
    params:
        task=lambda wc: DATASETS[wc.dataset]["task"],
        names=lambda wc: results_of(wc.dataset),
        fusions=lambda wc: fusions_for(DATASETS[wc.dataset]["task"], wc.dataset),
        metric=lambda wc: DATASETS[wc.dataset].get("metric"),
        evaluation=config["evaluation"],
        seed=config["seed"],
    script:
        "../scripts/score.py"


rule leaderboard:
    """One table ranking every method and fusion across datasets."""
    input:
        scores=expand(f"{R}/{{dataset}}/scores.parquet", dataset=DATASETS),
        repeats=repeat_summaries(),
    output:
        csv=report(
            f"{R}/leaderboard.csv",
            caption="../report/leaderboard.rst",
            category="Leaderboard",
        ),
    log:
        f"{R}/logs/leaderboard.log",
    benchmark:
        f"{R}/timings/leaderboard.tsv"
    localrule: True
    conda:
        "../../envs/gantrace.yaml"
    params:
        metrics={ds: c.get("metric") for ds, c in DATASETS.items()},
        dev_datasets={ds: c.get("dev_dataset") for ds, c in DATASETS.items()},
        catalogue=CATALOGUE,
    script:
        "../scripts/leaderboard.py"


rule submission:
    """An ImageCLEF run file (<image_id>,<label>, no header), checked against the official rules."""
    input:
        result=lambda wc: f"{R}/{wc.dataset}/{DATASETS[wc.dataset]['task']}/{wc.name}.parquet",
    output:
        f"{R}/submissions/{{dataset}}/{{name}}.csv",
    log:
        f"{R}/logs/submission/{{dataset}}/{{name}}.log",
    benchmark:
        f"{R}/timings/submission/{{dataset}}/{{name}}.tsv"
    wildcard_constraints:
        name=r"[^/]+",
    localrule: True
    conda:
        "../../envs/gantrace.yaml"
    params:
        task=lambda wc: DATASETS[wc.dataset]["task"],
        n_generators=lambda wc: label_count(wc.dataset, wc.name),
    script:
        "../scripts/submission.py"
