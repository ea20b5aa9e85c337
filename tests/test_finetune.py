"""Learned features: CNNs trained on labelled images, cross-fitted, open set, resumable."""

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import copy_workflow, snakemake

from gantrace import io
from gantrace.errors import ConfigError
from gantrace.features import finetuned as finetune
from gantrace.features.finetuned import CNNClassifier, LearnedFeature

TINY = {"arch": "custom", "width": 4, "input_size": 32, "batch_size": 8, "lr": 3e-3}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny nets: one thread avoids oversubscribing a busy machine (much faster here)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def toy(n, kinds, seed=0, size=32):
    """Noise images per class with a planted texture: none, a checkerboard, a faint one."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    patterns = {
        "plain": 0 * xx,
        "checker": ((yy + xx) % 2) * 2 - 1,
        "faint": 0.4 * (((yy + xx) % 2) * 2 - 1),  # between the two: an unseen generator
    }
    y = np.repeat(np.arange(len(kinds)), n)
    x = rng.normal(128, 20, (len(y), size, size))
    for c, kind in enumerate(kinds):
        x[y == c] += 25 * patterns[kind]
    order = rng.permutation(len(y))
    return np.clip(x, 0, 255).astype(np.uint8)[order], y[order]


def test_cnn_beats_chance_out_of_fold():
    x, y = toy(24, ["plain", "checker"])
    feature = LearnedFeature("cnn", epochs=4, n_folds=2, **TINY)
    features, info = feature.fit_transform(x, y)
    assert features.shape == (48, 4 * 8 + 2)  # penultimate (width * 2**3) + probabilities
    assert info["oof_accuracy"] >= 0.9  # chance is 0.5
    assert np.mean(features[:, -2:].argmax(1) == y) == info["oof_accuracy"]


def test_a_fold_never_sees_its_own_labels():
    x, y = toy(12, ["plain", "checker"], seed=1)
    folds = np.arange(len(y)) % 2
    feature = LearnedFeature("cnn", epochs=1, n_folds=2, **TINY)
    before, _ = feature.fit_transform(x, y, folds=folds)
    flipped = y.copy()
    flipped[folds == 0] = 1 - flipped[folds == 0]
    after, _ = feature.fit_transform(x, flipped, folds=folds)
    np.testing.assert_array_equal(before[folds == 0], after[folds == 0])
    assert not np.allclose(before[folds == 1], after[folds == 1])  # the labels are used


def test_unlabelled_rows_get_features_from_all_labels():
    x, y = toy(12, ["plain", "checker"], seed=2)
    y = y.copy()
    y[:6] = -1
    feature = LearnedFeature("cnn", epochs=1, n_folds=2, output="probabilities", **TINY)
    features, info = feature.fit_transform(x, y)
    assert info["units"] == ["fold0", "fold1", "all"]
    assert np.all(np.isfinite(features)) and np.allclose(features.sum(1), 1, atol=1e-5)


def test_open_set_labels_the_unseen_generator():
    dev_x, dev_y = toy(24, ["plain", "checker"], seed=3)
    test_x, test_y = toy(16, ["plain", "checker", "faint"], seed=4)
    feature = LearnedFeature(
        "cnn", epochs=4, open_set={"n_pseudo": 16}, output="probabilities", **TINY
    )
    unlabelled = np.full(len(test_y), -1)
    features, info = feature.fit_transform(test_x, unlabelled, train=(dev_x, dev_y))
    picked = info["pseudo_rows"]["all"]
    assert len(picked) == 16
    assert np.mean(test_y[picked] == 2) > 0.6  # chance: 1/3
    assert features.shape[1] == 3  # two dev generators + the unseen one
    assert features[test_y == 2, 2].mean() > features[test_y != 2, 2].mean() + 0.1


def test_membership_target_puts_the_used_logit_first():
    x, y = toy(12, ["plain", "checker"], seed=5)
    feature = LearnedFeature("inoue", target="membership", epochs=3, n_folds=2, **TINY)
    features, info = feature.fit_transform(x, y)
    assert features.shape[1] == 1 + 32
    assert np.mean((features[:, 0] > 0) == (y == 1)) == pytest.approx(info["oof_accuracy"])
    assert info["oof_accuracy"] > 0.75


def test_ensemble_concatenates_each_net():
    x, y = toy(8, ["plain", "checker"], seed=6)
    spec = {**TINY, "ensemble": ["custom", "resnet18"], "input_size": 32}
    features, _ = LearnedFeature("sdvahcs", epochs=1, n_folds=2, **spec).fit_transform(x, y)
    assert features.shape == (16, 32 + 512 + 2)


def test_resume_after_a_kill_gives_the_same_weights(tmp_path, monkeypatch):
    x, y = toy(8, ["plain", "checker"], seed=7)
    params = {**TINY, "epochs": 2}
    whole = CNNClassifier(**params).fit(x, y)
    ckpt = tmp_path / "state.safetensors"
    real_write = finetune.write_checkpoint

    def write_then_die(*args, **kwargs):
        real_write(*args, **kwargs)
        raise KeyboardInterrupt  # killed right after epoch 1 was saved

    monkeypatch.setattr(finetune, "write_checkpoint", write_then_die)
    with pytest.raises(KeyboardInterrupt):
        CNNClassifier(**params).fit(x, y, checkpoint=ckpt)
    monkeypatch.setattr(finetune, "write_checkpoint", real_write)
    resumed = CNNClassifier(**params).fit(x, y, checkpoint=ckpt)
    assert resumed.metrics_["loss_history"][0] == whole.metrics_["loss_history"][0]
    a, b = whole.model_.state_dict(), resumed.model_.state_dict()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)


def test_save_load_round_trip(tmp_path):
    x, y = toy(8, ["plain", "checker"], seed=8)
    net = CNNClassifier(**{**TINY, "epochs": 1}).fit(x, y)
    net.save(tmp_path / "net.safetensors")
    back = CNNClassifier.load(tmp_path / "net.safetensors")
    np.testing.assert_allclose(back.embed(x)[1], net.embed(x)[1], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("spec", "key"),
    [
        ({"target": "origin"}, "target"),
        ({"epochs": 0}, "epochs"),
        ({"arch": "resnet19"}, "resnet19"),
        ({"target": "membership", "open_set": {"n_pseudo": 5}}, "open_set"),
        ({"preprocess": "histeqq"}, "preprocess"),
        ({"n_fold": 3}, "n_fold"),
    ],
)
def test_bad_spec_names_the_key(spec, key):
    with pytest.raises(ConfigError, match=key):
        LearnedFeature("bad", **spec)


def test_preprocess_is_applied_before_training():
    x, _ = toy(2, ["plain", "checker"])
    plain = LearnedFeature("a", **TINY).prepare(x)
    equalised = LearnedFeature("b", preprocess="histeq", **TINY).prepare(x)
    assert plain.shape == equalised.shape == (4, 32, 32)
    assert equalised.std() > plain.std()


CONFIG = """
seed: 0
ingest: {n_shards: 1}
datasets:
  ft_attribution:
    task: attribution
    simulate: {generators: [checkerboard, spectral, oversmooth], n_per_generator: 8}
    n_generators: 3
