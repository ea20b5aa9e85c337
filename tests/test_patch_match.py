"""The patch-level membership scorer: a generator that pastes part of a slice is caught."""

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from gantrace.errors import ConfigError
from gantrace.membership.scorers import SCORERS, KNNScorer, PatchMatchScorer
from gantrace.membership.scorers.patches import image_patches

SIDE = 32


def _textures(n, seed):
    """Smooth random grey textures in [0, 1], flattened like the pixels extractor's rows."""
    rng = np.random.default_rng(seed)
    x = gaussian_filter(rng.normal(size=(n, SIDE, SIDE)), sigma=(0, 1.5, 1.5))
    x = (x - x.min()) / (x.max() - x.min())
    return x.reshape(n, -1).astype(np.float32)


def _quarter_pasted(real, generated, which, into):
    """`generated` with the top-left quarter of real image `which` pasted into image `into`."""
    g = generated.reshape(-1, SIDE, SIDE).copy()
    half = SIDE // 2
    g[into, :half, :half] = real.reshape(-1, SIDE, SIDE)[which, :half, :half]
    return g.reshape(len(g), -1)


def test_a_real_image_whose_quarter_was_pasted_ranks_first():
    real, generated = _textures(30, 0), _textures(40, 1)
    pasted = _quarter_pasted(real, generated, which=7, into=3)
    scores = PatchMatchScorer(patch=8, stride=4, top=4).fit(pasted).score(real)
    assert scores.argmax() == 7
    others = np.delete(scores, 7)
    assert scores[7] > others.max() + 3 * others.std()
    # without the paste, image 7 is an ordinary control
    plain = PatchMatchScorer(patch=8, stride=4, top=4).fit(generated).score(real)
    assert plain.argmax() != 7 or plain[7] < plain.mean() + 3 * plain.std()


def test_whole_image_distance_misses_what_patches_find():
    """The same paste barely moves the whole-image nearest-neighbour distance."""
    real, generated = _textures(30, 0), _textures(40, 1)
    pasted = _quarter_pasted(real, generated, which=7, into=3)
    whole = KNNScorer(k=1).fit(pasted).score(real)
    patches = PatchMatchScorer().fit(pasted).score(real)
    rank_whole = int((whole > whole[7]).sum())
    rank_patches = int((patches > patches[7]).sum())
    assert rank_patches == 0 and rank_patches < rank_whole


def test_flat_patches_are_left_out():
    """A black background matches every black background: it must not count."""
    real, generated = _textures(10, 0), _textures(12, 1)
    real_img = real.reshape(-1, SIDE, SIDE).copy()
    real_img[:, :, : SIDE // 2] = 0  # half of every real image is background
    gen_img = generated.reshape(-1, SIDE, SIDE).copy()
    gen_img[:, :, : SIDE // 2] = 0
    scores = PatchMatchScorer().fit(gen_img.reshape(12, -1)).score(real_img.reshape(10, -1))
    assert (scores < -0.1).all()  # no exact (zero-distance) background match


def test_blocks_give_the_same_scores():
    real, generated = _textures(8, 0), _textures(9, 1)
    a = PatchMatchScorer(block_size=7).fit(generated).score(real)
    b = PatchMatchScorer(block_size=100000).fit(generated).score(real)
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_patches_cover_the_image_at_the_stride():
    x = np.arange(16 * 16, dtype=np.float32).reshape(1, -1)
    p = image_patches(x, 8, 4)
    assert p.shape == (1, 9, 64)
    np.testing.assert_array_equal(p[0, 1].reshape(8, 8), x.reshape(16, 16)[:8, 4:12])


def test_bad_input_and_parameters_are_refused():
    with pytest.raises(ConfigError, match="not square images"):
        PatchMatchScorer().fit(np.zeros((3, 10)))
    with pytest.raises(ConfigError, match="exceeds the image side"):
        PatchMatchScorer(patch=64).fit(_textures(2, 0))
    with pytest.raises(ConfigError, match="patch_match.stride"):
        SCORERS.create({"name": "patch_match", "stride": 0})
    with pytest.raises(ConfigError, match="min_std"):
        PatchMatchScorer(min_std=5.0).fit(_textures(2, 0))
