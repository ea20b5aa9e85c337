"""Resumable training: the whole training state in one safetensors file, written after
every epoch (or every N steps) and read back only by a run it was made for.

Tensors (weights, optimiser moments, the random generator's state) are the file's tensors;
everything else (what the run was made for, epochs or steps done, histories, optimiser
param groups, LR schedule and loss-scaler state) is JSON in its metadata, so reading a
checkpoint never unpickles anything. Files are written atomically: a kill leaves the
previous checkpoint. Two layouts exist and both stay readable and writable: `TRAINER`
(U-Net, fine-tuned CNNs) and `GENERATOR` (benchmark generators, several nets, no tag).

    state = TrainingState(model, optimiser, others={"schedule": schedule, "scaler": scaler})
    found = resume(path, made_for, TRAINER, state, say=print)  # None: start from scratch
    ...
    write_checkpoint(path, made_for, epoch, TRAINER, state, history)
"""

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from gantrace.errors import GantraceError
from gantrace.io import atomic_path


@dataclass(frozen=True)
class CheckpointFormat:
    """Where each part of a training state goes in the file.

    `metadata` maps each role to its metadata key: format (the `tag`), made_for, done
    (epochs or steps), history, groups (optimiser param groups) and, where present,
    optimiser_extras (non-tensor optimiser state; without it such values are stored as
    tensors). Tensor keys join `nets` / `optimisers` prefixes, a net's or optimiser's name
    (when there are several) and the state_dict key with `sep`.
    """

    tag: str | None  # None: the layout predates tags; nothing written or checked
    metadata: dict
    sep: str
    nets: str
    optimisers: str
    rng: str
    sort_made_for: bool = True

    def key(self, *parts):
        return self.sep.join(p for p in parts if p is not None)


TRAINER = CheckpointFormat(
    tag="gantrace.LungUNet.checkpoint/1",
    metadata={
        "format": "format",
        "made_for": "fingerprint",
        "done": "epoch",
        "history": "history",
        "groups": "optim_param_groups",
        "optimiser_extras": "optim_state_other",
    },
    sep="/",
    nets="model",
    optimisers="optim",
    rng="rng/torch",
)
GENERATOR = CheckpointFormat(
    tag=None,
    metadata={"done": "step", "made_for": "params", "groups": "groups", "history": "history"},
    sep=".",
    nets="net",
    optimisers="opt",
    rng="rng",
    sort_made_for=False,
)


@dataclass
class TrainingState:
    """The live objects a checkpoint saves and restores.

    `nets` / `optimisers`: one module / optimiser, or a dict of them by name; `generator`:
    the torch.Generator the fit draws from (torch's global one by default); `others`:
    objects whose state_dict is JSON (LR schedule, loss scaler), stored under their names.
    """

    nets: object
    optimisers: object
    generator: torch.Generator = field(default_factory=lambda: torch.default_generator)
    others: dict = field(default_factory=dict)


@dataclass
class Checkpoint:
    """A checkpoint as read: its tensors, and its metadata decoded from JSON by key."""

    tensors: dict
    metadata: dict
    done: int


class StaleCheckpoint(ValueError):
    """A readable checkpoint made for another run; `changed` names what differs."""

    def __init__(self, changed):
        super().__init__(f"made for other {', '.join(changed)}")
        self.changed = changed


def fingerprint(params, device, *arrays):
    """What a checkpoint must have been made for: parameters, device type, the training
    data (shape and bytes of each array) and the torch version."""
    digest = hashlib.sha256()
    for arr in arrays:
        arr = np.ascontiguousarray(arr)
        digest.update(repr(arr.shape).encode())
        digest.update(memoryview(arr).cast("B"))
    return {
        "params": params,
        "device_type": device.type,
        "data_sha256": digest.hexdigest(),
        "torch": torch.__version__,
    }


def _named(objects):
    """(name, object) pairs: name None for a single object."""
    return objects.items() if isinstance(objects, dict) else [(None, objects)]


def _one_or_all(by_name, objects):
    return by_name if isinstance(objects, dict) else by_name.get(None, {})


def _made_for_json(made_for, fmt):
    return json.dumps(made_for, sort_keys=fmt.sort_made_for)


