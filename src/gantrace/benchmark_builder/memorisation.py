"""What a user checks per generator: a sample grid and how close samples sit to training slices."""

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from gantrace.errors import GantraceError
from gantrace.membership.copying import DataCopyingTest, authenticity, verdict


def sample_grid(images, path, n_side=8):
    """Tile the first n_side**2 samples (uint8 N x H x W) into one PNG."""
    k = min(len(images), n_side * n_side)
    cols = min(n_side, k)
    rows = -(-k // cols)
    h, w = images.shape[1:]
    grid = np.zeros((rows * (h + 2), cols * (w + 2)), np.uint8)
    for i in range(k):
        r, c = divmod(i, cols)
        grid[r * (h + 2) + 1 : r * (h + 2) + 1 + h, c * (w + 2) + 1 : c * (w + 2) + 1 + w] = images[
            i
        ]
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid).save(path)


def _nearest(a, b, block=256):
    """Index and RMSE (pixels scaled to [0, 1]) of each row of `a`'s nearest row in `b`."""
    a = a.reshape(len(a), -1).astype(np.float32) / 255
    b = b.reshape(len(b), -1).astype(np.float32) / 255
    bb = (b**2).sum(1)
    idx, dist = np.empty(len(a), int), np.empty(len(a))
    for s in range(0, len(a), block):
        blk = a[s : s + block]
        d2 = (blk**2).sum(1)[:, None] + bb[None] - 2 * blk @ b.T
        j = d2.argmin(1)
        idx[s : s + block] = j
        dist[s : s + block] = np.sqrt(np.maximum(d2[np.arange(len(blk)), j], 0) / a.shape[1])
    return idx, dist


def memorisation(samples, used, used_ids, not_used, not_used_ids):
    """Per sample: RMSE to the nearest training (used) slice and to the nearest not-used slice.

    Samples that sit much closer to training slices than to held-out ones were memorised;
    the not-used slices' own distance to the training set is the baseline for "close".
    """
    i_u, d_u = _nearest(samples, used)
    i_n, d_n = _nearest(samples, not_used)
    return pd.DataFrame(
        {
            "sample": np.arange(len(samples)),
            "nn_used_id": np.asarray(used_ids)[i_u],
            "nn_used_rmse": d_u,
            "nn_not_used_id": np.asarray(not_used_ids)[i_n],
            "nn_not_used_rmse": d_n,
        }
    )


def memorisation_summary(name, table, used, not_used):
    """One line: median distances, near copies, and the real-to-real baseline.

    The baseline is each not-used slice's distance to its nearest training slice; a sample
    nearer a training slice than the baseline's 5th percentile counts as a near copy. The
    share of samples nearer the used than the not-used side is shown too, but the two sides
    hold different patients, so even an untrained model leans to one side.
    """
    _, base = _nearest(not_used, used)
    cut = np.percentile(base, 5)
    copies = float((table.nn_used_rmse < cut).mean())
    closer = float((table.nn_used_rmse < table.nn_not_used_rmse).mean())
    return (
        f"{name}: median RMSE to nearest training slice {table.nn_used_rmse.median():.4f} "
        f"(not-used slice {table.nn_not_used_rmse.median():.4f}); near copies {copies:.0%} "
        f"(RMSE < {cut:.4f}, the 5th percentile of not-used -> training, median "
        f"{np.median(base):.4f}); {closer:.0%} nearer the used side"
    )


def copying_summary(name, samples, used, not_used, seed=0):
    """One line: Meehan et al.'s data-copying test and Alaa et al.'s non-authentic share
    (`gantrace.membership.copying`) in pixel space ([0, 1] scale, flattened)."""
    flat = [np.asarray(a, np.float32).reshape(len(a), -1) / 255 for a in (samples, used, not_used)]
    try:
        summary, _ = DataCopyingTest(random_state=seed).test(flat[1], flat[2], flat[0])
    except GantraceError as err:  # too few slices for its cells: say so, keep the report
        return f"{name}: data-copying test not run ({err})"
    share = float(1 - authenticity(flat[1], flat[0]).authentic.mean())
    return f"{name}: {verdict(summary, share)}"


def write_report(
    name, samples_npz, split_csv, resolution, out_grid, out_table, out_summary, seed=0
):
    """Grid PNG, per-sample nearest-slice table and the summary lines of one generator:
    distances to the nearest slices, then the data-copying test."""
    from gantrace.benchmark_builder.train import load_slices  # train loads torch (generators)

    samples = np.load(samples_npz)["images"]
    split = pd.read_csv(split_csv, dtype={"image_id": str})
    used = split.used.to_numpy() == 1
    real = load_slices(list(split.path), resolution)
    ids = split.image_id.to_numpy()
    sample_grid(samples, out_grid)
    table = memorisation(samples, real[used], ids[used], real[~used], ids[~used])
    table.to_csv(out_table, index=False)
    line = memorisation_summary(name, table, real[used], real[~used])
    line += "\n" + copying_summary(name, samples, real[used], real[~used], seed)
    Path(out_summary).write_text(line + "\n")
    print(line)
