"""The training kit: checkpoint layouts, restore, stale and unreadable checkpoints, epochs."""

import json

import pytest
import torch
from safetensors import safe_open

from gantrace.errors import GantraceError
from gantrace.nn.checkpoint import (
    GENERATOR,
    TRAINER,
    StaleCheckpoint,
    TrainingState,
    read_checkpoint,
    restore,
    resume,
    write_checkpoint,
)
from gantrace.nn.epochs import EpochShuffle
from gantrace.nn.optim import cosine_schedule, optimiser_step


def _trained(seed, named):
    """A tiny net (or two) after three Adam steps, with a schedule and its own generator."""
    torch.manual_seed(seed)
    nets = {"a": torch.nn.Linear(3, 2), "b": torch.nn.Linear(2, 1)}
    opts = {n: torch.optim.Adam(net.parameters(), lr=1e-2) for n, net in nets.items()}
    schedule = cosine_schedule(opts["a"], 10)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(3):
        x = torch.randn(4, 3, generator=gen)
        optimiser_step(nets["a"](x).pow(2).mean(), opts["a"], schedule=schedule)
        optimiser_step(nets["b"](nets["a"](x).detach()).pow(2).mean(), opts["b"])
    if named:
        return TrainingState(nets, opts, generator=gen)
    return TrainingState(nets["a"], opts["a"], generator=gen, others={"schedule": schedule})


def _same(a, b):
    for (_, x), (_, y) in zip(_modules(a.nets), _modules(b.nets), strict=True):
        for k, v in x.state_dict().items():
            assert torch.equal(v, y.state_dict()[k]), k
    for (_, x), (_, y) in zip(_modules(a.optimisers), _modules(b.optimisers), strict=True):
        sx, sy = x.state_dict()["state"], y.state_dict()["state"]
        assert sx.keys() == sy.keys()
        for pid in sx:
            for k in sx[pid]:
                assert torch.equal(torch.as_tensor(sx[pid][k]), torch.as_tensor(sy[pid][k]))
    assert torch.equal(a.generator.get_state(), b.generator.get_state())
    for name, obj in a.others.items():
        assert obj.state_dict() == b.others[name].state_dict()


def _modules(objects):
    return objects.items() if isinstance(objects, dict) else [(None, objects)]


@pytest.mark.parametrize(
    ("fmt", "named", "tensor_keys", "meta_keys"),
    [
        (
            TRAINER,
            False,
            {"model/weight", "model/bias", "optim/0/exp_avg", "optim/0/step", "rng/torch"},
            {"format", "fingerprint", "epoch", "history", "optim_param_groups"}
            | {"optim_state_other", "schedule"},
        ),
        (
            GENERATOR,
            True,
            {"net.a.weight", "net.b.bias", "opt.a.0.exp_avg", "opt.b.1.step", "rng"},
            {"step", "params", "groups", "history"},
        ),
    ],
)
def test_both_layouts_round_trip(tmp_path, fmt, named, tensor_keys, meta_keys):
    path = tmp_path / "ckpt.safetensors"
    made_for = {"params": {"lr": 0.01, "betas": [0.5, 0.9]}, "data": "abc"}
    saved = _trained(1, named)
    write_checkpoint(path, made_for, 3, fmt, saved, [{"step": 1, "loss": 0.5}])
    with safe_open(str(path), "pt") as f:
        assert tensor_keys <= set(f.keys())
        meta = f.metadata()
    assert set(meta) == meta_keys
    assert meta.get("format") == fmt.tag  # GENERATOR: untagged, as before
    fresh = _trained(2, named)  # other weights, moments and generator state
    checkpoint = read_checkpoint(path, made_for, fmt)
    assert checkpoint.done == 3 and checkpoint.metadata["history"] == [{"step": 1, "loss": 0.5}]
    assert restore(checkpoint, fmt, fresh) == 3
    _same(saved, fresh)


def test_stale_unreadable_and_missing_checkpoints(tmp_path):
    path = tmp_path / "ckpt.safetensors"
    state = _trained(1, named=False)
    lines = []
    assert resume(path, {"params": 1}, TRAINER, state, lines.append) is None  # no file
    assert lines == []
    write_checkpoint(path, {"params": 1, "data_sha256": "x"}, 1, TRAINER, state, {})
    with pytest.raises(StaleCheckpoint) as err:
        read_checkpoint(path, {"params": 1, "data_sha256": "y"}, TRAINER)
    assert err.value.changed == ["data_sha256"]
    assert resume(path, {"params": 2, "data_sha256": "x"}, TRAINER, state, lines.append) is None
    assert "ignoring checkpoint" in lines[-1] and "params" in lines[-1]
    # a GENERATOR file is not a TRAINER checkpoint (no format tag): unreadable, ignored
    write_checkpoint(path, {"params": 1}, 1, GENERATOR, _trained(1, named=True), [])
    assert resume(path, {"params": 1}, TRAINER, state, lines.append) is None
    assert "ignoring unreadable checkpoint" in lines[-1]
    path.write_bytes(b"not a safetensors file")
    assert resume(path, {"params": 1}, GENERATOR, state, lines.append) is None
    assert "ignoring unreadable checkpoint" in lines[-1]


def test_a_checkpoint_of_another_model_is_an_error(tmp_path):
    path = tmp_path / "ckpt.safetensors"
    write_checkpoint(path, {"p": 1}, 1, TRAINER, _trained(1, named=False), {})
    other = TrainingState(
        torch.nn.Linear(5, 5), torch.optim.Adam(torch.nn.Linear(5, 5).parameters())
    )
    with pytest.raises(GantraceError, match="does not fit this model"):
        resume(path, {"p": 1}, TRAINER, other, print)


def test_made_for_is_compared_as_json(tmp_path):
    """Tuples and lists are the same thing once written: a resume is not refused for that."""
    path = tmp_path / "ckpt.safetensors"
    state = _trained(1, named=True)
    write_checkpoint(path, {"betas": (0.5, 0.9)}, 2, GENERATOR, state, [])
    assert read_checkpoint(path, {"betas": [0.5, 0.9]}, GENERATOR).done == 2
    assert json.loads(safe_open(str(path), "pt").metadata()["params"]) == {"betas": [0.5, 0.9]}


def test_epoch_order_depends_on_seed_and_epoch_only():
    a, b = EpochShuffle(20, seed=4), EpochShuffle(20, seed=4)
    orders = []
    for epoch in (1, 2, 3):
        a.epoch = epoch
        orders.append(list(a))
    b.epoch = 3  # a fresh sampler (a resumed fit) jumps straight to epoch 3
    assert list(b) == orders[2]
    assert orders[0] != orders[1] and sorted(orders[0]) == list(range(20))
    b.seed = 5
    assert list(b) != orders[2]
