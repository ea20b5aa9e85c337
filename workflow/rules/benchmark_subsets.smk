# Subset benchmark (ImageCLEF 2025 subtask 2): real slices -> k disjoint subsets (whole
# groups) -> one generator of the same architecture per subset (the builder's training and
# sampling rules, reused) -> results/<run>/benchmark/<name>/subsets/ with ground truth.
BENCH_SUBSETS = (config.get("benchmark") or {}).get("subsets") or {"k": 0}
SUBSET_NAMES = [f"subset{i + 1}" for i in range(BENCH_SUBSETS["k"])]


rule benchmark_subsets:
    """Build the subset-attribution benchmark of the config's `benchmark.subsets`."""
    input:
        f"{BENCH_DIR}/subsets/gantrace.yaml",


rule benchmark_subset_split:
    """k disjoint subsets of the real slices, whole groups at once; one training split each."""
    input:
        bench_source_files,
    output:
        split=f"{BENCH_DIR}/subsets/split.csv",
        training=expand(f"{BENCH_DIR}/subsets/training/{{s}}_split.csv", s=SUBSET_NAMES),
    log:
        f"{BENCH_LOGS}/subsets/split.log",
    benchmark:
        f"{BENCH_TIMES}/subsets/split.tsv"
    conda:
        "../../envs/gantrace.yaml"
    params:
        source=lambda wc: bench_config()["source"],
        split=lambda wc: bench_config()["split"],
        k=BENCH_SUBSETS["k"],
        seed=lambda wc: bench_config()["seed"],
    script:
        "../scripts/benchmark_subset_split.py"


use rule benchmark_train as benchmark_subset_train with:
    input:
        split=f"{BENCH_DIR}/subsets/training/{{subset}}_split.csv",
    output:
        model=f"{BENCH_MODELS}/subsets/{{subset}}.safetensors",
        losses=f"{BENCH_DIR}/subsets/training/{{subset}}_losses.csv",
    log:
        f"{BENCH_LOGS}/subsets/train_{{subset}}.log",
    benchmark:
        f"{BENCH_TIMES}/subsets/train_{{subset}}.tsv"
    wildcard_constraints:
        subset=names_regex(SUBSET_NAMES),
    params:
        spec=subset_generator_spec,
        resolution=lambda wc: bench_config()["resolution"],
        seed=lambda wc: bench_config()["seed"],
        device=config["device"],
        checkpoint=f"{BENCH_MODELS}/subsets/{{subset}}.checkpoint.safetensors",


use rule benchmark_sample as benchmark_subset_sample with:
    input:
        model=f"{BENCH_MODELS}/subsets/{{subset}}.safetensors",
    output:
        f"{BENCH_DIR}/subsets/samples/{{subset}}.npz",
    log:
        f"{BENCH_LOGS}/subsets/sample_{{subset}}.log",
    benchmark:
        f"{BENCH_TIMES}/subsets/sample_{{subset}}.tsv"
    wildcard_constraints:
        subset=names_regex(SUBSET_NAMES),
    params:
        n_samples=lambda wc: bench_config()["n_samples"],
        # the subsets' generators all train with the benchmark's seed; sample with it too
        seed=lambda wc: bench_config()["seed"],
        device=config["device"],


rule benchmark_subset_layout:
    """Write real/<subset>/, generated/<subset>/ (dev), test/generated/, truth and config."""
    input:
        split=f"{BENCH_DIR}/subsets/split.csv",
        samples=expand(f"{BENCH_DIR}/subsets/samples/{{s}}.npz", s=SUBSET_NAMES),
    output:
        config=f"{BENCH_DIR}/subsets/gantrace.yaml",
    log:
        f"{BENCH_LOGS}/subsets/layout.log",
    benchmark:
        f"{BENCH_TIMES}/subsets/layout.tsv"
    conda:
        "../../envs/gantrace.yaml"
    params:
        bench=lambda wc: bench_config(),
        subsets=SUBSET_NAMES,
        root=lambda wc, output: str(Path(output.config).parent),
    script:
        "../scripts/benchmark_subset_layout.py"
