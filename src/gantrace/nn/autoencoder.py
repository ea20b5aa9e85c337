"""A small MLP autoencoder on feature vectors, shared by the `autoencoder` reducer (CSMorgan)
and the `centroid_autoencoder` membership scorer (AI Multimedia Lab)."""

import numpy as np

from gantrace.params import COUNT, DEVICE, POSITIVE, SEED, Part

# The training parameters of every part built on FeatureAutoencoder, declared once.
TRAINING_CONSTRAINTS = {
    "code_size": [COUNT],
    "hidden": [COUNT],
    "epochs": [COUNT],
    "lr": [POSITIVE],
    "batch_size": [COUNT],
    "device": [DEVICE],
    "random_state": [SEED],
}


class FeatureAutoencoder(Part):
    """Standardise columns (constant ones dropped), then an MLP
    `d -> hidden -> code_size -> hidden -> d` (ReLU) trained with Adam on the mean squared
    reconstruction error. Seeded by `random_state`; `device` is "cpu" (default), "auto" or
    "cuda[:N]". Parameter errors name `kind`, the part built on it.
    """

    name = "autoencoder"
    trains = True
    _parameter_constraints = {**TRAINING_CONSTRAINTS, "kind": [str]}

    def __init__(
        self,
        code_size=32,
        hidden=256,
        epochs=50,
        lr=1e-3,
        batch_size=64,
        device="cpu",
        random_state=0,
        kind="autoencoder",
    ):
        self.code_size = code_size
        self.hidden = hidden
        self.epochs = epochs
        self.lr = lr
        self.batch_size = batch_size
        self.device = device
        self.random_state = random_state
        self.kind = kind
        self._validate_params(where=kind)

    def fit(self, X):
        import torch
        from torch import nn

        from gantrace.nn.optim import optimiser_step  # torch only once a model is fitted
        from gantrace.torch_env import pick_device  # (reducers load in CPU-only jobs)

        X = np.asarray(X, dtype=np.float64)
        self.keep_ = np.ptp(X, axis=0) > 0
        if not self.keep_.any():
            raise ValueError("autoencoder: every feature column is constant; nothing to learn")
        X = X[:, self.keep_]
        self.mean_, self.scale_ = X.mean(axis=0), X.std(axis=0)
        d = X.shape[1]
        self.device_ = pick_device(self.device)
        gen = torch.Generator().manual_seed(int(self.random_state))
        torch.manual_seed(int(self.random_state))  # layer initialisation
        self.encoder_ = nn.Sequential(
            nn.Linear(d, self.hidden), nn.ReLU(), nn.Linear(self.hidden, self.code_size)
        ).to(self.device_)
        self.decoder_ = nn.Sequential(
            nn.Linear(self.code_size, self.hidden), nn.ReLU(), nn.Linear(self.hidden, d)
        ).to(self.device_)
        params = list(self.encoder_.parameters()) + list(self.decoder_.parameters())
        opt = torch.optim.Adam(params, lr=self.lr)
        data = torch.as_tensor(self._standardise(X), dtype=torch.float32)
        self.loss_history_ = []
        for _ in range(self.epochs):
            order = torch.randperm(len(data), generator=gen)
            total = 0.0
            for start in range(0, len(data), self.batch_size):
                batch = data[order[start : start + self.batch_size]].to(self.device_)
                loss = ((self.decoder_(self.encoder_(batch)) - batch) ** 2).mean()
                optimiser_step(loss, opt)
                total += float(loss.detach()) * len(batch)
            self.loss_history_.append(total / len(data))
        return self

    def _standardise(self, X):
        return (X - self.mean_) / self.scale_

    def _run(self, X, decode):
        import torch

        X = self._standardise(np.asarray(X, dtype=np.float64)[:, self.keep_])
        out = []
        with torch.no_grad():
            for start in range(0, len(X), 4096):
                batch = torch.as_tensor(X[start : start + 4096], dtype=torch.float32)
                code = self.encoder_(batch.to(self.device_))
                out.append((self.decoder_(code) if decode else code).cpu().numpy())
        return X, np.concatenate(out).astype(np.float64)

    def encode(self, X):
        return self._run(X, decode=False)[1]

    def reconstruction_error(self, X):
        """Per-feature squared reconstruction error, in standardised units (n, kept dims)."""
        X, recon = self._run(X, decode=True)
        return (recon - X) ** 2

    def save(self, path):
        """Write weights and the standardisation to a safetensors file."""
        import torch
        from safetensors.torch import save_file

        tensors = {f"encoder.{k}": v for k, v in self.encoder_.state_dict().items()}
        tensors.update({f"decoder.{k}": v for k, v in self.decoder_.state_dict().items()})
        tensors["mean"] = torch.as_tensor(self.mean_)
        tensors["scale"] = torch.as_tensor(self.scale_)
        tensors["keep"] = torch.as_tensor(self.keep_.astype(np.uint8))
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(path))
