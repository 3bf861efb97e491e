"""Per-token training targets from annotations: label tracks on the network's token grid.

Token ``k`` of a record covers model samples ``[k P, (k + 1) P)``, i.e. the time
``[k P / fs_model, (k + 1) P / fs_model)`` seconds (``P`` = ``config.patch_len``). An annotated
interval in input samples is turned into a per-token coverage fraction on that grid; a token
is positive when at least half of it is covered.

Every builder returns a :class:`LabelTrack`: ``targets`` (l, n_labels) in {0, 1} and
``weights`` (l, n_labels) in {0, 1}, where weight 0 means "unknown: no loss" (e.g. atrial
flutter for ``af``, the rhythm of CinC 2017 "other" records for ``vt``), and ``bags``
(l, n_labels) bool: a *bag* is a stretch known to hold the label on *some* of its tokens, not
on which (a true CinC 2015 VT alarm: the VT lies somewhere in the 10 s before the alarm; used
only with ``vigil train ecg --cinc2015-bags``, an experiment: docs/beats.md). Its tokens carry
no per-token loss; :func:`models.train.token_loss` scores the bag once, as a positive, on its
most positive token (multiple-instance learning).

Label names come from :mod:`models.labels` only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.config import ModelConfig
from models.data.episodes import interval_mask, merge_intervals, ventricular_runs
from models.data.labels import RHYTHM_AF, RHYTHM_AFL, RHYTHM_NORMAL, RHYTHM_VF, RHYTHM_VFL, RHYTHM_VT
from models.labels import AF, ARTIFACT, NOISE, NORMAL, SEIZURE, VF, VT

POSITIVE_COVERAGE = 0.5  # a token is positive when at least this share of it is covered
CINC2015_VT_WINDOW_S = (290.0, 300.0)  # a true VT alarm's event lies in the 10 s before 300 s
SHORT_VT_MIN_BEATS = 3  # ventricular runs of >= 3 beats at > 100 bpm are labelled vt


@dataclass
class LabelTrack:
    """Targets and loss weights of one record on the token grid.

    Attributes
    ----------
    targets : (l, n_labels) float32 in {0, 1}.
    weights : (l, n_labels) float32 in {0, 1}; 0 = unknown, no loss.
    bags : (l, n_labels) bool; True on the tokens of a label's bag (at most one per label),
        whose weights are 0. None: no bags.
    """

    targets: np.ndarray
    weights: np.ndarray
    bags: np.ndarray | None = None

    def __post_init__(self):
        if self.bags is None:
            self.bags = np.zeros(self.targets.shape, bool)

    @classmethod
    def empty(cls, n_tokens: int, labels: tuple[str, ...], weight: float = 0.0) -> "LabelTrack":
        """All targets 0, all weights ``weight``, no bags."""
        shape = (int(n_tokens), len(labels))
        return cls(np.zeros(shape, np.float32), np.full(shape, weight, np.float32))

    def set(self, labels: tuple[str, ...], name: str, target: np.ndarray | float,
            weight: np.ndarray | float = 1.0, where: np.ndarray | None = None) -> None:
        """Write one label's target and weight, on all tokens or on the tokens ``where``."""
        j = labels.index(name)
        sel = slice(None) if where is None else where
        self.targets[sel, j] = np.broadcast_to(np.asarray(target, np.float32), self.targets[sel, j].shape)
        self.weights[sel, j] = np.broadcast_to(np.asarray(weight, np.float32), self.weights[sel, j].shape)

    def set_bag(self, labels: tuple[str, ...], name: str, where: np.ndarray) -> None:
        """Make the tokens ``where`` one bag of ``name``: some of them hold it (no per-token loss)."""
        j = labels.index(name)
        self.bags[:, j] = where
        self.targets[where, j], self.weights[where, j] = 1.0, 0.0


def token_edges(n_tokens: int, input_rate: float, config: ModelConfig) -> np.ndarray:
    """(n_tokens + 1,) int64 input-sample boundaries of the tokens (token k: [e_k, e_k+1))."""
    k = np.arange(n_tokens + 1)
    return np.round(k * config.patch_len * input_rate / config.sample_rate).astype(np.int64)


def token_coverage(intervals, n_tokens: int, input_rate: float, config: ModelConfig) -> np.ndarray:
    """(n_tokens,) float fraction of each token covered by ``intervals`` (input samples)."""
    edges = token_edges(n_tokens, input_rate, config)
    if n_tokens == 0:
        return np.zeros(0)
    inside = interval_mask(intervals, int(edges[-1])).astype(np.float64)  # (t,)
    csum = np.concatenate([[0.0], np.cumsum(inside)])
    return (csum[edges[1:]] - csum[edges[:-1]]) / np.maximum(np.diff(edges), 1)


# --- ECG ---------------------------------------------------------------------------------

