"""Fuse several methods' outputs: cluster labelings, 0/1 membership decisions, scores.

The functions below work on (n_methods, n_images) arrays. A fusion rule of the config
(`<task>.fusion.<name>.rule`) is a class in its task's registry, `RULES[task]`; `build_rule`
makes one from a fusion spec and `rule.fuse(tables)` turns the methods' aligned result
tables into the fused one:

    rule = build_rule("membership", {"methods": [...], "rule": "mean_rank"}, n_folds=5)
    fused = rule.fuse(tables)
"""

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.stats import rankdata

from gantrace.errors import GantraceError
from gantrace.membership.method import decide_thresholds, stratified_folds
from gantrace.params import COUNT, POSITIVE, Interval, Part
from gantrace.registry import KEY, Registry, accepted_params


def _matrix(rows, what):
    rows = np.asarray(rows)
    if rows.ndim != 2 or rows.shape[0] == 0:
        raise ValueError(f"{what}: expected a (n_methods, n_samples) array, got {rows.shape}")
    return rows


def align_labels(labels, reference):
    """Rename `labels`' clusters to `reference`'s ids, maximising agreement (Hungarian).

    Clusters left unmatched (when `labels` has more clusters) get new ids after the
    reference's largest, in order of first appearance.
    """
    labels, reference = np.asarray(labels), np.asarray(reference)
    if labels.shape != reference.shape or labels.ndim != 1:
        raise ValueError(f"align_labels: shapes {labels.shape} and {reference.shape} differ")
    ids, first, inv = np.unique(labels, return_index=True, return_inverse=True)
    ref_ids, ref_inv = np.unique(reference, return_inverse=True)
    table = np.zeros((len(ids), len(ref_ids)), dtype=np.int64)
    np.add.at(table, (inv.ravel(), ref_inv.ravel()), 1)
    rows, cols = linear_sum_assignment(table, maximize=True)
    mapping = np.empty(len(ids), dtype=np.int64)
    mapping[rows] = ref_ids[cols]
    unmatched = np.setdiff1d(np.arange(len(ids)), rows)
    unmatched = unmatched[np.argsort(first[unmatched])]
    next_id = int(ref_ids.max()) + 1 if len(ref_ids) else 0
    mapping[unmatched] = np.arange(next_id, next_id + len(unmatched))
    return mapping[inv.ravel()]


def majority_vote(label_matrix, reference_index=0):
    """Per-sample mode after aligning every clustering to the reference method's ids.

    Ties go to the reference's label when it is among the most voted, else to the smallest
    tied id.
    """
    label_matrix = _matrix(label_matrix, "majority_vote")
    reference = label_matrix[reference_index]
    aligned = np.stack([align_labels(row, reference) for row in label_matrix])
    ids, inv = np.unique(aligned, return_inverse=True)
    inv = inv.reshape(aligned.shape)
    counts = np.zeros((aligned.shape[1], len(ids)), dtype=np.int64)
    for row in inv:
        counts[np.arange(len(row)), row] += 1
    top = counts == counts.max(axis=1, keepdims=True)
    ref_col = inv[reference_index]
    choice = np.where(top[np.arange(len(ref_col)), ref_col], ref_col, np.argmax(top, axis=1))
    return ids[choice]


def _decisions(decisions):
    decisions = _matrix(decisions, "decisions")
    if not np.isin(decisions, (0, 1)).all():
        raise ValueError("decisions: every value must be 0 or 1")
    return decisions.astype(np.int64)


def vote_decisions(decisions, tie=0):
    """Majority of 0/1 decisions per sample; an even split gives `tie`."""
    if tie not in (0, 1):
        raise ValueError(f"tie: must be 0 or 1, got {tie!r}")
    decisions = _decisions(decisions)
    votes, half = 2 * decisions.sum(axis=0), decisions.shape[0]
    return np.where(votes == half, tie, (votes > half).astype(np.int64))


def perfect_agreement(decisions):
    """1 only where every method says used (Inoue Koki, ImageCLEF 2024)."""
    return _decisions(decisions).min(axis=0)


def rank_normalised(scores):
    """Each method's (row's) scores as ranks scaled to [0, 1]; ties share their mean rank."""
    scores = _matrix(scores, "scores").astype(np.float64)
    return (rankdata(scores, axis=1) - 1) / max(scores.shape[1] - 1, 1)


