# Plots for `snakemake --report`: cheap, built by `all`, one rule per kind of figure.


rule plot_attribution_tsne:
    """2-D t-SNE of the best attribution method's features (highest ARI in scores.parquet,
    else the first method). Every method's features are inputs, as which one is best is only
    known after scoring; the script picks it."""
    input:
        scores=f"{R}/{{dataset}}/scores.parquet",
        results=lambda wc: attribution_method_tables(wc.dataset),
        features=lambda wc: [
            feature_path(wc.dataset, "attribution", m)
            for m in methods_for("attribution", wc.dataset)
        ],
        truth=lambda wc: truth_file(wc.dataset),
    output:
        report(
            f"{R}/{{dataset}}/plots/attribution_tsne.png",
            caption="../report/attribution_tsne.rst",
            category="Attribution",
            subcategory="{dataset}",
            labels={"plot": "t-SNE of the best method"},
        ),
    log:
        f"{R}/logs/plots/{{dataset}}/attribution_tsne.log",
    benchmark:
        f"{R}/timings/plots/{{dataset}}/attribution_tsne.tsv"
    conda:
        "../../envs/gantrace.yaml"
    params:
        methods=lambda wc: methods_for("attribution", wc.dataset),
        seed=config["seed"],
    script:
        "../scripts/plot_attribution_tsne.py"


rule plot_attribution_confusion:
    """Clusters of the best method or fusion against the true generators (Hungarian-aligned)."""
    input:
        scores=f"{R}/{{dataset}}/scores.parquet",
        results=result_tables,
        truth=lambda wc: truth_file(wc.dataset),
    output:
        report(
            f"{R}/{{dataset}}/plots/attribution_confusion.png",
            caption="../report/attribution_confusion.rst",
            category="Attribution",
            subcategory="{dataset}",
            labels={"plot": "confusion matrix"},
        ),
    log:
        f"{R}/logs/plots/{{dataset}}/attribution_confusion.log",
    benchmark:
        f"{R}/timings/plots/{{dataset}}/attribution_confusion.tsv"
    localrule: True
    conda:
        "../../envs/gantrace.yaml"
    params:
        names=lambda wc: results_of(wc.dataset),
    script:
        "../scripts/plot_attribution_confusion.py"


rule plot_attribution_montage:
    """Sample images and the mean noise-residual spectrum of each generator."""
    input:
        scores=f"{R}/{{dataset}}/scores.parquet",
        results=result_tables,
        images=lambda wc: image_shards(wc.dataset),
        truth=lambda wc: truth_file(wc.dataset),
    output:
        report(
            f"{R}/{{dataset}}/plots/attribution_montage.png",
            caption="../report/attribution_montage.rst",
            category="Attribution",
            subcategory="{dataset}",
            labels={"plot": "generators and spectra"},
        ),
    log:
        f"{R}/logs/plots/{{dataset}}/attribution_montage.log",
    benchmark:
        f"{R}/timings/plots/{{dataset}}/attribution_montage.tsv"
    conda:
        "../../envs/gantrace.yaml"
    params:
        names=lambda wc: results_of(wc.dataset),
        seed=config["seed"],
    script:
        "../scripts/plot_attribution_montage.py"


rule plot_membership:
    """Score histograms and ROC / precision-recall curves of every membership method."""
    input:
        results=result_tables,
        truth=lambda wc: truth_file(wc.dataset),
    output:
        hist=report(
            f"{R}/{{dataset}}/plots/membership_scores.png",
            caption="../report/membership_scores.rst",
            category="Membership",
            subcategory="{dataset}",
            labels={"plot": "score histograms"},
        ),
        curves=report(
            f"{R}/{{dataset}}/plots/membership_roc_pr.png",
            caption="../report/membership_roc_pr.rst",
            category="Membership",
            subcategory="{dataset}",
            labels={"plot": "ROC and precision-recall"},
        ),
        log_roc=report(
            f"{R}/{{dataset}}/plots/membership_roc_log_fpr.png",
            caption="../report/membership_roc_log_fpr.rst",
            category="Membership",
            subcategory="{dataset}",
            labels={"plot": "ROC at low FPR"},
        ),
    log:
        f"{R}/logs/plots/{{dataset}}/membership.log",
    benchmark:
        f"{R}/timings/plots/{{dataset}}/membership.tsv"
    localrule: True
    conda:
        "../../envs/gantrace.yaml"
    params:
        names=lambda wc: results_of(wc.dataset),
        fprs=config["evaluation"]["fpr"],
    script:
        "../scripts/plot_membership.py"


rule plot_forest:
    """Each method's primary metric with its bootstrap interval, the best one's as a band."""
    input:
        scores=f"{R}/{{dataset}}/scores.parquet",
    output:
        report(
            f"{R}/{{dataset}}/plots/forest.png",
            caption="../report/forest.rst",
            category="Leaderboard",
            subcategory="{dataset}",
            labels={"plot": "forest plot"},
        ),
    log:
        f"{R}/logs/plots/{{dataset}}/forest.log",
    benchmark:
        f"{R}/timings/plots/{{dataset}}/forest.tsv"
    localrule: True
    conda:
        "../../envs/gantrace.yaml"
    params:
        metric=lambda wc: DATASETS[wc.dataset].get("metric")
        or PRIMARY[DATASETS[wc.dataset]["task"]],
        ci=config["evaluation"]["ci"],
    script:
        "../scripts/plot_forest.py"


rule plot_segmentation:
    """Slices with their predicted lung mask outlined; worst Dice first where true masks exist."""
    input:
        images=lambda wc: image_shards(wc.dataset),
        masks=lambda wc: expand(
            f"{R}/{wc.dataset}/lung_masks/{{shard}}.h5", shard=shards(wc.dataset)
        ),
        truth=lambda wc: (
            truth_file(wc.dataset) if "simulate" in DATASETS[wc.dataset] else []
        ),
    output:
        report(
            f"{R}/segmentation/{{dataset}}.png",
            caption="../report/segmentation.rst",
            category="Segmentation",
            subcategory="{dataset}",
            labels={"plot": "lung masks"},
        ),
    log:
        f"{R}/logs/plots/{{dataset}}/segmentation.log",
    benchmark:
        f"{R}/timings/plots/{{dataset}}/segmentation.tsv"
    conda:
        "../../envs/gantrace.yaml"
    params:
        true_mask_dir=lambda wc: true_mask_dir(wc.dataset),
        n=16,
    script:
        "../scripts/plot_segmentation.py"


rule leaderboard_table:
    """The leaderboard as a sortable HTML table (the CSV itself is a download in the report),
    with each data-copying test's verdict."""
    input:
        board=f"{R}/leaderboard.csv",
        copying=copying_tables(),
    output:
        report(
            f"{R}/leaderboard.html",
            caption="../report/leaderboard_table.rst",
            category="Leaderboard",
        ),
    log:
        f"{R}/logs/plots/leaderboard_table.log",
    benchmark:
        f"{R}/timings/plots/leaderboard_table.tsv"
    localrule: True
    conda:
        "../../envs/gantrace.yaml"
    script:
        "../scripts/plot_leaderboard.py"
