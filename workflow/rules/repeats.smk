# evaluation.repeats: N reruns each stochastic method (gantrace.plan.Plan.repeated) with
# seeds seed + 1 .. seed + N - 1 (repeat 0 is the method's own result table); `repeats`
# gives each metric's mean and sd over the N runs. With N = 1 none of these jobs exist.


rule membership_repeat:
    """One stochastic membership method again, under seed + repeat (no model saved)."""
    input:
        features=lambda wc: feature_path(wc.dataset, "membership", wc.method),
        manifest=f"{R}/{{dataset}}/manifest.parquet",
    output:
        f"{R}/{{dataset}}/repeats/membership/{{method}}/{{repeat}}.parquet",
    log:
        f"{R}/logs/repeats/{{dataset}}/membership_{{method}}_{{repeat}}.log",
    benchmark:
        f"{R}/timings/repeats/{{dataset}}/membership_{{method}}_{{repeat}}.tsv"
    wildcard_constraints:
        repeat=r"[1-9]\d*",
    conda:
        "../../envs/gantrace.yaml"
    resources:
        gpu=lambda wc: trains_network("membership", wc.method),
    params:
        method=lambda wc: method_spec("membership", wc.method),
        n_folds=config["membership"]["n_folds"],
        seed=lambda wc: config["seed"] + int(wc.repeat),
        model_dir=None,
    script:
        "../scripts/membership.py"


rule attribution_repeat:
    """One stochastic attribution method again, under seed + repeat (no model saved)."""
    input:
        unpack(known_inputs),
        features=lambda wc: feature_path(wc.dataset, "attribution", wc.method),
        manifest=f"{R}/{{dataset}}/manifest.parquet",
    output:
        f"{R}/{{dataset}}/repeats/attribution/{{method}}/{{repeat}}.parquet",
    log:
        f"{R}/logs/repeats/{{dataset}}/attribution_{{method}}_{{repeat}}.log",
    benchmark:
        f"{R}/timings/repeats/{{dataset}}/attribution_{{method}}_{{repeat}}.tsv"
    wildcard_constraints:
        repeat=r"[1-9]\d*",
    conda:
        "../../envs/gantrace.yaml"
    resources:
        gpu=lambda wc: trains_network("attribution", wc.method),
    params:
        method=lambda wc: method_spec("attribution", wc.method),
        n_generators=lambda wc: DATASETS[wc.dataset].get("n_generators"),
        seed=lambda wc: config["seed"] + int(wc.repeat),
        model_dir=None,
    script:
        "../scripts/attribution.py"


rule repeats:
    """Mean and sd of every metric of each stochastic method over its repeats."""
    input:
        tables=repeat_tables,
        truth=lambda wc: truth_file(wc.dataset),
    output:
        f"{R}/{{dataset}}/repeats.parquet",
    log:
        f"{R}/logs/repeats/{{dataset}}.log",
    benchmark:
        f"{R}/timings/repeats/{{dataset}}.tsv"
    localrule: True
    conda:
        "../../envs/gantrace.yaml"
    params:
        task=lambda wc: DATASETS[wc.dataset]["task"],
        methods=lambda wc: repeated(wc.dataset),
        seed=config["seed"],
    script:
        "../scripts/repeats.py"
