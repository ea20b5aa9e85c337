"""Ground truth: truth files, and the true labels of a result table where any are known.

A result table carries the labels the dataset's folders give (membership `label`: 1 used,
0 not used, -1 unknown; attribution `generator`: "" unknown); a truth file fills in the
unknown ones (e.g. the hidden labels of a test set, once published).
"""

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image


def read_truth(path):
    """A truth CSV: `image_id,label` (or with role/generator columns); header optional.

    Returns a table indexed by image id, or None where `path` is None or "" (no truth).
    """
    if not path:
        return None
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    if "image_id" not in df.columns:
        df = pd.read_csv(path, header=None, dtype=str, keep_default_na=False)
        df = df.iloc[:, :2]
        df.columns = ["image_id", "label"]
    return df.set_index("image_id")


def membership_truth(table, truth):
    """(y, split) of a membership result table: y the true label per row (1 used, 0 not
    used, -1 still unknown), the table's own label first, else the truth file's; split
    "test" for the `real_unknown` images, "dev" for the others."""
    y = table.label.to_numpy().astype(int).copy()
    if truth is not None and "label" in truth.columns:
        known = table.image_id.isin(truth.index) & (y < 0)
        y[known.to_numpy()] = truth.loc[table.image_id[known], "label"].astype(int).to_numpy()
    split = np.where(table.role == "real_unknown", "test", "dev")
    return y, split


def attribution_truth(table, truth):
    """True generator per row of an attribution result table ("" where still unknown): the
    table's own, else the truth file's `generator` (or `label`) column."""
    gen = table.generator.fillna("").astype(str).to_numpy().copy()
    if truth is not None:
        col = "generator" if "generator" in truth.columns else "label"
        missing = (gen == "") & table.image_id.isin(truth.index).to_numpy()
        gen[missing] = truth.loc[table.image_id[missing], col].astype(str).to_numpy()
    return gen


def subset_answers(table, truth):
    """(true, predicted) subset per row of a subset-attribution result table, as strings;
    true is "" where unknown. A truth file may name subsets or give their run-file labels
    (1..k): where every known true value is an integer, the predicted `cluster` (1..k) is
    compared, else the predicted `subset` name."""
    true = attribution_truth(table, truth)
    known = true[true != ""]
    if len(known) and all(v.isdigit() for v in known):
        return true, table.cluster.astype(int).astype(str).to_numpy()
    return true, table.subset.astype(str).to_numpy()


def true_mask(mask_dir, image_id):
    """The true lung mask `mask_dir/<image_id>.png` (non-zero = lung) as bool, or None
    where there is no such file (or no `mask_dir`)."""
    if not mask_dir:
        return None
    png = Path(mask_dir) / f"{image_id}.png"
    if not png.is_file():
        return None
    with Image.open(png) as im:
        return np.asarray(im.convert("L")) > 0
