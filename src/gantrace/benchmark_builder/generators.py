"""Small image generators that differ the way real ones do (the GENERATORS registry).

Every generator is sklearn-ish: parameters in the constructor, `fit(images)` on uint8
N x H x W slices, `sample(n)` -> uint8 n x H x W. Training draws every random number from
one seeded torch.Generator whose state goes into the checkpoint, so a resumed run gives the
same weights as an uninterrupted one.
"""

import contextlib
import json
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn import functional as F

from gantrace.errors import ConfigError
from gantrace.nn.checkpoint import GENERATOR, TrainingState, resume, write_checkpoint
from gantrace.nn.optim import optimiser_step
from gantrace.params import COUNT, DEVICE, POSITIVE, SEED, Interval, ListOf, Options, Part
from gantrace.registry import Registry
from gantrace.torch_env import ensure_torchvision_ops, pick_device


def _amp(device):
    """bf16 autocast on CUDA where supported (no loss scaling needed); fp32 otherwise."""
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _levels(resolution):
    n = int(round(math.log2(resolution)))
    if 2**n != resolution or resolution < 16:
        raise ConfigError(f"benchmark.resolution: {resolution} must be a power of two >= 16")
    return n - 2  # upsampling steps from 4 x 4


class ImageGenerator(Part):
    """Shared training loop, checkpointing and sampling; subclasses define the networks.

    A generator's parameters are its `param_defaults()`: the base ones below, then the
    subclass's `defaults`; `params` holds them in that order, the order model files and
    checkpoints store.
    """

    name = "base"
    defaults = {}
    _base_defaults = {
        "width": 32,
        "latent_dim": 64,
        "steps": 500,
        "batch_size": 32,
        "lr": 2e-4,
        "seed": 0,
        "device": "auto",
        "checkpoint_every": 100,
        "log_every": 25,
    }
    _parameter_constraints = {
        "width": [COUNT],
        "latent_dim": [COUNT],
        "steps": [COUNT],
        "batch_size": [COUNT],
        "lr": [POSITIVE],
        "seed": [SEED],
        "device": [DEVICE],
        "checkpoint_every": [COUNT],
        "log_every": [COUNT],
    }

    def __init__(self, **params):
        self.set_params(**{**self.param_defaults(), **params})  # refuses an unknown one
        self._validate_params()

    @classmethod
    def param_defaults(cls):
        return {**cls._base_defaults, **cls.defaults}

    @classmethod
    def param_names(cls):
        return sorted(cls.param_defaults())

    @property
    def params(self):
        return {k: getattr(self, k) for k in self.param_defaults()}

    # -- training ------------------------------------------------------------------------
    def fit(self, images, checkpoint=None, log=print):
        images = np.asarray(images)
        if images.ndim != 3 or images.dtype != np.uint8:
            raise ValueError("fit expects uint8 images of shape N x H x W")
        self.device_ = pick_device(self.device)
        self.resolution_ = images.shape[1]
        torch.manual_seed(self.seed)
        self._build(self.resolution_)
        self.gen_ = torch.Generator().manual_seed(self.seed)
        training = TrainingState(self.nets_, self.optims_, generator=self.gen_)
        data = torch.from_numpy(images).float().div(127.5).sub(1).unsqueeze(1)
        start, history = 0, []
        if checkpoint:
            found = resume(
                checkpoint,
                self._resume_key(),
                GENERATOR,
                training,
                lambda line: log(f"{self.name}: {line}"),
            )
            if found is not None:
                start, history = found.done, found.metadata["history"][: found.done]
                log(f"{self.name}: resumed from {checkpoint} at step {start}")
        t0 = time.time()
        for step in range(start + 1, self.steps + 1):
            idx = torch.randint(len(data), (self.batch_size,), generator=self.gen_)
            losses = self._train_step(data[idx].to(self.device_))
            history.append({"step": step, **losses})
            if step % self.log_every == 0 or step == self.steps:
                shown = " ".join(f"{k}={v:.4f}" for k, v in losses.items())
                log(f"{self.name} step {step}/{self.steps} {shown} ({time.time() - t0:.0f} s)")
            if checkpoint and (step % self.checkpoint_every == 0 or step == self.steps):
                write_checkpoint(checkpoint, self._resume_key(), step, GENERATOR, training, history)
        self.losses_ = pd.DataFrame(history)
        return self

    def _resume_key(self):
        """Parameters a checkpoint must share to be resumed (not the step count or device)."""
        skip = {"steps", "device", "checkpoint_every", "log_every"}
        return {k: v for k, v in self.params.items() if k not in skip} | {
            "resolution": self.resolution_
        }

    # -- sampling ------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, n, seed=None, batch_size=64):
        """n images as uint8 n x H x W, the same for the same seed."""
        gen = torch.Generator().manual_seed(self.seed if seed is None else seed)
        for net in self.nets_.values():
            net.eval()
        out = []
        for start in range(0, n, batch_size):
            m = min(batch_size, n - start)
            with _amp(self.device_):
                x = self._generate(m, gen)
            out.append(x.float().clamp(-1, 1).add(1).mul(127.5).round().byte().cpu().numpy())
        for net in self.nets_.values():
            net.train()
        return (
            np.concatenate(out)[:, 0]
            if out
            else np.zeros((0, self.resolution_, self.resolution_), np.uint8)
        )

    def _noise(self, *shape, gen=None):
        return torch.randn(*shape, generator=self.gen_ if gen is None else gen).to(self.device_)

    def save(self, path):
        nets = {
            f"{n}.{k}": v.detach().cpu().contiguous()
            for n in self.sampler_nets
            for k, v in self.nets_[n].state_dict().items()
        }
        meta = {
            "model": self.name,
            "params": json.dumps(self.params),
            "resolution": str(self.resolution_),
        }
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        save_file(nets, str(path), metadata=meta)


