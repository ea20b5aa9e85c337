"""The data-copying test (Meehan et al. 2020) and the authenticity flag (Alaa et al. 2022)."""

import numpy as np
import pandas as pd
import pytest

from gantrace import io, stages
from gantrace.benchmark_builder.memorisation import copying_summary
from gantrace.errors import ConfigError, GantraceError
from gantrace.evaluation.summary import copying_verdict
from gantrace.membership.copying import (
    DataCopyingTest,
    authenticity,
    mann_whitney_z,
    nearest,
    verdict,
)
from gantrace.report.plots import leaderboard_html

D = 16


def _samples(seed=0, n_train=240, n_held_out=160, n_generated=200):
    rng = np.random.default_rng(seed)
    train = rng.normal(size=(n_train, D))
    held_out = rng.normal(size=(n_held_out, D))
    copies = train[rng.integers(0, n_train, n_generated)] + 0.01 * rng.normal(size=(n_generated, D))
    fresh = rng.normal(size=(n_generated, D))
    return train, held_out, copies, fresh


def test_a_copying_generator_is_caught():
    train, held_out, copies, _ = _samples()
    summary, cells = DataCopyingTest().test(train, held_out, copies)
    assert summary["c_t"] < -3
    assert summary["p_value"] < 0.01
    assert summary["copies"]
    assert (cells[cells.kept].z_u < 0).all()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_generator_sampling_afresh_is_not_flagged(seed):
    train, held_out, _, fresh = _samples(seed)
    summary, _ = DataCopyingTest(random_state=seed).test(train, held_out, fresh)
    assert abs(summary["c_t"]) < 1.5
    assert summary["p_value"] > 0.01


def test_the_p_value_holds_its_level_under_the_null():
    """Fresh samples from the training distribution: p < 0.05 in about 5 % of draws."""
    found = []
    for seed in range(25):
        train, held_out, _, fresh = _samples(100 + seed, 120, 80, 100)
        summary, _ = DataCopyingTest(random_state=seed).test(train, held_out, fresh)
        found.append(summary["copies"])
        if not summary["copies"]:
            assert "expected near chance" in verdict(summary)
    assert np.mean(found) <= 0.15


def test_an_underfitting_generator_scores_positive():
    """Samples farther from the training set than held-out points: C_T >> 0, no copying."""
    train, held_out, _, fresh = _samples()
    summary, _ = DataCopyingTest().test(train, held_out, 3 * fresh)
    assert summary["c_t"] > 3 and summary["p_value"] > 0.5


def test_the_statistic_is_deterministic_for_a_seed():
    train, held_out, copies, _ = _samples()
    a, _ = DataCopyingTest(random_state=3).test(train, held_out, copies)
    b, _ = DataCopyingTest(random_state=3).test(train, held_out, copies)
    assert a == b


def test_tau_drops_cells_without_enough_generated_points():
    """All copies of one training point fall in one cell: only that cell is kept."""
    train, held_out, _, _ = _samples()
    one = np.repeat(train[:1], 50, axis=0) + 0.001
    summary, cells = DataCopyingTest(n_cells=4, tau=0.05).test(train, held_out, one)
    assert summary["n_cells_kept"] == 1 and cells.kept.sum() == 1


def test_mann_whitney_z_matches_its_definition():
    q, p = np.array([1.0, 2.0, 3.0]), np.array([2.0, 4.0, 5.0, 6.0])
    # pairs with q > p: (3, 2); the tie (2, 2) counts half -> U = 1.5
    u = 1.5
    expected = (u - 12 / 2) / np.sqrt(12 * 8 / 12)
    assert mann_whitney_z(q, p) == pytest.approx(expected)
    assert mann_whitney_z(p, q) == pytest.approx(-expected)


def test_nearest_skips_self_and_matches_brute_force():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 4))
    d, i = nearest(X, X, skip_self=True, block_size=7)
    full = np.linalg.norm(X[:, None] - X[None], axis=2)
    np.fill_diagonal(full, np.inf)
    assert np.array_equal(i, full.argmin(1))
    assert np.allclose(d, full.min(1))


def test_authenticity_flags_copies_not_fresh_samples():
    train, _, copies, fresh = _samples()
    flagged_copies = 1 - authenticity(train, copies).authentic.mean()
    flagged_fresh = 1 - authenticity(train, fresh).authentic.mean()
    assert flagged_copies > 0.95
    assert flagged_fresh < 0.5


