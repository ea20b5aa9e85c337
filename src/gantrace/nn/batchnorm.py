"""BatchNorm statistics recomputed with a network's final weights."""

import torch
from torch import nn

from gantrace.torch_env import autocast


def recalibrate_batchnorm(model, batches, device):
    """Recompute every BatchNorm layer's running statistics as exact averages over
    `batches` (input tensors, each of two rows or more) with the final weights: after a
    few hundred steps the momentum averages still lag the weights, and eval-mode outputs
    would be poor. Leaves `model` in eval mode."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        model.eval()
        return
    saved = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    model.train()
    with torch.no_grad():
        for x in batches:
            with autocast(device):
                model(x)
    for m, mom in zip(norms, saved, strict=True):
        m.momentum = mom
    model.eval()