def load_generator(path, device="auto"):
    """A fitted generator back from `save` (sampling only)."""
    from safetensors import safe_open

    with safe_open(str(path), "pt") as fh:
        meta = fh.metadata()
    params = json.loads(meta["params"]) | {"device": device}
    model = GENERATORS[meta["model"]](**params)  # "model": the file's key for the name
    model.device_ = pick_device(device)
    model.resolution_ = int(meta["resolution"])
    model._build(model.resolution_)
    tensors = load_file(str(path))
    for n in model.sampler_nets:
        pre = f"{n}."
        model.nets_[n].load_state_dict(
            {k[len(pre) :]: v for k, v in tensors.items() if k.startswith(pre)}
        )
    return model


def _channels(width, i, levels):
    return width * 2 ** min(3, levels - 1 - i)


class DCGAN(ImageGenerator):
    """Transposed-convolution generator, strided-conv discriminator, non-saturating loss."""

    name = "dcgan"
    defaults = {"betas": [0.5, 0.999]}
    _parameter_constraints = {"betas": [ListOf(Interval(float, 0, 1, closed="left"), 2)]}
    sampler_nets = ("generator",)

    def _build(self, resolution):
        L, w, z = _levels(resolution), self.width, self.latent_dim
        g = [
            nn.ConvTranspose2d(z, _channels(w, 0, L), 4, 1, 0),
            nn.BatchNorm2d(_channels(w, 0, L)),
            nn.ReLU(True),
        ]
        for i in range(L):
            cin = _channels(w, i, L)
            if i == L - 1:
                g += [nn.ConvTranspose2d(cin, 1, 4, 2, 1), nn.Tanh()]
            else:
                cout = _channels(w, i + 1, L)
                g += [nn.ConvTranspose2d(cin, cout, 4, 2, 1), nn.BatchNorm2d(cout), nn.ReLU(True)]
        d, cin = [], 1
        for i in range(L):
            cout = _channels(w, L - 1 - i, L)
            d += [nn.Conv2d(cin, cout, 4, 2, 1)]
            d += [nn.BatchNorm2d(cout)] if i else []
            d += [nn.LeakyReLU(0.2, True)]
            cin = cout
        d += [nn.Conv2d(cin, 1, 4, 1, 0), nn.Flatten()]
        self.nets_ = {
            "generator": nn.Sequential(*g).to(self.device_),
            "discriminator": nn.Sequential(*d).to(self.device_),
        }
        self.optims_ = {
            n: torch.optim.Adam(net.parameters(), self.lr, betas=tuple(self.betas))
            for n, net in self.nets_.items()
        }

    def _generate(self, n, gen):
        return self.nets_["generator"](self._noise(n, self.latent_dim, 1, 1, gen=gen))

    def _train_step(self, x):
        G, D = self.nets_["generator"], self.nets_["discriminator"]
        z = self._noise(len(x), self.latent_dim, 1, 1)
        with _amp(self.device_):
            fake = G(z)
            real_logit, fake_logit = D(x), D(fake.detach())
            d_loss = F.binary_cross_entropy_with_logits(
                real_logit, torch.ones_like(real_logit)
            ) + F.binary_cross_entropy_with_logits(fake_logit, torch.zeros_like(fake_logit))
        optimiser_step(d_loss, self.optims_["discriminator"])
        with _amp(self.device_):
            logit = D(fake)
            g_loss = F.binary_cross_entropy_with_logits(logit, torch.ones_like(logit))
        optimiser_step(g_loss, self.optims_["generator"])
        return {"d_loss": d_loss.item(), "g_loss": g_loss.item()}


