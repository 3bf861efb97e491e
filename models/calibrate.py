"""Post-hoc calibration: one temperature per label, fitted on validation tokens (Guo et al. 2017).

The network divides its logits by ``network.temperature`` (n_labels,), so fitting here and
copying the result into that buffer calibrates every path (offline, streaming, pooled).
"""

from __future__ import annotations

import numpy as np

ECE_BINS = 15
T_GRID = np.exp(np.linspace(np.log(0.05), np.log(20.0), 401))  # candidate temperatures


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def bce(logits: np.ndarray, targets: np.ndarray, weights: np.ndarray | None = None) -> float:
    """Weighted mean binary cross-entropy (nats) of logits (n,) against targets (n,) in {0, 1}."""
    z = np.asarray(logits, np.float64)
    y = np.asarray(targets, np.float64)
    w = np.ones_like(z) if weights is None else np.asarray(weights, np.float64)
    loss = np.logaddexp(0.0, z) - y * z                                    # -log sigmoid(+-z)
    return float((loss * w).sum() / max(w.sum(), 1e-12))


def ece(probs: np.ndarray, targets: np.ndarray, weights: np.ndarray | None = None, bins: int = ECE_BINS) -> float:
    """Expected calibration error of binary probabilities: sum over equal-width bins of
    (bin weight share) * |mean p - mean y|."""
    p = np.asarray(probs, np.float64)
    y = np.asarray(targets, np.float64)
    w = np.ones_like(p) if weights is None else np.asarray(weights, np.float64)
    idx = np.minimum((p * bins).astype(int), bins - 1)
    total = w.sum()
    if total <= 0:
        return float("nan")
    err = 0.0
    for k in range(bins):
        sel = idx == k
        wk = w[sel].sum()
        if wk > 0:
            err += wk / total * abs((w[sel] * p[sel]).sum() / wk - (w[sel] * y[sel]).sum() / wk)
    return float(err)


def fit_temperature(logits: np.ndarray, targets: np.ndarray, weights: np.ndarray | None = None) -> float:
    """The temperature T > 0 minimising the weighted BCE of ``logits / T`` (grid, then refine).

    Returns 1.0 when there is nothing to fit (no weight, or a single class).
    """
    z = np.asarray(logits, np.float64)
    y = np.asarray(targets, np.float64)
    w = np.ones_like(z) if weights is None else np.asarray(weights, np.float64)
    keep = w > 0
    if keep.sum() == 0 or len(np.unique(y[keep])) < 2:
        return 1.0
    z, y, w = z[keep], y[keep], w[keep]
    losses = [bce(z / t, y, w) for t in T_GRID]
    i = int(np.argmin(losses))
    lo, hi = T_GRID[max(i - 1, 0)], T_GRID[min(i + 1, len(T_GRID) - 1)]
    fine = np.exp(np.linspace(np.log(lo), np.log(hi), 41))
    return float(fine[int(np.argmin([bce(z / t, y, w) for t in fine]))])


def calibrate(logits: np.ndarray, targets: np.ndarray, weights: np.ndarray, labels: tuple[str, ...]) -> dict:
    """Fit one temperature per label on validation tokens.

    Parameters
    ----------
    logits : (n, n_labels) uncalibrated logits (temperature 1).
    targets, weights : (n, n_labels) in {0, 1}.
    labels : label names.

    Returns
    -------
    dict
        ``temperature`` (list, per label) and per label ``nll_before``, ``nll_after``,
        ``ece_before``, ``ece_after``, ``n`` (tokens with weight).
    """
    out = {"temperature": [], "labels": {}}
    for j, name in enumerate(labels):
        z, y, w = logits[:, j], targets[:, j], weights[:, j]
        t = fit_temperature(z, y, w)
        out["temperature"].append(t)
        out["labels"][name] = {
            "temperature": t, "n": int((w > 0).sum()), "positives": int(((y > 0.5) & (w > 0)).sum()),
            "nll_before": bce(z, y, w), "nll_after": bce(z / t, y, w),
            "ece_before": ece(_sigmoid(z), y, w), "ece_after": ece(_sigmoid(z / t), y, w),
        }
    return out