def test_bad_parameters_and_too_few_images_are_refused():
    with pytest.raises(ConfigError, match="data_copying.tau"):
        DataCopyingTest(tau=1.5)
    with pytest.raises(ConfigError, match="data_copying.metric"):
        DataCopyingTest(metric="manhattan")
    train, held_out, copies, _ = _samples()
    with pytest.raises(GantraceError, match="real_not_used"):
        DataCopyingTest().test(train, held_out[:1], copies)


def _write_dataset(tmp_path, generated):
    """A membership dataset's manifest and features: used = train, not used = held out."""
    train, held_out, _, _ = _samples()
    ids = [f"u{i:03d}" for i in range(len(train))] + [f"n{i:03d}" for i in range(len(held_out))]
    ids += [f"g{i:03d}" for i in range(len(generated))]
    roles = ["real_used"] * len(train) + ["real_not_used"] * len(held_out)
    roles += ["generated"] * len(generated)
    labels = [1] * len(train) + [0] * len(held_out) + [-1] * len(generated)
    manifest = pd.DataFrame({"image_id": ids, "role": roles, "label": labels})
    io.write_table(manifest, tmp_path / "manifest.parquet")
    io.write_features(tmp_path / "full.h5", ids, np.concatenate([train, held_out, generated]))
    return train


@pytest.mark.parametrize("copy", [True, False])
def test_the_stage_writes_the_verdict_and_each_samples_flag(tmp_path, copy):
    _, _, copies, fresh = _samples()
    generated = copies if copy else fresh
    train = _write_dataset(tmp_path, generated)
    out, samples = tmp_path / "copying.parquet", tmp_path / "copying_samples.parquet"
    params = {"n_cells": 5, "tau": 0.05, "metric": "euclidean"}
    stages.copying(
        tmp_path / "full.h5", tmp_path / "manifest.parquet", "pix", params, 0, "d", out, samples
    )
    row = io.read_table(out).iloc[0]
    assert row.dataset == "d" and row.feature == "pix"
    assert bool(row.copies) is copy
    assert ("near chance" in row.verdict) is not copy
    flags = io.read_table(samples)
    assert list(flags.image_id) == [f"g{i:03d}" for i in range(len(generated))]
    assert bool(flags.authentic.mean() < 0.05) is copy
    # each flag's nearest training id is the nearest used image
    first = int(flags.nn_train_id.iloc[0][1:])
    assert first == np.linalg.norm(train - generated[0], axis=1).argmin()
    # surfaced: the run summary's line and the leaderboard page
    assert copying_verdict(out) == row.verdict
    assert stages.copying_line(io.read_table(out)).startswith("d (pix): data-copying test")
    page = leaderboard_html(pd.DataFrame({"dataset": ["d"]}), tmp_path / "b.html", notes=["x < y"])
    assert "<li>x &lt; y</li>" in page.read_text()


def test_no_copying_table_no_summary_line(tmp_path):
    assert copying_verdict(tmp_path / "missing.parquet") is None


def test_too_few_images_leave_a_note_not_a_failed_run(tmp_path):
    _, _, copies, _ = _samples()
    _write_dataset(tmp_path, copies)
    out = tmp_path / "copying.parquet"
    params = {"n_cells": 500, "tau": 0.05, "metric": "euclidean"}  # more cells than images
    stages.copying(
        tmp_path / "full.h5",
        tmp_path / "manifest.parquet",
        "pix",
        params,
        0,
        "d",
        out,
        tmp_path / "s.parquet",
    )
    row = io.read_table(out).iloc[0]
    assert row.verdict.startswith("data-copying test not run") and not row.copies
    assert len(io.read_table(tmp_path / "s.parquet")) == len(copies)


def test_the_memorisation_report_gives_the_verdict_in_pixel_space():
    rng = np.random.default_rng(0)
    used = rng.integers(0, 256, (60, 8, 8), dtype=np.uint8)
    not_used = rng.integers(0, 256, (40, 8, 8), dtype=np.uint8)
    copies = used[rng.integers(0, 60, 50)]
    fresh = rng.integers(0, 256, (50, 8, 8), dtype=np.uint8)
    assert "copies training images" in copying_summary("g", copies, used, not_used)
    assert "near chance" in copying_summary("g", fresh, used, not_used)
    assert "not run" in copying_summary("g", fresh, used[:3], not_used)