class WGANGP(ImageGenerator):
    """Interpolation upsampling + convolution generator, WGAN loss with gradient penalty."""

    name = "wgan_gp"
    defaults = {
        "lr": 1e-4,
        "betas": [0.0, 0.9],
        "n_critic": 5,
        "gp_weight": 10.0,
        "upsample": "nearest",
    }
    _parameter_constraints = {
        "betas": [ListOf(Interval(float, 0, 1, closed="left"), 2)],
        "n_critic": [COUNT],
        "gp_weight": [Interval(float, 0)],
        "upsample": [Options("nearest", "bilinear")],
    }
    sampler_nets = ("generator",)

    def _build(self, resolution):
        L, w, z = _levels(resolution), self.width, self.latent_dim
        c0 = _channels(w, 0, L)
        g = [nn.Linear(z, c0 * 16), nn.Unflatten(1, (c0, 4, 4)), nn.BatchNorm2d(c0), nn.ReLU(True)]
        for i in range(L):
            cin, cout = _channels(w, i, L), _channels(w, min(i + 1, L - 1), L)
            mode = {"align_corners": False} if self.upsample == "bilinear" else {}
            g += [
                nn.Upsample(scale_factor=2, mode=self.upsample, **mode),
                nn.Conv2d(cin, cout, 3, 1, 1),
                nn.BatchNorm2d(cout),
                nn.ReLU(True),
            ]
        g += [nn.Conv2d(_channels(w, L - 1, L), 1, 3, 1, 1), nn.Tanh()]
        d, cin = [], 1
        for i in range(L):
            cout = _channels(w, L - 1 - i, L)
            d += [nn.Conv2d(cin, cout, 3, 2, 1), nn.LeakyReLU(0.2, True)]  # no batch norm: GP
            cin = cout
        d += [nn.Flatten(), nn.Linear(cin * 16, 1)]
        self.nets_ = {
            "generator": nn.Sequential(*g).to(self.device_),
            "critic": nn.Sequential(*d).to(self.device_),
        }
        self.optims_ = {
            n: torch.optim.Adam(net.parameters(), self.lr, betas=tuple(self.betas))
            for n, net in self.nets_.items()
        }

    def _generate(self, n, gen):
        return self.nets_["generator"](self._noise(n, self.latent_dim, gen=gen))

    def _train_step(self, x):
        G, C = self.nets_["generator"], self.nets_["critic"]
        for _ in range(self.n_critic):
            with torch.no_grad(), _amp(self.device_):
                fake = G(self._noise(len(x), self.latent_dim)).float()
            eps = torch.rand(len(x), 1, 1, 1, generator=self.gen_).to(self.device_)
            mix = (eps * x + (1 - eps) * fake).requires_grad_(True)
            # the penalty's double backward runs in fp32
            grad = torch.autograd.grad(C(mix).sum(), mix, create_graph=True)[0]
            gp = ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()
            with _amp(self.device_):
                wdist = C(x).mean() - C(fake).mean()
            c_loss = -wdist.float() + self.gp_weight * gp
            optimiser_step(c_loss, self.optims_["critic"])
        with _amp(self.device_):
            g_loss = -C(G(self._noise(len(x), self.latent_dim))).mean()
        optimiser_step(g_loss, self.optims_["generator"])
        return {"critic_loss": c_loss.item(), "wasserstein": wdist.item(), "g_loss": g_loss.item()}


class _VAENet(nn.Module):
    def __init__(self, resolution, width, latent_dim):
        super().__init__()
        L = _levels(resolution)
        enc, cin = [], 1
        for i in range(L):
            cout = _channels(width, L - 1 - i, L)
            enc += [nn.Conv2d(cin, cout, 4, 2, 1), nn.BatchNorm2d(cout), nn.LeakyReLU(0.2, True)]
            cin = cout
        self.encoder = nn.Sequential(*enc, nn.Flatten(), nn.Linear(cin * 16, 2 * latent_dim))
        c0 = _channels(width, 0, L)
        dec = [nn.Linear(latent_dim, c0 * 16), nn.Unflatten(1, (c0, 4, 4)), nn.ReLU(True)]
        for i in range(L):
            cin = _channels(width, i, L)
            cout = 1 if i == L - 1 else _channels(width, i + 1, L)
            dec += [nn.ConvTranspose2d(cin, cout, 3, 2, 1, output_padding=1)]
            dec += [nn.Tanh()] if i == L - 1 else [nn.BatchNorm2d(cout), nn.ReLU(True)]
        self.decoder = nn.Sequential(*dec)


