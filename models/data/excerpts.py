"""Real excerpts shipped with the project (``clients/excerpts``), for the demo and tests.

Sources, licences and sample ranges are in ``clients/excerpts/README.md``; the files are cut
by :mod:`models.data.make_excerpts`. Sample indices below are in the excerpt's own samples.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .paths import REPO_ROOT


@dataclass(frozen=True)
class Excerpt:
    """One shipped excerpt."""

    name: str  # key, e.g. "mitdb_201_af"
    modality: str  # "ecg" or "eeg"
    file: str  # file in clients/excerpts (WFDB: the .hea; .dat/.atr sit beside it)
    source: str  # dataset/record and the range it was cut from
    shows: str  # what a reader should find in it


CATALOGUE: dict[str, Excerpt] = {
    e.name: e
    for e in (
        Excerpt("mitdb_201_af", "ecg", "mitdb_201_af.hea",
                "mitdb 201, samples 156000-210000 (433.3-583.3 s), 360 Hz, MLII + V1",
                "AF onset: (N until 15815, (AFIB 15815-29068 (36.8 s, one reference episode "
                "with learning_s=0), then (NOD, (N, ventricular trigeminy (T from 43610"),
        Excerpt("mitdb_203_vt", "ecg", "mitdb_203_vt.hea",
                "mitdb 203, samples 90000-144000 (250.0-400.0 s), 360 Hz, MLII + V1",
                "AF with ventricular runs: a 9-beat VT episode 19377-20456 (160 bpm) and "
                "3- and 4-beat runs 6885-7152 and 18616-18986; one AF episode 0-54000 (learning_s=0)"),
        Excerpt("nstdb_118e24_noise", "ecg", "nstdb_118e24_noise.hea",
                "nstdb 118e24, samples 97200-162000 (4:30-7:30), 360 Hz, MLII + V1",
                "electrode-motion noise (24 dB SNR) in 10800-54000 (5:00-7:00 of the source), "
                "clean before and after; RBBB beats of record 118"),
        Excerpt("cinc2015_v797l_vt", "ecg", "cinc2015_v797l_vt.hea",
                "cinc2015 v797l (true VT alarm at 300 s), samples 60000-75000 (240-300 s), 250 Hz, II + V",
                "sinus rhythm, then VT of broad complexes (~130 bpm) from ~57.3 s to the end; lead II's QRS "
                "detector misses about every other VT complex, lead V's finds them all"),
        Excerpt("cinc2015_v831l_vt", "ecg", "cinc2015_v831l_vt.hea",
                "cinc2015 v831l (true VT alarm at 300 s), samples 60000-75000 (240-300 s), 250 Hz, II + V",
                "sinus rhythm at about 78 bpm, then 9 broad complexes at about 140 bpm from ~49.9 s to "
                "~53.4 s, then sinus again; the beat classifier leaves them under its threshold, the "
                "regular-unlike rule finds the run (models/beats.py)"),
        Excerpt("bonn_S001", "eeg", "S001.txt", "Bonn set S, segment 001, 173.61 Hz",
                "23.6 s of intracranial ictal EEG (seizure)"),
        Excerpt("bonn_Z001", "eeg", "Z001.txt", "Bonn set Z, segment 001, 173.61 Hz",
                "23.6 s of healthy surface EEG, eyes open"),
        Excerpt("chbmit_chb01_03_ictal", "eeg", "chb01_03_ictal.npy",
                "CHB-MIT chb01_03, 10 s inside the seizure at 2996-3036 s, 256 Hz, 23 ch",
                "ictal scalp EEG (rhythmic discharge)"),
        Excerpt("chbmit_chb01_03_preictal", "eeg", "chb01_03_preictal10s.npy",
                "CHB-MIT chb01_03, 10 s before the seizure at 2996 s, 256 Hz, 23 ch",
                "pre-ictal scalp EEG of the same seizure"),
        Excerpt("eegmmidb_S001R01", "eeg", "eegmmidb_S001R01_20s.edf",
                "EEGMMIDB S001R01, 0-20 s, 160 Hz, 64 ch, EDF+",
                "resting baseline, eyes open (annotation T0)"),
    )
}


def excerpts_dir() -> Path:
    """Folder of the shipped excerpts.

    The installed package's ``clients/excerpts`` when ``clients`` resolves to a real folder,
    else ``<repo root>/clients/excerpts``.
    """
    try:
        from importlib.resources import files

        path = Path(str(files("clients") / "excerpts"))
        if path.is_dir():
            return path
    except (ModuleNotFoundError, TypeError):
        pass
    return REPO_ROOT / "clients" / "excerpts"


def excerpt_path(name: str) -> Path:
    """Path of a shipped excerpt file, by file name (``"mitdb_201_af.hea"``) or catalogue name.

    Raises
    ------
    FileNotFoundError
        No such file in the excerpts folder.
    """
    file = CATALOGUE[name].file if name in CATALOGUE else name
    path = excerpts_dir() / file
    if not path.exists():
        raise FileNotFoundError(f"Excerpt {name} not found: expected {path}")
    return path
