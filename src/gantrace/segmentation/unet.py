"""Lung segmentation: the small U-Net trained by the pipeline, and its training data.

`LungUNet` wraps a `segmentation_models_pytorch` U-Net behind an sklearn-like interface:
parameters in the constructor, `fit` / `predict`, and a safetensors file (never pickle) for
`save` / `load`. Masks to train it on come from a folder or from `segmentation.pseudo`.
"""

import json
import math
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from gantrace import __version__
from gantrace.data.loader import ShardDataset, shard_loader
from gantrace.data.shards import open_shard, read_images, write_masks
from gantrace.errors import ConfigError, GantraceError
from gantrace.evaluation.metrics import dice
from gantrace.io import atomic_path
from gantrace.nn.checkpoint import TRAINER, TrainingState, fingerprint, resume, write_checkpoint
from gantrace.nn.epochs import EpochShuffle
from gantrace.nn.optim import cosine_schedule, grad_scaler, optimiser_step
from gantrace.nn.seeding import seed_everything
from gantrace.params import COUNT, DEVICE, POSITIVE, SEED, Interval, ListOf, Part
from gantrace.runlog import say
from gantrace.segmentation.pseudo import pseudo_masks
from gantrace.torch_env import autocast, ensure_torchvision_ops, pick_device

_FORMAT = "gantrace.LungUNet"
_FORMAT_VERSION = "1"

# ----------------------------------------------------------------------------------------------
# U-Net


def _prune_unused(model, size):
    """Replace encoder stages the chosen depth never runs (e.g. resnet layer3/4) by Identity.

    smp builds the whole backbone whatever `encoder_depth` is; the idle stages would only
    bloat the saved file. Which children run is found with a dummy forward pass.
    """
    used = set()
    children = dict(model.encoder.named_children())
    hooks = [
        child.register_forward_hook(lambda *_, name=name: used.add(name))
        for name, child in children.items()
    ]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, 1, size, size))
    finally:
        for hk in hooks:
            hk.remove()
        model.train(was_training)
    for name, child in children.items():
        if name not in used and any(True for _ in child.parameters()):
            setattr(model.encoder, name, torch.nn.Identity())


def _to_input(batch_u8, size, device):
    """uint8 (B, H, W) -> float (B, 1, size, size) on `device`, scaled to [-1, 1]."""
    x = batch_u8.to(device, non_blocking=True).unsqueeze(1).float().div_(127.5).sub_(1.0)
    if x.shape[-2:] != (size, size):
        x = F.interpolate(
            x, size=(size, size), mode="bilinear", align_corners=False, antialias=True
        )
    return x


def _to_target(batch_mask, size, device):
    y = batch_mask.to(device, non_blocking=True).unsqueeze(1).float()
    if y.shape[-2:] != (size, size):
        y = F.interpolate(y, size=(size, size), mode="nearest-exact")
    return y


def _loss(logits, target):
    """Binary cross-entropy plus soft Dice (per image, averaged), in float32."""
    logits = logits.float()
    bce = F.binary_cross_entropy_with_logits(logits, target)
    prob = torch.sigmoid(logits).flatten(1)
    t = target.flatten(1)
    inter = (prob * t).sum(1)
    soft_dice = (2 * inter + 1.0) / (prob.sum(1) + t.sum(1) + 1.0)
    return bce + (1.0 - soft_dice).mean()


def _check_stack(images, name="images"):
    images = np.asarray(images)
    if images.ndim != 3:
        raise ValueError(f"LungUNet expects {name} as (N, H, W), got shape {images.shape}")
    return images


