# One rule per simulated dataset: its outputs (every PNG) are known from the plan at parse time.
for _ds in [d for d, c in DATASETS.items() if "simulate" in c]:

    rule:
        """Built-in demo data: a documented simulation of ImageCLEF-like CT slices."""
        name:
            f"simulate_{_ds}"
        output:
            images=list(images(_ds).path),
            truth=f"{sim_dir(_ds)}/truth.csv",
        log:
            f"{R}/logs/simulate/{_ds}.log",
        benchmark:
            f"{R}/timings/simulate/{_ds}.tsv"
        conda:
            "../../envs/gantrace.yaml"
        params:
            simulate=simulate_params(_ds),
            out_dir=lambda wc, output: str(Path(output.truth).parent),
        script:
            "../scripts/simulate.py"
