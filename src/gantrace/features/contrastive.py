"""A self-supervised encoder learned from a data set's real slices: features that need
neither labels nor downloaded weights.

SimCLR (Chen, Kornblith, Norouzi & Hinton, "A Simple Framework for Contrastive Learning of
Visual Representations", ICML 2020): two random views of each image go through the
encoder and a small projection head; the NT-Xent loss pulls each pair together and pushes
it away from the other images of the batch. Views suited to CT slices: a random resized
crop of mild scale, a small rotation, a left-right flip, intensity jitter (contrast and
brightness) and gamma, Gaussian noise; no colour jitter (grey images). The features are
the encoder's (not the projection head's) output.

It trains on the REAL slices only (real_used, real_not_used, real_unknown, real_subset:
every manifest role starting with `real`) and reads no label: which real slice was used
to train the generator never enters. Generated images are only embedded. `train_from`
trains on another data set's real slices instead (an attribution data set has none).

`ContrastiveEncoder` is the estimator (fit / embed / save); `ContrastiveFeature` the
registered extractor (`name: contrastive`, learned by the `train_features` rule);
`train_features` the workflow stage.
"""

import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from gantrace import __version__, io
from gantrace.errors import GantraceError
from gantrace.features.base import FEATURES, FeatureExtractor
from gantrace.features.finetuned import (
    PlainCNN,
    fresh_dir,
    read_learned_inputs,
    write_learned,
)
from gantrace.imaging import TORCH_BILINEAR, resize_images
from gantrace.nn.batchnorm import recalibrate_batchnorm
from gantrace.nn.checkpoint import TRAINER, TrainingState, fingerprint, resume, write_checkpoint
from gantrace.nn.epochs import EpochShuffle
from gantrace.nn.optim import cosine_schedule, grad_scaler, optimiser_step
from gantrace.nn.seeding import seed_everything
from gantrace.params import (
    COUNT,
    DEVICE,
    POSITIVE,
    SEED,
    InstanceOf,
    Interval,
    Part,
    validate,
)
from gantrace.preprocess import build_preprocessor
from gantrace.runlog import say
from gantrace.torch_env import autocast, pick_device

_FORMAT = "gantrace.ContrastiveEncoder"
# What the estimator and the feature both take, declared once.
TRAINING_CONSTRAINTS = {
    "width": [COUNT],
    "depth": [COUNT],
    "input_size": [Interval(int, 8)],
    "epochs": [COUNT],
    "lr": [POSITIVE],
    "temperature": [POSITIVE],
    "proj_dim": [COUNT],
    "crop_scale": [Interval(float, 0, 1, closed="right")],
    "rotation": [Interval(float, 0, 180, unit="degrees")],
    "flip": [bool],
    "intensity": [Interval(float, 0, 1, closed="left")],
    "gamma": [Interval(float, 0, 2)],
    "noise": [Interval(float, 0, unit="fraction of the grey range")],
}
DEFAULTS = {
    "width": 16,
    "depth": 3,
    "input_size": 64,
    "epochs": 5,
    "lr": 1e-3,
    "temperature": 0.2,
    "proj_dim": 64,
    "crop_scale": 0.7,
    "rotation": 10.0,
    "flip": True,
    "intensity": 0.1,
    "gamma": 0.3,
    "noise": 0.02,
}


# -- views and loss --------------------------------------------------------------------------
def augment(x, generator, crop_scale, rotation, flip, intensity, gamma, noise):
    """A random view of each image of x (float (B, 1, S, S) in [0, 1]), drawn from
    `generator` (a CPU torch.Generator, so a seed gives the same views on any device).

    One affine warp per image: zoom to a crop of area share in [crop_scale, 1] at a random
    position, rotate by up to `rotation` degrees, flip left-right with probability 1/2
    (`flip`); then contrast a in [1 - intensity, 1 + intensity] and brightness b in
    [-intensity/2, intensity/2] (x -> a x + b), gamma exp(U(-gamma, gamma)), and Gaussian
    noise of sd `noise`. Returns [-1, 1] inputs."""
    b = len(x)

    def uniform(low, high, *shape):
        return low + (high - low) * torch.rand(b, *shape, generator=generator)

    side = uniform(math.sqrt(crop_scale), 1.0)  # crop side: its area share is side**2
    theta = uniform(-rotation, rotation) * math.pi / 180
    mirror = torch.where(torch.rand(b, generator=generator) < 0.5, -1.0, 1.0) if flip else 1.0
    shift = uniform(-1, 1, 2) * (1 - side)[:, None]  # keep the crop inside the image
    cos, sin = torch.cos(theta) * side, torch.sin(theta) * side
    affine = torch.stack(
        [
            torch.stack([cos * mirror, -sin, shift[:, 0]], 1),
            torch.stack([sin * mirror, cos, shift[:, 1]], 1),
        ],
        1,
    )
    contrast = uniform(1 - intensity, 1 + intensity)
    brightness = uniform(-intensity / 2, intensity / 2)
    power = torch.exp(uniform(-gamma, gamma))
    jitter = torch.randn(x.shape, generator=generator) * noise
    device = x.device
    grid = F.affine_grid(affine.to(device), list(x.shape), align_corners=False)
    view = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    view = view * contrast.to(device).view(b, 1, 1, 1) + brightness.to(device).view(b, 1, 1, 1)
    view = view.clamp(0, 1) ** power.to(device).view(b, 1, 1, 1)
    return (view + jitter.to(device)).mul(2).sub(1)


