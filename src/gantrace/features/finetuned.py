"""Supervised CNNs trained on the labelled images of a data set, used as learned features.

The 2024 ImageCLEFmedical GANs methods that fine-tune CNNs (working notes, CEUR-WS
Vol-3740) become one feature extractor, `finetuned`, that a dataset-level rule trains and
applies:

- GAN-Amis: a small plain CNN (`arch: custom`) or a fine-tuned torchvision CNN trained on
  the dev generator labels; penultimate features feed k-means.
- SDVAHCS/UCSD: ResNet18/34/50 fine-tuned on the dev generators; the `n_pseudo` least
  confident test images become an extra "unseen generator" class and the net is retrained
  (`open_set`); the three nets form an `ensemble`.
- Inoue Koki: a ResNet-152 classifying real images as used / not used (`target:
  membership`), one per preprocessed input, combined by a membership fusion vote.

No label leaks: without `train_from`, the labelled rows are split into stratified folds and
the features of a fold come from nets trained on the other folds only; rows without a label
get features from a net trained on every labelled row. All nets of one feature start from
the same seeded initialisation, so the folds' feature spaces stay close; the probability
(or logit) columns are comparable across folds by construction.

`CNNClassifier` is the estimator (fit / embed / predict_proba / save / load, safetensors);
`LearnedFeature` turns a config spec into features of every image; `train_features` is the
workflow stage.
"""

import inspect
import json
import shutil
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from gantrace import __version__, io
from gantrace.data.groups import groups_or_none
from gantrace.data.shards import read_images
from gantrace.errors import ConfigError, GantraceError
from gantrace.features.base import FEATURES, FeatureExtractor
from gantrace.features.deep import IMAGENET_MEAN, IMAGENET_STD, TorchvisionExtractor
from gantrace.imaging import TORCH_BILINEAR, resize_images
from gantrace.membership.method import stratified_folds
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
    ListOf,
    Options,
    Part,
    validate,
)
from gantrace.preprocess import build_preprocessor
from gantrace.runlog import say
from gantrace.torch_env import autocast, pick_device

TARGETS = ("generator", "membership")
OUTPUTS = ("both", "penultimate", "probabilities")
CUSTOM = "custom"
_FORMAT = "gantrace.CNNClassifier"
# The custom trunk's shape (PlainCNN), declared once for the estimator and the feature.
CUSTOM_CONSTRAINTS = {
    "width": [COUNT],
    "bottleneck": [bool],
    "dense": [ListOf(COUNT, min_len=0)],
}


# -- networks ----------------------------------------------------------------------------------
class PlainCNN(nn.Module):
    """`depth` stages of two conv-bn-relu layers, each stage doubling the channels (from
    `width`) and ending in 2x2 max pooling; with `bottleneck`, two more conv-bn-relu layers
    at twice the last stage's channels; then global average pooling, or, given `dense`
    hidden sizes, flattening and ReLU dense layers, the last of which gives the features.

    GAN-Amis' custom CNN (Upganlawar et al., CEUR-WS Vol-3740, Sec. 4.1) is width 64,
    depth 4, bottleneck (1024 filters), dense [256, 64] on 256 x 256 grey images.
    """

    def __init__(self, width=16, depth=4, bottleneck=False, dense=(), input_size=64):
        super().__init__()
        layers, c_in = [], 1
        stages = [width * 2**i for i in range(depth)]
        for i, c_out in enumerate(stages + ([width * 2**depth] if bottleneck else [])):
            for c in (c_in, c_out):
                layers += [
                    nn.Conv2d(c, c_out, 3, padding=1, bias=False),
                    nn.BatchNorm2d(c_out),
                    nn.ReLU(inplace=True),
                ]
            if i < depth:  # the bottleneck keeps its size
                layers.append(nn.MaxPool2d(2))
            c_in = c_out
        self.body = nn.Sequential(*layers)
        side = input_size // 2**depth
        if dense and side < 1:
            raise ConfigError(f"custom CNN: input_size {input_size} is below 2**depth")
        head, d_in = [], c_in * side * side
        for units in dense:
            head += [nn.Linear(d_in, units), nn.ReLU(inplace=True)]
            d_in = units
        self.head = nn.Sequential(nn.Flatten(), *head) if dense else None
        self.out_dim = d_in if dense else c_in

    def forward(self, x):
        x = self.body(x)
        if self.head is None:
            return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        return self.head(x)


