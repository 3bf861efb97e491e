"""Signal-quality heads: a per-token poor-signal probability beside the network.

The network's ``noise`` (ECG) and ``artifact`` (EEG) outputs were trained on a few kinds of
corruption (NSTDB baseline wander and muscle noise; blinks, EMG, flat channels) and miss kinds
they never saw (electrode motion, electrode pops). A *quality head* measures signal quality
directly, with features that do not depend on the kind of corruption (ECG: how far each beat is
from the patient's own beat; EEG: how far each token's channels are from their own recent
statistics), and its probability is fused into the network's quality column by taking the larger
of the two (:func:`fuse`). It runs on the preprocessed signal at the model's rate, chunk by
chunk with carried state, like the network, so the service, the evaluation and the tests see the
same values.

A head implements :class:`QualityHead`; :func:`quality_head_for` builds the one of a model's
modality when its fitted weights are shipped (else None: the network's output stands alone).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from models.config import ModelConfig
from models.detector import EpisodeDetector
from models.labels import ARTIFACT, NOISE

QUALITY_LABEL = {"ecg": NOISE, "eeg": ARTIFACT}  # the network column a modality's head is fused into
# The artifact alert's episode rule on the fused column, where the network's fitted one does not
# suit it. EEG: the network's rule (0.225 for 0.25 s) was fitted on its own output; on the fused
# one it would fire on any brief deviation. 0.5 (the head's calibration point, chosen beforehand:
# 0.2 % of clean validation tokens reach it) held for 1 s. ECG keeps the network's rule (0.8 for 2 s).
FUSED_ALERT_RULES = {"eeg": EpisodeDetector(ARTIFACT, threshold=0.5, min_duration_s=1.0, join_gap_s=1.0)}


class QualityHead(Protocol):
    """A streaming poor-signal probability per token (output step) of one session.

    Token ``k`` covers model samples ``[k * patch_len, (k + 1) * patch_len)`` counted from the
    session's first model sample; its probability may only depend on model samples before
    ``(k + 1) * patch_len`` (causal), and must not depend on how the signal was chunked.
    """

    def initial_state(self) -> dict[str, np.ndarray]:
        """A fresh state: a dict of numpy arrays (saved with ``np.savez``, no pickle)."""
        ...

    def process(self, y: np.ndarray, mask: np.ndarray, state: dict[str, np.ndarray]
                ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """One chunk of preprocessed signal.

        Parameters
        ----------
        y : (t, c) float32
            Model-rate samples in µV (:meth:`models.preprocess.Preprocessor.process`), ``t >= 0``.
        mask : (t, c) bool
            True where a sample is invalid (lost signal).
        state : dict of np.ndarray
            Not modified.

        Returns
        -------
        q : (n,) float64
            Poor-signal probability of each token this chunk completes, in order.
        state : dict of np.ndarray
        """
        ...


def _head(config: ModelConfig):
    """``(head class, its weights)`` of ``config``'s modality, or None when not shipped."""
    try:
        if config.modality == "ecg":
            from models.ecg_sqi import EcgQuality as Head
            from models.ecg_sqi import load_weights
        elif config.modality == "eeg":
            from models.eeg_sqi import EegQuality as Head
            from models.eeg_sqi import load_weights
        else:
            return None
    except ImportError:
        return None
    weights = load_weights()
    return (Head, weights) if weights is not None else None


def quality_head_for(config: ModelConfig, n_channels: int) -> QualityHead | None:
    """The quality head of ``config``'s modality for a session of ``n_channels`` model channels,
    or None when its weights are not shipped."""
    found = _head(config)
    return found[0](config, n_channels, found[1]) if found is not None else None


def alert_detectors(config: ModelConfig, detectors: dict[str, EpisodeDetector] | None
                    ) -> dict[str, EpisodeDetector] | None:
    """``detectors`` with the quality label's rule replaced by :data:`FUSED_ALERT_RULES` when the
    modality's quality head is shipped (its fused column raises the artifact alert)."""
    rule = FUSED_ALERT_RULES.get(config.modality)
    if detectors is None or rule is None or rule.label not in config.labels or _head(config) is None:
        return detectors
    return {**detectors, rule.label: rule}


def network_quality(probs: np.ndarray, config: ModelConfig) -> np.ndarray | None:
    """``(n,)`` a copy of the network's own quality column of ``probs`` (n, L), before a head is
    fused into it (what suppresses alarms); None when the model has no such label."""
    label = QUALITY_LABEL.get(config.modality)
    return probs[:, config.labels.index(label)].copy() if label in config.labels else None


def restored_head(head: QualityHead | None, saved: dict[str, np.ndarray]
                  ) -> tuple[QualityHead | None, dict[str, np.ndarray] | None]:
    """``(head, state)`` of a session resumed from a snapshot whose head state is ``saved`` (its
    ``sqi.`` arrays); a snapshot from before the quality heads (none saved) resumes without one."""
    if head is None or not saved:
        return None, None
    return head, saved


def fuse(probs: np.ndarray, q: np.ndarray, config: ModelConfig) -> np.ndarray:
    """``probs`` (n, L) with the quality column replaced by ``max(network, head)`` (a new array)."""
    label = QUALITY_LABEL.get(config.modality)
    if label not in config.labels or len(q) == 0:
        return probs
    if len(q) != len(probs):
        raise ValueError(f"Invalid quality: expected {len(probs)} tokens, got {len(q)}")
    out = np.array(probs, copy=True)
    j = config.labels.index(label)
    out[:, j] = np.maximum(out[:, j], q.astype(out.dtype))
    return out