def write_checkpoint(path, made_for, done, fmt, state, history):
    """Write `state` after `done` epochs (or steps) to `path` in format `fmt`, atomically."""
    tensors = {}
    for name, net in _named(state.nets):
        tensors.update({fmt.key(fmt.nets, name, k): v for k, v in net.state_dict().items()})
    groups, extras = {}, {}
    keep_extras = "optimiser_extras" in fmt.metadata
    for name, optimiser in _named(state.optimisers):
        sd = optimiser.state_dict()
        groups[name] = sd["param_groups"]
        for pid, entry in sd["state"].items():
            for k, v in entry.items():
                if keep_extras and not torch.is_tensor(v):
                    extras.setdefault(name, {}).setdefault(str(pid), {})[k] = v
                else:
                    tensors[fmt.key(fmt.optimisers, name, str(pid), k)] = torch.as_tensor(v)
    tensors[fmt.rng] = state.generator.get_state()
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    values = {
        "format": fmt.tag,
        "made_for": _made_for_json(made_for, fmt),
        "done": str(int(done)),
        "history": json.dumps(history),
        "groups": json.dumps(_one_or_all(groups, state.optimisers)),
        "optimiser_extras": json.dumps(_one_or_all(extras, state.optimisers)),
    }
    metadata = {key: values[role] for role, key in fmt.metadata.items()}
    metadata.update({name: json.dumps(obj.state_dict()) for name, obj in state.others.items()})
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)


def read_checkpoint(path, made_for, fmt):
    """The checkpoint at `path` (a Checkpoint), or None when there is no file.

    Raises StaleCheckpoint when it was made for something other than `made_for`; any other
    exception means the file is not a readable checkpoint of format `fmt`.
    """
    path = Path(path)
    if not path.is_file():
        return None
    with safe_open(str(path), framework="pt", device="cpu") as f:
        raw = f.metadata() or {}
        if fmt.tag is not None and raw.get("format") != fmt.tag:
            raise ValueError(f"not a {fmt.tag} checkpoint")
        stored = json.loads(raw[fmt.metadata["made_for"]])
        if stored != json.loads(_made_for_json(made_for, fmt)):
            raise StaleCheckpoint(sorted(k for k in made_for if stored.get(k) != made_for[k]))
        metadata = {k: json.loads(v) for k, v in raw.items() if k != "format"}
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    return Checkpoint(tensors, metadata, int(metadata[fmt.metadata["done"]]))


def restore(checkpoint, fmt, state):
    """Load a checkpoint into freshly built training objects; returns the epochs/steps done."""
    tensors, meta = checkpoint.tensors, checkpoint.metadata
    for name, net in _named(state.nets):
        prefix = fmt.key(fmt.nets, name, "")
        net.load_state_dict(
            {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)},
            strict=True,
        )
    groups = meta[fmt.metadata["groups"]]
    extras = meta[fmt.metadata["optimiser_extras"]] if "optimiser_extras" in fmt.metadata else {}
    named = isinstance(state.optimisers, dict)
    for name, optimiser in _named(state.optimisers):
        prefix = fmt.key(fmt.optimisers, name, "")
        opt_state = {}
        for key, value in tensors.items():
            if key.startswith(prefix):
                pid, k = key[len(prefix) :].split(fmt.sep, 1)
                opt_state.setdefault(int(pid), {})[k] = value
        for pid, entry in (extras.get(name, {}) if named else extras).items():
            opt_state.setdefault(int(pid), {}).update(entry)
        # load_state_dict moves the moments to each parameter's device (Adam's step stays)
        optimiser.load_state_dict(
            {"state": opt_state, "param_groups": groups[name] if named else groups}
        )
    for name, obj in state.others.items():
        if meta[name]:  # empty when off (a GradScaler on CPU or under bf16)
            obj.load_state_dict(meta[name])
    state.generator.set_state(tensors[fmt.rng])
    return checkpoint.done


def resume(path, made_for, fmt, state, say):
    """Restore `state` from the checkpoint at `path` when it was made for `made_for`.

    Returns the Checkpoint (its `done` and `metadata` hold the epochs/steps done and the
    history), or None to train from the start: no file, or one made for another run or
    unreadable, which is reported through `say` (a callable taking a line) and left for
    the next checkpoint to overwrite.
    """
    try:
        checkpoint = read_checkpoint(path, made_for, fmt)
    except StaleCheckpoint as exc:
        say(f"ignoring checkpoint {path}: {exc}; training from the start")
        return None
    except Exception as exc:  # noqa: BLE001 - any unreadable checkpoint is only ignored
        say(f"ignoring unreadable checkpoint {path} ({exc}); training from the start")
        return None
    if checkpoint is None:
        return None
    try:
        restore(checkpoint, fmt, state)
    except (KeyError, ValueError, RuntimeError) as exc:
        raise GantraceError(
            f"{path}: training checkpoint does not fit this model ({exc}); "
            "delete it to train from the start"
        ) from exc
    return checkpoint
