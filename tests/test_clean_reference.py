"""Clean reference pools for calibrated membership scorers: the query's group and known
members never calibrate it (`reference: real` with groups, `reference: clean`)."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from gantrace.errors import GantraceError
from gantrace.membership.method import MembershipMethod
from gantrace.membership.scorers import SCORERS
from gantrace.membership.scorers.reference import exclusion_index

KNN = [{"name": "calibrated_knn"}, {"name": "calibrated_knn", "calibration": "ratio"}]
SPECS = [*KNN, {"name": "domias"}]


def patients(seed=0, d=5):
    """Real slices in patients (groups) of near-copies, and a generator that memorised the
    member patients and covers a dense region of unused patients.

    60 dense unused slices (12 patients of 5) sit on generated samples, so plain distance
    flags them; 20 sparse member patients and 20 sparse unused ones have 2 slices each, one
    the other's near-copy (0.02 apart per axis, closer than the generator's copies, 0.1):
    in a pool of all real slices a member's twin explains it away. Returns generated,
    real, labels, groups and a clean pool: fresh slices of the same domain, other patients.
    """
    rng = np.random.default_rng(seed)

    def twins(n):
        centres = rng.normal(0, 3.0, (n, d))
        return np.vstack([centres, centres + rng.normal(0, 0.02, centres.shape)])

    dense = rng.normal(0, 0.05, (60, d))
    members, others = twins(20), twins(20)
    generated = np.vstack(
        [members + rng.normal(0, 0.1, members.shape), rng.normal(0, 0.05, (100, d))]
    )
    real = np.vstack([dense, members, others])
    labels = np.r_[np.zeros(60), np.ones(40), np.zeros(40)].astype(int)
    twin_ids = np.r_[np.arange(20), np.arange(20)]
    groups = np.r_[
        [f"d{i // 5}" for i in range(60)],
        [f"m{i}" for i in twin_ids],
        [f"o{i}" for i in twin_ids],
    ]
    pool = np.vstack([rng.normal(0, 0.05, (60, d)), rng.normal(0, 3.0, (40, d))])
    return generated, real, labels, groups, pool


def auc(spec, generated, real, labels, **kw):
    scores = MembershipMethod(scorer=spec).score(generated, real, **kw)
    return roc_auc_score(labels, scores)


@pytest.mark.parametrize("spec", KNN)  # (domias' kernels are wider than a twin's gap)
def test_same_patient_twins_in_the_pool_defeat_reference_real(spec):
    generated, real, labels, groups, pool = patients()
    assert auc(spec, generated, real, labels) < 0.6  # each member's twin calibrates it away


@pytest.mark.parametrize("spec", SPECS)
def test_reference_real_leaves_the_query_group_out(spec):
    generated, real, labels, groups, pool = patients()
    assert auc(spec, generated, real, labels, groups=groups) > 0.95


@pytest.mark.parametrize("spec", SPECS)
def test_clean_pool_ranks_members_first(spec):
    generated, real, labels, groups, pool = patients()
    clean = {**spec, "reference": "clean"}
    assert auc(clean, generated, real, labels, reference_X=pool) > 0.95


@pytest.mark.parametrize("spec", KNN)
def test_clean_pool_leaves_out_the_query_group(spec):
    """A pool that holds the members' twins (their patients) is clean only once each
    query's group is left out of it."""
    generated, real, labels, groups, pool = patients()
    twins_of_members = real[80:100] + 0.0  # the members' second slices, same patients
    contaminated = np.vstack([pool, twins_of_members])
    pool_groups = np.r_[[f"p{i}" for i in range(len(pool))], groups[80:100]]
    clean = {**spec, "reference": "clean"}
    blind = auc(clean, generated, real[:80], labels[:80], reference_X=contaminated)
    kw = dict(groups=groups, reference_X=contaminated, reference_groups=pool_groups)
    assert blind < 0.85  # half the members are calibrated away by their twins
    assert auc(clean, generated, real, labels, **kw) > 0.95


def test_clean_pool_leaves_out_exact_copies_of_the_query():
    generated, real, labels, groups, pool = patients()
    queries = np.r_[0:80, 100:140]  # each member patient's first slice, not its twin
    scorer = SCORERS.create({"name": "calibrated_knn", "reference": "clean"}).fit(generated)
    scorer.fit_reference(real[queries], pool_X=np.vstack([pool, real[60:80]]))
    scores = scorer.score(real[queries])
    assert roc_auc_score(labels[queries], scores) > 0.95  # its own copy never calibrates it


def test_clean_reference_needs_a_pool():
    generated, real, labels, groups, pool = patients()
    scorer = SCORERS.create({"name": "calibrated_knn", "reference": "clean"}).fit(generated)
    with pytest.raises(GantraceError, match="reference_real"):
        scorer.fit_reference(real)


def test_one_group_holding_the_pool_is_refused():
    scorer = SCORERS.create({"name": "calibrated_knn"}).fit(np.zeros((3, 2)))
    with pytest.raises(GantraceError, match="finer groups"):
        scorer.fit_reference(np.eye(4, 2), groups=["a"] * 4)


def test_exclusion_index_without_groups_is_leave_one_out():
    pool = np.arange(8.0).reshape(4, 2)
    assert exclusion_index(pool) == {row.tobytes(): i for i, row in enumerate(pool)}
    grouped = exclusion_index(pool, ["a", "a", "b", "b"])
    np.testing.assert_array_equal(grouped[pool[1].tobytes()], [0, 1])


def test_reference_note_names_the_contamination():
    generated, real, labels, groups, pool = patients()
    method = MembershipMethod(scorer={"name": "calibrated_knn"})
    method.run(generated, real, labels)
    assert "neighbouring slices" in method.reference_note_
    method.run(generated, real, labels, groups=groups)
    assert (
        "other members" in method.reference_note_ and "neighbouring" not in method.reference_note_
    )
    clean = MembershipMethod(scorer={"name": "calibrated_knn", "reference": "clean"})
    clean.run(generated, real, labels, reference_X=pool)
    assert clean.reference_note_ == ""