class _Net(nn.Module):
    """Trunk (penultimate features) + linear head; returns (features, logits)."""

    def __init__(self, trunk, dim, n_classes):
        super().__init__()
        self.trunk = trunk
        self.head = nn.Linear(dim, n_classes)

    def forward(self, x):
        f = self.trunk(x)
        return f, self.head(f)


def _trunk(arch, weights, input_size, custom, seed):
    """(trunk module, feature width, input channels); pretrained weights load fail-fast.
    `custom`: PlainCNN's width, bottleneck and dense (for arch custom)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if arch == CUSTOM:
            trunk = PlainCNN(input_size=input_size, **custom)
            return trunk, trunk.out_dim, 1
        # Validates arch/weights and raises WeightsError naming the missing file.
        ext = TorchvisionExtractor(arch=arch, weights=weights, input_size=input_size, seed=seed)
        ext.check_weights()
        trunk = ext.build_model()
    trunk.eval()
    with torch.no_grad():
        dim = trunk(torch.zeros(2, 3, input_size, input_size)).shape[1]
    return trunk.train(), int(dim), 3


def _to_input(batch_u8, size, channels, device):
    """uint8 (B, H, W) -> float (B, C, size, size): [-1, 1] for 1 channel, ImageNet else."""
    x = batch_u8.to(device, non_blocking=True).unsqueeze(1).float()
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    if channels == 1:
        return x.div_(127.5).sub_(1.0)
    mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)
    return (x / 255.0 - mean) / std


# -- the estimator -----------------------------------------------------------------------------
class CNNClassifier(Part):
    """A CNN image classifier with an sklearn-like interface.

    Trains with cross-entropy and AdamW (cosine decay to 5 % of `lr`), each epoch's shuffle
    seeded from (seed, epoch); `fit(..., checkpoint=path)` writes the training state after
    every epoch and resumes from it, giving the same weights as an uninterrupted run on CPU.
    """

    name = "finetuned"
    _parameter_constraints = {
        "arch": [str],
        "weights": [str],
        **CUSTOM_CONSTRAINTS,
        "input_size": [COUNT],
        "epochs": [COUNT],
        "batch_size": [COUNT],
        "lr": [POSITIVE],
        "seed": [SEED],
        "device": [DEVICE],
    }

    def __init__(
        self,
        arch=CUSTOM,
        weights="none",
        width=16,
        bottleneck=False,
        dense=(),
        input_size=64,
        epochs=3,
        batch_size=32,
        lr=1e-3,
        seed=0,
        device="auto",
    ):
        self.arch, self.weights, self.width = str(arch), str(weights), int(width)
        self.bottleneck, self.dense = bool(bottleneck), [int(u) for u in dense]
        self.input_size, self.epochs = int(input_size), int(epochs)
        self.batch_size, self.lr, self.seed = int(batch_size), float(lr), int(seed)
        self.device = str(device)
        self.model_ = None
        self.n_classes_ = None
        self.metrics_ = {}

    def _stored_params(self):
        """get_params() less `device` (where it ran, not what it is), in signature order:
        what model files and checkpoints have always held."""
        params = self.get_params()
        return {k: params[k] for k in inspect.signature(type(self)).parameters if k != "device"}

    def _build(self, n_classes, weights=None):
        w = self.weights if weights is None else weights
        custom = {"width": self.width, "bottleneck": self.bottleneck, "dense": self.dense}
        trunk, dim, self.channels_ = _trunk(self.arch, w, self.input_size, custom, self.seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed + 1)
            return _Net(trunk, dim, n_classes)

    def _fingerprint(self, images, y, device):
        return fingerprint(
            self._stored_params(), device, np.asarray(images, np.uint8), np.asarray(y, np.int64)
        )

    def fit(self, images, y, n_classes=None, log=None, checkpoint=None):
        """Train on uint8 (N, H, W) images and int class labels 0..K-1; returns self."""
        images = np.asarray(images, dtype=np.uint8)
        y = np.asarray(y, dtype=np.int64)
        if images.ndim != 3 or len(images) != len(y) or not len(y):
            raise GantraceError(f"CNNClassifier.fit: images {images.shape} for {len(y)} labels")
        k = int(n_classes or y.max() + 1)
        device = self.device_ = pick_device(self.device)
        seed_everything(self.seed)
        model = self._build(k).to(device)
        self.model_, self.n_classes_ = model, k
        data = torch.utils.data.TensorDataset(torch.from_numpy(images), torch.from_numpy(y))
        sampler = EpochShuffle(len(y), self.seed)
        loader = torch.utils.data.DataLoader(
            data,
            batch_size=self.batch_size,
            sampler=sampler,
            drop_last=len(y) % self.batch_size == 1,  # BatchNorm cannot train on one image
            pin_memory=device.type == "cuda",
        )
        optimiser = torch.optim.AdamW(model.parameters(), lr=self.lr)
        scaler = grad_scaler(device)
        schedule = cosine_schedule(optimiser, max(self.epochs * len(loader), 1))
        training = TrainingState(model, optimiser, others={"schedule": schedule, "scaler": scaler})
        losses, done, made_for = [], 0, None
        if checkpoint is not None:
            made_for = self._fingerprint(images, y, device)
            found = resume(
                checkpoint, made_for, TRAINER, training, lambda line: say(f"finetune: {line}", log)
            )
            if found is not None:
                done = found.done
                losses = [float(v) for v in found.metadata["history"]["loss_history"]]
                say(f"finetune: resuming {checkpoint} after epoch {done}/{self.epochs}", log)
        for epoch in range(done + 1, self.epochs + 1):
            sampler.epoch = epoch
            model.train()
            t0, total = time.perf_counter(), 0.0
            for xb, yb in loader:
                x = _to_input(xb, self.input_size, self.channels_, device)
                with autocast(device):
                    _, logits = model(x)
                loss = F.cross_entropy(logits.float(), yb.to(device))
                optimiser_step(loss, optimiser, scaler, schedule)
                total += float(loss.detach()) * len(xb)
            losses.append(total / len(y))
            say(
                f"finetune {self.arch} epoch {epoch}/{self.epochs} loss {losses[-1]:.4f} "
                f"{len(y) / max(time.perf_counter() - t0, 1e-9):.1f} img/s ({device.type})",
                log,
            )
            if checkpoint is not None:
                history = {"loss_history": losses, "val_history": [], "val_dice": None}
                write_checkpoint(checkpoint, made_for, epoch, TRAINER, training, history)
        self._recalibrate_bn(images)
        self.metrics_ = {"n_train": len(y), "n_classes": k, "loss_history": losses}
        return self

    def _recalibrate_bn(self, images):
        """BatchNorm statistics over the training images with the final weights
        (`recalibrate_batchnorm`)."""

        def batches():
            for i in range(0, len(images), self.batch_size):
                xb = torch.from_numpy(np.ascontiguousarray(images[i : i + self.batch_size]))
                if len(xb) >= 2:  # a batch of one has no batch statistics
                    yield _to_input(xb, self.input_size, self.channels_, self.device_)

        recalibrate_batchnorm(self.model_, batches(), self.device_)

    def embed(self, images, batch_size=None):
        """(penultimate features (N, D), logits (N, K)) as float32 arrays."""
        if self.model_ is None:
            raise GantraceError("CNNClassifier is not fitted: call fit() or load() first")
        images = np.asarray(images, dtype=np.uint8)
        model, device, step = self.model_, self.device_, int(batch_size or self.batch_size)
        feats, logits = [], []
        model.eval()
        with torch.inference_mode():
            for i in range(0, len(images), step):
                xb = torch.from_numpy(np.ascontiguousarray(images[i : i + step]))
                with autocast(device):
                    f, z = model(_to_input(xb, self.input_size, self.channels_, device))
                feats.append(f.float().cpu().numpy())
                logits.append(z.float().cpu().numpy())
        if not feats:
            return np.zeros((0, 0), np.float32), np.zeros((0, self.n_classes_), np.float32)
        return np.concatenate(feats), np.concatenate(logits)

    def predict_proba(self, images):
        _, z = self.embed(images)
        return torch.softmax(torch.from_numpy(z), 1).numpy()

    def save(self, path):
        """Weights as safetensors with parameters and metrics in the metadata, plus a
        readable `<path>.json` sidecar; both atomic."""
        from safetensors.torch import save_file

        state = {k: v.detach().cpu().contiguous() for k, v in self.model_.state_dict().items()}
        info = {
            "params": self._stored_params(),
            "n_classes": self.n_classes_,
            "metrics": self.metrics_,
        }
        meta = {"format": _FORMAT, "gantrace_version": __version__, "info": json.dumps(info)}
        with io.atomic_path(path) as tmp:
            save_file(state, str(tmp), metadata=meta)
        with io.atomic_path(Path(str(path) + ".json")) as tmp:
            tmp.write_text(json.dumps({"format": _FORMAT, **info}, indent=2, sort_keys=True))

    @classmethod
    def load(cls, path, device="auto"):
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt", device="cpu") as f:
                meta = f.metadata() or {}
                state = {k: f.get_tensor(k) for k in f.keys()}
            info = json.loads(meta["info"])
        except Exception as exc:  # noqa: BLE001 - any unreadable file is reported the same way
            raise GantraceError(f"{path}: not a readable CNNClassifier file ({exc})") from exc
        obj = cls(**info["params"], device=device)
        model = obj._build(info["n_classes"], weights="none")  # the file holds the weights
        model.load_state_dict(state, strict=True)
        obj.device_ = pick_device(device)
        obj.model_, obj.n_classes_ = model.to(obj.device_).eval(), info["n_classes"]
        obj.metrics_ = info["metrics"]
        return obj


# -- the learned feature -----------------------------------------------------------------------
@FEATURES.register
class LearnedFeature(FeatureExtractor):
    """A config spec (`name: finetuned`) -> features of every image of a data set.

    Feature row, target generator: penultimate features of every net (ensemble: side by
    side), then the class probabilities averaged over the nets (`output` picks either
    block). Target membership: the log-odds of "used" (from the probabilities averaged
    over the nets; > 0 means the nets call the image used) first, then the penultimate
    features. `params` keep the spec's values as given (the feature file records them).
    """

    name = "finetuned"
    learned = True
    uses_torch = True
    _parameter_constraints = {
        "arch": [str],
        "ensemble": [None, ListOf(str)],
        "weights": [str],
        "target": [Options(*TARGETS)],
        "epochs": [Interval(int, 1)],
        "lr": [Interval(float, 0, closed="neither")],
        "input_size": [Interval(int, 16)],
        **CUSTOM_CONSTRAINTS,
        "n_folds": [Interval(int, 2)],
        "train_from": [None, InstanceOf(str, what="the name of a dataset with labelled images")],
        "open_set": [None, InstanceOf(dict, what="{n_pseudo: N}")],
        "output": [Options(*OUTPUTS)],
        "seed": [None, Interval(int, 0)],
    }

    def __init__(
        self,
        config_key="features.finetuned",
        *,
        arch=CUSTOM,
        ensemble=None,
        weights="none",
        target="generator",
        epochs=3,
        batch_size=32,
        lr=1e-3,
        input_size=64,
        width=16,
        bottleneck=False,
        dense=(),
        n_folds=3,
        train_from=None,
        open_set=None,
        preprocess=None,
        output="both",
        seed=None,
        **unknown,
    ):
        # a misspelt keyword of a direct call: the same ConfigError as in a spec
        FEATURES.check_params(type(self), unknown, config_key, injected=("config_key",))
        self.config_key = config_key
        self.params = p = {
            "arch": arch,
            "ensemble": ensemble,
            "weights": weights,
            "target": target,
            "epochs": epochs,
            "batch_size": batch_size,
            "lr": lr,
            "input_size": input_size,
            "width": width,
            "bottleneck": bottleneck,
            "dense": dense,
            "n_folds": n_folds,
            "train_from": train_from,
            "open_set": open_set,
            "preprocess": preprocess,
            "output": output,
            "seed": seed,
        }
        validate(config_key, p, self.constraints())
        archs = p["ensemble"] if p["ensemble"] is not None else [p["arch"]]
        if len(set(archs)) != len(archs):
            self._bad("ensemble", "must be a non-empty list of distinct archs")
        self.archs = [str(a) for a in archs]
        # the torchvision trunks, checked now (before any training); their weights: parts
        self.parts = [
            TorchvisionExtractor(
                arch=a, weights=p["weights"], input_size=p["input_size"], config_key=config_key
            )
            for a in self.archs
            if a != CUSTOM
        ]
        if p["open_set"] is not None:
            if p["target"] != "generator":
                self._bad("open_set", "only makes sense with target: generator")
            n = p["open_set"].get("n_pseudo", 200)
            if isinstance(n, bool) or not (
                (isinstance(n, int) and n >= 1) or (isinstance(n, float) and 0 < n < 1)
            ):
                self._bad("open_set", "use {n_pseudo: N} (a count >= 1 or a fraction in (0, 1))")
        self.preprocessor = _preprocessor(config_key, p["preprocess"])

    def _bad(self, key, why):
        raise ConfigError(f"{self.config_key}.{key} = {self.params[key]!r}: {why}")

    def check_weights(self):
        for part in self.parts:
            part.check_weights()

    def required_weights(self):
        """The pretrained weights its trunks start from (a `custom` trunk needs none)."""
        return [entry for part in self.parts for entry in part.required_weights()]

    def classifier(self, arch, seed, device):
        p = self.params
        return CNNClassifier(
            arch=arch,
            weights=p["weights"] if arch != CUSTOM else "none",
            width=p["width"],
            bottleneck=p["bottleneck"],
            dense=p["dense"],
            input_size=p["input_size"],
            epochs=p["epochs"],
            batch_size=p["batch_size"],
            lr=p["lr"],
            seed=seed,
            device=device,
        )

    def prepare(self, images):
        """Preprocess (if asked) at full size, then shrink to input_size (uint8)."""
        if self.preprocessor is not None:
            images = self.preprocessor.transform(np.asarray(images, dtype=np.uint8))
        return resize_images(images, self.params["input_size"], TORCH_BILINEAR)

    # -- training plan -----------------------------------------------------------------------
    def fit_transform(
        self,
        images,
        y,
        train=None,
        folds=None,
        seed=0,
        device="auto",
        model_dir=None,
        checkpoint_dir=None,
        log=None,
        groups=None,
    ):
        """Features of every row of `images` (prepared, uint8 (N, S, S)).

        `y`: class index per row, -1 where unlabelled. `train`: (images, y) of another data
        set to train on instead (then every row here is embedded by nets trained there).
        `folds`: fold index of each labelled row (default: stratified, seeded, each of
        `groups` (one per row, e.g. a patient; None: every image its own) in one fold).
        Returns (features float32 (N, D), info dict).
        """
        y = np.asarray(y, dtype=np.int64)
        seed = int(self.params["seed"] if self.params["seed"] is not None else seed)
        units = []  # (tag, train images, train labels, rows embedded)
        if train is not None:
            tx, ty = np.asarray(train[0]), np.asarray(train[1], dtype=np.int64)
            keep = ty >= 0
            units.append(("all", tx[keep], ty[keep], np.arange(len(y))))
            k = _n_classes(ty[keep], self.config_key)
            folds = None
        else:
            lab = np.flatnonzero(y >= 0)
            k = _n_classes(y[lab], self.config_key)
            if folds is None:
                folds = _folds(
                    y[lab],
                    self.params["n_folds"],
                    seed,
                    self.config_key,
                    None if groups is None else np.asarray(groups)[lab],
                )
            folds = np.asarray(folds, dtype=np.int64)
            for f in range(folds.max() + 1):
                units.append(
                    (f"fold{f}", images[lab[folds != f]], y[lab[folds != f]], lab[folds == f])
                )
            rest = np.flatnonzero(y < 0)
            if len(rest):
                units.append(("all", images[lab], y[lab], rest))
        n_pseudo = self._n_pseudo()
        k_out = k + (1 if n_pseudo else 0)
        pens = {a: None for a in self.archs}
        probs = np.zeros((len(y), k_out), np.float64)
        info = {"n_classes": k, "units": [u[0] for u in units], "oof_accuracy": None}
        info["pseudo_rows"] = {}  # open set: rows (of `images`) labelled as the unseen class
        for arch in self.archs:
            for tag, tx, ty, rows in units:
                name = tag if len(self.archs) == 1 else f"{tag}.{arch}"
                ckpt = None if checkpoint_dir is None else Path(checkpoint_dir) / name
                net = self._fit_unit(
                    arch, seed, device, tx, ty, k, images[rows], n_pseudo, ckpt, log
                )
                if model_dir is not None:
                    net.save(Path(model_dir) / f"{name}.safetensors")
                if getattr(net, "pseudo_rows_", None) is not None:
                    info["pseudo_rows"][name] = rows[net.pseudo_rows_]
                f, z = net.embed(images[rows])
                if pens[arch] is None:
                    pens[arch] = np.zeros((len(y), f.shape[1]), np.float32)
                pens[arch][rows] = f
                probs[rows] += _softmax(z) / len(self.archs)
        if folds is not None:
            lab = np.flatnonzero(y >= 0)
            info["oof_accuracy"] = float((probs[lab, :k].argmax(1) == y[lab]).mean())
            say(
                f"{self.config_key}: out-of-fold accuracy {info['oof_accuracy']:.4f} ({k} classes)",
                log,
            )
        pen = np.concatenate([pens[a] for a in self.archs], axis=1)
        if self.params["target"] == "membership":
            eps = 1e-7
            logit = np.log(probs[:, 1] + eps) - np.log(probs[:, 0] + eps)
            blocks = [logit[:, None]] + ([] if self.params["output"] == "probabilities" else [pen])
        else:
            blocks = {"both": [pen, probs], "penultimate": [pen], "probabilities": [probs]}
            blocks = blocks[self.params["output"]]
        return np.concatenate(blocks, axis=1).astype(np.float32), info

    def _n_pseudo(self):
        o = self.params["open_set"]
        return None if o is None else o.get("n_pseudo", 200)

    def _fit_unit(self, arch, seed, device, tx, ty, k, pool, n_pseudo, ckpt, log):
        """Train one net; with open_set, relabel the least confident `pool` images as class
        k and retrain with k + 1 classes (a fresh net, same seed)."""
        net = self.classifier(arch, seed, device)
        path = None if ckpt is None else Path(f"{ckpt}.stage0.safetensors")
        net.fit(tx, ty, n_classes=k, log=log, checkpoint=path)
        if not n_pseudo or not len(pool):
            return net
        n = n_pseudo if isinstance(n_pseudo, int) else max(1, round(n_pseudo * len(pool)))
        n = min(n, len(pool) // 2 or 1)  # never call the whole pool unseen
        conf = net.predict_proba(pool).max(axis=1)
        pick = np.argsort(conf, kind="stable")[:n]
        say(f"open set: {n} least confident of {len(pool)} images -> class {k}", log)
        net = self.classifier(arch, seed, device)
        path = None if ckpt is None else Path(f"{ckpt}.stage1.safetensors")
        x2 = np.concatenate([tx, pool[pick]])
        y2 = np.concatenate([ty, np.full(n, k, np.int64)])
        net.fit(x2, y2, n_classes=k + 1, log=log, checkpoint=path)
        net.metrics_["pseudo_labelled"] = int(n)
        net.pseudo_rows_ = pick  # rows of `pool` labelled as the unseen class
        return net


def _preprocessor(key, spec):
    """`gantrace.preprocess` pipeline for `spec` (uint8 (N, H, W) -> same), or None."""
    if spec is None:
        return None
    pipeline = build_preprocessor(spec, key=f"{key}.preprocess")
    return pipeline if pipeline else None


def _softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _n_classes(y, key):
    classes = np.unique(y)
    if len(classes) < 2:
        raise GantraceError(
            f"{key}: needs labelled images of at least 2 classes, found "
            f"{len(classes)}; check the dataset's labels (or set train_from)"
        )
    return int(classes.max() + 1)


def _folds(y, n_folds, seed, key, groups=None):
    """Stratified fold index per labelled row (fewer folds if a class is too small), each
    group in one fold (`stratified_folds`)."""
    smallest = int(np.bincount(y).min())
    n = min(n_folds, smallest)
    if n < 2:
        raise GantraceError(
            f"{key}: a class has only {smallest} labelled image(s); cross-fitting "
            "needs at least 2 per class"
        )
    return stratified_folds(y, n, seed, groups)


# -- data and the workflow stage ---------------------------------------------------------------
def labels_from_manifest(manifest, ids, target, classes=None):
    """Class index per id (-1 = unlabelled) and the class names.

    generator: generated images with a generator name (classes sorted, or `classes`);
    membership: real images labelled 1 (used) / 0 (not used).
    """
    man = manifest.set_index("image_id").loc[list(ids)]
    if target == "membership":
        real = man.role.isin(["real_used", "real_not_used"]).to_numpy()
        lab = man.label.to_numpy().astype(np.int64)
        return np.where(real & (lab >= 0), lab, -1), ["not_used", "used"]
    gen = man.generator.fillna("").astype(str).to_numpy()
    gen = np.where(man.role.to_numpy() == "generated", gen, "")
    if classes is None:
        classes = sorted(set(gen) - {""})
    index = {c: i for i, c in enumerate(classes)}
    return np.array([index.get(g, -1) for g in gen], np.int64), list(classes)


def load_images(shards, manifest, feature):
    """(ids sorted, prepared uint8 images) of the manifest's images in `shards`."""
    known = set(manifest.image_id)
    ids, blocks = [], []
    for path in shards:
        i, x = read_images(path)
        keep = [j for j, iid in enumerate(i) if iid in known]
        ids += [i[j] for j in keep]
        blocks.append(feature.prepare(x[keep]))
    size = feature.params["input_size"]
    x = np.concatenate(blocks) if blocks else np.zeros((0, size, size), np.uint8)
    order = np.argsort(np.array(ids, dtype=object), kind="stable")
    return [ids[j] for j in order], x[order]


