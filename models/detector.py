"""Episode detection from per-token probabilities: smoothing, threshold, gap joining, minimum
duration. The thresholds are fitted on validation records by the trainer and stored in the
checkpoint metadata (``meta["detectors"]``), so that evaluation and the service's alert rule
use the same ones (:func:`detectors_from_meta`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np

from models.labels import AF, ARTIFACT, NOISE, NORMAL, SEIZURE, VF, VT

THRESHOLD_GRID = np.round(np.arange(0.05, 0.96, 0.025), 3)


@dataclass(frozen=True)
class EpisodeDetector:
    """Turns one label's per-token probabilities into episodes.

    Parameters
    ----------
    label : str
        Output label (from :mod:`models.labels`).
    threshold : float
        Smoothed probability at or above which a token is positive.
    min_duration_s : float
        Episodes (after joining) shorter than this are dropped.
    join_gap_s : float
        Positive runs separated by less than this are joined.
    smooth_s : float
        Length of the causal moving average applied first (0: none).
    """

    label: str
    threshold: float = 0.5
    min_duration_s: float = 0.0
    join_gap_s: float = 0.0
    smooth_s: float = 0.0

    def smooth_steps(self, output_rate: float) -> int:
        """Tokens in the causal moving average of :meth:`smooth` (1: none)."""
        return max(1, int(round(self.smooth_s * output_rate)))

    def smooth(self, probs: np.ndarray, output_rate: float) -> np.ndarray:
        """(n,) causal moving average of (n,) probabilities over ``smooth_s`` seconds."""
        p = np.asarray(probs, np.float64)
        k = max(1, int(round(self.smooth_s * output_rate)))
        if k == 1 or len(p) == 0:
            return p
        c = np.concatenate([[0.0], np.cumsum(p)])
        i = np.arange(1, len(p) + 1)
        lo = np.maximum(i - k, 0)
        return (c[i] - c[lo]) / (i - lo)

    def detect(self, probs: np.ndarray, output_rate: float) -> list[tuple[int, int]]:
        """Episodes as half-open token ranges ``[start, end)`` from (n,) probabilities."""
        on = self.smooth(probs, output_rate) >= self.threshold
        edges = np.flatnonzero(np.diff(np.concatenate([[0], on.astype(np.int8), [0]])))
        runs = list(zip(edges[::2].tolist(), edges[1::2].tolist()))
        gap = self.join_gap_s * output_rate
        joined: list[tuple[int, int]] = []
        for s, e in runs:
            if joined and s - joined[-1][1] < gap:
                joined[-1] = (joined[-1][0], e)
            else:
                joined.append((s, e))
        return [(s, e) for s, e in joined if e - s >= self.min_duration_s * output_rate]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "EpisodeDetector":
        return cls(**d)


# Shapes of the default detectors (thresholds are refitted on validation).
DEFAULT_DETECTORS: dict[str, EpisodeDetector] = {d.label: d for d in (
    EpisodeDetector(NORMAL, 0.5, min_duration_s=5.0, join_gap_s=2.0, smooth_s=2.0),
    EpisodeDetector(AF, 0.5, min_duration_s=20.0, join_gap_s=10.0, smooth_s=10.0),
    EpisodeDetector(VT, 0.5, min_duration_s=1.0, join_gap_s=1.0, smooth_s=0.5),
    EpisodeDetector(VF, 0.5, min_duration_s=3.0, join_gap_s=2.0, smooth_s=2.0),
    EpisodeDetector(NOISE, 0.5, min_duration_s=2.0, join_gap_s=1.0, smooth_s=1.0),
    EpisodeDetector(SEIZURE, 0.5, min_duration_s=3.0, join_gap_s=5.0, smooth_s=2.0),
    EpisodeDetector(ARTIFACT, 0.5, min_duration_s=0.25, join_gap_s=0.25, smooth_s=0.0),
)}


def token_f1(pred: np.ndarray, targets: np.ndarray, weights: np.ndarray) -> float:
    """F1 of boolean token predictions against {0, 1} targets, over tokens with weight > 0."""
    k = weights > 0
    p, y = pred[k], targets[k] > 0.5
    tp = float((p & y).sum())
    den = 2 * tp + float((p & ~y).sum()) + float((~p & y).sum())
    return 2 * tp / den if den > 0 else float("nan")


def fit_threshold(detector: EpisodeDetector, tracks: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
                  output_rate: float) -> tuple[EpisodeDetector, float]:
    """The threshold that maximises token F1 of the smoothed probabilities on validation.

    Parameters
    ----------
    tracks : list of (probs (n,), targets (n,), weights (n,))
        One per validation record, on the token grid.

    Returns
    -------
    detector with the fitted threshold, and its validation token F1 (NaN without positives:
    then the default threshold is kept).
    """
    smoothed = [detector.smooth(p, output_rate) for p, _, _ in tracks]
    y = np.concatenate([t for _, t, _ in tracks]) if tracks else np.zeros(0)
    w = np.concatenate([w for _, _, w in tracks]) if tracks else np.zeros(0)
    if not ((y > 0.5) & (w > 0)).any():
        return detector, float("nan")
    s = np.concatenate(smoothed)
    scores = [token_f1(s >= t, y, w) for t in THRESHOLD_GRID]
    i = int(np.nanargmax(scores))
    return replace(detector, threshold=float(THRESHOLD_GRID[i])), float(scores[i])


def steps_to_samples(episodes: list[tuple[int, int]], patch_len: int, model_rate: float,
                     input_rate: float) -> list[tuple[int, int]]:
    """Token ranges to input-sample ranges (token k spans [k P, (k + 1) P) model samples)."""
    f = patch_len * input_rate / model_rate
    return [(int(round(s * f)), int(round(e * f))) for s, e in episodes]


def detectors_from_meta(meta: dict, labels: tuple[str, ...]) -> dict[str, EpisodeDetector]:
    """The detectors a checkpoint stores (``meta["detectors"]``), defaults for missing labels."""
    stored = meta.get("detectors", {}) if meta else {}
    return {name: EpisodeDetector.from_dict(stored[name]) if name in stored
            else DEFAULT_DETECTORS.get(name, EpisodeDetector(name)) for name in labels}
