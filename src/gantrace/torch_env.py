"""Torch set-up shared by every stage: torchvision import on CPU builds, device choice,
autocast, thread count. (Seeding and training steps: `gantrace.nn`.)"""

import importlib.util
import os
from pathlib import Path

import torch

_TORCHVISION_LIB = None


def ensure_torchvision_ops():
    """Make `import torchvision` work when its compiled extension cannot load.

    PyPI's torchvision wheel is a CUDA build; with a CPU-only torch its `_C` extension
    fails to load and importing torchvision dies on the missing `torchvision::nms`
    schema. Declaring the schemas (no kernels) is enough for every model we use.
    """
    global _TORCHVISION_LIB
    if _TORCHVISION_LIB is not None:
        return
    spec = importlib.util.find_spec("torchvision")
    if spec is None or spec.origin is None:
        return
    ext = sorted(Path(spec.origin).parent.glob("_C*.so"))
    if ext:
        try:
            torch.ops.load_library(str(ext[0]))
            _TORCHVISION_LIB = "native"
            return
        except (OSError, RuntimeError):
            pass
    lib = torch.library.Library("torchvision", "FRAGMENT")
    for name in ("nms", "qnms"):
        if not torch._C._dispatch_has_kernel(f"torchvision::{name}") and not _has_schema(name):
            if name == "nms":
                lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
            else:
                lib.define("qnms(Tensor qdets, Tensor qscores, float iou_threshold) -> Tensor")
    _TORCHVISION_LIB = lib


def _has_schema(name):
    try:
        torch._C._get_schema(f"torchvision::{name}", "")
        return True
    except RuntimeError:
        return False


# The GPUs a scheduler granted: SLURM sets CUDA_VISIBLE_DEVICES with SLURM_JOB_GPUS in a
# `--gpus` batch job, with SLURM_STEP_GPUS in its `srun` steps (where Snakemake's jobs run).
GRANTED_GPU_VARIABLES = ("CUDA_VISIBLE_DEVICES", "SLURM_JOB_GPUS", "SLURM_STEP_GPUS")


def pick_device(prefer="auto"):
    """Choose the torch device for this job, and say which (one line, to the job's log).

    Snakemake sets no CUDA_VISIBLE_DEVICES, so a `gpu=1` job on a workstation sees every
    GPU; SLURM sets CUDA_VISIBLE_DEVICES / SLURM_JOB_GPUS for the GPUs it granted.
    `prefer` is "auto", "cpu", "cuda" or "cuda:N".
    """
    device = _choose_device(prefer)
    granted = [f"{v}={os.environ[v]}" for v in GRANTED_GPU_VARIABLES if v in os.environ]
    print(
        f"device: {device} (asked: {prefer}; CUDA available: {torch.cuda.is_available()}; "
        f"granted: {' '.join(granted) or 'no GPU variables set'})",
        flush=True,
    )
    return device


def _choose_device(prefer):
    if prefer == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        if prefer.startswith("cuda"):
            raise RuntimeError(f"device: {prefer} was asked for but CUDA is not available")
        return torch.device("cpu")
    if prefer.startswith("cuda"):
        return torch.device(prefer)
    # Under SLURM or an explicit CUDA_VISIBLE_DEVICES the visible set is already ours.
    return torch.device("cuda:0")


def autocast(device):
    """bf16 autocast on CUDA (fp16 where bf16 is unsupported); a no-op on CPU."""
    if device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype)
    return torch.autocast("cpu", enabled=False)


def set_threads(n):
    if n:
        torch.set_num_threads(int(n))
        os.environ.setdefault("OMP_NUM_THREADS", str(n))
