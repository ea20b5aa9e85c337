"""Operations on uint8 grey images that several packages share: Otsu's threshold, resizing.

Preprocessing (`binarise`), the classical lung pseudo-masks, the fine-tuned CNNs and the
benchmark builder each used their own copy; one copy each now, with the differences that
change results (how a resize is computed) kept as a parameter.
"""

import numpy as np
from PIL import Image


def otsu_threshold(images, within=None, chunk=256):
    """Otsu's threshold t of a uint8 image (H, W), or of each image of a stack (N, H, W).

    Pixels > t are the foreground. `within` (bool, the images' shape) restricts the pixels
    counted. Returns an int for one image, an (N,) int array for a stack. An image with no
    counted pixel or a single grey level gets t = 0. Histograms are built `chunk` images at
    a time.
    """
    images = np.asarray(images, dtype=np.uint8)
    if images.ndim == 2:
        one = None if within is None else np.asarray(within)[None]
        return int(otsu_threshold(images[None], one, chunk)[0])
    n = len(images)
    hist = np.zeros((n, 256), dtype=np.float64)
    for s in range(0, n, chunk):
        block = images[s : s + chunk].reshape(-1, images[0].size if n else 0)
        m = len(block)
        codes = block.astype(np.int64) + (np.arange(m, dtype=np.int64) * 256)[:, None]
        if within is not None:
            codes = codes[np.asarray(within[s : s + chunk], dtype=bool).reshape(m, -1)]
        hist[s : s + m] = np.bincount(codes.ravel(), minlength=m * 256).reshape(m, 256)
    levels = np.arange(256, dtype=np.float64)
    w0 = np.cumsum(hist, axis=1)  # pixels <= t
    m0 = np.cumsum(hist * levels, axis=1)
    total, mtotal = w0[:, -1:], m0[:, -1:]
    w1 = total - w0
    with np.errstate(divide="ignore", invalid="ignore"):
        between = w0 * w1 * (m0 / w0 - (mtotal - m0) / w1) ** 2
    # t with an empty class (0/0) never wins; nor does it where every t has one (t = 0)
    between = np.nan_to_num(between, nan=-1.0, posinf=-1.0, neginf=-1.0)
    return between.argmax(axis=1)


# Pillow's filters, by the names the config uses (benchmark.upsample.mode).
RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}
TORCH_BILINEAR = "torch-bilinear"


def resize_images(images, size, resample):
    """uint8 (N, H, W) -> uint8 (N, size, size); images already that size are returned as is.

    `resample` is a Pillow filter name (`RESAMPLE`: image by image, in Pillow's 8-bit
    arithmetic) or "torch-bilinear" (antialiased bilinear in float32, rounded, 256 images
    at a time). The two bilinear ones differ in the last grey level here and there, so each
    caller keeps the one its results were made with.
    """
    images = np.asarray(images, dtype=np.uint8)
    if images.shape[1:] == (size, size):
        return images
    if resample != TORCH_BILINEAR:
        return np.stack(
            [
                np.asarray(Image.fromarray(a).resize((size, size), RESAMPLE[resample]))
                for a in images
            ]
        )
    # torch only here: the Pillow filters must not load it (the benchmark's CPU jobs)
    import torch
    import torch.nn.functional as F

    out = np.empty((len(images), size, size), np.uint8)
    for i in range(0, len(images), 256):
        x = torch.from_numpy(images[i : i + 256]).unsqueeze(1).float()
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True)
        out[i : i + 256] = x.round().clamp_(0, 255).to(torch.uint8)[:, 0].numpy()
    return out
