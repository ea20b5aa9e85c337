# Benchmark builder: real slices -> used / not-used split -> generators trained on the used
# slices -> results/<run>/benchmark/<name>/ in the layouts of both tasks, with ground truth.
rule benchmark:
    """Build the benchmark of the config's `benchmark:` section (both task layouts + truth)."""
    input:
        bench_targets,


rule benchmark_split:
    """Split the real slices used / not used (and labelled / hidden), whole groups at once."""
    input:
        bench_source_files,
    output:
        f"{BENCH_DIR}/split.csv",
    log:
        f"{BENCH_LOGS}/split.log",
    benchmark:
        f"{BENCH_TIMES}/split.tsv"
    conda:
        "../../envs/gantrace.yaml"
    params:
        source=lambda wc: bench_config()["source"],
        split=lambda wc: bench_config()["split"],
        seed=lambda wc: bench_config()["seed"],
    script:
        "../scripts/benchmark_split.py"


rule benchmark_train:
    """Train one generator on the used slices only; resumes from its checkpoint."""
    input:
        split=rules.benchmark_split.output[0],
    output:
        model=f"{BENCH_MODELS}/{{generator}}.safetensors",
        losses=f"{BENCH_DIR}/training/{{generator}}_losses.csv",
    log:
        f"{BENCH_LOGS}/train_{{generator}}.log",
    benchmark:
        f"{BENCH_TIMES}/train_{{generator}}.tsv"
    conda:
        "../../envs/gantrace.yaml"
    threads: 4
    resources:
        gpu=1,
    params:
        spec=lambda wc: bench_config()["generators"][wc.generator],
        resolution=lambda wc: bench_config()["resolution"],
        seed=bench_seed,
        device=config["device"],
        # Not an output: Snakemake deletes a killed job's outputs, the checkpoint must stay.
        checkpoint=f"{BENCH_MODELS}/{{generator}}.checkpoint.safetensors",
    script:
        "../scripts/benchmark_train.py"


rule benchmark_sample:
    """Draw the configured number of samples from one trained generator (seeded)."""
    input:
        model=rules.benchmark_train.output.model,
    output:
        f"{BENCH_DIR}/samples/{{generator}}.npz",
    log:
        f"{BENCH_LOGS}/sample_{{generator}}.log",
    benchmark:
        f"{BENCH_TIMES}/sample_{{generator}}.tsv"
    conda:
        "../../envs/gantrace.yaml"
    threads: 4
    resources:
        gpu=1,
    params:
        n_samples=lambda wc: bench_config()["n_samples"],
        seed=bench_seed,
        device=config["device"],
    script:
        "../scripts/benchmark_sample.py"


rule benchmark_report:
    """Sample grid and nearest-slice distances (how much the generator memorised)."""
    input:
        samples=rules.benchmark_sample.output[0],
        split=rules.benchmark_split.output[0],
    output:
        grid=f"{BENCH_DIR}/report/{{generator}}_grid.png",
        table=f"{BENCH_DIR}/report/{{generator}}_memorisation.csv",
        summary=f"{BENCH_DIR}/report/{{generator}}_memorisation.txt",
    log:
        f"{BENCH_LOGS}/report_{{generator}}.log",
    benchmark:
        f"{BENCH_TIMES}/report_{{generator}}.tsv"
    conda:
        "../../envs/gantrace.yaml"
    params:
        resolution=lambda wc: bench_config()["resolution"],
    script:
        "../scripts/benchmark_report.py"


rule benchmark_layout:
    """Write membership / attribution folders, ground truth and the gantrace config snippet."""
    input:
        split=rules.benchmark_split.output[0],
        samples=lambda wc: expand(
            f"{BENCH_DIR}/samples/{{g}}.npz", g=bench_generators()
        ),
    output:
        membership=directory(f"{BENCH_DIR}/membership"),
        attribution=directory(f"{BENCH_DIR}/attribution"),
        ground_truth=directory(f"{BENCH_DIR}/ground_truth"),
        config=f"{BENCH_DIR}/gantrace.yaml",
        metadata=f"{BENCH_DIR}/metadata.json",
    log:
        f"{BENCH_LOGS}/layout.log",
    benchmark:
        f"{BENCH_TIMES}/layout.tsv"
    conda:
        "../../envs/gantrace.yaml"
    params:
        bench=lambda wc: bench_config(),
        generators=lambda wc: bench_generators(),
        root=lambda wc, output: str(Path(output.config).parent),
    script:
        "../scripts/benchmark_layout.py"
