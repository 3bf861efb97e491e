"""Training data: whole records through the serving preprocessor, cached at the model rate.

Every record is read once, optionally resampled to a simulated device rate (250/300/360 Hz for
ECG), run through :class:`models.preprocess.Preprocessor` exactly as a session would be, and
kept in memory as an :class:`Example` with its per-token targets. Windows are then cut from
these arrays (:func:`sample_window`), so training sees what serving sees.

The split of every source is in :mod:`models.splits`.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np
from scipy import signal as sps

from models.config import ModelConfig
from models.data import ecg as ecg_data
from models.data import eeg as eeg_data
from models.data.paths import datasets_dir
from models.preprocess import Preprocessor
from models.splits import (CUDB_TRAIN, EEGMMIDB_RUNS, MITDB_ALL, NSTDB_TRAIN_NOISE, TEST, TRAIN, VAL,
                           bonn_split, chbmit_split, cinc2015_split, cinc2017_split, mitdb_split)
from models.targets import (LabelTrack, cinc2015_track, cinc2017_track, cudb_track, eeg_segment_track,
                            mitdb_track)

ECG_DEVICE_RATES = (250.0, 300.0, 360.0)  # Hz, simulated monitor rates for training records


@dataclass
class Example:
    """One preprocessed record with its targets.

    Attributes
    ----------
    name, source, split : str
        Record name, dataset (``mitdb``, ``cinc2017``, ...) and split part.
    x : (t, c) float32 µV at ``config.sample_rate``, preprocessed (band-pass, notch).
    mask : (t, c) bool, True where invalid (also for an absent lead).
    track : LabelTrack on the token grid (l = t // patch_len tokens).
    label : str, record-level label where one exists (CinC 2017 class, Bonn set, ...).
    """

    name: str
    source: str
    split: str
    x: np.ndarray
    mask: np.ndarray
    track: LabelTrack
    label: str = ""
    meta: dict = field(default_factory=dict)

    @property
    def n_tokens(self) -> int:
        return self.track.targets.shape[0]


def resample_to(x: np.ndarray, rate: float, new_rate: float) -> np.ndarray:
    """(t, c) resampled from ``rate`` to ``new_rate`` Hz (polyphase; simulates another device)."""
    if rate == new_rate:
        return x
    r = Fraction(new_rate).limit_denominator(1000) / Fraction(rate).limit_denominator(1000)
    return sps.resample_poly(x, r.numerator, r.denominator, axis=0).astype(np.float32)


def preprocess(config: ModelConfig, x: np.ndarray, rate: float, n_channels: int | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
    """Run a whole record (t, c) µV at ``rate`` through the serving preprocessor.

    Returns ``y`` (t', c') float32 µV at the model rate and ``mask`` (t', c') bool; when
    ``n_channels`` exceeds c, masked zero channels are appended (an absent lead).
    """
    pre = Preprocessor(config, rate, x.shape[1], "uV")
    y, mask, _ = pre.process(x, pre.init_state())
    if n_channels is not None and n_channels > y.shape[1]:
        pad = n_channels - y.shape[1]
        y = np.concatenate([y, np.zeros((len(y), pad), np.float32)], axis=1)
        mask = np.concatenate([mask, np.ones((len(mask), pad), bool)], axis=1)
    return y, mask


def _device_rate(rng: np.random.Generator | None, x: np.ndarray, rate: float) -> float:
    """A random ECG device rate for a training record (its own rate when it holds NaN)."""
    if rng is None or not np.isfinite(x).all():
        return rate
    return float(rng.choice(ECG_DEVICE_RATES))


def _ecg_example(config, rec, track_fn, source, split, rng, label="") -> Example:
    x, rate = rec.signal, rec.sample_rate
    dev = _device_rate(rng, x, rate) if split == TRAIN else rate
    y, mask = preprocess(config, resample_to(x, rate, dev), dev, config.max_channels)
    n_tok = len(y) // config.patch_len
    return Example(rec.name, source, split, y, mask, track_fn(n_tok), label, {"device_rate": dev})


# --- ECG ---------------------------------------------------------------------------------

def load_ecg(config: ModelConfig, parts: tuple[str, ...], rng: np.random.Generator | None = None,
             cinc2017_per_class: int | None = None, root: Path | None = None,
             progress=None, cinc2015_test: Collection[str] | None = None,
             cinc2015_bags: bool = False) -> list[Example]:
    """ECG examples of the given split parts from MIT-BIH, CinC 2017, CinC 2015 and CUDB.

    Parameters
    ----------
    config : ModelConfig
    parts : tuple of str
        Split parts to load (``train``, ``val``, ``test``).
    rng : np.random.Generator, optional
        Draws the simulated device rate of training records (none: native rates).
    cinc2017_per_class : int, optional
        At most this many CinC 2017 records per class and part (a deterministic subset).
    progress : callable, optional
        Called with a short description after each source.
    cinc2015_test : collection of str, optional
        CinC 2015 records held out as ``test`` (a cross-validation fold); the others are
        ``train``. Default: the split of :func:`models.splits.cinc2015_split`.
    cinc2015_bags : bool
        A true alarm's 10 s before the alarm are a ``vt`` bag instead of ``vt`` on every token
        (:func:`models.targets.cinc2015_track`).
    """
    root = Path(root) if root is not None else datasets_dir()
    out: list[Example] = []
    mitdb = root / "mitdb"
    if mitdb.is_dir():
        for r in MITDB_ALL:
            part = mitdb_split(r)
            if part not in parts or not (mitdb / f"{r}.hea").exists():
                continue
            rec = ecg_data.read_wfdb(mitdb / r)
            rhythms = ecg_data.mitdb_rhythms(mitdb / r)
            beats, symbols = ecg_data.mitdb_beats(mitdb / r)
            out.append(_ecg_example(config, rec, lambda n: mitdb_track(rhythms, beats, symbols, rec.sample_rate, n, config),
                                    "mitdb", part, rng))
        _report(progress, "mitdb")
    cinc17 = root / "cinc2017"
    if cinc17.is_dir():
        counts: dict[tuple[str, str], int] = {}
        for name, label in ecg_data.cinc2017_records(cinc17):
            part = cinc2017_split(name)
            if part not in parts:
                continue
            k = (part, label)
            if cinc2017_per_class is not None and counts.get(k, 0) >= cinc2017_per_class:
                continue
            counts[k] = counts.get(k, 0) + 1
            rec = ecg_data.read_cinc2017(cinc17, name)
            out.append(_ecg_example(config, rec, lambda n, lab=label: cinc2017_track(lab, n, config),
                                    "cinc2017", part, rng, label))
        _report(progress, "cinc2017")
    cinc15 = root / "cinc2015"
    if cinc15.is_dir():
        alarms = ecg_data.cinc2015_alarms(cinc15)
        split = cinc2015_split(alarms, cinc2015_test)
        for name, is_true in alarms:
            if split[name] not in parts:
                continue
            rec = ecg_data.read_cinc2015_ecg(cinc15 / name)
            out.append(_ecg_example(config, rec, lambda n, t=is_true: cinc2015_track(t, rec.sample_rate, n, config, cinc2015_bags),
                                    "cinc2015", split[name], rng, "true" if is_true else "false"))
        _report(progress, "cinc2015")
    cudb = root / "cudb"
    if TRAIN in parts and cudb.is_dir():
        for name in CUDB_TRAIN:
            rec = ecg_data.read_wfdb(cudb / name)
            onset = ecg_data.cudb_vf_onset(cudb / name)
            out.append(_ecg_example(config, rec, lambda n: cudb_track(onset, rec.sample_rate, n, config),
                                    "cudb", TRAIN, rng))
        _report(progress, "cudb")
    return out


def load_ecg_noise(config: ModelConfig, root: Path | None = None) -> dict[str, np.ndarray]:
    """NSTDB training noise (``bw``, ``ma``) preprocessed: kind -> (t, 2) float32 µV, model rate."""
    root = Path(root) if root is not None else datasets_dir()
    out = {}
    for kind in NSTDB_TRAIN_NOISE:
        if (root / "nstdb" / f"{kind}.hea").exists():
            rec = ecg_data.read_nstdb_noise(root / "nstdb", kind)
            out[kind], _ = preprocess(config, rec.signal, rec.sample_rate)
    return out


# --- EEG ---------------------------------------------------------------------------------

def load_eeg(config: ModelConfig, parts: tuple[str, ...], root: Path | None = None,
             progress=None) -> list[Example]:
    """EEG examples of the given split parts: Bonn segments, CHB-MIT chb01 excerpts and
    EEGMMIDB S001 runs (background, seizure 0)."""
    root = Path(root) if root is not None else datasets_dir()
    out: list[Example] = []
    bonn = root / "bonn"
    if bonn.is_dir():
        for path, letter in eeg_data.bonn_segments(bonn):
            part = bonn_split(int(path.stem[1:]))
            if part in parts:
                out.append(_eeg_example(config, eeg_data.read_bonn(path), "bonn", part, letter == "S", letter))
        _report(progress, "bonn")
    chb = root / "chbmit" / "chb01"
    if chb.is_dir():
        for folder, seizure in (("ictal", True), ("preictal_10s", False)):
            for path in sorted((chb / folder).glob("*.npy")):
                part = chbmit_split(path.stem.split("_")[1])
                if part in parts:
                    out.append(_eeg_example(config, eeg_data.read_chbmit_npy(path), "chbmit", part, seizure,
                                            "ictal" if seizure else "preictal"))
        _report(progress, "chbmit")
    mmi = root / "eegmmidb"
    if mmi.is_dir():
        for part, runs in EEGMMIDB_RUNS.items():
            if part not in parts:
                continue
            for run in runs:
                path = mmi / f"S001{run}.edf"
                if path.exists():
                    out.append(_eeg_example(config, eeg_data.read_edf(path), "eegmmidb", part, False, "background"))
        _report(progress, "eegmmidb")
    return out


def _eeg_example(config, rec, source, part, seizure, label) -> Example:
    y, mask = preprocess(config, rec.signal, rec.sample_rate)
    n_tok = len(y) // config.patch_len
    return Example(rec.name, source, part, y, mask, eeg_segment_track(seizure, n_tok, config), label,
                   {"input_rate": rec.sample_rate})


def _report(progress, what: str) -> None:
    if progress is not None:
        progress(what)


# --- windows -----------------------------------------------------------------------------

@dataclass
class Window:
    """A training window cut from an :class:`Example` (token-aligned).

    Attributes
    ----------
    x : (t, c) float32 µV, t = tokens * patch_len.
    mask : (t, c) bool.
    targets, weights : (l, n_labels) float32.
    bags : (l, n_labels) bool, a label's bag (:class:`models.targets.LabelTrack`) where the
        window holds all of it; None: no bags.
    """

    x: np.ndarray
    mask: np.ndarray
    targets: np.ndarray
    weights: np.ndarray
    bags: np.ndarray | None = None

    def __post_init__(self):
        if self.bags is None:
            self.bags = np.zeros(self.targets.shape, bool)

    def drop_bags(self, tokens: slice | np.ndarray) -> None:
        """Forget the bags that reach into ``tokens`` (a bag is only known whole)."""
        self.bags[:, self.bags[tokens].any(0)] = False


def sample_window(ex: Example, n_tokens: int, patch_len: int, rng: np.random.Generator,
                  focus: np.ndarray | None = None) -> Window:
    """Cut up to ``n_tokens`` tokens from ``ex``; with ``focus`` (token indices), the window
    contains a random one of them."""
    total = ex.n_tokens
    n = min(n_tokens, total)
    if focus is not None and len(focus):
        k = int(rng.choice(focus))
        lo, hi = max(0, k - n + 1), min(k, total - n)
        start = int(rng.integers(lo, hi + 1))
    else:
        start = int(rng.integers(0, total - n + 1))
    a, b = start * patch_len, (start + n) * patch_len
    bags = ex.track.bags[start:start + n].copy()
    bags[:, bags.sum(0) < ex.track.bags.sum(0)] = False      # a bag cut by the window is dropped
    return Window(ex.x[a:b].copy(), ex.mask[a:b].copy(), ex.track.targets[start:start + n].copy(),
                  ex.track.weights[start:start + n].copy(), bags)


def positive_tokens(ex: Example, label_index: int) -> np.ndarray:
    """Token indices where ``label`` is a known positive."""
    t, w = ex.track.targets[:, label_index], ex.track.weights[:, label_index]
    return np.flatnonzero((t > 0.5) & (w > 0))


def collate(windows: list[Window], burn_in_tokens: int = 0):
    """Right-pad windows into tensors for ``Network.forward``.

    Returns
    -------
    x : (b, t, c) float32 µV; mask : (b, t, c) bool (padding masked too); lengths : (b,) int64
    samples; targets, weights : (b, l, n_labels) float32 (weights 0 on padding and on the first
    ``burn_in_tokens`` tokens of each window, where a fresh state cannot know the rhythm yet);
    bags : (b, l, n_labels) bool (a bag reaching into the burn-in is dropped).
    """
    import torch

    b = len(windows)
    t = max(len(w.x) for w in windows)
    c = windows[0].x.shape[1]
    l = max(len(w.targets) for w in windows)
    n_lab = windows[0].targets.shape[1]
    x = np.zeros((b, t, c), np.float32)
    mask = np.ones((b, t, c), bool)
    tg = np.zeros((b, l, n_lab), np.float32)
    wt = np.zeros((b, l, n_lab), np.float32)
    bags = np.zeros((b, l, n_lab), bool)
    lengths = np.zeros(b, np.int64)
    for i, w in enumerate(windows):
        x[i, : len(w.x)], mask[i, : len(w.x)], lengths[i] = w.x, w.mask, len(w.x)
        tg[i, : len(w.targets)], wt[i, : len(w.targets)] = w.targets, w.weights
        bags[i, : len(w.bags)] = w.bags * ~w.bags[:burn_in_tokens].any(0)
    wt[:, :burn_in_tokens] = 0.0
    return (torch.from_numpy(x), torch.from_numpy(mask), torch.from_numpy(lengths),
            torch.from_numpy(tg), torch.from_numpy(wt), torch.from_numpy(bags))


__all__ = ["Example", "Window", "load_ecg", "load_ecg_noise", "load_eeg", "preprocess", "resample_to",
           "sample_window", "positive_tokens", "collate", "TRAIN", "VAL", "TEST"]


# --- shipped excerpts (tests, and machines without the datasets) ----------------------------

def load_ecg_excerpts(config: ModelConfig) -> list[Example]:
    """The MIT-BIH excerpts in ``clients/excerpts`` as training examples (split ``train``)."""
    from models.data.excerpts import excerpt_path

    out = []
    for name in ("mitdb_201_af", "mitdb_203_vt"):
        path = excerpt_path(name)
        rec = ecg_data.read_wfdb(path)
        rhythms = ecg_data.mitdb_rhythms(path)
        beats, symbols = ecg_data.mitdb_beats(path)
        out.append(_ecg_example(config, rec, lambda n: mitdb_track(rhythms, beats, symbols, rec.sample_rate, n, config),
                                "mitdb", TRAIN, None))
    return out


def load_eeg_excerpts(config: ModelConfig) -> list[Example]:
    """The Bonn and CHB-MIT excerpts in ``clients/excerpts`` as training examples."""
    from models.data.excerpts import excerpt_path

    out = [_eeg_example(config, eeg_data.read_bonn(excerpt_path(n)), "bonn", TRAIN, n == "bonn_S001", n[-4])
           for n in ("bonn_S001", "bonn_Z001")]
    for n, seizure in (("chbmit_chb01_03_ictal", True), ("chbmit_chb01_03_preictal", False)):
        out.append(_eeg_example(config, eeg_data.read_chbmit_npy(excerpt_path(n)), "chbmit", TRAIN, seizure,
                                "ictal" if seizure else "preictal"))
    return out
