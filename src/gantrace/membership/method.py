"""Membership inference: which real images trained the generator?

Scores are higher for images more likely USED. Unsupervised scorers never see labels;
labels only pick the decision threshold (and tuned parameters), out of fold. Supervised
scorers are cross-fitted. Either way no labelled row's decision uses its own label.
"""

import copy
import itertools

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

from gantrace.errors import ConfigError, GantraceError
from gantrace.matrix import as_matrix
from gantrace.membership.scorers import SCORERS
from gantrace.membership.thresholds import best_f1_threshold
from gantrace.params import Interval, ListOf, Options, as_constraint, check_value, trained_parts
from gantrace.reduce import build_reducer
from gantrace.registry import KEY, spec_name

THRESHOLDS = ("oof_f1", "fraction", "natural", "mixture")


def takes_list(forms):
    """Whether a parameter is declared as a list (`ListOf`): then a list is its value."""
    return any(isinstance(as_constraint(f), ListOf) for f in forms)


def expand_grid(spec):
    """A scorer spec whose parameters may be lists -> one plain spec per combination
    (a parameter the scorer declares as a list takes the list as one value)."""
    if isinstance(spec, str):
        return [{KEY: spec}]
    if not isinstance(spec, dict):
        return [spec]  # SCORERS.create names the problem
    name = spec.get(KEY)
    declared = getattr(SCORERS.get(name) if isinstance(name, str) else None, "constraints", dict)()
    tuned = {
        k: v
        for k, v in spec.items()
        if k != KEY and isinstance(v, list) and not takes_list(declared.get(k, ()))
    }
    for key, values in tuned.items():
        if not values:
            raise ConfigError(f"scorer.{key}: an empty list leaves nothing to tune")
    combos = itertools.product(*tuned.values())
    return [{**spec, **dict(zip(tuned, values))} for values in combos]


def mixture_threshold(scores, random_state=0):
    """(cut, used_share) from a two-component Gaussian mixture of the scores (no labels).

    The components share one variance, so the posterior of the high component rises with
    the score and the cut is where the two posteriors are equal; used_share is that
    component's weight, the estimated fraction of used images.
    """
    from sklearn.mixture import GaussianMixture

    x = np.asarray(scores, dtype=np.float64).reshape(-1, 1)
    if len(np.unique(x)) < 2:
        return np.inf, 0.0
    gm = GaussianMixture(2, covariance_type="tied", n_init=3, random_state=random_state).fit(x)
    (lo, hi), var = np.argsort(gm.means_[:, 0]), float(gm.covariances_.ravel()[0])
    m_lo, m_hi = gm.means_[lo, 0], gm.means_[hi, 0]
    if m_hi - m_lo <= 1e-12 * max(1.0, abs(m_hi)):
        return np.inf, 0.0
    w_lo, w_hi = gm.weights_[lo], gm.weights_[hi]
    cut = (m_lo + m_hi) / 2 + var * np.log(w_lo / w_hi) / (m_hi - m_lo)
    return float(cut), float(w_hi)


def stratified_folds(labels, n_folds, random_state=0, groups=None):
    """Fold id per row of class `labels`, stratified and shuffled with `random_state`.

    `groups` (one per row, e.g. a patient) keeps each group in one fold (StratifiedGroupKFold):
    neighbouring slices of a patient are near copies, and a fold that trains on a query's
    neighbours scores it optimistically. n_folds is capped at the number of groups.
    """
    folds = np.empty(len(labels), dtype=np.int64)
    if groups is None:
        splitter = StratifiedKFold(n_folds, shuffle=True, random_state=random_state)
    else:
        groups = np.asarray(groups)
        if len(groups) != len(labels):
            raise ValueError(f"groups: expected {len(labels)} values, got {len(groups)}")
        n_folds = min(n_folds, len(np.unique(groups)))
        if n_folds < 2:
            raise GantraceError("groups: every labelled row is in one group; 2 folds need 2")
        splitter = StratifiedGroupKFold(n_folds, shuffle=True, random_state=random_state)
    splits = splitter.split(np.zeros(len(labels)), labels, groups)
    for fold, (_, test) in enumerate(splits):
        folds[test] = fold
    if groups is not None:  # ids 0..k-1 even where whole groups left a fold empty
        folds = np.unique(folds, return_inverse=True)[1].reshape(-1).astype(np.int64)
        classes = set(np.unique(labels).tolist())
        for fold in range(folds.max() + 1):
            lacking = classes - set(np.unique(labels[folds != fold]).tolist())
            if lacking:
                raise GantraceError(
                    f"groups: with fold {fold} left out, no labelled row of class "
                    f"{sorted(lacking)} is left to learn from: its groups hold (nearly) all of "
                    f"that class ({len(np.unique(groups))} groups in all); name finer groups "
                    "(a patient or series, not a whole side of the split)"
                )
    return folds


