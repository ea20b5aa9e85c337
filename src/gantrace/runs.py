"""Which run a config's results belong to: every result lies under `results/<run>/`.

A config names its run with `run:`; without it, the run is the name of the last config
file given (`--configfile my.yaml` -> `my`), or `demo` for the built-in config. Two configs
with different runs never write into each other's folder.
"""

import re
from pathlib import Path

import yaml

RESULTS = "results"
DEMO = "demo"
# The schema's pattern for `run` (config/schema.yaml): a folder name, never `.` or `..`.
PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"


def default_run(configfiles):
    """The run of a config without `run:`: the last config file's name without its suffix,
    characters a run name may not hold replaced by `_`; `demo` when no file is given."""
    if not configfiles:
        return DEMO
    stem = re.sub(r"[^A-Za-z0-9_.-]", "_", Path(configfiles[-1]).stem).lstrip("_.-")
    return stem or DEMO


def run_name(config, configfiles):
    """`config`'s run: its `run:` key, else `default_run(configfiles)`."""
    run = config.get("run") if isinstance(config, dict) else None
    return default_run(configfiles) if run is None else run


def run_of_files(paths):
    """The run that `snakemake --configfile <paths>` writes to (later files win), for
    scripts and the Makefile that need the folder before the workflow runs."""
    merged = {}
    for path in paths:
        cfg = yaml.safe_load(Path(path).read_text())
        if isinstance(cfg, dict) and "run" in cfg:
            merged["run"] = cfg["run"]
    return str(run_name(merged, list(paths)))


def run_dir(run):
    """The folder of a run's results (relative to the workflow's working directory)."""
    return f"{RESULTS}/{run}"


if __name__ == "__main__":  # `python -m gantrace.runs a.yaml b.yaml`: the run's folder
    import sys

    print(run_dir(run_of_files(sys.argv[1:]) if len(sys.argv) > 1 else DEMO))