class LungUNet(Part):
    """U-Net lung segmenter with an sklearn-like interface.

    Trains at `input_size` (images resized bilinearly, masks by nearest neighbour, on the
    fly) with BCE + soft-Dice loss and Adam (cosine decay to 5 % of `lr`), and predicts at
    each image's own size by upsampling the logits. Defaults are sized
    to train on a couple of CPU cores in about a minute; raise `input_size`,
    `decoder_channels`, `encoder_depth` and `epochs` on a GPU.
    """

    name = "segmentation"  # parameter errors name the config section
    _parameter_constraints = {
        "encoder": [str],
        "encoder_depth": [Interval(int, 1, 5)],
        "decoder_channels": [ListOf(COUNT)],  # one per encoder stage
        "input_size": [COUNT],  # a multiple of 2**encoder_depth
        "epochs": [COUNT],
        "batch_size": [COUNT],
        "lr": [POSITIVE],
        "val_fraction": [Interval(float, 0, 1, closed="left")],
        "seed": [SEED],
        "device": [DEVICE],
        "num_workers": [Interval(int, 0)],
        "threshold": [Interval(float, 0, 1, closed="neither")],
    }

    def __init__(
        self,
        encoder="resnet18",
        encoder_depth=3,
        decoder_channels=(64, 32, 16),
        input_size=128,
        epochs=8,
        batch_size=16,
        lr=1e-3,
        val_fraction=0.2,
        seed=0,
        device="auto",
        num_workers=0,
        threshold=0.5,
    ):
        self.encoder = encoder
        self.encoder_depth = encoder_depth
        self.decoder_channels = decoder_channels
        self.input_size = input_size
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.val_fraction = val_fraction
        self.seed = seed
        self.device = device
        self.num_workers = num_workers
        self.threshold = threshold
        self._validate_params()  # the values as given: True is no epoch count
        # Stored as the types the model file has always held (an lr of 1 is written 1.0).
        self.decoder_channels = tuple(int(c) for c in decoder_channels)
        for key in ("encoder_depth", "input_size", "epochs", "batch_size", "seed", "num_workers"):
            setattr(self, key, int(getattr(self, key)))
        for key in ("lr", "val_fraction", "threshold"):
            setattr(self, key, float(getattr(self, key)))
        self._check_shapes()
        self.model_ = None
        self.device_ = None
        self.metrics_ = {}

    def _check_shapes(self):
        """The rules between parameters; each one alone is checked by its declaration."""

        def bad(key, why):
            raise ConfigError(f"segmentation.{key} = {getattr(self, key)!r}: {why}")

        if len(self.decoder_channels) != self.encoder_depth:
            bad("decoder_channels", f"needs one entry per encoder stage ({self.encoder_depth})")
        step = 2**self.encoder_depth
        if self.input_size < step or self.input_size % step:
            bad("input_size", f"must be a positive multiple of 2**encoder_depth = {step}")

    def _build(self):
        ensure_torchvision_ops()
        import segmentation_models_pytorch as smp

        try:
            model = smp.Unet(
                encoder_name=self.encoder,
                encoder_weights=None,
                encoder_depth=self.encoder_depth,
                decoder_channels=self.decoder_channels,
                in_channels=1,
                classes=1,
            )
        except (KeyError, ValueError) as exc:
            raise ConfigError(
                f"segmentation.encoder = {self.encoder!r}: smp cannot build it ({exc})"
            ) from exc
        _prune_unused(model, self.input_size)
        return model

    def _require_fitted(self):
        if self.model_ is None:
            raise GantraceError("LungUNet is not fitted: call fit() or LungUNet.load() first")

    # -- training -----------------------------------------------------------------------------

    def _split(self, n):
        n_val = int(round(n * self.val_fraction)) if self.val_fraction > 0 else 0
        if self.val_fraction > 0 and n >= 2:
            n_val = min(max(n_val, 1), n - 1)
        else:
            n_val = 0
        perm = np.random.default_rng(self.seed).permutation(n)
        return np.sort(perm[n_val:]), np.sort(perm[:n_val])

    def fit(self, images, masks, log=None, checkpoint=None):
        """Train on uint8 (N, H, W) images and bool (N, H, W) masks; returns self.

        With `checkpoint` (a file path), the full training state (weights, optimiser,
        schedule, loss scaler, RNG, histories) is written there atomically after every
        epoch, and a run that finds a checkpoint made for the same parameters, device type
        and data resumes after its last epoch. Each epoch's shuffle is seeded from
        (seed, epoch), so on CPU a resumed fit gives bit-identical weights to an
        uninterrupted one. A checkpoint for other data or parameters, or an unreadable
        one, is reported to `log` and ignored (training starts from epoch 0). The file is
        left in place; the caller deletes it once the model is saved.
        """
        images = _check_stack(images)
        masks = _check_stack(masks, "masks")
        if images.shape != masks.shape:
            raise ValueError(f"fit: images {images.shape} and masks {masks.shape} differ")
        if len(images) == 0:
            raise GantraceError("LungUNet.fit: no training images")
        start = time.perf_counter()
        device = pick_device(self.device)
        self.device_ = device
        seed_everything(self.seed)
        # channels_last: oneDNN (CPU) and cuDNN convolutions both run it faster.
        model = self._build().to(device, memory_format=torch.channels_last)
        self.model_ = model

        train_idx, val_idx = self._split(len(images))
        x_all = torch.from_numpy(np.ascontiguousarray(images, dtype=np.uint8))
        y_all = torch.from_numpy(np.ascontiguousarray(masks, dtype=bool).view(np.uint8))
        dataset = torch.utils.data.TensorDataset(x_all[train_idx], y_all[train_idx])
        sampler = EpochShuffle(len(train_idx), self.seed)
        loader = torch.utils.data.DataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=sampler,
            # only seeds worker processes (the data need no randomness); keeps the global
            # RNG untouched, so it is the same after any epoch with or without a resume
            generator=torch.Generator().manual_seed(self.seed),
            num_workers=self.num_workers,
            pin_memory=device.type == "cuda",
            persistent_workers=self.num_workers > 0,
        )
        optimiser = torch.optim.Adam(model.parameters(), lr=self.lr)
        scaler = grad_scaler(device)
        schedule = cosine_schedule(optimiser, self.epochs * len(loader))
        training = TrainingState(model, optimiser, others={"schedule": schedule, "scaler": scaler})
        val_images, val_masks = images[val_idx], np.asarray(masks[val_idx], dtype=bool)

        loss_history, val_history = [], []
        val_dice = None
        done = 0
        made_for = None
        if checkpoint is not None:
            made_for = self._fingerprint(images, masks, device)
            found = resume(
                checkpoint,
                made_for,
                TRAINER,
                training,
                lambda line: say(f"segment: {line}", log),
            )
            if found is not None:
                done, history = found.done, found.metadata["history"]
                loss_history = [float(v) for v in history["loss_history"]]
                val_history = [float(v) for v in history["val_history"]]
                val_dice = history["val_dice"]
                say(
                    f"segment: resuming from checkpoint {checkpoint} after epoch "
                    f"{done}/{self.epochs}",
                    log,
                )
        for epoch in range(done + 1, self.epochs + 1):
            sampler.epoch = epoch
            model.train()
            t0 = time.perf_counter()
            total, seen = 0.0, 0
            for xb, yb in loader:
                x = _to_input(xb, self.input_size, device)
                y = _to_target(yb, self.input_size, device)
                with autocast(device):
                    logits = model(x)
                loss = _loss(logits, y)
                optimiser_step(loss, optimiser, scaler, schedule)
                total += float(loss.detach()) * len(xb)
                seen += len(xb)
            rate = seen / max(time.perf_counter() - t0, 1e-9)
            loss_history.append(total / max(seen, 1))
            if len(val_idx):
                val_dice = float(dice(self.predict(val_images), val_masks).mean())
                val_history.append(val_dice)
            shown = "n/a" if val_dice is None else f"{val_dice:.4f}"
            say(
                f"segment epoch {epoch}/{self.epochs} loss {loss_history[-1]:.4f} "
                f"val_dice {shown} {rate:.1f} img/s ({device.type})",
                log,
            )
            if checkpoint is not None:
                write_checkpoint(
                    checkpoint,
                    made_for,
                    epoch,
                    TRAINER,
                    training,
                    {
                        "loss_history": loss_history,
                        "val_history": val_history,
                        "val_dice": val_dice,
                    },
                )
        train_dice = float(dice(self.predict(images[train_idx]), masks[train_idx]).mean())
        self.metrics_ = {
            "val_dice": val_dice,
            "train_dice": train_dice,
            "n_train": int(len(train_idx)),
            "n_val": int(len(val_idx)),
            "epochs": self.epochs,
            "seconds": round(time.perf_counter() - start, 3),
            "loss_history": [float(v) for v in loss_history],
            "val_dice_history": val_history,
            "device": device.type,
            "resumed_after_epoch": int(done),
        }
        return self

    def _fingerprint(self, images, masks, device):
        """What a checkpoint must have been made for: parameters, device type, data."""
        params = {k: v for k, v in self.get_params().items() if k not in ("device", "num_workers")}
        return fingerprint(params, device, np.asarray(images, np.uint8), np.asarray(masks, bool))

    # -- inference ----------------------------------------------------------------------------

    def predict(self, images, batch_size=None):
        """Bool (N, H, W) lung masks for uint8 (N, H, W) images, at the images' own size."""
        self._require_fitted()
        images = _check_stack(images)
        out = np.zeros(images.shape, dtype=bool)
        step = int(batch_size or self.batch_size)
        with self._inference():
            for i in range(0, len(images), step):
                batch = np.ascontiguousarray(images[i : i + step], np.uint8)
                out[i : i + step] = self._predict_batch(torch.from_numpy(batch))
        return out

    @contextmanager
    def _inference(self):
        was_training = self.model_.training
        self.model_.eval()
        try:
            with torch.inference_mode():
                yield
        finally:
            self.model_.train(was_training)

    def _predict_batch(self, batch):
        """Bool (B, H, W) masks of a uint8 (B, H, W) tensor (pinned memory copies async)."""
        h, w = batch.shape[-2:]
        cut = math.log(self.threshold / (1.0 - self.threshold))  # the threshold as a logit
        x = _to_input(batch, self.input_size, self.device_)
        with autocast(self.device_):
            logits = self.model_(x)
        logits = logits.float()
        if logits.shape[-2:] != (h, w):
            logits = F.interpolate(logits, size=(h, w), mode="bilinear", align_corners=False)
        return (logits[:, 0] > cut).cpu().numpy()

    def predict_shard(self, images_h5, out_h5, attrs=None, log=None, num_workers=0):
        """Segment one image shard and write its masks; returns stats.

        The shard streams through a DataLoader a batch at a time (`num_workers` reader
        processes, pinned batches on CUDA), as the feature stage does.
        """
        self._require_fitted()
        images_h5 = Path(images_h5)
        start = time.perf_counter()
        ids, shape, cache_bytes = open_shard(images_h5, batch_size=self.batch_size)
        n = shape[0]
        masks = np.zeros(shape, dtype=bool)
        dataset = ShardDataset(images_h5, n, cache_bytes=cache_bytes)
        loader = shard_loader(dataset, self.batch_size, num_workers, self.device_)
        try:
            with self._inference():
                for index, batch in loader:
                    masks[index.numpy()] = self._predict_batch(batch)
        finally:
            dataset.close()
        seconds = time.perf_counter() - start
        fractions = masks.reshape(n, -1).mean(axis=1) if n else np.zeros(0)
        stats = {
            "n_images": int(n),
            "n_empty": int(np.count_nonzero(fractions == 0)),
            "mean_lung_fraction": float(fractions.mean()) if n else 0.0,
            "seconds": round(seconds, 3),
            "images_per_s": round(n / max(seconds, 1e-9), 1),
        }
        meta = {
            "segmenter": "LungUNet",
            "encoder": self.encoder,
            "input_size": self.input_size,
            "threshold": self.threshold,
            "val_dice": self.metrics_.get("val_dice"),
            "source": images_h5.name,
        }
        meta.update(attrs or {})
        write_masks(out_h5, ids, masks, meta)
        say(
            f"segment {images_h5.name}: {n} images, {stats['n_empty']} empty masks, "
            f"mean lung fraction {stats['mean_lung_fraction']:.3f}, "
            f"{stats['images_per_s']} img/s",
            log,
        )
        return stats

    # -- persistence --------------------------------------------------------------------------

    def save(self, path):
        """Write the weights as safetensors (parameters and metrics in its metadata) plus a
        readable `<path>.json` sidecar; both written atomically."""
        from safetensors.torch import save_file

        self._require_fitted()
        path = Path(path)
        state = {k: v.detach().cpu().contiguous() for k, v in self.model_.state_dict().items()}
        info = {"params": self.get_params(), "metrics": self.metrics_}
        metadata = {
            "format": _FORMAT,
            "format_version": _FORMAT_VERSION,
            "gantrace_version": __version__,
            "params": json.dumps(info["params"], sort_keys=True),
            "metrics": json.dumps(info["metrics"], sort_keys=True),
        }
        with atomic_path(path) as tmp:
            save_file(state, str(tmp), metadata=metadata)
        sidecar = path.with_name(path.name + ".json")
        with atomic_path(sidecar) as tmp:
            tmp.write_text(json.dumps({"format": _FORMAT, **info}, indent=2, sort_keys=True))

    @classmethod
    def load(cls, path, device="auto"):
        """Rebuild a saved model from its safetensors file (no pickle involved)."""
        from safetensors import safe_open

        path = Path(path)
        if not path.is_file():
            raise GantraceError(f"{path}: segmentation model not found; run the training step")
        try:
            with safe_open(str(path), framework="pt", device="cpu") as f:
                metadata = f.metadata() or {}
                state = {k: f.get_tensor(k) for k in f.keys()}
        except Exception as exc:  # safetensors raises its own error types for bad headers
            raise GantraceError(f"{path}: not a readable safetensors file ({exc})") from exc
        if metadata.get("format") != _FORMAT:
            raise GantraceError(f"{path}: not a gantrace LungUNet file (format metadata missing)")
        try:
            params = json.loads(metadata["params"])
            metrics = json.loads(metadata.get("metrics", "{}"))
        except (KeyError, json.JSONDecodeError) as exc:
            raise GantraceError(f"{path}: corrupt LungUNet metadata ({exc})") from exc
        params["device"] = device
        try:
            obj = cls(**params)
        except (TypeError, ConfigError) as exc:
            raise GantraceError(f"{path}: stored parameters are not usable ({exc})") from exc
        model = obj._build()
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise GantraceError(
                f"{path}: weights do not fit the stored parameters ({exc})"
            ) from exc
        obj.device_ = pick_device(obj.device)
        obj.model_ = model.to(obj.device_, memory_format=torch.channels_last).eval()
        obj.metrics_ = metrics
        return obj