def out_of_fold_thresholds(scores, labels, folds):
    """Per row: the F1-best threshold fitted on the rows of every other fold."""
    scores, labels, folds = map(np.asarray, (scores, labels, folds))
    thresholds = np.empty(len(scores))
    for fold in np.unique(folds):
        train = folds != fold
        thresholds[~train] = best_f1_threshold(scores[train], labels[train])
    return thresholds


class MembershipMethod:
    """Reducer (fitted on generated images) + scorer + threshold rule.

    threshold="oof_f1" picks F1-best thresholds out of fold on labelled rows (and on all
    labelled rows for unknown ones); "fraction" (also the fallback when too few labels)
    calls used every row scoring above the (1 - used_fraction) quantile of all real scores;
    "natural" decides score > 0, for margin scorers (supervised, column, vcmi_*);
    "mixture" needs no labels: the cut of a two-component mixture of all real scores,
    reporting the estimated share of used images. None picks natural for margin scorers,
    else oof_f1.

    Scorer parameters given as lists are tuned: each fold is scored with the combination
    of best AUC on the other folds' labelled rows (unlabelled rows: on all labelled rows).
    Supervised scorers are cross-fitted: fold f's rows by a scorer fitted on the other
    folds (tuned, if asked, by an inner cross-fit over those folds), unlabelled rows by one
    fitted on every labelled row.
    """

    # Its keys are the method's own config keys (membership.methods.<name>.threshold, ...).
    _parameter_constraints = {
        "threshold": [Options(*THRESHOLDS), None],
        "used_fraction": [Interval(float, 0, 1, closed="neither")],
        "n_folds": [Interval(int, 2)],
    }

    @classmethod
    def from_spec(cls, spec, n_folds, random_state):
        """The method a config entry `membership.methods.<name>` describes."""
        return cls(
            scorer=spec["scorer"],
            reducer=spec.get("reducer"),
            threshold=spec.get("threshold"),
            used_fraction=spec.get("used_fraction", 0.5),
            n_folds=n_folds,
            random_state=random_state,
        )

    def __init__(
        self,
        scorer="knn",
        reducer=None,
        threshold=None,
        used_fraction=0.5,
        n_folds=5,
        random_state=0,
    ):
        self.scorer = scorer
        self.reducer = reducer
        self.threshold = threshold
        self.used_fraction = used_fraction
        self.n_folds = n_folds
        self.random_state = random_state
        for key, forms in self._parameter_constraints.items():
            check_value(key, getattr(self, key), forms)
        self.combos_ = expand_grid(scorer)
        # the run's query groups, clean pool, its groups, reference generator's samples
        self._context = (None, None, None, None)
        self.reference_note_ = ""
        reducer, scorer = self._build(self.combos_[0])  # a bad spec fails here, not later
        for combo in self.combos_[1:]:
            self._build(combo)
        if getattr(reducer, "transforms_unseen", True) is False:
            raise ConfigError(
                f"reducer.name: {spec_name(self.reducer)!r} cannot transform real images "
                "it was not fitted on (t-SNE has no out-of-sample mapping), so it serves "
                "attribution only; use pca or autoencoder for membership"
            )
        self.supervised_ = getattr(scorer, "supervised", False)
        margin = getattr(scorer, "margin", False)
        self.rule_ = threshold or ("natural" if margin else "oof_f1")
        if self.rule_ == "natural" and not margin:
            raise ConfigError(
                f"threshold: 'natural' (score > 0) suits margin scorers only; "
                f"{self.combos_[0][KEY]!r} scores are not margins; use oof_f1 or fraction"
            )
        if self.supervised_ and self.rule_ == "oof_f1":
            raise ConfigError(
                "threshold: supervised scorers are cross-fitted and decide at their natural "
                "margin; use threshold natural (default) or fraction"
            )

    def _build(self, combo):
        reducer = build_reducer(self.reducer, random_state=self.random_state)
        return reducer, SCORERS.create(combo, random_state=self.random_state)

    def score(
        self,
        generated_X,
        real_X,
        groups=None,
        reference_X=None,
        reference_groups=None,
        samples_X=None,
    ):
        """Scores of a single unsupervised scorer (no labels, no tuning); `groups`, the
        clean pool `reference_X` (`reference_groups`) and the reference generator's
        `samples_X` as in `run`."""
        if self.supervised_ or len(self.combos_) > 1:
            raise GantraceError("score(): supervised or tuned scorers need labels; use run()")
        gx, rx, px, sx = self._reduce(generated_X, real_X, reference_X, samples_X)
        self._context = (groups, px, reference_groups, sx)
        return self._unsupervised(self.combos_[0], gx, rx)

    def _reduce(self, generated_X, real_X, reference_X=None, samples_X=None):
        """Generated, real, clean-pool and reference-sample features in the reducer's
        space (fitted on the generated images only)."""
        self.reducer_ = self._build(self.combos_[0])[0]
        gx = self.reducer_.fit_transform(as_matrix(generated_X, "generated features"))
        out = [gx, self.reducer_.transform(as_matrix(real_X, "real features"))]
        for X, what in ((reference_X, "reference"), (samples_X, "reference generator")):
            out.append(None if X is None else self.reducer_.transform(as_matrix(X, what)))
        return tuple(out)

    def _unsupervised(self, combo, gx, rx):
        scorer = self._build(combo)[1].fit(gx)
        if getattr(scorer, "calibrated", False):  # a reference pool, query groups left out
            groups, px, pool_groups, sx = self._context
            scorer.fit_reference(
                rx, groups=groups, pool_X=px, pool_groups=pool_groups, samples_X=sx
            )
            self.reference_note_ = scorer.reference_note()
        elif hasattr(scorer, "fit_reference"):
            scorer.fit_reference(rx)
        self.scorer_ = scorer
        return scorer.score(rx)

    def run(
        self,
        generated_X,
        real_X,
        labels,
        folds=None,
        groups=None,
        reference_X=None,
        reference_groups=None,
        samples_X=None,
    ):
        """Return a frame (one row per real image): score, decision, fold, threshold.

        `folds` (fold id per row, -1 for unlabelled) reuses a split for supervised or
        tuned scorers; by default a stratified split seeded by `random_state` is drawn,
        keeping each of `groups` (one per row, e.g. a patient; None: every image its own)
        in one fold. A calibrated scorer leaves each query's group out of its reference
        pool; with `reference: clean` the pool is `reference_X` (real images known not to
        be members, groups `reference_groups`); with `reference: generator` it is
        `samples_X`, the samples of a generator trained on that clean pool.
        """
        labels = np.asarray(labels)
        if labels.shape != (len(real_X),) or not np.isin(labels, (-1, 0, 1)).all():
            raise ValueError(f"labels: expected {len(real_X)} values in {{-1, 0, 1}}")
        gx, rx, px, sx = self._reduce(generated_X, real_X, reference_X, samples_X)
        self._context, self.reference_note_ = (groups, px, reference_groups, sx), ""
        if not self.supervised_ and len(self.combos_) == 1:
            scores = self._unsupervised(self.combos_[0], gx, rx)
            thresholds, folds, note = decide_thresholds(
                scores,
                labels,
                self.rule_,
                self.used_fraction,
                self.n_folds,
                self.random_state,
                groups=groups,
            )
        else:
            scores, thresholds, folds, note = self._fold_wise(gx, rx, labels, folds, groups)
        self.threshold_note_ = note
        frame = pd.DataFrame(
            {
                "score": scores,
                "decision": (scores > thresholds).astype(np.int64),
                "fold": folds,
                "threshold": thresholds,
            }
        )
        frame.attrs["threshold_note"] = note
        return frame

    def _fold_wise(self, gx, rx, labels, folds=None, groups=None):
        known = labels >= 0
        n_used, n_not = int((labels == 1).sum()), int((labels == 0).sum())
        n_folds = min(self.n_folds, n_used, n_not)
        if folds is not None:
            folds = np.asarray(folds, dtype=np.int64)
            n_folds = len(np.unique(folds[known]))
            if folds.shape != labels.shape or set(np.unique(folds[known])) != set(range(n_folds)):
                raise ValueError("folds: expected ids 0..k-1 on labelled rows, one per row")
        what = "supervised scorer" if self.supervised_ else "scorer tuning"
        if n_folds < 2:
            raise GantraceError(
                f"{what}: needs at least 2 used and 2 not-used labelled real images "
                f"(got {n_used} used, {n_not} not used)"
            )
        if folds is None:
            folds = np.full(len(labels), -1, dtype=np.int64)
            folds[known] = stratified_folds(
                labels[known],
                n_folds,
                self.random_state,
                groups=None if groups is None else np.asarray(groups)[known],
            )
            n_folds = int(folds.max()) + 1
        folds = np.where(known, folds, -1)
        parts = [(f, folds == f, known & (folds != f)) for f in range(n_folds)]
        parts.append(("unlabelled", ~known, known))
        if self.supervised_:
            scores, chosen = self._cross_fit(gx, rx, labels, folds, parts)
            thresholds = np.zeros(len(labels))
        else:
            scores, thresholds, chosen = self._tuned(gx, rx, labels, parts)
        kind = "stratified" if groups is None else "stratified group"
        note = f"{self.rule_}: {what} over {n_folds} {kind} folds of {n_used + n_not} rows"
        if self.supervised_ and self.fit_summaries_:
            fits = "; ".join(f"{g}: {s}" for g, s in self.fit_summaries_.items())
            note += f"; fitted on the other folds' labels: {fits}"
        if self.rule_ in ("fraction", "mixture"):
            thresholds, _, label_free = decide_thresholds(
                scores, labels, self.rule_, self.used_fraction, random_state=self.random_state
            )
            note += f"; {label_free}"
        if len(self.combos_) > 1:
            tuned = [k for k, v in self.scorer.items() if isinstance(v, list)]
            picks = "; ".join(
                f"{g}: " + ", ".join(f"{k}={c[k]}" for k in tuned) for g, c in chosen.items()
            )
            note += f"; tuned by out-of-fold AUC: {picks}"
        return scores, thresholds, folds, note

    def _tuned(self, gx, rx, labels, groups):
        all_scores = [self._unsupervised(c, gx, rx) for c in self.combos_]
        scores, thresholds, chosen = np.zeros(len(labels)), np.zeros(len(labels)), {}
        for name, rows, fit in groups:
            if not rows.any():
                continue
            best = _best_combo([_auc(s[fit], labels[fit]) for s in all_scores])
            chosen[name] = self.combos_[best]
            s = all_scores[best]
            scores[rows] = s[rows]
            if self.rule_ == "oof_f1":
                thresholds[rows] = best_f1_threshold(s[fit], labels[fit])
        self.scorer_ = self._build(chosen.get("unlabelled", self.combos_[0]))[1]
        return scores, thresholds, chosen

    def _cross_fit(self, gx, rx, labels, folds, groups):
        fitted = [self._build(c)[1].fit_generated(gx) for c in self.combos_]
        scores, chosen, self.fit_summaries_ = np.zeros(len(labels)), {}, {}

        def fit_score(i, train, rows):
            # A shallow copy of the scorer already fitted on the generated images (for
            # centroid_autoencoder, a trained network) takes this fold's labels: clone()
            # is unfitted and would retrain that label-free part once per fold.
            return copy.copy(fitted[i]).fit_labels(rx[train], labels[train]).score(rx[rows])

        for name, rows, train in groups:
            if not rows.any():
                continue
            best = 0
            if len(self.combos_) > 1:
                inner = np.unique(folds[train])
                if len(inner) < 2:
                    raise ConfigError("n_folds: tuning a supervised scorer needs n_folds >= 3")
                aucs = []
                for i in range(len(self.combos_)):
                    oof = np.zeros(len(labels))
                    for g in inner:
                        oof[train & (folds == g)] = fit_score(
                            i, train & (folds != g), train & (folds == g)
                        )
                    aucs.append(_auc(oof[train], labels[train]))
                best = _best_combo(aucs)
            chosen[name] = self.combos_[best]
            final = copy.copy(fitted[best]).fit_labels(rx[train], labels[train])
            scores[rows] = final.score(rx[rows])
            if hasattr(final, "fitted_summary"):  # what the scorer chose from the labels
                self.fit_summaries_[name] = final.fitted_summary()
        self.scorer_ = fitted[self.combos_.index(chosen.get("unlabelled", self.combos_[0]))]
        return scores, chosen

    def trained_parts(self):
        """{role: fitted part} for the parts that trained a network (to save)."""
        return trained_parts({"reducer": self.reducer_, "scorer": self.scorer_})


