"""Optimisation pieces the trainers share: loss scaling, the cosine schedule, one step."""

import math

import torch


def grad_scaler(device):
    """A GradScaler, enabled only where training runs under fp16 autocast (a GPU without
    bf16); bf16 and CPU need no loss scaling."""
    return torch.amp.GradScaler(
        "cuda", enabled=device.type == "cuda" and not torch.cuda.is_bf16_supported()
    )


def cosine_schedule(optimiser, steps):
    """Per-step cosine decay of the learning rate from `lr` to 5 % of it over `steps`."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda s: 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * s / steps))
    )


def optimiser_step(loss, optimiser, scaler=None, schedule=None):
    """One training step: clear the gradients, backward (through the loss scaler, if
    any), step, then advance the schedule (if any)."""
    optimiser.zero_grad(set_to_none=True)
    if scaler is None:
        loss.backward()
        optimiser.step()
    else:
        scaler.scale(loss).backward()
        scaler.step(optimiser)
        scaler.update()
    if schedule is not None:
        schedule.step()