# ----------------------------------------------------------------------------------------------
# Training data


def _read_mask_png(path, shape):
    from PIL import Image

    try:
        with Image.open(path) as im:
            arr = np.asarray(im)
    except OSError as exc:
        raise GantraceError(f"{path}: cannot read mask image ({exc})") from exc
    if arr.ndim == 3:
        arr = arr[..., :3].max(axis=-1) if arr.shape[-1] in (3, 4) else arr.max(axis=-1)
    if arr.shape != tuple(shape):
        raise GantraceError(
            f"{path}: mask is {arr.shape[1]}x{arr.shape[0]} but its image is {shape[1]}x{shape[0]}"
        )
    return arr > 0


def training_pairs(image_h5_paths, mask_source, mask_dir=None, log=None):
    """Images of the given shards with lung masks; returns (ids, uint8 images, bool masks).

    mask_source "folder": masks from `mask_dir/<image_id>.png` (non-zero = lung); images
    without a mask are skipped. "threshold": `pseudo_masks` of every image.
    """
    if isinstance(image_h5_paths, (str, Path)):
        image_h5_paths = [image_h5_paths]
    if mask_source not in ("folder", "threshold"):
        raise ConfigError(
            f"segmentation.mask_source = {mask_source!r}: use 'folder' (mask PNGs in "
            "segmentation.mask_dir) or 'threshold' (classical pseudo-masks)"
        )
    ids, blocks = [], []
    for p in image_h5_paths:
        i, x = read_images(p)
        ids += i
        blocks.append(x)
    if blocks:
        images = np.concatenate(blocks)
    else:
        images = np.zeros((0, 0, 0), np.uint8)

    if mask_source == "threshold":
        return ids, images, pseudo_masks(images)

    if mask_dir is None:
        raise ConfigError(
            "segmentation.mask_dir is not set but segmentation.mask_source is "
            "'folder'; point it at a folder of <image_id>.png masks"
        )
    mask_dir = Path(mask_dir)
    if not mask_dir.is_dir():
        raise GantraceError(f"{mask_dir}: mask folder does not exist (segmentation.mask_dir)")
    keep, masks = [], []
    for j, image_id in enumerate(ids):
        png = mask_dir / f"{image_id}.png"
        if png.is_file():
            keep.append(j)
            masks.append(_read_mask_png(png, images.shape[1:]))
    if not keep:
        raise GantraceError(
            f"{mask_dir}: none of the {len(ids)} images has a mask <image_id>.png here"
        )
    if len(keep) < len(ids):
        say(
            f"training_pairs: {len(ids) - len(keep)} of {len(ids)} images have no "
            f"mask in {mask_dir}; skipped",
            log,
        )
    return [ids[j] for j in keep], images[keep], np.stack(masks)
