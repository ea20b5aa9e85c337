"""Groups of images (a patient, a series): neighbouring slices of one patient are near copies,
so folds, resamples and splits keep a group whole.

A config names groups as `{pattern: <regex>}` (its one (...) capture on the file name is the
group) or `{csv: <file with columns image,group>}` (image: a file name or id). The benchmark
builder's `benchmark.split.groups` and a dataset's `datasets.<ds>.groups` share this code.
"""

import re
from pathlib import Path

import pandas as pd

from gantrace.errors import ConfigError

CSV_COLUMNS = ("image", "group")


def group_problems(spec, key, images=()):
    """Every problem of a groups spec, as messages naming `key` and the fix: the pattern
    compiles with exactly one capture and matches at least one of `images` (file names),
    the CSV exists and has the columns image,group."""
    if "pattern" in spec:
        try:
            captures = re.compile(spec["pattern"]).groups
        except re.error as err:
            return [f"{key}.pattern: not a regular expression ({err}); fix the pattern"]
        if captures != 1:
            return [
                f"{key}.pattern: {spec['pattern']!r} has {captures} capture groups; it needs "
                "exactly one (...) around the group's part of the file name (use (?:...) "
                "for any other parentheses)"
            ]
        rx, names = re.compile(spec["pattern"]), [Path(i).name for i in images]
        if names and not any(rx.search(n) for n in names):
            return [
                f"{key}.pattern: {spec['pattern']!r} matches none of the {len(names)} file "
                f"names (e.g. {names[0]!r}); fix the pattern so its (...) captures the group"
            ]
        return []
    path = Path(spec["csv"]).expanduser()
    if not path.is_file():
        return [f"{key}.csv: {spec['csv']} does not exist; give a CSV with columns image,group"]
    try:
        columns = pd.read_csv(path, dtype=str, nrows=0).columns
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        return [f"{key}.csv: {spec['csv']} is not a readable CSV ({err})"]
    if not set(CSV_COLUMNS) <= set(columns):
        return [
            f"{key}.csv: {spec['csv']} has columns {list(columns)}; it needs columns "
            "image,group (one row per image: its file name or id, its group)"
        ]
    return []


def assign_groups(files, spec, key, unmatched="error"):
    """The group of each file (a path or file name) under a groups spec.

    A file the pattern does not match (or the CSV does not list) raises a ConfigError naming
    `key` with `unmatched="error"`; with `unmatched="own"` it is a group of its own, named by
    its id (the file name without extension): a generated image next to the patients' slices.
    """
    ids = [Path(f).stem for f in files]
    if "pattern" in spec:
        rx = re.compile(spec["pattern"])
        found = [rx.search(Path(f).name) for f in files]
        found = [m.group(1) if m is not None and m.groups() else None for m in found]
    else:
        table = pd.read_csv(spec["csv"], dtype=str, keep_default_na=False)
        if not set(CSV_COLUMNS) <= set(table.columns):
            raise ConfigError(f"{key}.csv: {spec['csv']} needs columns image,group")
        lookup = {Path(i).stem: g for i, g in zip(table.image, table.group, strict=True)}
        found = [lookup.get(i) for i in ids]
    missing = [Path(f).name for f, g in zip(files, found, strict=True) if g is None]
    if missing and unmatched == "error":
        how, which = ("are not listed in", "csv") if "csv" in spec else ("do not match", "pattern")
        raise ConfigError(
            f"{key}.{which}: {len(missing)} file(s) {how} {spec[which]!r}, "
            f"e.g. {missing[:5]}; every file needs a group (a (...) capture of its name, or a "
            "CSV row)"
        )
    return [i if g is None else g for i, g in zip(ids, found, strict=True)]


EMPTY = "(empty)"  # the manifest's name of the group whose pattern capture is ""


def group_column(manifest, spec, key):
    """A manifest's `group` column (strings): "" for every image when `spec` is None (the
    dataset names no groups), else each image's group (`assign_groups`, unmatched: own)."""
    if not spec:
        return pd.Series("", index=manifest.index, dtype=str)
    found = assign_groups(list(manifest.path), spec, key, unmatched="own")
    # "" means "no groups" downstream: an empty capture (ChestCT_31 under
    # '^ChestCT_(\d*)\d\d') or CSV value is a group too, under a name no file id takes
    found = [g if g != "" else EMPTY for g in found]
    return pd.Series(found, index=manifest.index, dtype=str)


def groups_or_none(rows):
    """The `group` column of manifest rows as an array, or None where the dataset names no
    groups (every group "", or a manifest written before groups existed)."""
    if "group" not in rows or (rows["group"].astype(str) == "").all():
        return None
    return rows["group"].astype(str).to_numpy()