def mean_rank_scores(scores):
    """Average of each method's scores rank-normalised to [0, 1] (ties share their mean rank)."""
    ranks = rank_normalised(scores)
    if ranks.shape[1] == 1:
        return np.full(1, 0.5)
    return ranks.mean(axis=0)


def stacked_scores(scores, labels, n_folds=5, random_state=0, folds=None, groups=None):
    """(logit, folds): a logistic regression on the methods' rank-normalised scores, learned
    on labelled rows (label 0/1; -1 unlabelled) and cross-fitted so fold f is scored by a
    model fitted on the other folds; unlabelled rows by one fitted on every labelled row.
    The logit's natural threshold is 0. `folds` (ids 0..k-1, -1 unlabelled) reuses a split;
    else each of `groups` (one per row, e.g. a patient) stays in one fold."""
    from sklearn.linear_model import LogisticRegression

    X, labels = rank_normalised(scores).T, np.asarray(labels)
    n = len(X)
    known = labels >= 0
    if folds is None:
        n_folds = min(n_folds, int((labels == 1).sum()), int((labels == 0).sum()))
        if n_folds < 2:
            raise ValueError("stacked fusion: needs at least 2 used and 2 not-used labelled rows")
        folds = np.full(n, -1, dtype=np.int64)
        folds[known] = stratified_folds(
            labels[known],
            n_folds,
            random_state,
            groups=None if groups is None else np.asarray(groups)[known],
        )
    folds = np.asarray(folds)
    n_folds = int(folds.max()) + 1
    logit = np.zeros(n)
    for fold in [*range(n_folds), -1]:
        rows, train = folds == fold, known & (folds != fold)
        if rows.any():
            model = LogisticRegression().fit(X[train], labels[train])
            logit[rows] = model.decision_function(X[rows])
    return logit, folds


def _rerank_groups(features, n_clusters, linkage):
    from sklearn.cluster import AgglomerativeClustering

    n = len(features)
    k = max(2, round(n / 10)) if n_clusters is None else n_clusters
    if k >= n:
        return np.arange(n)
    return AgglomerativeClustering(k, linkage=linkage).fit_predict(features)


def rerank_decisions(decisions, scores, n_clusters=None, linkage="ward", tie=0):
    """CSMorgan's agglomerative re-ranking of fused membership decisions.

    The images are clustered (agglomerative, `n_clusters`, default n / 10) on their stacked
    method scores, each method's scores rank-normalised to [0, 1]; every cluster then takes
    the majority of its members' majority-voted decisions (an even split gives `tie`).
    """
    fused = vote_decisions(_decisions(decisions), tie=tie)
    groups = _rerank_groups(rank_normalised(scores).T, n_clusters, linkage)
    out = np.empty_like(fused)
    for g in np.unique(groups):
        members = groups == g
        votes = 2 * fused[members].sum()
        out[members] = tie if votes == members.sum() else int(votes > members.sum())
    return out


def rerank_labels(label_matrix, n_clusters=None, linkage="ward", reference_index=0):
    """Attribution re-ranking: `majority_vote`, then agglomerative clustering of the images
    on their stacked one-hot (aligned) labels into `n_clusters` groups (default: the
    reference method's cluster count); each group takes its members' most common voted
    label (ties to the smallest id). Small fragments that the vote keeps as extra clusters
    are absorbed by the group of the nearest label pattern.
    """
    label_matrix = _matrix(label_matrix, "rerank_labels")
    voted, onehot = _aligned_onehot(label_matrix, reference_index)
    k = n_clusters or len(np.unique(label_matrix[reference_index]))
    return _group_majority(voted, _rerank_groups(onehot, k, linkage))


def _aligned_onehot(label_matrix, reference_index=0):
    """(voted labels, (n_images, n_methods * n_ids) one-hot of the aligned labels)."""
    reference = label_matrix[reference_index]
    aligned = np.stack([align_labels(row, reference) for row in label_matrix])
    ids = np.unique(aligned)
    onehot = np.concatenate([(row[:, None] == ids).astype(np.float64) for row in aligned], axis=1)
    return majority_vote(label_matrix, reference_index), onehot


def _group_majority(voted, groups):
    """Each group (id >= 0) takes its members' most common voted label (ties: smallest id);
    rows of group -1 (density noise) keep their own."""
    out = voted.copy()
    for g in np.unique(groups[groups >= 0]):
        members = groups == g
        values, counts = np.unique(voted[members], return_counts=True)
        out[members] = values[np.argmax(counts)]
    return out


