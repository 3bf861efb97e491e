"""EEG dataset readers.

Every signal reader returns a :class:`~models.data.recording.Recording` in µV.

What the files hold (checked against ``../shared/data``):

- Bonn (Andrzejak et al., Phys Rev E 64:061907, 2001): one text file per 23.6-s segment, one
  integer a line, 4097 samples at 173.61 Hz, 1 channel; the file name starts with the set
  letter (``S001.txt``). Values are µV as distributed.
- CHB-MIT chb01 excerpts: ``.npy`` float64 ``(23, 2561)`` (channels first) µV at 256 Hz, i.e.
  10 s + 1 sample. The 23 bipolar channel names come from ``chb01-summary.txt``; the montage
  lists ``T8-P8`` twice (channels 15 and 23), kept as is. Seizure times are in the summary
  and in the WFDB ``.seizures`` annotation files (``[``/``]`` at 256 Hz; they agree).
- EEGMMIDB: EDF+, 64 channels at 160 Hz, 1 µV per digital step; labels padded with dots
  (``"Fc5."``). In S001R01 the ``T0`` annotation lasts 60.2 s, past the 60-s recording.
- UCI EEG Eye State: ARFF, 14 Emotiv channels at 128 Hz (14 980 samples, 117 s), µV with
  the device's ~4200 µV offset, and per-sample ``eyeDetection``
  (1 closed, 0 open); a few samples are gross outliers (> 10^5 µV).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from .labels import BONN_SETS, UCI_EYE_STATES
from .recording import Recording

BONN_SAMPLE_RATE = 173.61  # Hz
BONN_SEGMENT_SAMPLES = 4097
CHBMIT_SAMPLE_RATE = 256.0  # Hz
UCI_EYE_SAMPLE_RATE = 128.0  # Hz

# Channel order of the chb01 EDF files (chb01-summary.txt, "Channels in EDF Files").
CHBMIT_CHB01_CHANNELS: tuple[str, ...] = (
    "FP1-F7", "F7-T7", "T7-P7", "P7-O1", "FP1-F3", "F3-C3", "C3-P3", "P3-O1",
    "FP2-F4", "F4-C4", "C4-P4", "P4-O2", "FP2-F8", "F8-T8", "T8-P8", "P8-O2",
    "FZ-CZ", "CZ-PZ", "P7-T7", "T7-FT9", "FT9-FT10", "FT10-T8", "T8-P8",
)  # fmt: skip


# --- Bonn ----------------------------------------------------------------------------------

def bonn_set(path: str | Path) -> str:
    """Set letter (``Z O N F S``) of a Bonn segment, from its file name (``S001.txt``)."""
    letter = Path(path).name[:1].upper()
    if letter not in BONN_SETS:
        raise ValueError(f"Invalid Bonn file name {Path(path).name!r}: expected a set letter "
                         f"{''.join(BONN_SETS)} first")
    return letter


def bonn_segments(root: str | Path) -> list[tuple[Path, str]]:
    """All Bonn segments under ``root`` (folders ``Z/``, ``O/``, ...): ``[(path, set), ...]``."""
    out = []
    for letter in BONN_SETS:
        for p in sorted((Path(root) / letter).glob("*.[tT][xX][tT]")):
            out.append((p, bonn_set(p)))
    return out


def read_bonn(path: str | Path) -> Recording:
    """One Bonn segment: ``(4097, 1)`` µV at 173.61 Hz; ``name`` is the file stem."""
    x = np.loadtxt(path, dtype=np.float64, ndmin=1)  # (t,) µV
    return Recording(
        signal=x.astype(np.float32)[:, None],  # (t, 1) µV
        sample_rate=BONN_SAMPLE_RATE,
        channels=["EEG"],
        name=Path(path).stem,
    )


# --- CHB-MIT -------------------------------------------------------------------------------

def chbmit_channels(summary: str | Path) -> list[str]:
    """Channel names of the first montage listed in a CHB-MIT ``chbNN-summary.txt``."""
    names: list[str] = []
    for line in Path(summary).read_text().splitlines():
        m = re.match(r"\s*Channel\s+(\d+)\s*:\s*(\S+)", line)
        if m:
            if int(m.group(1)) == 1 and names:
                break  # a later montage change
            names.append(m.group(2))
    if not names:
        raise ValueError(f"No channel list in {summary}")
    return names


def chbmit_seizures(summary: str | Path) -> dict[str, list[tuple[float, float]]]:
    """Seizures per EDF file from a CHB-MIT summary: ``{"chb01_03.edf": [(2996.0, 3036.0)]}``.

    Times are seconds from the start of that file; files without seizures map to ``[]``.
    """
    out: dict[str, list[tuple[float, float]]] = {}
    current = None
    start = None
    for line in Path(summary).read_text().splitlines():
        if m := re.match(r"\s*File Name:\s*(\S+)", line):
            current = m.group(1)
            out[current] = []
        elif m := re.match(r"\s*Seizure(?: \d+)? Start Time:\s*([\d.]+)\s*seconds", line):
            start = float(m.group(1))
        elif (m := re.match(r"\s*Seizure(?: \d+)? End Time:\s*([\d.]+)\s*seconds", line)) and \
                current is not None and start is not None:
            out[current].append((start, float(m.group(1))))
            start = None
    return out


def read_chbmit_npy(path: str | Path, channels: list[str] | None = None) -> Recording:
    """A CHB-MIT ``.npy`` excerpt (``(c, t)`` float64 µV) as ``(t, c)`` µV at 256 Hz.

    Parameters
    ----------
    channels : list of str, optional
        Names of the ``c`` rows; default :data:`CHBMIT_CHB01_CHANNELS` (use
        :func:`chbmit_channels` for other patients).
    """
    x = np.load(path)  # (c, t) µV
    names = list(channels if channels is not None else CHBMIT_CHB01_CHANNELS)
    if x.ndim != 2 or x.shape[0] != len(names):
        raise ValueError(f"Invalid CHB-MIT excerpt {path}: expected ({len(names)}, t), got {x.shape}")
    return Recording(
        signal=np.ascontiguousarray(x.T, dtype=np.float32),  # (t, c) µV
        sample_rate=CHBMIT_SAMPLE_RATE,
        channels=names,
        name=Path(path).stem,
    )


# --- EDF -----------------------------------------------------------------------------------

def read_edf(path: str | Path, channels: list[str] | None = None) -> Recording:
    """An EDF/EDF+ file through MNE, in µV.

    Parameters
    ----------
    channels : list of str, optional
        Channel names (as MNE reports them) to keep, in this order; default all.

    Notes
    -----
    All channels must share one sampling rate (MNE resamples otherwise; we refuse).
    """
    import mne

    raw = mne.io.read_raw_edf(path, preload=False, verbose="error")
    names = list(channels) if channels is not None else list(raw.ch_names)
    missing = [c for c in names if c not in raw.ch_names]
    if missing:
        raise KeyError(f"Unknown channels {missing} in {path}: expected some of {raw.ch_names}")
    x = raw.get_data(picks=names, units="uV")  # (c, t) µV
    return Recording(
        signal=np.ascontiguousarray(x.T, dtype=np.float32),  # (t, c) µV
        sample_rate=float(raw.info["sfreq"]),
        channels=names,
        name=Path(path).stem,
    )


def read_edf_annotations(path: str | Path) -> list[tuple[float, float, str]]:
    """EDF+ annotations: ``[(onset_s, duration_s, text), ...]`` as stored (not clipped)."""
    import edfio

    edf = edfio.read_edf(path)
    return [(float(a.onset), float(a.duration or 0.0), a.text) for a in edf.annotations]


# --- UCI EEG Eye State ---------------------------------------------------------------------

def read_uci_eye_state(path: str | Path) -> tuple[Recording, np.ndarray]:
    """The UCI EEG Eye State ARFF file.

    Returns
    -------
    recording : Recording
        ``(t, 14)`` µV at 128 Hz (raw Emotiv values, ~4200 µV offset, outliers kept).
    eyes_closed : np.ndarray
        ``(t,)`` int8, 1 eyes closed, 0 open (:data:`~models.data.labels.UCI_EYE_STATES`).
    """
    from scipy.io import arff

    data, meta = arff.loadarff(str(path))
    names = [n for n in meta.names() if n != "eyeDetection"]
    x = np.stack([data[n].astype(np.float64) for n in names], axis=1)  # (t, 14) µV
    y = np.array([int(v) for v in data["eyeDetection"]], dtype=np.int8)  # (t,)
    if not set(np.unique(y)) <= set(UCI_EYE_STATES):
        raise ValueError(f"Invalid eyeDetection values in {path}: {np.unique(y)}")
    rec = Recording(signal=x.astype(np.float32), sample_rate=UCI_EYE_SAMPLE_RATE,
                    channels=names, name=Path(path).stem)
    return rec, y