features:
  cnn:
    name: finetuned
    arch: custom
    width: 4
    input_size: 32
    epochs: 2
    n_folds: 2
    batch_size: 8
    lr: 0.003
attribution:
  methods:
    cnn_kmeans: {feature: cnn, clusterer: {name: kmeans}}
"""


@pytest.mark.workflow
def test_workflow_trains_the_feature_and_clusters_it(tmp_path):
    work = copy_workflow(tmp_path)
    (work / "ft.yaml").write_text(CONFIG)
    target = "results/ft/ft_attribution/attribution/cnn_kmeans.parquet"
    snakemake(work, target, "--configfile", "ft.yaml", "--set-threads", "train_features=1")
    table = pd.read_parquet(work / target)
    assert len(table) == 24 and set(table.cluster) <= {1, 2, 3}
    ids, x, attrs = io.read_features(work / "results/ft/ft_attribution/features/cnn/full.h5")
    assert ids == sorted(ids) and x.shape == (24, 32 + 3)
    assert attrs["extractor"] == "finetuned" and attrs["oof_accuracy"] >= 0
    models = work / "results/ft/models/ft_attribution/cnn"
    assert sorted(p.name for p in models.glob("*.safetensors")) == [
        "fold0.safetensors",
        "fold1.safetensors",
    ]
    assert not (work / "results/ft/models/ft_attribution/cnn.checkpoints").exists()
    proc = snakemake(work, target, "-n", "--configfile", "ft.yaml")
    assert "train_features" not in proc.stdout  # trained once, reused


def test_custom_cnn_has_gan_amis_shape():
    """Upganlawar et al. Sec. 4.1: 2 convs per stage at 64, 128, 256, 512 filters, each
    stage max-pooled, a 1024-filter bottleneck pair, flatten, dense 256 and 64 (ReLU)."""
    net = finetune.PlainCNN(width=64, bottleneck=True, dense=[256, 64], input_size=64)
    convs = [m.out_channels for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs == [64, 64, 128, 128, 256, 256, 512, 512, 1024, 1024]
    assert sum(isinstance(m, torch.nn.MaxPool2d) for m in net.modules()) == 4
    dense = [(m.in_features, m.out_features) for m in net.head if isinstance(m, torch.nn.Linear)]
    assert dense == [(1024 * 4 * 4, 256), (256, 64)]  # 64 px / 2**4 = 4 x 4 maps, flattened
    assert net(torch.zeros(2, 1, 64, 64)).shape == (2, 64) and net.out_dim == 64
    plain = finetune.PlainCNN(width=4)  # defaults: the earlier small CNN, pooled
    widths = [m.out_channels for m in plain.modules() if isinstance(m, torch.nn.Conv2d)]
    assert widths == [4, 4, 8, 8, 16, 16, 32, 32]
    assert plain(torch.zeros(2, 1, 32, 32)).shape == (2, 32)


def test_custom_cnn_shape_reaches_the_feature(tmp_path):
    x, y = toy(6, ["plain", "checker"])
    spec = {**TINY, "bottleneck": True, "dense": [16, 8], "output": "penultimate"}
    feature = LearnedFeature("cnn", epochs=1, n_folds=2, **spec)
    features, _ = feature.fit_transform(x, y, model_dir=tmp_path)
    assert features.shape == (12, 8)  # the last dense layer's 8 units
    net = CNNClassifier.load(tmp_path / "fold0.safetensors", device="cpu")
    assert (net.bottleneck, net.dense) == (True, [16, 8])
    with pytest.raises(ConfigError, match="dense"):
        LearnedFeature("cnn", dense=[0])
