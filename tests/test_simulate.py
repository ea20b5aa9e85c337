"""Tests of the simulator (gantrace.data.simulate): anatomy, generators, plan, writer, parameters."""

import dataclasses
import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy import ndimage

from gantrace.data import simulate as sim
from gantrace.errors import ConfigError

SMALL_M = {"task": "membership", "n_used": 4, "n_not_used": 3, "n_generated": 5, "n_unknown": 6}
SMALL_A = {"task": "attribution", "n_per_generator": 3, "size": 128}
# the non-default parameters: partial memorisation, a looser copy, the seed twins
SMALL_M2 = {**SMALL_M, "memorised_share": 0.5, "memorised_jitter": 0.5}
SMALL_A2 = {**SMALL_A, "generators": ["checkerboard", "checkerboard_seed1", "upsample"]}


def _read(path):
    return np.asarray(Image.open(path))


def _hashes(root):
    root = Path(root)
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _auc(pos, neg):
    """P(score of a positive > score of a negative), ties counted half."""
    pos, neg = np.asarray(pos)[:, None], np.asarray(neg)[None, :]
    return float((pos > neg).mean() + 0.5 * (pos == neg).mean())


# ---------------------------------------------------------------- anatomy


@pytest.mark.parametrize("seed", range(6))
def test_thorax_slice_looks_like_a_thorax(seed):
    img, mask = sim.thorax_slice(np.random.default_rng(seed))
    assert img.shape == mask.shape == (256, 256)
    assert img.dtype == np.uint8 and mask.dtype == bool
    assert img[:8, :8].mean() < 15 and img[:8, -8:].mean() < 15  # air in the corners
    assert img.max() >= 220  # the spine
    body = ndimage.binary_fill_holes(ndimage.gaussian_filter(img.astype(float), 2) > 60)
    tissue = body & ~ndimage.binary_dilation(mask, iterations=3) & (img < 180)
    assert 85 < np.median(img[tissue]) < 150
    assert np.median(img[mask]) < np.median(img[tissue]) - 40  # lungs are dark
    assert mask.sum() > 0.05 * mask.size
    assert not (mask & ~body).any()  # lungs lie inside the body
    sizes = sorted(np.bincount(ndimage.label(mask)[0].ravel())[1:])
    assert len(sizes) >= 2 and sizes[-2] > 0.02 * mask.size  # two lungs


def test_thorax_slice_other_size_and_explicit_params():
    params = sim.sample_anatomy(np.random.default_rng(3))
    a, ma = sim.thorax_slice(np.random.default_rng(0), size=128, params=params)
    b, mb = sim.thorax_slice(np.random.default_rng(1), size=128, params=params)
    assert a.shape == (128, 128)
    assert (ma == mb).all()  # same anatomy, same mask
    assert 0 < np.abs(a.astype(int) - b).mean() < 10  # only the noise differs


def test_noise_is_spatially_correlated():
    params = sim.sample_anatomy(np.random.default_rng(5))
    a, mask = sim.thorax_slice(np.random.default_rng(0), params=params)
    b, _ = sim.thorax_slice(np.random.default_rng(1), params=params)
    d = (a.astype(float) - b)[64:192, 64:192]  # pure noise difference, inside the body
    d -= d.mean()
    lag1 = (d[:, 1:] * d[:, :-1]).mean() / d.var()
    assert lag1 > 0.4  # white noise would give ~0


def test_lesions_on_some_slices_and_bright_in_lung():
    draws = [sim.sample_anatomy(np.random.default_rng(s)) for s in range(300)]
    with_lesion = [p for p in draws if p["lesions"]]
    assert 0.1 < len(with_lesion) / len(draws) < 0.3
    params = with_lesion[0]
    plain = {**params, "lesions": []}
    a, mask = sim.thorax_slice(np.random.default_rng(0), params=params)
    b, _ = sim.thorax_slice(np.random.default_rng(0), params=plain)
    diff = a.astype(int) - b
    assert (diff[mask] > 50).sum() >= 10  # a bright nodule inside the lung
    assert (diff[~mask] == 0).all()


# ---------------------------------------------------------------- generators


