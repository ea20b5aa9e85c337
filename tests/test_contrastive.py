"""The self-supervised (SimCLR) encoder trained on real slices only: loss, views,
determinism, resumption, the train_features stage and its place in the plan."""

import html

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import copy_workflow, snakemake

from gantrace import io, stages
from gantrace.data.shards import write_images
from gantrace.errors import ConfigError, GantraceError
from gantrace.features import check_spec
from gantrace.features.contrastive import ContrastiveEncoder, ContrastiveFeature, augment, nt_xent
from gantrace.plan import learns_from_labels

SIDE = 24
TINY = dict(width=4, depth=2, input_size=SIDE, batch_size=16, lr=3e-3, device="cpu")


def _slices(n, seed=0):
    """Toy 'slices': a bright disc of random place and size on a dark background."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:SIDE, :SIDE]
    out = np.empty((n, SIDE, SIDE), np.uint8)
    for i in range(n):
        cy, cx = rng.integers(5, SIDE - 5, 2)
        r = rng.integers(2, 6)
        out[i] = np.where((yy - cy) ** 2 + (xx - cx) ** 2 < r * r, 210, 25)
    return out


@pytest.fixture(scope="module")
def fitted():
    return ContrastiveEncoder(epochs=4, seed=0, **TINY).fit(_slices(48))


def test_the_loss_decreases(fitted):
    losses = fitted.loss_history_
    assert len(losses) == 4 and losses[-1] < losses[0] - 0.1


def test_embeddings_differ_between_images_and_repeat_for_a_seed(fitted):
    x = _slices(48)
    f = fitted.embed(x)
    assert f.shape == (48, 4 * 2) and np.isfinite(f).all()
    pairs = np.triu_indices(48, 1)
    distinct = np.abs(x[:, None].astype(int) - x[None]).sum(axis=(2, 3))[pairs] > 0
    assert distinct.sum() > 1000  # the toy draws repeat a few discs
    assert np.linalg.norm(f[:, None] - f[None], axis=2)[pairs][distinct].min() > 0
    again = ContrastiveEncoder(epochs=4, seed=0, **TINY).fit(x)
    np.testing.assert_array_equal(again.embed(x), f)
    other = ContrastiveEncoder(epochs=4, seed=1, **TINY).fit(x)
    assert not np.allclose(other.embed(x), f)


def test_a_checkpoint_resumes_to_the_same_weights(tmp_path):
    x, path = _slices(32), tmp_path / "ckpt.safetensors"
    first = ContrastiveEncoder(epochs=2, seed=0, **TINY).fit(x, checkpoint=path)
    assert path.is_file()
    resumed = ContrastiveEncoder(epochs=2, seed=0, **TINY).fit(x, checkpoint=path)  # 2/2 done
    np.testing.assert_array_equal(resumed.embed(x), first.embed(x))
    assert resumed.loss_history_ == first.loss_history_


def test_views_are_seeded_and_the_identity_view_is_the_input():
    x = torch.from_numpy(_slices(4)).float().div(255).unsqueeze(1)
    jitter = dict(crop_scale=0.7, rotation=10.0, flip=True, intensity=0.1, gamma=0.3, noise=0.02)
    a = augment(x, torch.Generator().manual_seed(0), **jitter)
    b = augment(x, torch.Generator().manual_seed(0), **jitter)
    assert torch.equal(a, b) and a.shape == x.shape
    assert (a - (x * 2 - 1)).abs().mean() > 0.02
    off = dict(crop_scale=1.0, rotation=0.0, flip=False, intensity=0.0, gamma=0.0, noise=0.0)
    same = augment(x, torch.Generator().manual_seed(0), **off)
    torch.testing.assert_close(same, x * 2 - 1, atol=1e-5, rtol=0)


def test_nt_xent_is_low_for_matching_views_and_high_for_shuffled_ones():
    z = torch.nn.functional.normalize(
        torch.randn(16, 8, generator=torch.Generator().manual_seed(0))
    )
    assert nt_xent(z, z, 0.1) < nt_xent(z, z.roll(1, 0), 0.1)


def test_the_feature_reads_no_label_and_declares_its_parameters():
    spec = {"name": "contrastive", "epochs": 2}
    feature = check_spec(spec, "features.ssl")
    assert isinstance(feature, ContrastiveFeature) and feature.learned
    assert not learns_from_labels(spec) and learns_from_labels({"name": "finetuned"})
    with pytest.raises(ConfigError, match=r"features\.ssl\.crop_scale"):
        check_spec({"name": "contrastive", "crop_scale": 0}, "features.ssl")
    with pytest.raises(ConfigError, match="did you mean 'rotation'"):
        check_spec({"name": "contrastive", "rotaton": 5}, "features.ssl")


def _dataset(tmp_path, generated):
    """One shard and a manifest: 24 real slices (used / not used / unknown) + generated."""
    real = _slices(24)
    ids = [f"r{i:02d}" for i in range(24)] + [f"g{i:02d}" for i in range(len(generated))]
    roles = ["real_used"] * 8 + ["real_not_used"] * 8 + ["real_unknown"] * 8
    roles += ["generated"] * len(generated)
    labels = [1] * 8 + [0] * 8 + [-1] * (8 + len(generated))
    write_images(tmp_path / "0.h5", ids, np.concatenate([real, generated]))
    manifest = pd.DataFrame({"image_id": ids, "role": roles, "label": labels})
    io.write_table(manifest, tmp_path / "manifest.parquet")
    return [str(tmp_path / "0.h5")], str(tmp_path / "manifest.parquet")


def _train(tmp_path, generated):
    shards, manifest = _dataset(tmp_path, generated)
    spec = {"name": "contrastive", "epochs": 2, **{k: v for k, v in TINY.items() if k != "device"}}
    out = tmp_path / "ssl.h5"
    stages.train_features(
        "ssl", spec, shards, manifest, out, tmp_path / "models", tmp_path / "ckpt", 0, "cpu"
    )
    return io.read_features(out)


def test_the_stage_trains_on_real_slices_only(tmp_path):
    """Other generated images change no real slice's features: the encoder never saw them;
    relabelling the real slices changes nothing either."""
    ids, x, attrs = _train(tmp_path / "a", _slices(6, seed=1))
    assert ids == sorted(ids) and x.shape == (30, 8)
    assert attrs["extractor"] == "contrastive" and attrs["n_train"] == 24
    assert (tmp_path / "a" / "models" / "encoder.safetensors").is_file()
    assert not (tmp_path / "a" / "ckpt").exists()
    _, y, _ = _train(tmp_path / "b", 255 - _slices(6, seed=2))
    real = [i for i, iid in enumerate(ids) if iid.startswith("r")]
    np.testing.assert_array_equal(x[real], y[real])
    assert not np.array_equal(x, y)


def test_a_dataset_without_real_slices_is_refused(tmp_path):
    shards, _ = _dataset(tmp_path, _slices(4))
    manifest = pd.DataFrame(
        {"image_id": [f"g{i:02d}" for i in range(4)], "role": "generated", "label": -1}
    )
    io.write_table(manifest, tmp_path / "gen.parquet")
    with pytest.raises(GantraceError, match="train_from"):
        stages.train_features(
            "ssl",
            {"name": "contrastive", "epochs": 1, "input_size": SIDE},
            shards,
            tmp_path / "gen.parquet",
            tmp_path / "x.h5",
            tmp_path / "m",
            tmp_path / "c",
            0,
            "cpu",
        )


WORKFLOW_CONFIG = """
seed: 0
ingest: {n_shards: 1}
datasets:
  ssl_membership:
    task: membership
    simulate: {n_used: 16, n_not_used: 16, n_generated: 30, n_unknown: 8}
