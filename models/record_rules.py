"""Record- and segment-level decisions from per-token probabilities, fitted on validation.

- :func:`segment_score`: one score per record, the mean probability after a burn-in.
- :func:`fit_binary_threshold`: the threshold with the best balanced accuracy (Bonn seizure).
- CinC 2017 classes (N, A, O, ~) from the mean ``normal``, ``af`` and ``noise`` probabilities:
  ``~`` when noise >= t_noise, else ``A`` when af >= t_af, else ``N`` when normal >= t_normal,
  else ``O`` (:func:`classify_cinc2017`, thresholds by :func:`fit_cinc2017_rule`).
"""

from __future__ import annotations

import itertools

import numpy as np

from models.labels import AF, NOISE, NORMAL

CINC2017_CLASSES = ("N", "A", "O", "~")
GRID = np.round(np.arange(0.05, 0.96, 0.05), 2)


def segment_score(probs: np.ndarray, burn_in: int = 0) -> np.ndarray:
    """(n_labels,) mean of (n, n_labels) token probabilities after ``burn_in`` tokens."""
    p = np.asarray(probs)
    p = p[burn_in:] if len(p) > burn_in else p
    return p.mean(0) if len(p) else np.full(p.shape[1], np.nan)


def auroc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney, ties counted half); NaN with one class."""
    s = np.asarray(scores, np.float64)
    y = np.asarray(positive, bool)
    n1, n0 = int(y.sum()), int((~y).sum())
    if n1 == 0 or n0 == 0:
        return float("nan")
    from scipy.stats import rankdata

    r = rankdata(s)
    return float((r[y].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def fit_binary_threshold(scores: np.ndarray, positive: np.ndarray) -> float:
    """Threshold (>=) with the best balanced accuracy on validation scores.

    Candidates are the midpoints between consecutive distinct scores (and one below / above
    all); of the best ones, the middle of the optimal range is taken when it is optimal too,
    so that a perfectly separated validation set gives a threshold between the classes rather
    than at the edge of one.
    """
    s, y = np.asarray(scores, np.float64), np.asarray(positive, bool)
    u = np.unique(s)
    if len(u) == 0:
        return 0.5
    cands = np.concatenate([[u[0] - 1e-6], (u[1:] + u[:-1]) / 2, [u[-1] + 1e-6]])

    def balanced(t):
        se = ((s >= t) & y).sum() / max(y.sum(), 1)
        sp = ((s < t) & ~y).sum() / max((~y).sum(), 1)
        return (se + sp) / 2

    acc = np.array([balanced(t) for t in cands])
    best = cands[acc >= acc.max() - 1e-12]
    mid = float((best.min() + best.max()) / 2)
    return mid if balanced(mid) >= acc.max() - 1e-12 else float(best.min())


def classify_cinc2017(score: np.ndarray, labels: tuple[str, ...], rule: dict) -> str:
    """CinC 2017 class of one record from its (n_labels,) mean probabilities."""
    if score[labels.index(NOISE)] >= rule["t_noise"]:
        return "~"
    if score[labels.index(AF)] >= rule["t_af"]:
        return "A"
    if score[labels.index(NORMAL)] >= rule["t_normal"]:
        return "N"
    return "O"


def f1_per_class(truth: list[str], pred: list[str], classes=CINC2017_CLASSES) -> dict[str, float]:
    """Per-class F1 (2 TP / (2 TP + FP + FN)) as in the CinC 2017 scoring."""
    out = {}
    for c in classes:
        tp = sum(t == c and p == c for t, p in zip(truth, pred))
        fp = sum(t != c and p == c for t, p in zip(truth, pred))
        fn = sum(t == c and p != c for t, p in zip(truth, pred))
        out[c] = 2 * tp / (2 * tp + fp + fn) if 2 * tp + fp + fn else float("nan")
    return out


def fit_cinc2017_rule(scores: list[np.ndarray], truth: list[str], labels: tuple[str, ...]) -> dict:
    """Thresholds of :func:`classify_cinc2017` maximising the mean F1 of N, A and O on validation
    (a vectorised grid search over the three thresholds)."""
    s = np.asarray(scores)                                                 # (n, n_labels)
    noise, af, normal = (s[:, labels.index(k)] for k in (NOISE, AF, NORMAL))
    y = np.asarray(truth)
    best, best_rule = -1.0, {"t_noise": 0.5, "t_af": 0.5, "t_normal": 0.5}
    for tn, ta, tN in itertools.product(GRID, GRID, GRID):
        pred = np.where(noise >= tn, "~", np.where(af >= ta, "A", np.where(normal >= tN, "N", "O")))
        f1s = []
        for c in ("N", "A", "O"):
            tp = np.sum((y == c) & (pred == c))
            den = 2 * tp + np.sum((y != c) & (pred == c)) + np.sum((y == c) & (pred != c))
            if den:
                f1s.append(2 * tp / den)
        m = float(np.mean(f1s)) if f1s else 0.0
        if m > best:
            best, best_rule = m, {"t_noise": float(tn), "t_af": float(ta), "t_normal": float(tN)}
    return best_rule