def mitdb_track(rhythms: list[tuple[str, int, int]], beat_samples: np.ndarray, beat_symbols: list[str],
                input_rate: float, n_tokens: int, config: ModelConfig) -> LabelTrack:
    """Targets of a MIT-BIH-style record from its rhythm intervals and beat labels.

    ``af`` from ``(AFIB`` (unknown, weight 0, over ``(AFL``); ``vt`` from ``(VT`` intervals and
    from runs of >= 3 ventricular beats at > 100 bpm; ``vf`` from ``(VFL``/``(VF``; ``normal``
    from ``(N`` outside vt/vf; ``noise`` 0 (the database is mostly clean; noise comes from the
    added NSTDB records). Tokens before the first rhythm annotation have unknown rhythm.
    """
    labels = config.labels
    track = LabelTrack.empty(n_tokens, labels, weight=1.0)

    def cov(names):
        return token_coverage([(s, e) for lab, s, e in rhythms if lab in names], n_tokens, input_rate, config)

    runs = ventricular_runs(beat_samples, beat_symbols, input_rate, min_beats=SHORT_VT_MIN_BEATS)
    vt_iv = merge_intervals([(s, e) for lab, s, e in rhythms if lab == RHYTHM_VT] + runs)
    vt = token_coverage(vt_iv, n_tokens, input_rate, config) >= POSITIVE_COVERAGE
    vf = cov({RHYTHM_VFL, RHYTHM_VF}) >= POSITIVE_COVERAGE
    af = cov({RHYTHM_AF}) >= POSITIVE_COVERAGE
    afl = cov({RHYTHM_AFL}) > 0
    normal = (cov({RHYTHM_NORMAL}) >= POSITIVE_COVERAGE) & ~vt & ~vf
    track.set(labels, NORMAL, normal)
    track.set(labels, AF, af, weight=~afl)
    track.set(labels, VT, vt)
    track.set(labels, VF, vf)
    track.set(labels, NOISE, 0.0)
    first = min((s for _, s, _ in rhythms), default=None)
    if first is not None:
        before = token_edges(n_tokens, input_rate, config)[1:] <= first
        for name in (NORMAL, AF):
            track.set(labels, name, 0.0, weight=0.0, where=before)
    return track


def cinc2017_track(label: str, n_tokens: int, config: ModelConfig) -> LabelTrack:
    """Record-level CinC 2017 label on every token: N normal, A af, O neither, ~ noise.

    ``vt``/``vf`` are 0 on N and A records and unknown on O and ~; ``normal``/``af`` are unknown
    on noisy records.
    """
    labels = config.labels
    track = LabelTrack.empty(n_tokens, labels)
    known_rhythm = label in ("N", "A")
    track.set(labels, NORMAL, label == "N", weight=label != "~")
    track.set(labels, AF, label == "A", weight=label != "~")
    track.set(labels, VT, 0.0, weight=known_rhythm)
    track.set(labels, VF, 0.0, weight=known_rhythm)
    track.set(labels, NOISE, label == "~")
    return track


def cudb_track(vf_onset: int, input_rate: float, n_tokens: int, config: ModelConfig) -> LabelTrack:
    """CUDB: ``vf`` from the onset to the end; ``af`` 0; the rest unknown."""
    labels = config.labels
    track = LabelTrack.empty(n_tokens, labels)
    end = int(token_edges(n_tokens, input_rate, config)[-1])
    vf = token_coverage([(vf_onset, end)], n_tokens, input_rate, config) >= POSITIVE_COVERAGE
    track.set(labels, VF, vf)
    track.set(labels, AF, 0.0)
    track.set(labels, NORMAL, 0.0, where=vf)
    return track


def cinc2015_track(is_true: bool, input_rate: float, n_tokens: int, config: ModelConfig,
                   bag: bool = False) -> LabelTrack:
    """CinC 2015 VT alarm: ``vt`` 1 on the 10 s before the alarm of a true alarm (elsewhere
    unknown), or with ``bag`` those 10 s are a ``vt`` bag (the VT that set the alarm off lies
    somewhere in them, often a few beats among sinus ones); ``vt`` 0 up to the alarm of a
    false one. Other labels unknown."""
    labels = config.labels
    track = LabelTrack.empty(n_tokens, labels)
    lo, hi = (round(s * input_rate) for s in CINC2015_VT_WINDOW_S)
    if is_true:
        where = token_coverage([(lo, hi)], n_tokens, input_rate, config) >= POSITIVE_COVERAGE
        if bag:
            track.set_bag(labels, VT, where)
        else:
            track.set(labels, VT, 1.0, where=where)
    else:
        where = token_coverage([(0, hi)], n_tokens, input_rate, config) >= POSITIVE_COVERAGE
        track.set(labels, VT, 0.0, where=where)
    return track


# --- EEG ---------------------------------------------------------------------------------

def eeg_segment_track(seizure: bool, n_tokens: int, config: ModelConfig) -> LabelTrack:
    """A segment with one seizure label on every token and no artifact (artifacts are added)."""
    labels = config.labels
    track = LabelTrack.empty(n_tokens, labels)
    track.set(labels, SEIZURE, float(seizure))
    track.set(labels, ARTIFACT, 0.0)
    return track