def _residual_spectrum(img, n_bins=24):
    """Azimuthally averaged log power spectrum of the high-pass residual."""
    img = img.astype(float)
    res = img - ndimage.gaussian_filter(img, 1.0)
    power = np.abs(np.fft.fftshift(np.fft.fft2(res))) ** 2
    n = img.shape[0]
    yy, xx = np.indices(power.shape) - n // 2
    rbin = np.minimum((np.hypot(yy, xx) / (n / 2) * n_bins / 1.42).astype(int), n_bins - 1)
    sums = np.bincount(rbin.ravel(), power.ravel(), n_bins)
    return np.log(sums / np.bincount(rbin.ravel(), minlength=n_bins) + 1e-9)


def test_each_generator_changes_the_image_but_keeps_the_anatomy():
    base, _ = sim.thorax_slice(np.random.default_rng(0))
    base = base.astype(float)
    for name, gen in sim.GENERATORS.items():
        out = gen(base.copy(), np.random.default_rng(1))
        assert out.shape == base.shape, name
        assert np.abs(out - base).mean() > 0.5, name
        assert np.corrcoef(out.ravel(), base.ravel())[0, 1] > 0.97, name
        assert abs(out.mean() - base.mean()) < 10, name


def _image_statistics(img, mask):
    """Per-image statistics a spectrum does not see: tissue and lung grey, lung and body area."""
    img = img.astype(float)
    body = ndimage.binary_fill_holes(ndimage.gaussian_filter(img, 2) > 60)
    tissue = body & ~ndimage.binary_dilation(mask, iterations=3) & (img < 180)
    return [np.median(img[tissue]), np.median(img[mask]), mask.sum() / body.sum(), body.mean()]


def _generator_images(name, n=16, seed=99):
    """n images of one generator, image k drawn from the same rng for every generator."""
    gen = sim.GENERATORS[name]
    out = []
    for k in range(n):
        rng = np.random.default_rng([seed, k])
        img, mask = gen.draw(rng, 256)
        out.append((sim._to_uint8(gen(img, rng)), mask))
    return out


def test_generators_differ_in_intensity_and_anatomy_not_only_their_spectrum():
    names = ["checkerboard", "spectral", "oversmooth", "upsample"]
    stats = {n: np.array([_image_statistics(*im) for im in _generator_images(n)]) for n in names}
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            sd = np.sqrt((stats[a].var(0) + stats[b].var(0)) / 2)
            effect = np.abs(stats[a].mean(0) - stats[b].mean(0)) / sd
            assert effect.max() > 1.0, (a, b, effect)  # at least one statistic tells them apart


def test_seed_twins_differ_only_in_their_kernel():
    twin_a, twin_b = sim.GENERATORS["checkerboard"], sim.GENERATORS["checkerboard_seed1"]
    assert twin_a.kernel_seed != twin_b.kernel_seed
    assert dataclasses.replace(twin_b, kernel_seed=twin_a.kernel_seed) == twin_a
    images_a, images_b = _generator_images("checkerboard"), _generator_images("checkerboard_seed1")
    stats_a = np.array([_image_statistics(*im) for im in images_a])
    stats_b = np.array([_image_statistics(*im) for im in images_b])
    np.testing.assert_allclose(stats_a, stats_b, rtol=0.02, atol=1.0)  # same draws, same stats
    for (a, mask_a), (b, mask_b) in zip(images_a, images_b, strict=True):
        assert (mask_a == mask_b).all()
        assert 0 < np.abs(a.astype(int) - b).mean() < 3  # only the artefact's pattern differs

    def fingerprint(images):
        """Mean high-pass residual folded onto the 4 x 4 tile of the deconvolution."""
        res = [im - ndimage.uniform_filter(im.astype(float), 4) for im, _ in images]
        return np.mean([r.reshape(64, 4, 64, 4).mean(axis=(0, 2)) for r in res], axis=0).ravel()

    fa1, fa2 = fingerprint(images_a[:8]), fingerprint(images_a[8:])
    fb = fingerprint(images_b[8:])
    assert np.corrcoef(fa1, fa2)[0, 1] > 0.9  # a generator's kernel is fixed
    assert np.corrcoef(fa1, fb)[0, 1] < 0.7  # the twin's is another


