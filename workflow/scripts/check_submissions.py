"""Re-check every run file of a dataset against the ImageCLEF rules; list each as OK.

The expected ids come from the manifest (not from the run files' own result tables):
membership run files hold the `real_unknown` images when the dataset has any, else every
real image; attribution run files hold every generated image, labels 1..n_generators.
"""

from pathlib import Path

from gantrace import io
from gantrace.errors import RunFileError
from gantrace.runlog import logged
from gantrace.submission import validate_run_file


def expected_ids_and_labels(manifest, task, n_generators):
    if task == "membership":
        real = manifest[manifest.role.str.startswith("real_")]
        unknown = real[real.role == "real_unknown"]
        rows = unknown if len(unknown) else real
        return list(rows.image_id), {0, 1}
    rows = manifest[manifest.role == "generated"]
    return list(rows.image_id), set(range(1, int(n_generators) + 1))


def check(run_files, manifest_path, task, n_generators, out):
    ids, allowed = expected_ids_and_labels(io.read_table(manifest_path), task, n_generators)
    lines, problems = [], []
    for path in run_files:
        try:
            validate_run_file(path, ids, allowed)
        except RunFileError as err:
            problems.append(str(err))
            lines.append(f"{path}\tFAILED")
        else:
            lines.append(f"{path}\tOK")
    print("\n".join(lines), flush=True)
    if problems:
        raise RunFileError(
            f"{len(problems)} of {len(run_files)} run file(s) break the rules:\n"
            + "\n".join(problems)
        )
    with io.atomic_path(out) as tmp:
        Path(tmp).write_text(
            f"# {len(run_files)} run file(s), {len(ids)} ids each, labels "
            f"{sorted(allowed)}\n" + "".join(f"{line}\n" for line in lines),
            encoding="utf-8",
        )


with logged(snakemake.log[0]):
    check(
        list(snakemake.input.runs),
        snakemake.input.manifest,
        snakemake.params.task,
        snakemake.params.n_generators,
        snakemake.output[0],
    )