def _auc(scores, labels):
    return roc_auc_score(labels, scores) if len(np.unique(labels)) == 2 else 0.5


def _best_combo(aucs):
    return int(np.argmax(aucs))  # ties: the first combination listed


def decide_thresholds(
    scores, labels, rule="oof_f1", used_fraction=0.5, n_folds=5, random_state=0, groups=None
):
    """(thresholds, folds, note) per real row; a labelled row never sees its own label (nor,
    with `groups`, its group's: the out-of-fold cut is fitted on other groups only)."""
    n = len(scores)
    if rule == "natural":
        return np.zeros(n), np.full(n, -1, dtype=np.int64), "natural: score > 0 called used"
    if rule == "mixture":
        cut, share = mixture_threshold(scores, random_state)
        called = float(np.mean(np.asarray(scores) > cut))
        note = (
            f"mixture: two-component fit of all {n} real scores estimates {share:.1%} used "
            f"({called:.1%} of the images score above the cut {cut:.4g})"
        )
        return np.full(n, cut), np.full(n, -1, dtype=np.int64), note
    known = labels >= 0
    n_used, n_not = int((labels == 1).sum()), int((labels == 0).sum())
    n_folds_asked = n_folds
    n_folds = min(n_folds_asked, n_used, n_not)
    if rule == "fraction" or n_folds < 2:
        reason = f"too few labelled rows for 2 folds ({n_used} used, {n_not} not used)"
        if rule == "fraction":
            reason = "threshold='fraction'"
        cut = float(np.quantile(scores, 1 - used_fraction))
        note = f"fraction: top {used_fraction:g} of real scores called used ({reason})"
        return np.full(n, cut), np.full(n, -1, dtype=np.int64), note
    folds = np.full(n, -1, dtype=np.int64)
    folds[known] = stratified_folds(
        labels[known],
        n_folds,
        random_state,
        groups=None if groups is None else np.asarray(groups)[known],
    )
    thresholds = np.full(n, best_f1_threshold(scores[known], labels[known]))
    thresholds[known] = out_of_fold_thresholds(scores[known], labels[known], folds[known])
    kind = "stratified" if groups is None else "stratified group"
    if groups is not None:
        n_folds = int(folds.max()) + 1
    note = f"oof_f1: {n_folds} {kind} folds over {n_used + n_not} labelled rows"
    if n_folds < n_folds_asked:
        note += f" (asked {n_folds_asked}; only {min(n_used, n_not)} rows in the smaller class)"
    return thresholds, folds, note