def test_generators_are_separable_by_a_frequency_statistic():
    names = ["checkerboard", "spectral", "oversmooth"]  # the default attribution set
    feats, labels = [], []
    for gi, name in enumerate(names):
        for k in range(20):
            rng = np.random.default_rng([gi, k])
            img, _ = sim._render(sim.sample_anatomy(rng), rng, 256)
            out = np.clip(np.rint(sim.GENERATORS[name](img, rng)), 0, 255)
            feats.append(_residual_spectrum(out))
            labels.append(gi)
    feats, labels = np.array(feats), np.array(labels)
    train = np.arange(len(labels)) % 2 == 0
    mu, sd = feats[train].mean(0), feats[train].std(0) + 1e-9
    z = (feats - mu) / sd
    centroids = np.array([z[train & (labels == g)].mean(0) for g in range(len(names))])
    pred = ((z[:, None, :] - centroids[None]) ** 2).sum(-1).argmin(1)
    accuracy = (pred[~train] == labels[~train]).mean()
    assert accuracy > 0.9


# ---------------------------------------------------------------- plan and writer


def test_plan_membership_roles_labels_and_ids():
    table = sim.plan({"task": "membership", "seed": 2})
    assert list(table.columns) == ["image_id", "role", "label", "generator", "relpath"]
    assert table.image_id.is_unique
    counts = table.role.value_counts()
    assert counts.to_dict() == {
        "generated": 80,
        "real_used": 40,
        "real_not_used": 40,
        "real_unknown": 40,
    }
    by_role = table.groupby("role").label.agg(lambda s: sorted(set(s)))
    assert by_role["generated"] == [-1] and by_role["real_used"] == [1]
    assert by_role["real_not_used"] == [0]
    unknown = table[table.role == "real_unknown"].sort_values("image_id")
    assert unknown.label.sum() == 20  # half used
    assert not unknown.label.is_monotonic_increasing  # id order does not reveal the label
    assert not unknown.label.is_monotonic_decreasing
    assert all(i.startswith("m_unk_") for i in unknown.image_id)
    assert (table.generator[table.role == "generated"] == "checkerboard").all()
    assert (table.generator[table.role != "generated"] == "").all()
    assert (table.relpath == table.role + "/" + table.image_id + ".png").all()


def test_generated_images_derive_from_used_and_unknown_used_slices():
    p = sim.resolve_params({"task": "membership", "seed": 0, "memorised_share": 1})
    table = sim.plan(p)
    sources = sim.training_sources(p, table)
    assert len(sources) == 80 and (sources >= 0).all()
    src = table.iloc[sources]
    assert ((src.role == "real_used") | ((src.role == "real_unknown") & (src.label == 1))).all()
    assert (src.role == "real_unknown").any()


def _anatomies(p, roles):
    table = sim.plan(p)
    rows = np.flatnonzero(table.role.isin(roles).to_numpy())
    return table, {int(k): sim.anatomy(p, table, k) for k in rows}


@pytest.mark.parametrize("share", [0.0, 0.25, 1.0])
def test_memorised_share_is_the_share_of_generated_slices_reusing_trained_anatomy(share):
    p = sim.resolve_params({**SMALL_M, "n_generated": 40, "memorised_share": share})
    table, anat = _anatomies(p, ["generated", "real_used", "real_unknown", "real_not_used"])
    sources = sim.training_sources(p, table)
    assert (sources >= 0).sum() == round(share * 40)
    real_seeds = {a["texture_seed"] for k, a in anat.items() if table.role[k] != "generated"}
    for k, src in enumerate(sources):  # generated rows come first
        seed = anat[k]["texture_seed"]  # vessels and ribs
        if src < 0:  # new anatomy: no real slice's vessels, ribs or body
            assert seed not in real_seeds
            assert all(anat[k]["body"] != a["body"] for j, a in anat.items() if j != k)
        else:  # a trained slice's vessels and ribs, its body jittered
            assert seed == anat[src]["texture_seed"]
            assert table.role[src] == "real_used" or table.label[src] == 1
            assert anat[k]["body"] != anat[src]["body"]


