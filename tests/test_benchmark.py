"""Benchmark builder: split, generators, layout, and the workflow from slices to a leaderboard."""

import shutil

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import ROOT, copy_workflow, snakemake
from PIL import Image

from gantrace.benchmark_builder.generators import GENERATORS, build_generator, load_generator
from gantrace.benchmark_builder.layout import BenchmarkLayout
from gantrace.benchmark_builder.split import GroupSplit, assign_groups
from gantrace.config import validate_config
from gantrace.data.groups import group_column
from gantrace.data.ingest import image_table
from gantrace.errors import ConfigError
from gantrace.evaluation.runfiles import validate_run_file

SCHEMA = ROOT / "config" / "schema.yaml"
TINY = {  # per model: a few steps at 16x16
    "dcgan": {"width": 8, "latent_dim": 8, "lr": 2e-3},
    "wgan_gp": {"width": 8, "latent_dim": 8, "n_critic": 2, "lr": 2e-3},
    "vae": {"width": 8, "latent_dim": 8, "lr": 3e-3},
    "diffusion": {"width": 8, "levels": 2, "lr": 2e-3, "sample_steps": 3},
}


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny models run fastest on one thread (and do not spin against other jobs)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def write_slices(folder, n_groups=12, per_group=4, size=32, seed=0):
    """Synthetic slices: a bright disc per 'patient' (radius by group) plus noise."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[:size, :size] - size / 2
    for g in range(n_groups):
        for k in range(per_group):
            r = 5 + g % 6 + k * 0.3
            img = np.where(xx**2 + yy**2 < r**2, 180, 40) + rng.normal(0, 10, (size, size))
            Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(folder / f"p{g}_{k}.png")
    return sorted(folder.glob("*.png"))


def toy_images(n=32, size=16, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] - size / 2
    disc = (xx**2 + yy**2 < (size / 3) ** 2) * 160 + 60
    return np.clip(disc + rng.normal(0, 8, (n, size, size)), 0, 255).astype(np.uint8)


# -- split ---------------------------------------------------------------------------------
def test_split_keeps_groups_on_one_side_and_is_seeded(tmp_path):
    files = write_slices(tmp_path / "s")
    groups = assign_groups(files, {"pattern": r"^p(\d+)_\d+\.png$"})
    a = GroupSplit(0.5, 0.3, seed=1).fit_transform(files, groups)
    assert a.groupby("group").used.nunique().max() == 1  # a patient never on both sides
    assert a.groupby("group").part.nunique().max() == 1
    assert 0.3 <= a.used.mean() <= 0.7
    assert {"dev", "unknown"} == set(a.part[a.used == 1]) == set(a.part[a.used == 0])
    pd.testing.assert_frame_equal(a, GroupSplit(0.5, 0.3, seed=1).fit_transform(files, groups))
    others = [GroupSplit(0.5, 0.3, seed=s).fit_transform(files, groups).used for s in (2, 3, 4)]
    assert any(not o.equals(a.used) for o in others)
    # without groups, slices of one patient do land on both sides
    free = GroupSplit(0.5, 0.3, seed=1).fit_transform(files)
    assert free.groupby(np.asarray(groups)).used.nunique().max() == 2


def test_groups_from_csv_and_bad_pattern(tmp_path):
    files = write_slices(tmp_path / "s", n_groups=3, per_group=2)
    csv = tmp_path / "g.csv"
    pd.DataFrame(
        {"image": [f.name for f in files], "group": ["x", "x", "y", "y", "z", "z"]}
    ).to_csv(csv, index=False)
    assert assign_groups(files, {"csv": str(csv)}) == ["x", "x", "y", "y", "z", "z"]
    with pytest.raises(ConfigError, match="groups.pattern"):
        assign_groups(files, {"pattern": r"^q(\d+)"})


# -- generators ----------------------------------------------------------------------------
@pytest.mark.parametrize("model", list(GENERATORS))
def test_generator_learns_samples_and_resumes(model, tmp_path):
    data = toy_images()
    spec = {"name": model, "batch_size": 8, "log_every": 100, **TINY[model]}
    untrained = build_generator({**spec, "steps": 1}, seed=3).fit(data)
    full = build_generator({**spec, "steps": 30}, seed=3).fit(data)
    out = full.sample(5, seed=1)
    assert out.shape == (5, 16, 16) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, full.sample(5, seed=1))  # seeded sampling
    loss = full.losses_.iloc[:, 1]  # d_loss / critic_loss / loss: falls as the part learns
    assert loss.tail(5).mean() < loss.head(5).mean()
    if model == "dcgan":  # adversarial: the samples themselves move toward the data
        gap = lambda m: abs(m.sample(16, seed=1).mean() - data.mean())  # noqa: E731
        assert gap(full) < gap(untrained)
    assert not np.array_equal(untrained.sample(5, seed=1), out)
    # interrupted after 15 steps, resumed to 30: the same weights as one run
    ckpt = tmp_path / "c.safetensors"
    build_generator({**spec, "steps": 15}, seed=3).fit(data, checkpoint=ckpt)
    resumed = build_generator({**spec, "steps": 30}, seed=3).fit(data, checkpoint=ckpt)
    np.testing.assert_array_equal(resumed.sample(5, seed=1), out)
    assert list(resumed.losses_.step) == list(range(1, 31))
    full.save(tmp_path / "m.safetensors")
    np.testing.assert_array_equal(load_generator(tmp_path / "m.safetensors").sample(5, seed=1), out)


def test_unknown_generator_parameter_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown parameter"):
        build_generator({"name": "vae", "widht": 8})
    cfg = yaml.safe_load((ROOT / "tests" / "data" / "benchmark_tiny.yaml").read_text())
    validate_config(cfg, SCHEMA)  # a benchmark-only config is valid
    cfg["benchmark"]["generators"]["vae"]["stepz"] = 3
    with pytest.raises(ConfigError, match=r"benchmark.generators.vae: unknown parameter"):
        validate_config(cfg, SCHEMA)


def _weights(model):
    return {
        f"{n}.{k}": v.detach().clone()
        for n, net in model.nets_.items()
        for k, v in net.state_dict().items()
    }


def test_seed_twins_train_and_sample_apart():
    """An entry's own `seed` wins over the benchmark's, in training and in sampling."""
    data = toy_images()
    spec = {"name": "dcgan", "batch_size": 8, "steps": 4, "log_every": 100, **TINY["dcgan"]}
    base = build_generator(spec, seed=0).fit(data)
    twin = build_generator({**spec, "seed": 1}, seed=0).fit(data)
    again = build_generator({**spec, "seed": 1}, seed=7).fit(data)  # the entry's seed wins
    assert twin.seed == 1 and base.seed == 0
    w0, w1, w1b = _weights(base), _weights(twin), _weights(again)
    assert any(not bool((w0[k] == w1[k]).all()) for k in w0)
    assert all(bool((w1[k] == w1b[k]).all()) for k in w1)
    # sampling with each entry's own seed: other latents and other weights, other images
    assert not np.array_equal(base.sample(6), twin.sample(6))
    np.testing.assert_array_equal(twin.sample(6), again.sample(6))


def test_benchmark_seed_of_each_generator_and_identical_entries_refused():
    from gantrace.plan import Plan

    cfg = yaml.safe_load((ROOT / "config" / "benchmark.yaml").read_text())
    validate_config(cfg, SCHEMA)  # the default benchmark, with its seed twins, is valid
    gens = cfg["benchmark"]["generators"]
    twins = [n for n in gens if gens[n].get("seed") is not None]
    assert twins == ["dcgan_seed1"]
    assert {k: v for k, v in gens["dcgan_seed1"].items() if k != "seed"} == gens["dcgan"]
    plan = Plan(cfg, lambda ds: None)
    assert plan.benchmark_seed("dcgan") == 0 and plan.benchmark_seed("dcgan_seed1") == 1
    cfg = yaml.safe_load((ROOT / "tests" / "data" / "benchmark_tiny.yaml").read_text())
    cfg["benchmark"]["generators"]["dcgan_copy"] = {**cfg["benchmark"]["generators"]["dcgan"]}
    cfg["benchmark"]["generators"]["dcgan_copy"]["seed"] = 0  # the benchmark's seed: no twin
    with pytest.raises(ConfigError, match=r"dcgan_copy: the same generator as .*dcgan\b"):
        validate_config(cfg, SCHEMA)


# -- layout --------------------------------------------------------------------------------
def test_layout_writes_both_tasks_and_valid_run_files(tmp_path):
    files = write_slices(tmp_path / "s")
    split = GroupSplit(0.5, 0.3, seed=0).fit_transform(files, assign_groups(files, {}))
    samples = {"a": toy_images(10, seed=1), "b": 255 - toy_images(10, seed=2)}
    root = tmp_path / "bench"
    config, meta = BenchmarkLayout("t", 16, {"size": 32}, 0.5, seed=0).write(split, samples, root)
    validate_config(config | {"data_root": str(root)}, SCHEMA)
    assert meta["upsampled"] and meta["image_size"] == 32
    gt = root / "ground_truth"
    for g in samples:
        ds = config["datasets"][f"t_membership_{g}"]
        table = image_table("m", ds, 1, root=str(root))
        assert set(table.role.value_counts().index) == {
            "generated",
            "real_used",
            "real_not_used",
            "real_unknown",
        }
        unknown = table[table.role == "real_unknown"].image_id
        validate_run_file(gt / f"membership_{g}.csv", unknown, [0, 1])
        truth = pd.read_csv(gt / f"membership_{g}.csv", header=None, names=["id", "label"])
        used = dict(zip(split.image_id, split.used, strict=True))
        assert (truth.label == truth.id.map(used)).all()
        assert Image.open(table.path[0]).size == (32, 32)
    test = image_table("t", config["datasets"]["t_attribution_test"], 1, root=str(root))
    validate_run_file(gt / "attribution_test.csv", test.image_id, [1, 2])
    run = pd.read_csv(gt / "attribution_test.csv", header=None, names=["id", "label"])
    assert sorted(run.label.value_counts()) == [5, 5]
    assert not any(g in i for i in test.image_id for g in ("a_", "b_"))  # neutral ids
    dev = image_table("d", config["datasets"]["t_attribution_dev"], 1, root=str(root))
    assert dev.generator.value_counts().to_dict() == {"a": 5, "b": 5}
    # the test set's selected_on_dev row ranks on the dev set
    assert config["datasets"]["t_attribution_test"]["dev_dataset"] == "t_attribution_dev"


def test_a_reference_pool_is_set_aside_whole_and_never_scored(tmp_path):
    files = write_slices(tmp_path / "s", n_groups=12)
    groups = assign_groups(files, {"pattern": r"^p(\d+)_\d+\.png$"})
    plain = GroupSplit(0.5, 0.3, seed=0).fit_transform(files, groups)
    split = GroupSplit(0.5, 0.3, seed=0, reference_fraction=0.4).fit_transform(files, groups)
    ref = split.part == "reference"
    assert ref.any() and (split.used[ref] == 0).all()
    assert (plain.part[ref] == "dev").all() and plain.used.equals(split.used)  # drawn last
    assert (split.part[~ref] == plain.part[~ref]).all()
    assert not set(split.group[ref]) & set(split.group[~ref])  # whole patients
    root = tmp_path / "bench"
    config, _ = BenchmarkLayout("t", 16, None, 0.5, seed=0).write(
        split, {"a": toy_images(6, seed=1), "b": toy_images(6, seed=2)}, root, grouped=True
    )
    ds = config["datasets"]["t_membership_a"]
    table = image_table("m", ds, 1, root=str(root))
    pool = table[table.role == "reference_real"]
    assert sorted(pool.image_id) == sorted(split.image_id[ref])
    truth = pd.read_csv(root / "ground_truth" / "membership_a_truth.csv")
    assert not set(truth.image_id) & set(pool.image_id)  # never scored
    plain_cfg, _ = BenchmarkLayout("t", 16, None, 0.5, seed=0).write(
        plain, {"a": toy_images(6, seed=1)}, tmp_path / "plain"
    )
    assert "reference_real" not in plain_cfg["datasets"]["t_membership_a"]
    with pytest.raises(ConfigError, match="reference_fraction"):
        GroupSplit(0.5, 0.3, seed=0, reference_fraction=0.99).fit_transform(files, groups)


def test_layout_names_the_split_groups_in_membership_datasets(tmp_path):
    files = write_slices(tmp_path / "s", n_groups=6)
    groups = assign_groups(files, {"pattern": r"^p(\d+)_\d+\.png$"})
    split = GroupSplit(0.5, 0.3, seed=0).fit_transform(files, groups)
    samples = {"a": toy_images(6, seed=1), "b": toy_images(6, seed=2)}
    root = tmp_path / "bench"
    layout = BenchmarkLayout("t", 16, None, 0.5, seed=0)
    plain, _ = layout.write(split, samples, root)
    assert not any("groups" in ds for ds in plain["datasets"].values())
    config, _ = layout.write(split, samples, root, grouped=True)
    ds = config["datasets"]["t_membership_a"]
    assert ds["groups"] == {"csv": "groups.csv"}
    table = image_table("m", ds, 1, root=str(root))
    group = group_column(table, {"csv": str(root / "groups.csv")}, "k")
    real = (table.role != "generated").to_numpy()
    assert list(group[real]) == [
        f.stem.split("_")[0][1:] for f in files if f.stem in set(table.image_id[real])
    ]
    assert (group[~real] == table.image_id[~real]).all()  # generated: groups of their own


# -- workflow ------------------------------------------------------------------------------
@pytest.mark.workflow
def test_benchmark_workflow_then_scores(tmp_path):
    work = copy_workflow(tmp_path)
    write_slices(work / "slices")
    for name in ("benchmark_tiny.yaml", "benchmark_methods.yaml"):
        shutil.copy(ROOT / "tests" / "data" / name, work / name)
    one_thread = ["--set-threads", "benchmark_train=1", "benchmark_sample=1"]
    snakemake(work, "benchmark", "--configfile", "benchmark_tiny.yaml", *one_thread)
    built = work / "results" / "benchmark_tiny"  # the run: the config file's name
    bench = built / "benchmark" / "tiny"
    for g in ("dcgan", "vae"):
        assert (built / "models" / "benchmark" / "tiny" / f"{g}.safetensors").exists()
        assert not (
            built / "models" / "benchmark" / "tiny" / f"{g}.checkpoint.safetensors"
        ).exists()
        assert Image.open(bench / "report" / f"{g}_grid.png").size[0] > 16
        report = (bench / "report" / f"{g}_memorisation.txt").read_text()
        assert "near copies" in report and "data-copying test" in report
        assert (built / "timings" / "benchmark" / "tiny" / f"train_{g}.tsv").exists()
    # the seed twin trained and sampled with its own seed, not the benchmark's
    models = built / "models" / "benchmark" / "tiny"
    twin = load_generator(models / "dcgan_seed1.safetensors", device="cpu")
    drawn = np.load(bench / "samples" / "dcgan_seed1.npz")["images"]
    assert twin.seed == 1
    np.testing.assert_array_equal(drawn, twin.sample(len(drawn), seed=1))
    assert not np.array_equal(drawn, np.load(bench / "samples" / "dcgan.npz")["images"])
    index = pd.read_csv(bench / "ground_truth" / "generators.csv")
    assert dict(zip(index.generator, zip(index.model, index.seed, strict=True), strict=True)) == {
        "dcgan": ("dcgan", 0),
        "dcgan_seed1": ("dcgan", 1),
        "vae": ("vae", 0),
    }
    # the written snippet + a methods file run the main workflow (profile replaces the demo)
    snakemake(
        work,
        "results/benchmark_methods/leaderboard.csv",  # the run: the last file's name
        "--configfile",
        str(bench.relative_to(work) / "gantrace.yaml"),
        "benchmark_methods.yaml",
    )
    board = pd.read_csv(work / "results" / "benchmark_methods" / "leaderboard.csv")
    assert set(board.dataset) == {
        "tiny_membership_dcgan",
        "tiny_membership_dcgan_seed1",
        "tiny_membership_vae",
        "tiny_attribution_dev",
        "tiny_attribution_test",
    }
    assert board.score.notna().all()
    mem = board[board.task == "membership"]
    assert set(mem.split) == {"dev", "test"}  # real_unknown scored from ground_truth/