def dbscan_rerank_labels(label_matrix, eps=1.5, min_samples=5, reference_index=0):
    """CSMorgan's DBSCAN re-ranking of earlier runs' clusterings (Emon et al., CEUR-WS
    Vol-3740, Sec. 4.3, submission 8): `majority_vote`, then DBSCAN (`eps`, `min_samples`)
    on the images' stacked one-hot aligned labels; each dense group takes its members' most
    common voted label and noise keeps its vote. Two images whose labels differ in m runs
    lie sqrt(2 m) apart, so eps 1.5 links images that disagree in one run at most.
    """
    from sklearn.cluster import DBSCAN  # reason: scikit-learn only where a rule runs

    label_matrix = _matrix(label_matrix, "dbscan_rerank_labels")
    voted, onehot = _aligned_onehot(label_matrix, reference_index)
    groups = DBSCAN(eps=eps, min_samples=min_samples).fit_predict(onehot)
    return _group_majority(voted, groups)


# -- fusion rules: one registry per task ---------------------------------------------------------
ATTRIBUTION_RULES = Registry("attribution fusion rule")
MEMBERSHIP_RULES = Registry("membership fusion rule")
SUBSET_RULES = Registry("subset attribution fusion rule")
RULES = {
    "attribution": ATTRIBUTION_RULES,
    "membership": MEMBERSHIP_RULES,
    "subset_attribution": SUBSET_RULES,
}
LINKAGES = ("ward", "average", "complete", "single")


def build_rule(task, spec, where=None, **injected):
    """The fusion rule a config spec (`{methods, rule, ...}`) names, default majority. The
    spec's other keys (n_clusters, linkage: the schema fills linkage in every spec) go to
    the rules that take them, checked; `injected` ones (n_folds, random_state) likewise."""
    registry, name = RULES[task], spec.get("rule", "majority")
    takes = accepted_params(registry[name]) if name in registry else set()
    params = {k: v for k, v in spec.items() if k in takes}
    return registry.create({KEY: name, **params}, where or f"{task}.fusion", **injected)


def check_aligned(tables, paths):
    """Refuse result tables that do not list the same images in the same order."""
    for path, table in zip(paths, tables):
        if list(table.image_id) != list(tables[0].image_id):
            raise GantraceError(f"{path}: its images differ from {paths[0]}; cannot fuse them")


class AttributionFusion(Part):
    """Fuses attribution tables (image_id, cluster, generator) into one cluster per image."""

    def fuse(self, tables, groups=None):
        """`groups` is accepted for a uniform call and unused: attribution fusions draw no
        folds."""
        labels = np.stack([t.cluster.to_numpy() for t in tables])
        fused = tables[0][["image_id", "generator"]].copy()
        fused["cluster"] = self.fuse_labels(labels)
        return fused

    def fuse_labels(self, labels):
        raise NotImplementedError


@ATTRIBUTION_RULES.register
class MajorityLabels(AttributionFusion):
    """Per-image majority of the clusterings, aligned to the first method's ids."""

    name = "majority"

    def fuse_labels(self, labels):
        return majority_vote(labels, reference_index=0)


@ATTRIBUTION_RULES.register
class RerankLabels(AttributionFusion):
    """Majority vote, then agglomerative regrouping of the images (`rerank_labels`)."""

    name = "rerank"
    _parameter_constraints = {"n_clusters": [Interval(int, 2), None], "linkage": [LINKAGES]}

    def __init__(self, n_clusters=None, linkage="ward"):
        self.n_clusters, self.linkage = n_clusters, linkage

    def fuse_labels(self, labels):
        return rerank_labels(labels, self.n_clusters, self.linkage)


@ATTRIBUTION_RULES.register
class DBSCANRerankLabels(AttributionFusion):
    """Majority vote, then DBSCAN regrouping of the images (`dbscan_rerank_labels`)."""

    name = "dbscan_rerank"
    _parameter_constraints = {"eps": [POSITIVE], "min_samples": [COUNT]}

    def __init__(self, eps=1.5, min_samples=5):
        self.eps, self.min_samples = eps, min_samples

    def fuse_labels(self, labels):
        return dbscan_rerank_labels(labels, self.eps, self.min_samples)


