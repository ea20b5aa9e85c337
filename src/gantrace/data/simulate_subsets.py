"""A SIMULATION of the 2025 subset-attribution data: k disjoint subsets of real slices, one
generator of the same "architecture" per subset (demo / test data, not real CT).

Every real slice has its own anatomy (`simulate.sample_anatomy`). A subset's generator
re-renders the anatomy of a random real slice of *its* subset, perturbed
(`simulate.perturb_anatomy`), elastically warped (`simulate.warp_field`) and with fresh
noise, then adds the one artefact all subsets' generators share (`generator`, a
`simulate.GENERATORS` name): only the training data tells the subsets' images apart.

Layout under the output folder, as the organisers' release (subset names subset1..k)::

    real/{subset}/{id}.png              role real_subset
    generated/{subset}/{id}.png         labelled (dev); `labelled: false`: generated/{id}.png
    masks/{id}.png                      true lung mask of every image (0/255)
    truth.csv                           image_id,role,label,generator (the true subset)

Each image draws from `numpy.random.default_rng([seed, 2, k])`: bytes depend only on the
parameters.
"""

import numpy as np
import pandas as pd
from scipy import ndimage

from gantrace.data.simulate import (
    GENERATORS,
    perturb_anatomy,
    sample_anatomy,
    thorax_slice,
    warp_field,
    write_rendered,
)
from gantrace.errors import ConfigError
from gantrace.params import Interval, Options, check_value

TASK = "subset_attribution"
DEFAULTS = {
    "task": TASK,
    "seed": 0,
    "size": 256,
    "n_subsets": 3,
    "n_real": 20,  # real slices per subset
    "n_generated": 20,  # generated images per subset
    "labelled": True,
    "generator": "checkerboard",
}
CONSTRAINTS = {
    "task": [Options(TASK)],
    "seed": [Interval(int, 0)],
    "size": [Interval(int, 64)],
    "n_subsets": [Interval(int, 2)],
    "n_real": [Interval(int, 1)],
    "n_generated": [Interval(int, 1)],
    "labelled": [bool],
    "generator": [Options(*GENERATORS)],
}
_TASK_CODE = 2  # simulate.py uses 0 (membership) and 1 (attribution)


def resolve_params(params):
    """Validate the simulator's parameters and fill in defaults; ConfigError names the key."""
    if not isinstance(params, dict):
        raise ConfigError(f"simulate: parameters must be a mapping, got {type(params).__name__}")
    unknown = sorted(set(params) - set(DEFAULTS))
    if unknown:
        raise ConfigError(
            f"simulate: unknown key '{unknown[0]}' for task '{TASK}'; allowed: {sorted(DEFAULTS)}"
        )
    p = {**DEFAULTS, **params}
    for key, value in p.items():
        check_value(f"simulate: '{key}'", value, CONSTRAINTS[key])
    if p["size"] % 4:
        raise ConfigError(f"simulate: 'size' must be a multiple of 4, got {p['size']}")
    return p


def subset_names(n_subsets):
    return [f"subset{i + 1}" for i in range(n_subsets)]


def plan(params):
    """Every image `write_dataset(params)` writes: image_id, role, label, generator (the
    subset where the layout shows it, else ""), subset (always the true one), relpath."""
    p = resolve_params(params)
    names = subset_names(p["n_subsets"])
    rows, k = [], 0
    for s in names:
        for _ in range(p["n_real"]):
            k += 1
            iid = f"s_real_{k:05d}"
            rows.append((iid, "real_subset", -1, s, s, f"real/{s}/{iid}.png"))
    # generated ids are shuffled across subsets, so an id never tells the subset
    subsets = np.repeat(names, p["n_generated"])
    order = np.random.default_rng([p["seed"], _TASK_CODE, 2**31 + 1]).permutation(len(subsets))
    for j, s in enumerate(subsets[order]):
        iid = f"s_gen_{j + 1:05d}"
        rel = f"generated/{s}/{iid}.png" if p["labelled"] else f"generated/{iid}.png"
        rows.append((iid, "generated", -1, s if p["labelled"] else "", str(s), rel))
    columns = ["image_id", "role", "label", "generator", "subset", "relpath"]
    return pd.DataFrame(rows, columns=columns)


def _rng(p, k):
    return np.random.default_rng([p["seed"], _TASK_CODE, k])


def render_image(p, table, k):
    """Row `k` of `table` (= plan(p), `p` resolved): (uint8 image, bool lung mask)."""
    row = table.iloc[k]
    rng = _rng(p, k)
    if row.role == "real_subset":
        return thorax_slice(rng, p["size"], sample_anatomy(rng))
    members = np.flatnonzero(
        ((table.role == "real_subset") & (table.subset == row.subset)).to_numpy()
    )
    src = int(members[rng.integers(len(members))])
    anatomy = perturb_anatomy(sample_anatomy(_rng(p, src)), rng)
    img, mask = thorax_slice(rng, p["size"], anatomy)
    coords = warp_field(rng, img.shape)
    img = ndimage.map_coordinates(img.astype(np.float64), coords, order=1, mode="nearest")
    mask = ndimage.map_coordinates(mask.astype(np.uint8), coords, order=0, mode="nearest") > 0
    img = GENERATORS[p["generator"]](img, rng)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8), mask


def write_dataset(params, out_dir):
    """Render and write every image of `plan(params)`, its lung mask and truth.csv; return the plan."""
    p = resolve_params(params)
    table = plan(p)
    truth = table[["image_id", "role", "label", "subset"]].rename(columns={"subset": "generator"})
    write_rendered(table, lambda k: render_image(p, table, k), out_dir, truth)
    return table
