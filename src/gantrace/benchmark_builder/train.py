"""Train one configured generator on the used slices and sample from it."""

import time
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from gantrace.benchmark_builder.generators import build_generator, load_generator
from gantrace.errors import ConfigError
from gantrace.imaging import RESAMPLE


def load_slices(paths, size):
    """8-bit grey slices as uint8 N x size x size (Pillow decode; Lanczos resize if needed)."""
    out = np.empty((len(paths), size, size), np.uint8)
    for i, path in enumerate(paths):
        try:
            with Image.open(path) as im:
                im = im.convert("L")
                if im.size != (size, size):
                    im = im.resize((size, size), RESAMPLE["lanczos"])
                out[i] = np.asarray(im)
        except OSError as err:
            raise ConfigError(f"benchmark.source: cannot decode {path}: {err}") from err
    return out


def used_paths(split_csv):
    split = pd.read_csv(split_csv, dtype={"image_id": str})
    return split, list(split.path[split.used == 1])


def train_generator(split_csv, spec, resolution, seed, device, out_model, out_losses, checkpoint):
    """Fit the generator of `spec` on the used slices; save weights and the loss curve."""
    _, paths = used_paths(split_csv)
    return train_on_slices(
        paths, spec, resolution, seed, device, out_model, out_losses, checkpoint, "used"
    )


def train_on_slices(paths, spec, resolution, seed, device, out_model, out_losses, checkpoint, what):
    """Fit the generator of `spec` on the slices `paths` (`what` names them in the log).

    `checkpoint` is kept outside the rule's outputs so a killed job resumes from it; it is
    removed once the model is saved.
    """
    images = load_slices(paths, resolution)
    model = build_generator(spec, seed=seed, device=device)
    print(
        f"training {model.name} on {len(images)} {what} slices at {resolution}x{resolution}: "
        f"{model.get_params()}"
    )
    t0 = time.time()
    model.fit(images, checkpoint=checkpoint)
    print(f"trained in {time.time() - t0:.1f} s on {model.device_}")
    model.save(out_model)
    Path(out_losses).parent.mkdir(parents=True, exist_ok=True)
    model.losses_.to_csv(out_losses, index=False)
    Path(checkpoint).unlink(missing_ok=True)
    return model


def draw_samples(model_path, n, seed, device):
    """n samples (uint8 n x H x W, training resolution) of a saved generator, seeded."""
    model = load_generator(model_path, device=device)
    t0 = time.time()
    images = model.sample(n, seed=seed)
    print(f"sampled {n} images from {model.name} in {time.time() - t0:.1f} s")
    return images


def sample_generator(model_path, n, seed, device, out_npz):
    """n samples of a saved generator to `out_npz`."""
    images = draw_samples(model_path, n, seed, device)
    Path(out_npz).parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out_npz, images=images)


def write_samples(model_path, paths, seed, device, size):
    """One sample of a saved generator per path in `paths`: 8-bit grey PNGs of size x size
    (Lanczos from the training resolution, as real slices are brought to it), seeded."""
    images = draw_samples(model_path, len(paths), seed, device)
    for path, image in zip(paths, images, strict=True):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        im = Image.fromarray(image, mode="L")
        if im.size != (size, size):
            im = im.resize((size, size), RESAMPLE["lanczos"])
        im.save(path)