class VAE(ImageGenerator):
    """Convolutional VAE (kernel-3 transposed-conv decoder); samples decode N(0, I) latents."""

    name = "vae"
    defaults = {"lr": 1e-3, "beta": 1.0}
    _parameter_constraints = {"beta": [Interval(float, 0)]}
    sampler_nets = ("vae",)

    def _build(self, resolution):
        net = _VAENet(resolution, self.width, self.latent_dim).to(self.device_)
        self.nets_ = {"vae": net}
        self.optims_ = {"vae": torch.optim.Adam(net.parameters(), self.lr)}

    def _generate(self, n, gen):
        return self.nets_["vae"].decoder(self._noise(n, self.latent_dim, gen=gen))

    def _train_step(self, x):
        net = self.nets_["vae"]
        with _amp(self.device_):
            mu, logvar = net.encoder(x).float().chunk(2, dim=1)
            z = mu + (0.5 * logvar).exp() * self._noise(*mu.shape)
            recon = net.decoder(z).float()
        rec = F.mse_loss(recon, x, reduction="sum") / len(x)
        kl = -0.5 * (1 + logvar - mu**2 - logvar.exp()).sum() / len(x)
        loss = rec + self.beta * kl
        optimiser_step(loss, self.optims_["vae"])
        return {"loss": loss.item(), "reconstruction": rec.item(), "kl": kl.item()}


class Diffusion(ImageGenerator):
    """Denoising diffusion: diffusers' UNet2DModel trained on DDPM noise, DDIM or DDPM sampling."""

    name = "diffusion"
    defaults = {
        "lr": 2e-4,
        "levels": 3,
        "train_timesteps": 1000,
        "scheduler": "ddim",
        "sample_steps": 50,
        "beta_schedule": "squaredcos_cap_v2",
    }
    _parameter_constraints = {
        "levels": [COUNT],
        "train_timesteps": [COUNT],
        "scheduler": [Options("ddim", "ddpm")],
        "sample_steps": [COUNT],
        "beta_schedule": [str],  # one of diffusers' DDPMScheduler schedules
    }
    sampler_nets = ("unet",)

    def _build(self, resolution):
        ensure_torchvision_ops()  # diffusers imports transformers, which imports torchvision
        from diffusers import DDPMScheduler, UNet2DModel

        if self.width % 8:
            raise ConfigError("benchmark.generators (diffusion): width must be a multiple of 8")
        n = self.levels
        unet = UNet2DModel(
            sample_size=resolution,
            in_channels=1,
            out_channels=1,
            layers_per_block=1,
            block_out_channels=tuple(self.width * min(2**i, 4) for i in range(n)),
            down_block_types=("DownBlock2D",) * (n - 1) + ("AttnDownBlock2D",),
            up_block_types=("AttnUpBlock2D",) + ("UpBlock2D",) * (n - 1),
            norm_num_groups=8,
        ).to(self.device_)
        self.noise_ = DDPMScheduler(
            num_train_timesteps=self.train_timesteps, beta_schedule=self.beta_schedule
        )
        self.nets_ = {"unet": unet}
        self.optims_ = {"unet": torch.optim.AdamW(unet.parameters(), self.lr)}

    def _train_step(self, x):
        unet = self.nets_["unet"]
        noise = self._noise(*x.shape)
        t = torch.randint(self.train_timesteps, (len(x),), generator=self.gen_).to(self.device_)
        with _amp(self.device_):
            pred = unet(self.noise_.add_noise(x, noise, t), t).sample.float()
        loss = F.mse_loss(pred, noise)
        optimiser_step(loss, self.optims_["unet"])
        return {"loss": loss.item()}

    def _generate(self, n, gen):
        from diffusers import DDIMScheduler, DDPMScheduler

        cls = DDIMScheduler if self.scheduler == "ddim" else DDPMScheduler
        sched = cls.from_config(self.noise_.config)
        sched.set_timesteps(self.sample_steps)
        x = self._noise(n, 1, self.resolution_, self.resolution_, gen=gen)
        for t in sched.timesteps:
            out = self.nets_["unet"](x, t.to(self.device_)).sample.float()
            x = sched.step(out, t, x, generator=gen).prev_sample
        return x


GENERATORS = Registry("generator", (DCGAN, WGANGP, VAE, Diffusion))


def build_generator(spec, seed=0, device="auto"):
    """A generator from a config entry `{name: <registered name>, ...params}`; `seed` and
    `device` are defaults the entry may override."""
    return GENERATORS.create({"seed": seed, "device": device, **spec})