def read_learned_inputs(name, spec, shards, manifest_path, train_shards=None, train_manifest=None):
    """What a learned feature's `train_features` starts from: the extractor of `spec`
    (weights checked first), the data set's manifest, ids and images, and the
    (manifest, ids, images) of `train_shards` when it trains on another data set, or None."""
    feature = FEATURES.create(spec, where=f"features.{name}", config_key=f"features.{name}")
    feature.check_weights()
    manifest = io.read_table(manifest_path)
    ids, images = load_images(shards, manifest, feature)
    other = None
    if train_shards:
        tman = io.read_table(train_manifest)
        other = (tman, *load_images(train_shards, tman, feature))
    return feature, manifest, ids, images, other


def fresh_dir(model_dir):
    """`model_dir` emptied (a rerun never mixes old nets with new ones)."""
    model_dir = Path(model_dir)
    if model_dir.exists():
        shutil.rmtree(model_dir)
    model_dir.mkdir(parents=True)
    return model_dir


def write_learned(name, feature, ids, x, attrs, paths, t0, log=None):
    """Write a learned feature's rows (`ids`, `x`) with the attributes every learned
    feature records plus `attrs`, remove its training checkpoints and log the time since
    `t0`. `paths`: (out_h5, model_dir, checkpoint_dir)."""
    out_h5, model_dir, checkpoint_dir = paths
    common = {
        "extractor": feature.name,
        "spec": json.dumps({"extractor": feature.name, **feature.params}, sort_keys=True),
        "region": "full",
        "models": str(model_dir),
        "n_images": len(ids),
    }
    io.write_features(out_h5, ids, x, {**common, **attrs})
    shutil.rmtree(checkpoint_dir, ignore_errors=True)
    say(f"{name}: features {x.shape} in {time.perf_counter() - t0:.1f} s -> {out_h5}", log)


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
    """The `train_features` rule: train the nets, write every image's features to `out_h5`
    (rows sorted by id, like gathered features) and the nets to `model_dir`. Per-epoch
    training state lives in `checkpoint_dir` (not a rule output) and is removed at the end."""
    t0 = time.perf_counter()
    feature, manifest, ids, images, other = read_learned_inputs(
        name, spec, shards, manifest_path, train_shards, train_manifest
    )
    target = feature.params["target"]
    train = None
    if other:
        tman, tids, timages = other
        ty, classes = labels_from_manifest(tman, tids, target)
        train = (timages, ty)
        y, groups = np.full(len(ids), -1, np.int64), None
    else:
        y, classes = labels_from_manifest(manifest, ids, target)
        groups = groups_or_none(manifest.set_index("image_id").loc[list(ids)])
    say(f"{name}: {len(ids)} images, {int((y >= 0).sum())} labelled, classes {classes}", log)
    model_dir = fresh_dir(model_dir)
    x, info = feature.fit_transform(
        images,
        y,
        train=train,
        seed=seed,
        device=device,
        model_dir=model_dir,
        checkpoint_dir=checkpoint_dir,
        log=log,
        groups=groups,
    )
    attrs = {
        "weights": feature.params["weights"],
        "target": target,
        "classes": classes,
        "oof_accuracy": info["oof_accuracy"],
        "seed": int(seed),
        "train_from": train_manifest or "none",
    }
    write_learned(name, feature, ids, x, attrs, (out_h5, model_dir, checkpoint_dir), t0, log)
    return info