def test_memorised_jitter_zero_copies_the_anatomy_exactly():
    p = sim.resolve_params({**SMALL_M, "memorised_share": 1, "memorised_jitter": 0})
    table, anat = _anatomies(p, ["generated", "real_used", "real_unknown"])
    for k, src in enumerate(sim.training_sources(p, table)):
        assert anat[k] == anat[src]
        gen, gen_mask = sim.render_image(p, table, k)
        real, real_mask = sim.render_image(p, table, src)
        assert (gen_mask == real_mask).all()  # no warp
        assert 0 < np.abs(gen.astype(int) - real).mean() < 8  # fresh noise and the artefact


def _knn_membership_auc(**params):
    """Pixel 1-NN membership AUC (used vs not used) of a small simulated set."""
    p = sim.resolve_params(
        {"task": "membership", "seed": 5, "size": 128, "n_used": 30, "n_not_used": 30}
        | {"n_generated": 60, "n_unknown": 0, **params}
    )
    table = sim.plan(p)
    x = np.array(
        [
            sim.render_image(p, table, k)[0].reshape(32, 4, 32, 4).mean(axis=(1, 3)).ravel()
            for k in range(len(table))
        ]
    )
    gen = x[(table.role == "generated").to_numpy()]
    dist = np.sqrt(((x[:, None, :] - gen[None]) ** 2).sum(-1)).min(1)
    label = table.label.to_numpy()
    return _auc(-dist[label == 1], -dist[label == 0])


def test_knn_membership_auc_rises_with_the_memorised_share():
    aucs = [_knn_membership_auc(memorised_share=s) for s in (0.0, 0.5, 1.0)]
    print("pixel 1-NN membership AUC at memorised_share 0, 0.5, 1:", np.round(aucs, 3))
    assert aucs[0] < 0.65  # no memorisation: no membership signal beyond chance
    assert aucs[0] < aucs[1] - 0.05 and aucs[1] < aucs[2] - 0.05
    assert aucs[2] > 0.7
    # how closely: a closer copy is easier to spot, a looser one harder
    assert _knn_membership_auc(memorised_share=1.0, memorised_jitter=0.5) > aucs[2] + 0.05
    assert _knn_membership_auc(memorised_share=1.0, memorised_jitter=4.0) < aucs[2] - 0.05


def test_plan_attribution_ids_hide_the_generator():
    table = sim.plan({"task": "attribution", "seed": 1, "generators": ["spectral", "upsample"]})
    assert len(table) == 80 and table.image_id.is_unique
    assert table.generator.value_counts().to_dict() == {"spectral": 40, "upsample": 40}
    assert (table.role == "generated").all() and (table.label == -1).all()
    assert table.image_id.str.fullmatch(r"a_\d{4}").all()
    ordered = table.sort_values("image_id").generator
    assert (ordered != ordered.shift()).sum() > 10  # generators interleaved across ids
    expected = "generated/" + table.generator + "/" + table.image_id + ".png"
    assert (table.relpath == expected).all()


@pytest.mark.parametrize("params", [SMALL_M, SMALL_A])
def test_write_dataset_writes_exactly_the_plan(tmp_path, params):
    table = sim.write_dataset(params, tmp_path)
    pd.testing.assert_frame_equal(table, sim.plan(params))
    files = set(_hashes(tmp_path))
    masks = {f"masks/{i}.png" for i in table.image_id}
    assert files == set(table.relpath) | masks | {"truth.csv"}
    size = params.get("size", 256)
    for row in table.itertuples():
        img = Image.open(tmp_path / row.relpath)
        assert img.mode == "L" and img.size == (size, size)
        mask = _read(tmp_path / "masks" / f"{row.image_id}.png")
        assert set(np.unique(mask)) == {0, 255}
        assert _read(tmp_path / row.relpath)[mask > 0].mean() < 90  # mask covers dark lung
    truth = pd.read_csv(tmp_path / "truth.csv", keep_default_na=False)
    assert list(truth.columns) == ["image_id", "role", "label", "generator"]
    pd.testing.assert_frame_equal(truth, table.drop(columns="relpath"))


