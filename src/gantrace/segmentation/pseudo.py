"""Classical lung pseudo-masks: thresholds and morphology, no training.

`pseudo_masks` supplies masks where a data set has none (`segmentation.mask_source:
threshold`), e.g. to train the U-Net of `gantrace.segmentation.unet`.
"""

import numpy as np
from scipy import ndimage

from gantrace.imaging import otsu_threshold


def disk(radius):
    """Bool (2r+1, 2r+1) disk: the structuring element of the masks' morphology."""
    r = int(radius)
    y, x = np.ogrid[-r : r + 1, -r : r + 1]
    return x * x + y * y <= r * r


def largest_components(labels, count, k):
    """Labels of the k largest components (label ids, areas), largest first."""
    if count == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    areas = np.bincount(labels.ravel(), minlength=count + 1)[1:]
    order = np.argsort(-areas, kind="stable")[:k]
    return order + 1, areas[order]


def pseudo_masks(images, body_threshold=None, lung_threshold=None, min_area=None):
    """Classical lung masks for uint8 (N, H, W) slices; returns bool (N, H, W).

    Body: pixels above `body_threshold` (default: per-image Otsu, kept within [20, 120]),
    largest component, closed and hole-filled. Lungs: pixels at or below `lung_threshold`
    (default: Otsu of the body's pixels) that lie inside the body and are not connected to
    the air around it, opened and closed, then the two largest components of at least
    `min_area` pixels (default 0.2 % of the slice), hole-filled.
    """
    images = np.asarray(images)
    if images.ndim != 3:
        raise ValueError(f"pseudo_masks expects (N, H, W) images, got shape {images.shape}")
    images = images.astype(np.uint8, copy=False)
    n, h, w = images.shape
    out = np.zeros((n, h, w), dtype=bool)
    if n == 0:
        return out
    scale = max(h, w) / 256.0
    radius = max(1, round(2 * scale))
    footprint = disk(radius)
    min_area = int(min_area if min_area is not None else max(16, 0.002 * h * w))
    eight = np.ones((3, 3), dtype=bool)

    if body_threshold is None:
        t_body = np.clip(otsu_threshold(images), 20, 120)
    else:
        t_body = np.full(n, int(body_threshold))
    bodies = np.zeros((n, h, w), dtype=bool)
    for i in range(n):
        above = images[i] > t_body[i]
        labels, count = ndimage.label(above)
        ids, _ = largest_components(labels, count, 1)
        if not len(ids):
            continue
        body = labels == ids[0]
        body = ndimage.binary_closing(body, structure=footprint, border_value=0)
        bodies[i] = ndimage.binary_fill_holes(body)

    if lung_threshold is None:
        t_lung = otsu_threshold(images, within=bodies)
    else:
        t_lung = np.full(n, int(lung_threshold))
    dark = images <= t_lung[:, None, None]
    for i in range(n):
        if not bodies[i].any():
            continue
        # Dark pixels reachable from the image border are the air outside the patient.
        labels, _ = ndimage.label(dark[i], structure=eight)
        border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
        outside = np.isin(labels, border[border > 0])
        inner = ndimage.binary_erosion(bodies[i], structure=footprint, border_value=0)
        lungs = dark[i] & inner & ~outside
        lungs = ndimage.binary_opening(lungs, structure=footprint)
        lungs = ndimage.binary_closing(lungs, structure=footprint, border_value=0)
        labels, count = ndimage.label(lungs)
        ids, areas = largest_components(labels, count, 2)
        keep = ids[areas >= min_area]
        if len(keep):
            out[i] = ndimage.binary_fill_holes(np.isin(labels, keep))
    return out
