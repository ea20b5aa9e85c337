"""The report's plots: each plot function on small synthetic inputs, then the plot rules and
`snakemake --report` on a reduced tiny config."""

import numpy as np
import pandas as pd
import pytest
from conftest import TINY_MEMBERSHIP, copy_workflow, snakemake
from PIL import Image

from gantrace.data import simulate
from gantrace.evaluation.leaderboard import best_result
from gantrace.evaluation.metrics import dice
from gantrace.evaluation.scores import score_results
from gantrace.report import plots

MIN_BYTES = 5_000


def assert_png(path, min_bytes=MIN_BYTES):
    """A valid, non-empty PNG of a plausible size."""
    assert path.is_file(), path
    assert path.stat().st_size > min_bytes, (path, path.stat().st_size)
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        assert im.format == "PNG" and im.width >= 300 and im.height >= 150, (path, im.size)
        # not a blank canvas
        assert np.asarray(im.convert("L")).std() > 5, path


# -- synthetic inputs ------------------------------------------------------------------------
def clusters_and_generators(n_per=20, seed=0):
    rng = np.random.default_rng(seed)
    gen = np.repeat(np.array(["checkerboard", "oversmooth", "spectral"], dtype=object), n_per)
    clusters = np.repeat([3, 1, 2], n_per)
    clusters[:3] = 1  # a few mistakes
    x = rng.normal(size=(len(gen), 40))
    x[:, :3] += 6 * np.repeat(np.eye(3), n_per, axis=0)
    return x, clusters, gen


def membership_table(seed, with_threshold=True):
    rng = np.random.default_rng(seed)
    role = np.repeat(["real_used", "real_not_used", "real_unknown"], 30)
    y = np.r_[np.ones(30), np.zeros(30), rng.integers(0, 2, 30)].astype(int)
    score = y + rng.normal(size=90)
    thr = np.r_[np.repeat([0.3, 0.5, 0.6], 20), np.full(30, 0.45)]
    t = pd.DataFrame({"role": role, "y": y, "score": score, "decision": (score > thr).astype(int)})
    if with_threshold:
        t["threshold"] = thr
    return t


def test_confusion_is_hungarian_aligned():
    _, clusters, gen = clusters_and_generators()
    matrix, rows, cols = plots.aligned_confusion(clusters, gen)
    assert rows == ["checkerboard", "oversmooth", "spectral"]
    assert cols == ["3 → checkerboard", "1 → oversmooth", "2 → spectral"]
    assert matrix.trace() == len(gen) - 3 and matrix.sum() == len(gen)
    # an extra cluster is kept in its own column, after the matched ones
    extra = clusters.copy()
    extra[-1] = 7
    _, _, cols = plots.aligned_confusion(extra, gen)
    assert cols[-1] == "cluster 7"
    # images of unknown generator are left out
    partial = gen.copy()
    partial[:20] = ""
    matrix, rows, _ = plots.aligned_confusion(clusters, partial)
    assert rows == ["oversmooth", "spectral"] and matrix.sum() == 40


def test_attribution_plots(tmp_path):
    x, clusters, gen = clusters_and_generators()
    xy = plots.tsne_embedding(x, seed=0)
    assert xy.shape == (len(x), 2)
    assert np.array_equal(xy, plots.tsne_embedding(x, seed=0))  # seeded
    partial = gen.copy()
    partial[::4] = ""
    plots.plot_embedding(xy, clusters, partial, tmp_path / "tsne.png", title="t-SNE")
    plots.plot_embedding(xy, clusters, None, tmp_path / "tsne_no_truth.png")
    worse = np.where(np.arange(len(gen)) % 3 == 0, 1, clusters)
    plots.plot_confusion(
        {"m": (clusters, gen), "fused": (worse, gen), "part": (clusters, partial)},
        tmp_path / "confusion.png",
    )
    plots.plot_confusion({"m": (clusters, np.full(len(gen), ""))}, tmp_path / "no_truth.png")
    imgs = simulate_images()
    plots.plot_generator_montage(
        {"a": imgs[:6], "b": imgs[6:]}, tmp_path / "montage.png", n_samples=3
    )
    for name in ("tsne", "tsne_no_truth", "confusion", "montage"):
        assert_png(tmp_path / f"{name}.png")
    assert_png(tmp_path / "no_truth.png", min_bytes=1_000)
    spectrum = plots.residual_spectrum(imgs)
    assert spectrum.shape == imgs.shape[1:] and np.isfinite(spectrum).all()


def simulate_images():
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[:64, :64]
    body = ((yy - 32) ** 2 / 26**2 + (xx - 32) ** 2 / 30**2) < 1
    imgs = np.where(body, 120, 10)[None] + rng.normal(0, 8, (10, 64, 64))
    imgs[5:, ::2, ::2] += 20  # a checkerboard on half of them
    return np.clip(imgs, 0, 255).astype(np.uint8)


