"""ImageCLEF run files: `<image_id>,<label>` per line, no header.

Which images a run file holds and which labels it may use is decided here once
(`run_file_rows`, `allowed_labels`): `run_file` applies it to a result table for the
writer, `check_run_files` to the manifest for the re-check of written files.
"""

import re
from collections import Counter
from pathlib import Path

import numpy as np

from gantrace.errors import RunFileError
from gantrace.io import atomic_path

_INT = re.compile(r"-?[0-9]+")
_SHOW = 5  # offending items quoted per kind


# -- what a run file holds -------------------------------------------------------------------
def run_file_rows(task, table):
    """Bool mask of the rows of `table` whose images a run file of `task` holds.

    `table` is a result table or the manifest. Membership: the `real_unknown` images where
    there are any, else every real image. Attribution: every generated image (a result
    table, which has no `role` column, holds nothing else).
    """
    if task == "membership":
        real = table.role.str.startswith("real_").to_numpy()
        unknown = real & (table.role == "real_unknown").to_numpy()
        return unknown if unknown.any() else real
    if "role" not in table.columns:
        return np.ones(len(table), dtype=bool)
    return (table.role == "generated").to_numpy()


def allowed_labels(task, labels, n_generators=None):
    """Labels a run file of `task` may use: 0/1 for membership; 1..n_generators for
    attribution, or 1..k with k the number of distinct `labels` where n_generators is None
    (the method estimated k itself)."""
    if task == "membership":
        return {0, 1}
    k = int(n_generators) if n_generators else max(len(set(labels)), 1)
    return set(range(1, k + 1))


def run_file(task, table, n_generators=None):
    """(ids, labels, allowed labels) of the run file of a result table of `task`: its
    `decision` (membership) or `cluster` (attribution) per image the run file holds."""
    rows = table[run_file_rows(task, table)]
    labels = (rows.decision if task == "membership" else rows.cluster).astype(int)
    return list(rows.image_id), list(labels), allowed_labels(task, labels, n_generators)


def write_run_file(ids, labels, path):
    """Write one `<id>,<label>` line per image in the given order, atomically."""
    ids = [str(i) for i in ids]
    labels = np.asarray(labels)
    if len(ids) != len(labels):
        raise ValueError(f"{path}: {len(ids)} ids for {len(labels)} labels")
    if labels.size and not np.array_equal(labels, np.round(labels)):
        raise ValueError(f"{path}: labels must be integers")
    bad = [i for i in ids if not i or any(c in i for c in ",\r\n")]
    if bad:
        raise ValueError(f"{path}: ids cannot be empty or hold commas/newlines: {bad[:_SHOW]}")
    text = "".join(f"{i},{int(v)}\n" for i, v in zip(ids, labels, strict=True))
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text, encoding="utf-8", newline="")


def _kind(title, items):
    shown = ", ".join(items[:_SHOW]) + (", ..." if len(items) > _SHOW else "")
    return f"  {title} ({len(items)}): {shown}"


def validate_run_file(path, expected_ids, allowed_labels):
    """Raise RunFileError listing every way the file breaks the format, or return None."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise RunFileError(f"{path}: cannot read run file: {err}") from err
    expected = {str(i) for i in expected_ids}
    allowed = {int(v) for v in allowed_labels}
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()  # the final newline ends the last line; it is not an empty line
    problems = {}
    rows = []  # (id, label) of well-formed lines
    for number, line in enumerate(lines, start=1):
        fields = line.split(",")
        if len(fields) != 2:
            problems.setdefault("malformed lines", []).append(
                f"line {number} has {len(fields)} field(s), not 2: {line[:40]!r}"
            )
        elif number == 1 and fields[0] not in expected and not _INT.fullmatch(fields[1]):
            problems["header line present (no header allowed)"] = [repr(line[:40])]
        else:
            rows.append((fields[0], fields[1]))
    if not lines:
        problems["empty file"] = ["no lines"]
    for image_id, label in rows:
        if not _INT.fullmatch(label):
            problems.setdefault("labels not integers", []).append(f"{image_id}={label!r}")
        elif int(label) not in allowed:
            problems.setdefault(f"labels outside {sorted(allowed)}", []).append(
                f"{image_id}={label}"
            )
    counts = Counter(image_id for image_id, _ in rows)
    problems["repeated ids"] = sorted(i for i, c in counts.items() if c > 1)
    problems["unknown ids"] = sorted(set(counts) - expected)
    problems["missing ids"] = sorted(expected - set(counts))
    problems = {k: v for k, v in problems.items() if v}
    if problems:
        lines = [f"{path}: run file breaks {len(problems)} rule(s):"]
        err = RunFileError("\n".join(lines + [_kind(t, items) for t, items in problems.items()]))
        err.problems = problems  # kind -> offending items, for callers that want them
        raise err


def _labels_of(path):
    """The label field of every line of a run file, as written (for counting k found)."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return [line.rsplit(",", 1)[-1] for line in lines if line]


def check_run_files(paths, manifest, task, label_counts):
    """Re-check written run files against the `manifest`: the ids it says they hold
    (`run_file_rows`) and labels in range (`allowed_labels`; `label_counts` gives each
    file's n_generators, None for 1..k found in the file).

    Returns one "<path>\tOK" line per file and a summary line; raises RunFileError listing
    every file ("<path>\tOK" or "<path>\tFAILED") and each broken file's problems.
    """
    ids = list(manifest.image_id[run_file_rows(task, manifest)])
    lines, problems, shown = [], [], set()
    for path, k in zip(paths, label_counts, strict=True):
        found = _labels_of(path) if task == "attribution" and k is None else ()
        allowed = allowed_labels(task, found, k)
        shown.add(f"{min(allowed)}..{max(allowed)}")
        try:
            validate_run_file(path, ids, allowed)
        except RunFileError as err:
            problems.append(str(err))
            lines.append(f"{path}\tFAILED")
        else:
            lines.append(f"{path}\tOK")
    if problems:
        raise RunFileError(
            f"{len(problems)} of {len(paths)} run file(s) break the rules:\n"
            + "\n".join(lines + problems)
        )
    summary = f"{len(paths)} run file(s), {len(ids)} ids each, labels {', '.join(sorted(shown))}"
    return lines, summary
