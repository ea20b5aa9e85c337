"""GAN-Leaks' calibration by a reference generator trained on the clean pool only
(`datasets.<ds>.reference_generator`, `reference: generator`)."""

import shutil

import numpy as np
import pandas as pd
import pytest
from conftest import TINY_MEMBERSHIP, copy_workflow, snakemake
from PIL import Image
from test_clean_reference import auc, patients
from test_plan import SCHEMA, _config, _plan

from gantrace import stages
from gantrace.config import validate_config
from gantrace.data import simulate
from gantrace.errors import ConfigError, GantraceError
from gantrace.membership.scorers import SCORERS
from gantrace.plan import image_table

GENERATOR = {"name": "vae", "width": 4, "latent_dim": 4, "steps": 60, "batch_size": 8, "lr": 0.003}


def reference_samples(pool, seed=1):
    """What a reference generator trained on the clean pool draws: near its images, never
    near the members."""
    rng = np.random.default_rng(seed)
    picks = rng.integers(len(pool), size=3 * len(pool))
    return pool[picks] + rng.normal(0, 0.1, (len(picks), pool.shape[1]))


@pytest.mark.parametrize(
    "spec", [{"name": "calibrated_knn"}, {"name": "calibrated_knn", "calibration": "ratio"}]
)
def test_reference_samples_calibrate_where_the_contaminated_pool_does_not(spec):
    generated, real, labels, groups, pool = patients()
    assert auc(spec, generated, real, labels) < 0.6  # members' twins in the pool
    by_samples = {**spec, "reference": "generator"}
    samples = reference_samples(pool)
    assert auc(by_samples, generated, real, labels, samples_X=samples) > 0.95


def test_domias_estimates_p_ref_from_the_samples():
    generated, real, labels, groups, pool = patients()
    spec = {"name": "domias", "reference": "generator"}
    good = auc(spec, generated, real, labels, samples_X=reference_samples(pool))
    # samples of a reference generator that copied the members instead: no signal left
    copied = reference_samples(real[60:100])
    assert good > 0.9 and auc(spec, generated, real, labels, samples_X=copied) < 0.7


def test_reference_generator_needs_its_samples():
    generated, real, *_ = patients()
    scorer = SCORERS.create({"name": "calibrated_knn", "reference": "generator"}).fit(generated)
    with pytest.raises(GantraceError, match="reference_generator"):
        scorer.fit_reference(real, pool_X=real)  # a clean pool is not its samples


def _refgen_config(**refgen):
    cfg = _config()
    cfg["datasets"]["test_mem"]["reference_real"] = "r"
    cfg["datasets"]["test_mem"]["reference_generator"] = {"generator": dict(GENERATOR), **refgen}
    cfg["membership"]["methods"]["leaks"] = {
        "feature": "pixels",
        "scorer": {"name": "calibrated_knn", "reference": "generator"},
        "datasets": ["test_mem"],
    }
    return cfg


def test_the_samples_join_the_dataset_in_their_own_shard(tmp_path):
    for role in ("generated", "real_unknown", "reference_real"):
        (tmp_path / role).mkdir()
        for i in range(3):
            Image.new("L", (8, 8), 40 * i).save(tmp_path / role / f"{role}_{i}.png")
    cfg = validate_config(_refgen_config(n_samples=5), SCHEMA)
    spec = cfg["datasets"]["test_mem"]
    for role in ("generated", "real_unknown", "reference_real"):
        spec[role] = str(tmp_path / role)
    table = image_table(cfg, "test_mem", "sim", "refs")
    samples = table[table.role == "reference_generated"]
    assert list(samples.image_id) == [f"refgen_{i:05d}" for i in range(5)]
    others = table[table.role != "reference_generated"]
    assert set(samples.shard) == {2} and set(others.shard) <= {0, 1}
    assert (samples.label == -1).all() and samples.path.str.startswith("refs/").all()
    plan = _plan(cfg, {"test_mem": table})
    paths = plan.role_paths("test_mem", "reference_real")
    assert sorted(paths) == sorted(str(p) for p in (tmp_path / "reference_real").iterdir())
    assert plan.reference_generator("test_mem")["generator"]["seed"] == cfg["seed"]
    # an image of the dataset named like a sample is refused, not silently overwritten
    shutil.copy(tmp_path / "generated" / "generated_0.png", tmp_path / "generated/refgen_00001.png")
    with pytest.raises(ConfigError, match="refgen"):
        image_table(cfg, "test_mem", "sim", "refs")


def test_parse_time_problems_name_the_key():
    cfg = _refgen_config()
    del cfg["datasets"]["test_mem"]["reference_real"]
    with pytest.raises(ConfigError, match=r"datasets\.test_mem\.reference_generator: it trains"):
        _plan(cfg)
    cfg = _refgen_config()
    cfg["datasets"]["test_mem"]["reference_generator"]["generator"]["depth"] = 3
    with pytest.raises(ConfigError, match=r"reference_generator\.generator: unknown parameter"):
        _plan(cfg)
    cfg = _refgen_config()
    del cfg["datasets"]["test_mem"]["reference_generator"]
    text = "\n".join(_plan(cfg).problems(weights=False))
    assert "membership.methods.leaks.scorer.reference: 'generator'" in text
    assert "datasets.test_mem.reference_generator" in text
    assert not [p for p in _plan(_refgen_config()).problems(weights=False) if "refer" in p]