def test_membership_plots(tmp_path):
    tables = {
        "a_knn": membership_table(1),
        "b_knn": membership_table(2),
        "fused_vote": membership_table(3, with_threshold=False),
    }
    plots.plot_score_histograms(tables, tmp_path / "hist.png")
    plots.plot_roc_pr(tables, tmp_path / "roc.png")
    assert_png(tmp_path / "hist.png")
    assert_png(tmp_path / "roc.png")
    # no labels anywhere: a placeholder, not an error
    blind = {"a": membership_table(1).assign(y=-1)}
    plots.plot_roc_pr(blind, tmp_path / "blind.png")
    assert_png(tmp_path / "blind.png", min_bytes=1_000)


def test_log_fpr_roc_and_forest_plots(tmp_path):
    tables = {"a_knn": membership_table(1), "fused_vote": membership_table(3)}
    plots.plot_roc_log_fpr(tables, tmp_path / "log_roc.png", fprs=[0.1, 0.01])
    assert_png(tmp_path / "log_roc.png")
    blind = {"a": membership_table(1).assign(y=-1)}
    plots.plot_roc_log_fpr(blind, tmp_path / "blind.png")
    assert_png(tmp_path / "blind.png", min_bytes=1_000)
    results = {
        name: t.assign(image_id=[f"i{k}" for k in range(len(t))], label=t.y)
        for name, t in {**tables, "b_knn": membership_table(2)}.items()
    }
    scored = score_results("membership", "d", results, ["vote"], evaluation={"n_boot": 200})
    plots.plot_forest(scored, "auc", tmp_path / "forest.png", ci=0.95, title="d")
    assert_png(tmp_path / "forest.png")
    plots.plot_forest(scored.iloc[:0], "auc", tmp_path / "none.png")  # nothing scored
    assert_png(tmp_path / "none.png", min_bytes=1_000)


def test_score_histograms_drop_empty_panels_and_say_infinite_thresholds(tmp_path, monkeypatch):
    figs = []
    monkeypatch.setattr(plots, "_save", lambda fig, out: figs.append(fig))
    dev_only = membership_table(1)
    dev_only = dev_only[dev_only.role != "real_unknown"].copy()
    dev_only.loc[dev_only.index[:20], "threshold"] = -np.inf  # F1 best when all are called used
    plots.plot_score_histograms({"a_knn": dev_only, "b_knn": dev_only}, tmp_path / "h.png")
    axes = [ax for ax in figs[0].axes if ax.get_visible() and ax.axison]
    assert len(figs[0].axes) == 2 and len(axes) == 2  # no "unknown set" column at all
    texts = [t.get_text() for ax in axes for t in ax.get_legend().get_texts()]
    assert "threshold: every image called used" in texts
    assert not any("inf" in t for t in texts)
    # one method without unknown-set images next to one with them: its panel is left out
    figs.clear()
    plots.plot_score_histograms({"a": membership_table(1), "b": dev_only}, tmp_path / "h.png")
    assert len(figs[0].axes) == 4
    assert [ax.axison for ax in figs[0].axes] == [True, True, True, False]
    assert all("no " not in t.get_text() for ax in figs[0].axes for t in ax.texts)


def test_segmentation_plot_puts_worst_dice_first(tmp_path):
    imgs = simulate_images()
    true = imgs > 60
    pred = true.copy()
    pred[3, :20] = ~pred[3, :20]  # the worst
    pred[7, :5] = ~pred[7, :5]
    d = np.array([dice(p, t) for p, t in zip(pred, true)])
    assert np.allclose(d, dice(pred, true))
    assert dice(np.zeros((4, 4)), np.zeros((4, 4))) == 1.0
    ids = [f"s{i:02d}" for i in range(10)]
    pick = plots.select_slices(ids, d, n=4)
    assert list(pick[:2]) == [3, 7]
    spread = plots.select_slices(ids, None, n=4)
    assert list(spread) == [0, 3, 6, 9]
    plots.plot_segmentation_montage(
        imgs[pick], pred[pick], tmp_path / "seg.png", true[pick], [ids[i] for i in pick], d[pick]
    )
    assert_png(tmp_path / "seg.png")


def test_best_result_and_leaderboard_table(tmp_path):
    scores = pd.DataFrame({"method": ["a", "b", "fused_v"], "ari": [0.2, 0.9, 0.95]})
    assert best_result(scores, ["a", "b"]) == ("b", 0.9)
    assert best_result(scores, ["a", "b", "fused_v"])[0] == "fused_v"
    name, value = best_result(scores.iloc[:0], ["a", "b"])
    assert name == "a" and np.isnan(value)
    board = pd.DataFrame(
        {
            "dataset": ["d1", "d1", "d2"],
            "method": ["x<y", "z", "w"],
            "score": [0.5, 0.7, np.nan],
            "n": [10, 10, 5],
        }
    )
    out = plots.leaderboard_html(board, tmp_path / "board.html")
    page = out.read_text()
    assert page.count("<tr") == 4 and "x&lt;y" in page and "0.7000" in page
    assert "addEventListener" in page and "http" not in page  # sortable, self-contained
    assert "statistically indistinguishable" not in page  # no tie columns, no tie note
    board["tied_with_best"] = [False, True, False]
    board["kind"] = ["method", "method", "selected"]
    board["boot_unit"] = ["group", "group", "image"]
    page = plots.leaderboard_html(board, tmp_path / "tied.html").read_text()
    assert '<tr class="tied">' in page and f"{plots.TIED} z" in page
    assert "statistically indistinguishable" in page and "(1 row(s) here)" in page
    assert '<tr class="first selected">' in page and "selected_on_dev" in page
    assert "single images on d2; they assume independent images" in page