features:
  pixels: {name: pixels, size: 16}
  ssl: {name: contrastive, width: 4, depth: 2, input_size: 32, epochs: 1, batch_size: 16}
membership:
  n_folds: 2
  copying: {n_cells: 2}
  methods:
    ssl_knn: {feature: ssl, scorer: {name: knn}}
    pixels_patches: {feature: pixels, scorer: {name: patch_match, patch: 4, stride: 2}}
"""


@pytest.mark.workflow
def test_workflow_trains_the_encoder_scores_patches_and_tests_copying(tmp_path):
    work = copy_workflow(tmp_path)
    (work / "ssl.yaml").write_text(WORKFLOW_CONFIG)
    snakemake(work, "results/ssl/leaderboard.html", "--configfile", "ssl.yaml")
    res = work / "results" / "ssl"
    board = pd.read_csv(res / "leaderboard.csv")
    assert {"ssl_knn", "pixels_patches"} <= set(board.method)
    _, x, attrs = io.read_features(res / "ssl_membership" / "features" / "ssl" / "full.h5")
    assert x.shape == (70, 8) and attrs["n_train"] == 40  # used + not used + unknown
    copying = io.read_table(res / "ssl_membership" / "copying.parquet").iloc[0]
    assert copying.feature == "ssl" and copying.n_cells == 2  # the first method's feature
    assert html.escape(copying.verdict) in (res / "leaderboard.html").read_text()
