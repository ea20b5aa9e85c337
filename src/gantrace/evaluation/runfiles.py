"""ImageCLEF run files: `<image_id>,<label>` per line, no header."""

import re
from collections import Counter
from pathlib import Path

import numpy as np

from gantrace.errors import RunFileError
from gantrace.io import atomic_path

_INT = re.compile(r"-?[0-9]+")
_SHOW = 5  # offending items quoted per kind


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