class MembershipFusion(Part):
    """Fuses membership tables (image_id, role, label, score, decision, fold): a score (the
    mean rank of the methods' scores unless the rule learns one), a 0/1 decision and the
    fold each decision was made out of (the first method's, unless the rule draws its own).
    `groups` (one per row of the tables, e.g. a patient; None: each image its own) keeps a
    group in one fold where the rule draws folds."""

    note_ = None  # what the rule did, for the log

    def fuse(self, tables, groups=None):
        base = tables[0]
        scores = np.stack([t.score.to_numpy() for t in tables])
        decisions = np.stack([t.decision.to_numpy() for t in tables])
        fused = base[["image_id", "role", "label"]].copy()
        score, decision, folds = self.fuse_arrays(
            scores, decisions, base.label.to_numpy(), base.fold, groups
        )
        fused["score"], fused["decision"], fused["fold"] = score, decision, folds
        return fused

    def fuse_arrays(self, scores, decisions, labels, folds, groups=None):
        """(score, decision, fold) per image from (n_methods, n_images) scores and decisions,
        the first table's labels and folds, and the images' groups (or None)."""
        return mean_rank_scores(scores), self.decide(scores, decisions), folds

    def decide(self, scores, decisions):
        raise NotImplementedError


@MEMBERSHIP_RULES.register
class MajorityDecisions(MembershipFusion):
    """Majority of the methods' decisions (an even split: not used)."""

    name = "majority"

    def decide(self, scores, decisions):
        return vote_decisions(decisions)


@MEMBERSHIP_RULES.register
class PerfectAgreement(MembershipFusion):
    """Used only where every method says used."""

    name = "perfect_agreement"

    def decide(self, scores, decisions):
        return perfect_agreement(decisions)


@MEMBERSHIP_RULES.register
class RerankDecisions(MembershipFusion):
    """Majority vote, then each agglomerative group of images takes its members' majority."""

    name = "rerank"
    _parameter_constraints = {"n_clusters": [Interval(int, 2), None], "linkage": [LINKAGES]}

    def __init__(self, n_clusters=None, linkage="ward"):
        self.n_clusters, self.linkage = n_clusters, linkage

    def decide(self, scores, decisions):
        return rerank_decisions(decisions, scores, self.n_clusters, self.linkage)


@MEMBERSHIP_RULES.register
class MeanRank(MembershipFusion):
    """Mean rank of the scores, cut by an out-of-fold F1-best threshold on the labelled rows."""

    name = "mean_rank"
    _parameter_constraints = {"n_folds": [Interval(int, 2)], "random_state": [int]}

    def __init__(self, n_folds=5, random_state=0):
        self.n_folds, self.random_state = n_folds, random_state

    def fuse_arrays(self, scores, decisions, labels, folds, groups=None):
        score = mean_rank_scores(scores)
        thresholds, folds, self.note_ = decide_thresholds(
            score,
            labels,
            n_folds=self.n_folds,
            random_state=self.random_state,
            groups=groups,
        )
        return score, (score > thresholds).astype(int), folds


@MEMBERSHIP_RULES.register
class Stacked(MembershipFusion):
    """Cross-fitted logistic regression on the rank-normalised scores, decided at logit 0."""

    name = "stacked"
    _parameter_constraints = {"n_folds": [Interval(int, 2)], "random_state": [int]}

    def __init__(self, n_folds=5, random_state=0):
        self.n_folds, self.random_state = n_folds, random_state

    def fuse_arrays(self, scores, decisions, labels, folds, groups=None):
        score, folds = stacked_scores(
            scores, labels, self.n_folds, self.random_state, groups=groups
        )
        self.note_ = f"stacked: logistic regression over {len(scores)} methods, cross-fitted"
        return score, (score > 0).astype(int), folds


@SUBSET_RULES.register
class SubsetVote(Part):
    """Per-image majority of the subsets the methods name; a tie goes to the subset named
    by the earliest method in the list (subset names need no alignment, unlike clusters)."""

    name = "majority"

    def fuse(self, tables, groups=None):  # groups: a vote draws no folds
        votes = np.stack([t.subset.astype(str).to_numpy() for t in tables], axis=1)
        index = np.stack([t.cluster.to_numpy() for t in tables], axis=1)
        pick = np.empty(len(votes), dtype=int)
        for i, row in enumerate(votes):
            counts = {v: int((row == v).sum()) for v in row}
            best = max(counts.values())
            pick[i] = next(j for j, v in enumerate(row) if counts[v] == best)
        fused = tables[0][["image_id", "generator"]].copy()
        rows = np.arange(len(votes))
        fused["subset"] = votes[rows, pick]
        fused["cluster"] = index[rows, pick]
        return fused
