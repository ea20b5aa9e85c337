"""Resumable epoch shuffling: epoch e's order depends on (seed, e) only."""

import numpy as np
import torch


class EpochShuffle(torch.utils.data.Sampler):
    """Random order of the training rows, drawn afresh from (seed, epoch) every epoch.

    Unlike a loader-wide generator, the order of epoch e does not depend on how many
    epochs this process has run, so a fit resumed from a checkpoint sees the same batches.
    Set `epoch` before iterating.
    """

    def __init__(self, n, seed):
        self.n, self.seed, self.epoch = int(n), int(seed), 0

    def __len__(self):
        return self.n

    def __iter__(self):
        seed = int(np.random.SeedSequence([self.seed, self.epoch]).generate_state(1)[0])
        return iter(torch.randperm(self.n, generator=torch.Generator().manual_seed(seed)).tolist())
