"""ECG dataset readers (WFDB through ``wfdb``).

Every signal reader returns a :class:`~models.data.recording.Recording` in µV; annotation
readers return sample indices at the record's own rate. Paths name a WFDB record with or
without its extension (``.../mitdb/201``, ``.../mitdb/201.hea``).

What the files hold (checked against ``../shared/data``):

- MIT-BIH Arrhythmia (``mitdb``): 360 Hz, 2 leads (MLII + V1/V2/V4/V5), format 212, 650 000
  samples. Beat symbols and ``+`` rhythm changes in ``.atr``; most aux notes end in a NUL
  (``"(AFIB\\x00"``), a few do not (201: ``"(SVTA"``, ``"(N"`` at 570586/571186).
- CinC 2017: 300 Hz, 1 lead, 16-bit ``.mat`` with a WFDB header; ``REFERENCE.csv`` (here
  with a ``data_source,class`` header line, which the PhysioNet original lacks).
- CinC 2015: 250 Hz; two ECG leads (units mV; II with V, I, III, aVF or MCL) plus one or two
  of PLETH/ABP/RESP (units NU/mmHg); the alarm fires at 300 s. Some records hold invalid
  samples, read as NaN (v224s: 22 396 values).
- CUDB ``cu01``: 250 Hz, 1 lead, 127 232 samples. ``.atr`` holds 203 ``N`` beats, one ``+``
  ``"(VF"`` at 53541, ``[`` (VF onset) at 53546 and ``]`` at 127231, the last sample: VF runs
  from 53541 (214.16 s) to the end, as the data README says.
- NSTDB: see :data:`NSTDB_NOISE_START_S` and :func:`nstdb_noise_blocks`.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import wfdb

from models.preprocess import UNIT_SCALE

from .labels import BEAT_SYMBOLS, RHYTHM_SYMBOL, RHYTHM_VF
from .recording import Recording

MITDB_SAMPLE_RATE = 360.0  # Hz
CINC2017_SAMPLE_RATE = 300.0  # Hz
CINC2015_SAMPLE_RATE = 250.0  # Hz
CINC2015_ALARM_S = 300.0  # the alarm fires 300 s into every record
CUDB_SAMPLE_RATE = 250.0  # Hz

# NSTDB: the .hea comments only say "Created by `nst' from records 118 and em (SNR = 24 dB)"
# and the .atr files are copies of mitdb 118's (no noise markers; the .xws files are PhysioNet
# viewer settings). The blocks below were verified from the signals: 118eXX minus mitdb 118 is
# a constant (DC) outside them and noise inside, for both leads, to within 2 samples.
NSTDB_NOISE_START_S = 300.0  # first noise block starts at 5:00
NSTDB_BLOCK_S = 120.0  # noise and clean blocks alternate every 2 min
NSTDB_NOISE_RECORDS = ("bw", "ma", "em")  # baseline wander, muscle artefact, electrode motion

_UNIT_TO_UV = {**UNIT_SCALE, "µV": 1.0}  # WFDB headers also write µV
_SUFFIXES = (".hea", ".dat", ".mat", ".atr")
_EXCERPT_TAG = "vigil-excerpt"


def _record_path(path: str | Path) -> str:
    """WFDB record path without extension, as ``wfdb`` wants it."""
    p = Path(path)
    return str(p.with_suffix("") if p.suffix in _SUFFIXES else p)


def clean_aux(aux: str) -> str:
    """An aux note without the NUL padding and surrounding blanks."""
    return aux.replace("\x00", "").strip()


def read_wfdb(
    path: str | Path,
    leads: list[str] | None = None,
    sampfrom: int = 0,
    sampto: int | None = None,
) -> Recording:
    """Read a WFDB record in µV.

    Parameters
    ----------
    path : str or Path
        Record path, with or without extension.
    leads : list of str, optional
        Signal names to keep, in this order; default all. Every lead must be in a voltage
        unit (mV, µV, V).
    sampfrom, sampto : int
        Sample range ``[sampfrom, sampto)``; default the whole record.

    Returns
    -------
    Recording
        ``signal`` ``(t, c)`` float32 µV; invalid samples (WFDB's ``-32768``/``-2048``) are
        NaN.

    Raises
    ------
    KeyError
        A requested lead is not in the record.
    ValueError
        A lead is not in a voltage unit.
    """
    rec_path = _record_path(path)
    header = wfdb.rdheader(rec_path)
    names = list(header.sig_name)
    if leads is None:
        idx = list(range(len(names)))
    else:
        missing = [lead for lead in leads if lead not in names]
        if missing:
            raise KeyError(f"Unknown leads {missing} in {rec_path}: expected some of {names}")
        idx = [names.index(lead) for lead in leads]
    units = [header.units[i] for i in idx]
    bad = [(names[i], u) for i, u in zip(idx, units) if u not in _UNIT_TO_UV]
    if bad:
        raise ValueError(f"Invalid leads in {rec_path}: expected units mV/µV/V, got {bad}")
    rec = wfdb.rdrecord(rec_path, sampfrom=sampfrom, sampto=sampto, channels=sorted(set(idx)))
    col = {name: j for j, name in enumerate(rec.sig_name)}
    scale = np.array([_UNIT_TO_UV[u] for u in units])  # (c,) µV per unit
    signal = rec.p_signal[:, [col[names[i]] for i in idx]] * scale  # (t, c) µV
    return Recording(
        signal=signal.astype(np.float32),
        sample_rate=float(header.fs),
        channels=[names[i] for i in idx],
        name=header.record_name,
    )


def read_annotations(path: str | Path, extension: str = "atr") -> wfdb.Annotation:
    """The raw ``wfdb.Annotation`` of a record (all symbols, aux notes as stored)."""
    return wfdb.rdann(_record_path(path), extension)


def record_length(path: str | Path) -> int:
    """Samples per channel of a record, from its header."""
    return int(wfdb.rdheader(_record_path(path)).sig_len)


def mitdb_beats(path: str | Path, extension: str = "atr") -> tuple[np.ndarray, list[str]]:
    """Beat annotations of a MIT-BIH-style record.

    Returns
    -------
    samples : np.ndarray
        ``(n,)`` int64 sample indices of the beats (R peaks).
    symbols : list of str
        ``n`` beat symbols (see :data:`~models.data.labels.BEAT_SYMBOLS`); rhythm, noise and
        other non-beat annotations are dropped.
    """
    ann = read_annotations(path, extension)
    keep = [i for i, s in enumerate(ann.symbol) if s in BEAT_SYMBOLS]
    return ann.sample[keep].astype(np.int64), [ann.symbol[i] for i in keep]


def rhythm_intervals(
    samples: np.ndarray | list[int],
    symbols: list[str],
    aux_notes: list[str],
    n_samples: int,
) -> list[tuple[str, int, int]]:
    """Turn ``+`` rhythm-change annotations into intervals.

    Parameters
    ----------
    samples, symbols, aux_notes
        One entry per annotation, in time order (as ``wfdb.rdann`` gives them).
    n_samples : int
        Record length; the last rhythm lasts until here.

    Returns
    -------
    list of (label, start, end)
        Half-open sample intervals ``[start, end)``; ``label`` is the aux note without NULs,
        e.g. ``"(AFIB"``. Time before the first ``+`` has no rhythm and is not returned.
    """
    changes = [
        (int(s), clean_aux(a)) for s, y, a in zip(samples, symbols, aux_notes) if y == RHYTHM_SYMBOL
    ]
    out = []
    for k, (start, label) in enumerate(changes):
        end = changes[k + 1][0] if k + 1 < len(changes) else int(n_samples)
        if end > start:
            out.append((label, start, end))
    return out


def mitdb_rhythms(path: str | Path, extension: str = "atr") -> list[tuple[str, int, int]]:
    """Rhythm intervals of a MIT-BIH-style record: ``[(label, start, end), ...]``.

    ``label`` is e.g. ``"(AFIB"``; intervals are half-open sample ranges and the last one ends
    at the record length. Works for mitdb, nstdb and cudb (``[("(VF", 53541, 127232)]``).
    """
    ann = read_annotations(path, extension)
    return rhythm_intervals(ann.sample, ann.symbol, ann.aux_note or [""] * len(ann.symbol),
                            record_length(path))


# --- CinC 2017 ------------------------------------------------------------------------------

def cinc2017_records(root: str | Path) -> list[tuple[str, str]]:
    """Records and labels of CinC 2017 from ``REFERENCE.csv``.

    Returns
    -------
    list of (name, label)
        ``label`` in ``N`` normal, ``A`` AF, ``O`` other rhythm, ``~`` noisy (see
        :data:`~models.data.labels.CINC2017_CLASSES`). A header line, if present, is skipped.
    """
    out = []
    with open(Path(root) / "REFERENCE.csv", newline="") as f:
        for row in csv.reader(f):
            if len(row) >= 2 and re.fullmatch(r"A\d{5}", row[0].strip()):
                out.append((row[0].strip(), row[1].strip()))
    return out


def read_cinc2017(root: str | Path, name: str) -> Recording:
    """One CinC 2017 record (``.mat`` + ``.hea``): ``(t, 1)`` µV at 300 Hz."""
    return read_wfdb(Path(root) / name)


# --- CinC 2015 ------------------------------------------------------------------------------

def cinc2015_alarms(root: str | Path) -> list[tuple[str, bool]]:
    """Alarms of CinC 2015 from ``alarms.csv``: ``[(name, is_true), ...]`` (1 = true alarm)."""
    out = []
    with open(Path(root) / "alarms.csv", newline="") as f:
        for row in csv.reader(f):
            if len(row) >= 2 and row[1].strip() in ("0", "1"):
                out.append((row[0].strip(), row[1].strip() == "1"))
    return out


def cinc2015_ecg_leads(path: str | Path) -> list[str]:
    """Names of the ECG leads of a CinC 2015 record: the signals in mV, in file order."""
    header = wfdb.rdheader(_record_path(path))
    return [n for n, u in zip(header.sig_name, header.units) if u == "mV"]


def read_cinc2015_ecg(path: str | Path) -> Recording:
    """The ECG leads only of a CinC 2015 record (PLETH/ABP/RESP dropped): ``(t, c)`` µV, 250 Hz.

    The alarm fires at :data:`CINC2015_ALARM_S` seconds.
    """
    return read_wfdb(path, leads=cinc2015_ecg_leads(path))


# --- CUDB ----------------------------------------------------------------------------------

def cudb_vf_onset(path: str | Path) -> int:
    """Sample of the first ``+`` ``"(VF"`` rhythm annotation of a CUDB record.

    For ``cu01`` this is 53541 (214.16 s at 250 Hz); the ``[`` VF-onset marker follows 5
    samples later and VF lasts to the end of the record.

    Raises
    ------
    ValueError
        The record has no ``(VF`` annotation.
    """
    for label, start, _ in mitdb_rhythms(path):
        if label == RHYTHM_VF:
            return start
    raise ValueError(f"No {RHYTHM_VF} rhythm annotation in {_record_path(path)}")


# --- NSTDB ---------------------------------------------------------------------------------

def nstdb_noise_blocks(
    n_samples: int, sample_rate: float = MITDB_SAMPLE_RATE, offset: int = 0
) -> list[tuple[int, int]]:
    """Sample intervals where NSTDB ``118eXX``/``119eXX`` records carry added noise.

    Noise is added in 2-min blocks alternating with 2-min clean blocks, starting at 5:00:
    ``[5:00, 7:00)``, ``[9:00, 11:00)``, ... and the last block ``[29:00, 30:05.6)`` runs to
    the end. Checked on 118e00/e12/e24 against mitdb 118: outside these blocks the difference
    is a constant per block, inside it is noise (edges agree to within 2 samples, where the
    noise happens to cross zero).

    Parameters
    ----------
    n_samples : int
        Samples in the (possibly cut) record.
    sample_rate : float
        Hz; 360 for NSTDB.
    offset : int
        Sample of the original record where this one starts (an excerpt's ``sampfrom``).

    Returns
    -------
    list of (start, end)
        Half-open sample intervals in this record's indices, clipped to ``[0, n_samples)``.
    """
    first = round(NSTDB_NOISE_START_S * sample_rate)
    block = round(NSTDB_BLOCK_S * sample_rate)
    out = []
    start = first
    while start < offset + n_samples:
        a, b = max(start, offset), min(start + block, offset + n_samples)
        if b > a:
            out.append((a - offset, b - offset))
        start += 2 * block
    return out


def tokens_in_blocks(spans: np.ndarray, blocks: list[tuple[int, int]]) -> np.ndarray:
    """``(n,)`` bool: the token spans ``(n, 2)`` (first and last sample) with at least half their
    length inside one of the sample intervals ``blocks`` (how noise tokens are labelled)."""
    return np.array([any(min(e, b) - max(s, a) >= 0.5 * (e - s) for a, b in blocks) for s, e in spans], bool)


def nstdb_snr_db(path: str | Path) -> float:
    """SNR in dB of an NSTDB noisy record, from its header comment ``(SNR = 24 dB)``."""
    for line in wfdb.rdheader(_record_path(path)).comments:
        m = re.search(r"SNR\s*=\s*(-?\d+(?:\.\d+)?)\s*dB", line)
        if m:
            return float(m.group(1))
    raise ValueError(f"No SNR comment in the header of {_record_path(path)}")


def read_nstdb_noise(root: str | Path, kind: str) -> Recording:
    """An NSTDB noise record, ``bw`` (baseline wander) or ``ma`` (muscle artefact), in µV.

    Their headers give gain 0 ("uncalibrated"); ``wfdb`` then uses 200 adu/mV, the value the
    ``nst`` tool assumes. ``(t, 2)`` µV at 360 Hz, channels ``noise1``, ``noise2``.
    """
    if kind not in NSTDB_NOISE_RECORDS:
        raise ValueError(f"Invalid noise kind: expected one of {NSTDB_NOISE_RECORDS}, got {kind!r}")
    return read_wfdb(Path(root) / kind)


# --- excerpts ------------------------------------------------------------------------------

def excerpt_source(path: str | Path) -> tuple[str, int, int] | None:
    """Where a shipped WFDB excerpt was cut from, from its header comment.

    Returns
    -------
    (source, sampfrom, sampto) or None
        e.g. ``("nstdb/118e24", 97200, 162000)``; ``None`` for a record that is not an excerpt.
    """
    for line in wfdb.rdheader(_record_path(path)).comments:
        m = re.search(_EXCERPT_TAG + r" source=(\S+) sampfrom=(\d+) sampto=(\d+)", line)
        if m:
            return m.group(1), int(m.group(2)), int(m.group(3))
    return None


def excerpt_comment(source: str, sampfrom: int, sampto: int) -> str:
    """The header comment :func:`excerpt_source` parses."""
    return f"{_EXCERPT_TAG} source={source} sampfrom={sampfrom} sampto={sampto}"
