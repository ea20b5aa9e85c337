"""The F1-best cut of membership scores, shared by the method's threshold rule and the
scorers that tune on labelled rows."""

import numpy as np


def best_f1_threshold(scores, labels):
    """Threshold t maximising F1 of the decision `score > t` against 0/1 `labels`."""
    return best_f1(scores, labels)[0]


def best_f1(scores, labels):
    """(t, F1): the threshold maximising F1 of the decision `score > t` and that F1.

    Candidates are +inf (nothing used), midpoints between consecutive distinct scores, and
    -inf (everything used). Ties in F1 go to the highest threshold, i.e. the fewest rows
    called used.
    """
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels)
    values, inverse = np.unique(-scores, return_inverse=True)  # distinct scores, descending
    values = -values
    positives = np.bincount(inverse.ravel(), weights=labels == 1, minlength=len(values))
    counts = np.bincount(inverse.ravel(), minlength=len(values))
    tp = np.concatenate([[0.0], np.cumsum(positives)])  # cut j: the top j distinct values
    called = np.concatenate([[0.0], np.cumsum(counts)])
    denom = called + positives.sum()
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    cuts = np.concatenate([[np.inf], (values[:-1] + values[1:]) / 2, [-np.inf]])
    best = int(np.argmax(f1))  # argmax takes the first: the highest threshold
    return float(cuts[best]), float(f1[best])
