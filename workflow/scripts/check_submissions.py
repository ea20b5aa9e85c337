"""Re-check every run file of a dataset against the ImageCLEF rules; list each as OK.

The expected ids come from the manifest (not from the run files' own result tables):
membership run files hold the `real_unknown` images when the dataset has any, else every
real image; attribution run files hold every generated image, labels 1..n_generators, or
1..k found (the file's distinct labels) where the dataset has no n_generators or the
method estimates k itself (`label_counts` None).
"""

from pathlib import Path

from gantrace import io
from gantrace.errors import RunFileError
from gantrace.evaluation.runfiles import validate_run_file
from gantrace.runlog import logged


def expected_ids(manifest, task):
    if task == "membership":
        real = manifest[manifest.role.str.startswith("real_")]
        unknown = real[real.role == "real_unknown"]
        return list((unknown if len(unknown) else real).image_id)
    return list(manifest[manifest.role == "generated"].image_id)


def allowed_labels(path, task, n_generators):
    if task == "membership":
        return {0, 1}
    if n_generators is None:  # 1..k found: count the file's distinct labels
        lines = Path(path).read_text(encoding="utf-8").splitlines()
        n_generators = max(len({line.rsplit(",", 1)[-1] for line in lines if line}), 1)
    return set(range(1, int(n_generators) + 1))


def check(run_files, manifest_path, task, label_counts, out):
    ids = expected_ids(io.read_table(manifest_path), task)
    lines, problems, shown = [], [], set()
    for path, k in zip(run_files, label_counts, strict=True):
        allowed = allowed_labels(path, task, k)
        shown.add(f"{min(allowed)}..{max(allowed)}")
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
            f"{', '.join(sorted(shown))}\n" + "".join(f"{line}\n" for line in lines),
            encoding="utf-8",
        )


with logged(snakemake.log[0]):
    check(
        list(snakemake.input.runs),
        snakemake.input.manifest,
        snakemake.params.task,
        snakemake.params.label_counts,
        snakemake.output[0],
    )