def _pngs(folder, images, prefix):
    folder.mkdir(parents=True)
    paths = []
    for i, image in enumerate(images):
        paths.append(folder / f"{prefix}{i:03d}.png")
        Image.fromarray(image).save(paths[-1])
    return [str(p) for p in paths]


def test_the_generator_learns_the_clean_pool_only(tmp_path):
    """Trained on bright slices (the clean pool), it samples bright slices, whatever the
    dataset's members look like; the same seed gives the same samples."""
    rng = np.random.default_rng(0)
    bright = rng.normal(200, 8, (24, 16, 16)).clip(0, 255).astype(np.uint8)
    pool = _pngs(tmp_path / "reference_real", bright, "ref")
    model = tmp_path / "model" / "generator.safetensors"
    stages.reference_generator_train(
        pool, GENERATOR, 16, 0, "cpu", model, tmp_path / "losses.csv", tmp_path / "ckpt"
    )
    outs = [[str(tmp_path / f"s{run}" / f"refgen_{i:05d}.png") for i in range(6)] for run in (0, 1)]
    for paths in outs:
        stages.reference_generator_sample(model, 0, "cpu", 16, paths)
    drawn = np.stack([np.asarray(Image.open(p)) for p in outs[0]])
    assert drawn.shape == (6, 16, 16) and drawn.mean() > 180  # an untrained VAE gives ~128
    again = np.stack([np.asarray(Image.open(p)) for p in outs[1]])
    assert np.array_equal(drawn, again)
    assert len(pd.read_csv(tmp_path / "losses.csv")) == GENERATOR["steps"]


@pytest.mark.workflow
def test_the_workflow_trains_samples_and_scores_with_it(tmp_path):
    work = copy_workflow(tmp_path)
    data = work / "data"
    simulate.write_dataset(TINY_MEMBERSHIP, data / "mem")
    # the clean pool: not-used slices of another draw of the same simulator
    simulate.write_dataset({**TINY_MEMBERSHIP, "seed": 11}, data / "other")
    ref = data / "reference_real"
    ref.mkdir()
    for p in sorted((data / "other" / "real_not_used").glob("*.png")):
        shutil.copy(p, ref / f"ref_{p.name}")
    (work / "refgen.yaml").write_text(
        f"""
run: refgen
seed: 0
ingest: {{n_shards: 2}}
datasets:
  mem:
    task: membership
    generated: data/mem/generated
    real_used: data/mem/real_used
    real_not_used: data/mem/real_not_used
    real_unknown: data/mem/real_unknown
    truth: data/mem/truth.csv
    reference_real: data/reference_real
    reference_generator:
      generator: {GENERATOR | {"steps": 4}}
      resolution: 16
      n_samples: 10
segmentation: {{mask_source: threshold}}
features:
  pixels: {{name: pixels, size: 16}}
membership:
  n_folds: 3
  methods:
    leaks: {{feature: pixels, scorer: {{name: calibrated_knn, reference: generator}}}}
    domias: {{feature: pixels, reducer: {{name: pca, n_components: 3}}, scorer: {{name: domias, reference: generator}}}}
    knn: {{feature: pixels, scorer: {{name: knn}}}}
"""
    )
    snakemake(work, "all", "--configfile", "refgen.yaml")
    run = work / "results" / "refgen"
    man = pd.read_parquet(run / "mem" / "manifest.parquet")
    assert (man.role == "reference_generated").sum() == 10
    assert (man.role == "reference_real").sum() == (man.role == "real_not_used").sum()
    log = (run / "logs" / "reference_generator" / "mem_train.log").read_text()
    n_ref = (man.role == "reference_real").sum()
    assert f"on {n_ref} reference_real (clean pool) slices at 16x16" in log
    leaks = pd.read_parquet(run / "mem" / "membership" / "leaks.parquet")
    assert not leaks.image_id.str.startswith(("refgen_", "ref_")).any()
    assert np.isfinite(leaks.score).all()
    assert (
        "reference generator: 10 samples"
        in (run / "logs" / "membership" / "mem" / "leaks.log").read_text()
    )
    board = pd.read_csv(run / "leaderboard.csv")
    assert {"leaks", "domias", "knn"} <= set(board.method)
    sub = (run / "submissions" / "mem" / "leaks.csv").read_text()
    assert "refgen_" not in sub and "ref_" not in sub
    # a changed reference generator retrains it and re-ingests only the samples' shard
    cfg = (work / "refgen.yaml").read_text().replace("n_samples: 10", "n_samples: 12")
    (work / "changed.yaml").write_text(cfg)
    dry = snakemake(work, "all", "-n", "--configfile", "changed.yaml").stdout
    assert "reference_generator_sample_mem" in dry
    assert "images/0.h5" not in dry and "images/1.h5" not in dry and "images/2.h5" in dry
