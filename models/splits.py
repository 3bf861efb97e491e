"""The record/patient splits of the training data, defined once (never by window).

Training, calibration and evaluation all read the split from here; the trainer writes it into
the checkpoint metadata and the model card, so a checkpoint says which records it never saw.

ECG
---
- MIT-BIH DS1: test 201 (AF), 203 (AF + VT), 223 (VT); validation 205 (VT), 208; train the
  other 17 (207 holds the only ventricular flutter, 215/106 short VT runs).
- CinC 2017: by record, a stable hash of the name: 20 % test, 10 % validation, 70 % train.
- CinC 2015: by record, alternating within each class (true/false) in name order: half train,
  half test (the alarm score is reported on the test half). ``models/vt_cv.py`` also scores it
  by 5-fold cross-validation over the records, retraining the network per fold
  (:func:`cinc2015_folds`).
- CUDB cu01: train (the only VF onset record).
- NSTDB: ``bw`` and ``ma`` are training noise; 118e00/e12/e24 are test only.

EEG
---
- Bonn: by segment number (patient ids are not published): 001-050 train, 051-060
  validation, 061-070 test, in every set.
- CHB-MIT chb01 (one patient): by seizure: 03 04 15 16 train, 18 validation, 21 26 test.
- EEGMMIDB S001: runs R01 R03 R04 train, R05 validation, R02 R06 test (background for added
  artifacts).
- Artifact types: eye blinks, EMG bursts and flat channels are trained on; electrode pops and
  motion are held out for evaluation; line noise is removed by the preprocessor's notch and is
  a negative (target 0) everywhere.
"""

from __future__ import annotations

import zlib
from collections.abc import Collection

TRAIN, VAL, TEST = "train", "val", "test"

MITDB_TEST = ("201", "203", "223")
MITDB_VAL = ("205", "208")
MITDB_ALL = ("101", "106", "108", "109", "112", "114", "115", "116", "118", "119", "122", "124",
             "201", "203", "205", "207", "208", "209", "215", "220", "223", "230")
NSTDB_TRAIN_NOISE = ("bw", "ma")
NSTDB_TEST = ("118e00", "118e12", "118e24")
CUDB_TRAIN = ("cu01",)

BONN_TRAIN, BONN_VAL = range(1, 51), range(51, 61)  # segment numbers; the rest (61-70) test
CHBMIT_SEIZURES = {TRAIN: ("03", "04", "15", "16"), VAL: ("18",), TEST: ("21", "26")}
EEGMMIDB_RUNS = {TRAIN: ("R01", "R03", "R04"), VAL: ("R05",), TEST: ("R02", "R06")}

ARTIFACTS_TRAIN = ("blink", "emg", "flat")
ARTIFACTS_HELD_OUT = ("pop", "motion")
ARTIFACTS_NEGATIVE = ("line",)


def mitdb_split(record: str) -> str:
    """``train``, ``val`` or ``test`` for a MIT-BIH record name."""
    return TEST if record in MITDB_TEST else VAL if record in MITDB_VAL else TRAIN


def cinc2017_split(record: str) -> str:
    """``train``/``val``/``test`` for a CinC 2017 record, from a stable hash of its name."""
    u = zlib.crc32(record.encode()) % 100
    return TEST if u < 20 else VAL if u < 30 else TRAIN


def cinc2015_split(alarms: list[tuple[str, bool]], test: Collection[str] | None = None) -> dict[str, str]:
    """Record -> ``train``/``test``: alternate within each class in name order (half each); with
    ``test`` (a cross-validation fold, :func:`cinc2015_folds`), those records are ``test`` and
    every other one ``train``."""
    if test is not None:
        return {n: TEST if n in test else TRAIN for n, _ in alarms}
    out = {}
    for cls in (True, False):
        names = sorted(n for n, t in alarms if t == cls)
        out.update({n: TRAIN if i % 2 == 0 else TEST for i, n in enumerate(names)})
    return out


def cinc2015_folds(alarms: list[tuple[str, bool]], k: int = 5) -> list[tuple[str, ...]]:
    """``k`` cross-validation folds of CinC 2015 records, stratified: within each class (true,
    false alarm) in name order, record ``i`` goes to fold ``i % k``."""
    folds: list[list[str]] = [[] for _ in range(k)]
    for cls in (True, False):
        for i, n in enumerate(sorted(n for n, t in alarms if t == cls)):
            folds[i % k].append(n)
    return [tuple(sorted(f)) for f in folds]


def bonn_split(segment: int) -> str:
    """``train``/``val``/``test`` for a Bonn segment number (1-70)."""
    return TRAIN if segment in BONN_TRAIN else VAL if segment in BONN_VAL else TEST


def chbmit_split(seizure: str) -> str:
    """``train``/``val``/``test`` for a chb01 seizure file number (``"03"``)."""
    for part, ids in CHBMIT_SEIZURES.items():
        if seizure in ids:
            return part
    return TEST


def describe(modality: str, cinc2015_test: Collection[str] = ()) -> dict:
    """The split as plain data, for checkpoint metadata and model cards (``cinc2015_test``: the
    CinC 2015 records of a cross-validation fold, held out; the others trained on)."""
    if modality == "ecg":
        return {
            "unit": "record",
            "mitdb": {TEST: list(MITDB_TEST), VAL: list(MITDB_VAL),
                      TRAIN: [r for r in MITDB_ALL if r not in MITDB_TEST + MITDB_VAL]},
            "cinc2017": "by record: crc32(name) % 100 < 20 test, < 30 validation, else train",
            "cinc2015": ({TEST: sorted(cinc2015_test), TRAIN: "every other record (a cross-validation fold)"}
                         if cinc2015_test else
                         "by record: alternate within true/false alarms in name order; even train, odd test"),
            "cudb": {TRAIN: list(CUDB_TRAIN)},
            "nstdb": {TRAIN: list(NSTDB_TRAIN_NOISE), TEST: list(NSTDB_TEST)},
        }
    return {
        "unit": "segment (Bonn), seizure (CHB-MIT chb01), run (EEGMMIDB S001)",
        "bonn": {TRAIN: "001-050", VAL: "051-060", TEST: "061-070"},
        "chbmit_chb01_seizures": {k: list(v) for k, v in CHBMIT_SEIZURES.items()},
        "eegmmidb_S001": {k: list(v) for k, v in EEGMMIDB_RUNS.items()},
        "artifacts": {"train": list(ARTIFACTS_TRAIN), "held_out": list(ARTIFACTS_HELD_OUT),
                      "negative": list(ARTIFACTS_NEGATIVE)},
    }
