"""Recordings a client can stream, read with the project's own readers (``models/data``).

Formats, by file name: WFDB (``.hea``, with ``.dat`` and, when present, ``.atr`` beside it), EDF/BDF
(MNE), Bonn segments (``.txt``) and CHB-MIT excerpts (``.npy``). Annotated episodes are read where
the format carries them, in the reference definitions of DESIGN §7, so that a replay can be scored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from models.data.recording import Recording


@dataclass(frozen=True)
class Episode:
    """An annotated episode: ``kind`` as an alert kind, ``[start, end)`` in the recording's samples."""

    kind: str
    start: int
    end: int
    note: str = ""


@dataclass(frozen=True)
class Source:
    """A recording ready to stream: signal in µV, modality, and its annotated episodes."""

    path: Path
    recording: Recording
    modality: str
    episodes: list[Episode] = field(default_factory=list)
    offset_s: float = 0.0  # where sample 0 lies in the file, seconds (after :meth:`window`)

    @property
    def name(self) -> str:
        return self.recording.name

    def window(self, start_s: float = 0.0, duration_s: float | None = None) -> "Source":
        """The part ``[start_s, start_s + duration_s)`` (episodes clipped and shifted)."""
        rec, fs = self.recording, self.recording.sample_rate
        a = min(max(0, round(start_s * fs)), rec.n_samples)
        b = rec.n_samples if duration_s is None else min(rec.n_samples, a + round(duration_s * fs))
        if (a, b) == (0, rec.n_samples):
            return self
        cut = Recording(np.ascontiguousarray(rec.signal[a:b]), fs, list(rec.channels), rec.name)
        eps = [Episode(e.kind, max(e.start, a) - a, min(e.end, b) - a, e.note)
               for e in self.episodes if e.end > a and e.start < b]
        return Source(self.path, cut, self.modality, eps, self.offset_s + a / fs)


FORMATS = "WFDB .hea, EDF/BDF (.edf/.bdf), Bonn .txt, CHB-MIT .npy"


def load(path: str | Path, modality: str | None = None) -> Source:
    """Read a recording by its extension; ``modality`` defaults to ecg for WFDB, eeg otherwise.

    Raises
    ------
    ValueError
        An extension none of the readers handles.
    """
    from models.data.ecg import read_wfdb
    from models.data.eeg import read_bonn, read_chbmit_npy, read_edf

    path = Path(path)
    ext = path.suffix.lower()
    if ext in (".hea", ".dat"):
        path = path.with_suffix(".hea")
        rec = read_wfdb(path)
        return Source(path, rec, modality or "ecg", _wfdb_episodes(path, rec))
    if ext in (".edf", ".bdf"):
        rec = _read_bdf(path) if ext == ".bdf" else read_edf(path)
        return Source(path, rec, modality or "eeg", [])
    if ext == ".txt":
        rec = read_bonn(path)
        ictal = path.name[:1].upper() == "S"
        eps = [Episode("seizure", 0, rec.n_samples, "Bonn set S: ictal segment")] if ictal else []
        return Source(path, rec, modality or "eeg", eps)
    if ext == ".npy":
        rec = read_chbmit_npy(path)
        ictal = "ictal" in path.stem and "preictal" not in path.stem
        eps = [Episode("seizure", 0, rec.n_samples, "CHB-MIT: inside an annotated seizure")] if ictal else []
        return Source(path, rec, modality or "eeg", eps)
    raise ValueError(f"Invalid recording {path}: expected one of {FORMATS}")


def _read_bdf(path: Path) -> Recording:
    import mne

    raw = mne.io.read_raw_bdf(path, preload=False, verbose="error")
    x = raw.get_data(units="uV")  # (c, t) µV
    return Recording(np.ascontiguousarray(x.T, dtype=np.float32), float(raw.info["sfreq"]), list(raw.ch_names),
                     path.stem)


def _wfdb_episodes(path: Path, rec: Recording) -> list[Episode]:
    """AF episodes and VT runs from a MIT-BIH-style ``.atr`` (DESIGN §7, no learning period on
    excerpts); noise blocks of NSTDB excerpts."""
    from models.data import episodes as E
    from models.data.ecg import excerpt_source, mitdb_beats, mitdb_rhythms, nstdb_noise_blocks

    fs, n = rec.sample_rate, rec.n_samples
    out: list[Episode] = []
    source = excerpt_source(path)
    if source is not None and source[0].startswith("nstdb/"):
        out += [Episode("artifact", a, b, "NSTDB electrode-motion noise block")
                for a, b in nstdb_noise_blocks(n, fs, offset=source[1])]
    if not path.with_suffix(".atr").exists():
        return out
    if source is None or not source[0].startswith("nstdb/"):
        ref = E.af_episodes(mitdb_rhythms(path), fs, n, learning_s=0.0)
        out += [Episode("af", a, b, "(AFIB, joined < 10 s, >= 30 s") for a, b in ref.episodes]
    samples, symbols = mitdb_beats(path)
    out += [Episode("vt", a, b, ">= 5 ventricular beats > 100 bpm") for a, b in E.vt_episodes(samples, symbols, fs)]
    out += [Episode("bradycardia", a, b, "5 beats < 40 bpm") for a, b in rate_episodes(samples, fs, 5, below=40.0)]
    out += [Episode("tachycardia", a, b, "17 beats > 140 bpm") for a, b in rate_episodes(samples, fs, 17, above=140.0)]
    return sorted(out, key=lambda e: (e.start, e.kind))


def rate_episodes(beats: np.ndarray, sample_rate: float, n_beats: int, *, below: float | None = None,
                  above: float | None = None) -> list[tuple[int, int]]:
    """Stretches of ``n_beats`` consecutive annotated beats whose mean rate is below/above a limit.

    The PhysioNet/CinC 2015 definitions (DESIGN §3): extreme bradycardia = 5 beats < 40 bpm,
    extreme tachycardia = 17 beats > 140 bpm. Returns merged ``[first beat, last beat + 1)``.
    """
    from models.data.episodes import merge_intervals

    t = np.asarray(beats, dtype=np.int64)
    if len(t) < n_beats:
        return []
    span = t[n_beats - 1:] - t[: len(t) - n_beats + 1]  # samples from first to last beat of each run
    rate = 60.0 * (n_beats - 1) * sample_rate / np.maximum(span, 1)  # bpm
    hit = np.ones(len(rate), bool)
    if below is not None:
        hit &= rate < below
    if above is not None:
        hit &= rate > above
    runs = [(int(t[i]), int(t[i + n_beats - 1]) + 1) for i in np.flatnonzero(hit)]
    return [tuple(r) for r in merge_intervals(runs)]
