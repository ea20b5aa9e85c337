# GAN-Leaks' calibration: a reference generator trained on a membership dataset's clean pool
# (reference_real) only; its samples join the dataset (role reference_generated, own shard)
# and are the pool of scorers with `reference: generator`.
rule reference_generator_train:
    """Train the dataset's reference generator on its reference_real slices; resumable."""
    input:
        reference_training_paths,
    output:
        model=f"{reference_dir('{dataset}')}/generator.safetensors",
        losses=f"{reference_dir('{dataset}')}/losses.csv",
    log:
        f"{R}/logs/reference_generator/{{dataset}}_train.log",
    benchmark:
        f"{R}/timings/reference_generator/{{dataset}}_train.tsv"
    wildcard_constraints:
        dataset=names_regex(reference_generator_datasets()),
    conda:
        "../../envs/gantrace.yaml"
    threads: 4
    resources:
        gpu=1,
    params:
        spec=lambda wc: reference_generator(wc.dataset)["generator"],
        resolution=lambda wc: reference_generator(wc.dataset)["resolution"],
        seed=config["seed"],
        device=config["device"],
        # Not an output: Snakemake deletes a killed job's outputs, the checkpoint must stay.
        checkpoint=f"{reference_dir('{dataset}')}/generator.checkpoint.safetensors",
    script:
        "../scripts/reference_generator_train.py"


# One rule per dataset: its outputs (every sample PNG) are known from the plan at parse time.
for _ds in reference_generator_datasets():

    rule:
        """Draw the planned samples of the dataset's reference generator (seeded)."""
        name:
            f"reference_generator_sample_{_ds}"
        input:
            model=f"{reference_dir(_ds)}/generator.safetensors",
        output:
            role_paths(_ds, "reference_generated"),
        log:
            f"{R}/logs/reference_generator/{_ds}_sample.log",
        benchmark:
            f"{R}/timings/reference_generator/{_ds}_sample.tsv"
        conda:
            "../../envs/gantrace.yaml"
        threads: 4
        resources:
            gpu=1,
        params:
            # the generator's own seed, as the benchmark builder samples (default: the run's)
            seed=reference_generator(_ds)["generator"]["seed"],
            device=config["device"],
            size=INGEST["image_size"],
        script:
            "../scripts/reference_generator_sample.py"
