rule fetch_weights:
    """Download the pretrained weights the configured features need (not part of `all`).

    Run it once on a machine with internet (e.g. a cluster login node); compute nodes then
    load the weights offline from TORCH_HOME / HF_HOME (or from an installed package).
    """
    output:
        f"{R}/models/weights_fetched.json",
    log:
        f"{R}/logs/fetch_weights.log",
    benchmark:
        f"{R}/timings/fetch_weights.tsv"
    localrule: True
    conda:
        "../../envs/gantrace.yaml"
    params:
        features=config["features"],
    script:
        "../scripts/fetch_weights.py"