# -- the workflow ----------------------------------------------------------------------------
# The tiny test config, cut to weight-free features so the run stays short; lung and outer
# regions keep the segmentation montage on both datasets.
CONFIG = """
seed: 0
ingest: {n_shards: 1}
datasets:
  tiny_membership:
    task: membership
    generated: data/tiny_membership/generated
    real_used: data/tiny_membership/real_used
    real_not_used: data/tiny_membership/real_not_used
    real_unknown: data/tiny_membership/real_unknown
    truth: data/tiny_membership/truth.csv
  tiny_attribution:
    task: attribution
    simulate: {generators: [checkerboard, spectral, oversmooth], n_per_generator: 10}
    n_generators: 3
segmentation:
  mask_source: simulated
  train_datasets: [tiny_attribution]
  train_shards: [0]
  unet: {encoder: resnet18, encoder_depth: 3, decoder_channels: [16, 8, 4], input_size: 64,
         epochs: 1}
features:
  pixels: {name: pixels, size: 16}
  spectrum: {name: spectrum}
attribution:
  methods:
    spectrum_kmeans: {feature: spectrum, clusterer: {name: kmeans}}
    spectrum_lung_agglomerative: {feature: spectrum, region: lung, clusterer: {name: agglomerative}}
  fusion:
    vote: {methods: [spectrum_kmeans, spectrum_lung_agglomerative]}
membership:
  n_folds: 3
  methods:
    pixels_knn: {feature: pixels, scorer: {name: knn, k: 1}}
    pixels_outer_knn: {feature: pixels, region: outer, scorer: {name: knn, k: 1}}
  fusion:
    mean_rank: {methods: [pixels_knn, pixels_outer_knn], rule: mean_rank}
"""
MEMBERSHIP = TINY_MEMBERSHIP
EXPECTED = {
    "tiny_attribution": [
        "tiny_attribution/plots/attribution_tsne.png",
        "tiny_attribution/plots/attribution_confusion.png",
        "tiny_attribution/plots/attribution_montage.png",
        "tiny_attribution/plots/forest.png",
        "segmentation/tiny_attribution.png",
    ],
    "tiny_membership": [
        "tiny_membership/plots/membership_scores.png",
        "tiny_membership/plots/membership_roc_pr.png",
        "tiny_membership/plots/membership_roc_log_fpr.png",
        "tiny_membership/plots/forest.png",
        "segmentation/tiny_membership.png",
    ],
}


@pytest.fixture(scope="module")
def plotted_run(tmp_path_factory):
    work = copy_workflow(tmp_path_factory.mktemp("plots"))
    (work / "plots.yaml").write_text(CONFIG)
    simulate.write_dataset(MEMBERSHIP, work / "data" / "tiny_membership")
    snakemake(work, "all", "--configfile", "plots.yaml")
    return work


@pytest.mark.workflow
def test_all_builds_every_plot(plotted_run):
    results = plotted_run / "results" / "plots"  # the run: the config file's name
    for ds, names in EXPECTED.items():
        pngs = sorted(results.glob(f"{ds}/plots/*.png")) + sorted(
            results.glob(f"segmentation/{ds}.png")
        )
        assert sorted(p.relative_to(results).as_posix() for p in pngs) == sorted(names)
        for p in pngs:
            assert_png(p)
    board = (results / "leaderboard.html").read_text()
    assert "spectrum_kmeans" in board and "pixels_knn" in board
    # the slow steps say how fast they go
    for log in (results / "logs" / "ingest").rglob("*.log"):
        assert "images/s" in log.read_text(), log


@pytest.mark.workflow
def test_report_holds_every_plot(plotted_run):
    report = "results/plots/report.html"
    snakemake(plotted_run, "--report", report, "all", "--configfile", "plots.yaml")
    report = plotted_run / report
    assert report.stat().st_size > 100_000
    page = report.read_text()
    # every plot is in it, embedded (self-contained), not linked
    for names in EXPECTED.values():
        for name in names:
            assert f"results/plots/{name}" in page, name
            embedded = f"data:image/png;charset=utf8;filename={name.split('/')[-1]};base64"
            assert embedded in page, name
    assert "data:text/html;charset=utf8;filename=leaderboard.html;base64" in page
    assert "results/plots/leaderboard.csv" in page
    assert "Hungarian" in page and "worst Dice cases come" in page  # captions
    assert "statistically indistinguishable" in page and "no rate can be resolved" in page