@pytest.mark.parametrize("params", [SMALL_M, SMALL_A, SMALL_M2, SMALL_A2])
def test_write_dataset_is_deterministic(tmp_path, params):
    runs = {}
    for name, p in (("a", params), ("b", params), ("c", {**params, "seed": 1})):
        sim.write_dataset(p, tmp_path / name)
        runs[name] = _hashes(tmp_path / name)
    assert runs["a"] == runs["b"]  # byte-identical PNGs and truth.csv
    images = [k for k in runs["a"] if not k.startswith("masks/") and k != "truth.csv"]
    assert all(runs["a"][k] != runs["c"].get(k) for k in images)


def test_membership_is_detectable_but_not_trivial(tmp_path):
    table = sim.write_dataset({"task": "membership", "seed": 0}, tmp_path)

    def vectors(mask):
        imgs = [_read(tmp_path / r).astype(float) for r in table.relpath[mask]]
        return np.array([im.reshape(64, 4, 64, 4).mean(axis=(1, 3)).ravel() for im in imgs])

    gen = vectors(table.role == "generated")

    def nn_dist(mask):
        x = vectors(mask)
        d2 = (x**2).sum(1)[:, None] + (gen**2).sum(1)[None] - 2 * x @ gen.T
        return np.sqrt(np.maximum(d2, 0).min(1))

    real = table.role.str.startswith("real_")
    used = nn_dist(real & (table.label == 1))
    not_used = nn_dist(real & (table.label == 0))
    auc = _auc(-used, -not_used)  # nearer to the generated set = more likely used
    print(f"pixel-space 1-NN membership AUC: {auc:.3f}")
    assert 0.6 < auc < 0.85  # the range real chest-CT membership benchmarks show


def test_cli_writes_a_dataset(tmp_path, capsys):
    sim.main(["--task", "attribution", "--out", str(tmp_path), "--seed", "4", "--size", "64"])
    assert "wrote 120 images" in capsys.readouterr().out
    truth = pd.read_csv(tmp_path / "truth.csv")
    assert len(truth) == 120 and (tmp_path / "masks").is_dir()


# ---------------------------------------------------------------- parameters


@pytest.mark.parametrize(
    ("params", "key"),
    [
        ({}, "task"),
        ({"task": "segmentation"}, "task"),
        ({"task": "membership", "n_usd": 3}, "n_usd"),
        ({"task": "membership", "generators": ["spectral"]}, "generators"),
        ({"task": "attribution", "generator": "spectral"}, "generator"),
        ({"task": "membership", "n_used": -1}, "n_used"),
        ({"task": "membership", "n_generated": 2.5}, "n_generated"),
        ({"task": "membership", "n_unknown": True}, "n_unknown"),
        ({"task": "membership", "generator": "stylegan9"}, "generator"),
        ({"task": "membership", "n_used": 0, "n_unknown": 0}, "n_generated"),
        ({"task": "attribution", "generators": ["checkerboard", "bogus"]}, "generators"),
        ({"task": "attribution", "generators": "spectral"}, "generators"),
        ({"task": "attribution", "generators": []}, "generators"),
        ({"task": "attribution", "generators": ["spectral", "spectral"]}, "generators"),
        ({"task": "attribution", "n_per_generator": 0}, "n_per_generator"),
        ({"task": "attribution", "seed": -1}, "seed"),
        ({"task": "attribution", "size": 30}, "size"),
        ({"task": "attribution", "size": 130}, "size"),
        ({"task": "membership", "memorised_share": 1.5}, "memorised_share"),
        ({"task": "membership", "memorised_share": -0.1}, "memorised_share"),
        ({"task": "membership", "memorised_share": "most"}, "memorised_share"),
        ({"task": "membership", "memorised_jitter": -1}, "memorised_jitter"),
        ({"task": "attribution", "memorised_share": 0.5}, "memorised_share"),
    ],
)
def test_bad_params_name_the_key(params, key):
    with pytest.raises(ConfigError, match=f"'{key}'"):
        sim.plan(params)