def nt_xent(z1, z2, temperature):
    """SimCLR's normalised-temperature cross-entropy of the 2B projections: each view's
    positive is the other view of its image, its negatives the 2B - 2 other views."""
    z = F.normalize(torch.cat([z1, z2]).float(), dim=1)
    n = len(z1)
    sim = z @ z.T / temperature
    sim.fill_diagonal_(float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(sim, target)


class _Net(nn.Module):
    """Encoder (the features) + projection head (the loss only)."""

    def __init__(self, width, depth, input_size, proj_dim):
        super().__init__()
        self.encoder = PlainCNN(width=width, depth=depth, input_size=input_size)
        d = self.encoder.out_dim
        self.head = nn.Sequential(nn.Linear(d, d), nn.ReLU(inplace=True), nn.Linear(d, proj_dim))

    def forward(self, x):
        return self.encoder(x)


# -- the estimator -----------------------------------------------------------------------------
class ContrastiveEncoder(Part):
    """A small CNN (`PlainCNN`: `depth` conv stages from `width` channels) trained with
    SimCLR's loss on unlabelled grey images; sklearn-like fit / embed / save.

    AdamW with cosine decay to 5 % of `lr`; each epoch's order seeded from (seed, epoch),
    the views from one CPU generator seeded by `seed` and saved in the checkpoint, so
    `fit(..., checkpoint=path)` resumes a killed run to the same weights (on CPU).
    """

    name = "contrastive"
    trains = True
    _parameter_constraints = {
        **TRAINING_CONSTRAINTS,
        "batch_size": [Interval(int, 2)],
        "seed": [SEED],
        "device": [DEVICE],
    }

    def __init__(
        self,
        width=DEFAULTS["width"],
        depth=DEFAULTS["depth"],
        input_size=DEFAULTS["input_size"],
        epochs=DEFAULTS["epochs"],
        batch_size=64,
        lr=DEFAULTS["lr"],
        temperature=DEFAULTS["temperature"],
        proj_dim=DEFAULTS["proj_dim"],
        crop_scale=DEFAULTS["crop_scale"],
        rotation=DEFAULTS["rotation"],
        flip=DEFAULTS["flip"],
        intensity=DEFAULTS["intensity"],
        gamma=DEFAULTS["gamma"],
        noise=DEFAULTS["noise"],
        seed=0,
        device="auto",
    ):
        self.width, self.depth, self.input_size = width, depth, input_size
        self.epochs, self.batch_size, self.lr = epochs, batch_size, lr
        self.temperature, self.proj_dim = temperature, proj_dim
        self.crop_scale, self.rotation, self.flip = crop_scale, rotation, flip
        self.intensity, self.gamma, self.noise = intensity, gamma, noise
        self.seed, self.device = seed, device
        self._validate_params()
        self.model_ = None
        self.loss_history_ = []

    def _stored_params(self):
        """Parameters less `device` (where it ran, not what it is)."""
        return {k: v for k, v in self.get_params().items() if k != "device"}

    def _inputs(self, batch_u8, device):
        x = batch_u8.to(device, non_blocking=True).unsqueeze(1).float().div_(255.0)
        if x.shape[-1] != self.input_size or x.shape[-2] != self.input_size:
            x = F.interpolate(x, size=(self.input_size,) * 2, mode="bilinear", align_corners=False)
        return x

    def fit(self, images, log=None, checkpoint=None):
        """Train on uint8 (N, H, W) images (no labels); returns self."""
        images = np.asarray(images, dtype=np.uint8)
        if images.ndim != 3 or len(images) < 2:
            raise GantraceError(
                f"contrastive: needs at least 2 images (N, H, W) to train on, got {images.shape}"
            )
        device = self.device_ = pick_device(self.device)
        seed_everything(self.seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            model = _Net(self.width, self.depth, self.input_size, self.proj_dim).to(device)
        self.model_ = model
        views = torch.Generator().manual_seed(self.seed + 1)
        sampler = EpochShuffle(len(images), self.seed)
        loader = torch.utils.data.DataLoader(
            torch.utils.data.TensorDataset(torch.from_numpy(images)),
            batch_size=min(self.batch_size, len(images)),
            sampler=sampler,
            drop_last=len(images) % min(self.batch_size, len(images)) == 1,  # NT-Xent, BN: >= 2
            pin_memory=device.type == "cuda",
        )
        optimiser = torch.optim.AdamW(model.parameters(), lr=self.lr)
        scaler = grad_scaler(device)
        schedule = cosine_schedule(optimiser, max(self.epochs * len(loader), 1))
        state = TrainingState(
            model, optimiser, generator=views, others={"schedule": schedule, "scaler": scaler}
        )
        losses, done, made_for = [], 0, None
        if checkpoint is not None:
            made_for = fingerprint(self._stored_params(), device, images)
            found = resume(checkpoint, made_for, TRAINER, state, lambda m: say(f"ssl: {m}", log))
            if found is not None:
                done = found.done
                losses = [float(v) for v in found.metadata["history"]["loss_history"]]
                say(f"contrastive: resuming {checkpoint} after epoch {done}/{self.epochs}", log)
        jitter = dict(
            crop_scale=self.crop_scale,
            rotation=self.rotation,
            flip=self.flip,
            intensity=self.intensity,
            gamma=self.gamma,
            noise=self.noise,
        )
        for epoch in range(done + 1, self.epochs + 1):
            sampler.epoch = epoch
            model.train()
            t0, total, seen = time.perf_counter(), 0.0, 0
            for (xb,) in loader:
                x = self._inputs(xb, device)
                v1, v2 = augment(x, views, **jitter), augment(x, views, **jitter)
                with autocast(device):
                    z = model.head(model(torch.cat([v1, v2])))
                loss = nt_xent(z[: len(x)], z[len(x) :], self.temperature)
                optimiser_step(loss, optimiser, scaler, schedule)
                total += float(loss.detach()) * len(x)
                seen += len(x)
            losses.append(total / max(seen, 1))
            say(
                f"contrastive epoch {epoch}/{self.epochs} loss {losses[-1]:.4f} "
                f"{seen / max(time.perf_counter() - t0, 1e-9):.1f} img/s ({device.type})",
                log,
            )
            if checkpoint is not None:
                history = {"loss_history": losses, "val_history": [], "val_dice": None}
                write_checkpoint(checkpoint, made_for, epoch, TRAINER, state, history)
        self.loss_history_ = losses

        def batches():  # BatchNorm statistics of the un-augmented training images
            for i in range(0, len(images), self.batch_size):
                xb = torch.from_numpy(np.ascontiguousarray(images[i : i + self.batch_size]))
                if len(xb) >= 2:
                    yield self._inputs(xb, device).mul(2).sub(1)

        recalibrate_batchnorm(model, batches(), device)
        return self

    def embed(self, images, batch_size=None):
        """Encoder features (N, D) float32 of uint8 (N, H, W) images."""
        if self.model_ is None:
            raise GantraceError("ContrastiveEncoder is not fitted: call fit() first")
        images = np.asarray(images, dtype=np.uint8)
        step, out = int(batch_size or self.batch_size), []
        self.model_.eval()
        with torch.inference_mode():
            for i in range(0, len(images), step):
                xb = torch.from_numpy(np.ascontiguousarray(images[i : i + step]))
                with autocast(self.device_):
                    f = self.model_(self._inputs(xb, self.device_).mul(2).sub(1))
                out.append(f.float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, 0), np.float32)

    def save(self, path):
        """Weights as safetensors with the parameters and loss history in the metadata,
        plus a readable `<path>.json` sidecar; both atomic."""
        from safetensors.torch import save_file  # only a fitted encoder is saved

        state = {k: v.detach().cpu().contiguous() for k, v in self.model_.state_dict().items()}
        info = {"params": self._stored_params(), "loss_history": self.loss_history_}
        meta = {"format": _FORMAT, "gantrace_version": __version__, "info": json.dumps(info)}
        with io.atomic_path(path) as tmp:
            save_file(state, str(tmp), metadata=meta)
        with io.atomic_path(Path(str(path) + ".json")) as tmp:
            tmp.write_text(json.dumps({"format": _FORMAT, **info}, indent=2, sort_keys=True))


# -- the learned feature -----------------------------------------------------------------------
@FEATURES.register
class ContrastiveFeature(FeatureExtractor):
    """A config spec (`name: contrastive`) -> features of every image of a data set from a
    `ContrastiveEncoder` trained on its real slices (or `train_from`'s), no labels read.

    CPU-sized defaults (64 px, width 16, depth 3, 5 epochs); for real use raise
    `epochs` (e.g. 100), `width` and `batch_size` (SimCLR likes large batches) on a GPU.
    """

    name = "contrastive"
    learned = True
    supervised = False  # reads no label: runs on test sets too
    uses_torch = True
    _parameter_constraints = {
        **TRAINING_CONSTRAINTS,
        "batch_size": [Interval(int, 2)],
        "train_from": [
            None,
            InstanceOf(str, what="the name of a dataset whose real slices it trains on"),
        ],
        "seed": [None, SEED],
    }

    def __init__(
        self,
        config_key="features.contrastive",
        *,
        width=DEFAULTS["width"],
        depth=DEFAULTS["depth"],
        input_size=DEFAULTS["input_size"],
        epochs=DEFAULTS["epochs"],
        batch_size=64,
        lr=DEFAULTS["lr"],
        temperature=DEFAULTS["temperature"],
        proj_dim=DEFAULTS["proj_dim"],
        crop_scale=DEFAULTS["crop_scale"],
        rotation=DEFAULTS["rotation"],
        flip=DEFAULTS["flip"],
        intensity=DEFAULTS["intensity"],
        gamma=DEFAULTS["gamma"],
        noise=DEFAULTS["noise"],
        train_from=None,
        preprocess=None,
        seed=None,
        **unknown,
    ):
        # a misspelt keyword of a direct call: the same ConfigError as in a spec
        FEATURES.check_params(type(self), unknown, config_key, injected=("config_key",))
        self.config_key = config_key
        given = dict(locals())
        keys = [*DEFAULTS, "batch_size", "train_from", "preprocess", "seed"]
        self.params = {k: given[k] for k in keys}
        validate(config_key, self.params, self.constraints())
        self.preprocessor = (
            None
            if preprocess is None
            else build_preprocessor(preprocess, f"{config_key}.preprocess")
        )

    def prepare(self, images):
        """Preprocess (if asked) at full size, then shrink to input_size (uint8)."""
        if self.preprocessor:
            images = self.preprocessor.transform(np.asarray(images, dtype=np.uint8))
        return resize_images(images, self.params["input_size"], TORCH_BILINEAR)

    def encoder(self, seed, device):
        p = self.params
        return ContrastiveEncoder(
            **{k: p[k] for k in DEFAULTS}, batch_size=p["batch_size"], seed=seed, device=device
        )

    def fit_transform(self, images, train, seed=0, device="auto", checkpoint=None, log=None):
        """Features of every row of `images` (prepared uint8) from an encoder trained on
        `train` (prepared uint8 real slices); returns (features, the fitted encoder)."""
        seed = int(self.params["seed"] if self.params["seed"] is not None else seed)
        encoder = self.encoder(seed, device).fit(train, log=log, checkpoint=checkpoint)
        return encoder.embed(images), encoder


def real_rows(manifest, ids):
    """Boolean mask of `ids` whose manifest role is a real one (real_used, ...)."""
    roles = manifest.set_index("image_id").loc[list(ids)].role.astype(str)
    return roles.str.startswith("real").to_numpy()


def train_features(
    name,
    spec,
    shards,
    manifest_path,
    out_h5,
    model_dir,
    checkpoint_dir,
    seed=0,
    device="auto",
    train_shards=None,
    train_manifest=None,
    log=None,
):
    """The `train_features` rule for `contrastive`: train the encoder on the real slices
    (of `train_shards` when the spec has train_from), embed every image of the data set
    into `out_h5` (rows sorted by id), save the encoder in `model_dir`."""
    t0 = time.perf_counter()
    feature, manifest, ids, images, other = read_learned_inputs(
        name, spec, shards, manifest_path, train_shards, train_manifest
    )
    if other:
        tman, tids, timages = other
        train, source = timages[real_rows(tman, tids)], train_manifest
    else:
        train, source = images[real_rows(manifest, ids)], manifest_path
    if len(train) < 2:
        raise GantraceError(
            f"features.{name}: {source} lists {len(train)} real image(s) to train the "
            "contrastive encoder on; set its train_from to a dataset with real slices"
        )
    say(f"{name}: training on {len(train)} real slices (no labels); {len(ids)} images", log)
    model_dir = fresh_dir(model_dir)
    checkpoint_dir = Path(checkpoint_dir)
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    x, encoder = feature.fit_transform(
        images, train, seed, device, checkpoint_dir / "encoder.safetensors", log
    )
    encoder.save(model_dir / "encoder.safetensors")
    attrs = {
        "weights": "none",
        "seed": int(encoder.seed),
        "n_train": len(train),
        "train_from": train_manifest or "none",
        "loss_history": json.dumps(encoder.loss_history_),
    }
    write_learned(name, feature, ids, x, attrs, (out_h5, model_dir, checkpoint_dir), t0, log)
