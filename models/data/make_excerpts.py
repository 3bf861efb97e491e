"""Cut the real excerpts shipped in ``clients/excerpts`` from the full datasets.

Run ``python -m models.data.make_excerpts`` (needs ``datasets_dir()``); it rewrites the
excerpt files. What each shows is in ``clients/excerpts/README.md`` and
:data:`models.data.excerpts.CATALOGUE`.

WFDB excerpts keep the source's digital samples, format, gains and baselines (physical
values are bit-identical to the source's) and its annotations, shifted to the excerpt's
start; the rhythm in force at the start is written as a ``+`` at sample 0. The header
carries ``vigil-excerpt source=... sampfrom=... sampto=...`` (see
:func:`models.data.ecg.excerpt_source`).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import wfdb

from .ecg import clean_aux, excerpt_comment
from .excerpts import excerpts_dir
from .labels import RHYTHM_SYMBOL
from .paths import require_dataset

# (source dataset, record, excerpt name, sampfrom, sampto)
WFDB_CUTS = (
    ("mitdb", "201", "mitdb_201_af", 156_000, 210_000),
    ("mitdb", "203", "mitdb_203_vt", 90_000, 144_000),
    ("nstdb", "118e24", "nstdb_118e24_noise", 97_200, 162_000),
)
# CinC 2015 records: the ECG leads only (channels), no annotation file (the alarm is in the header)
CINC2015_CUTS = (
    ("cinc2015", "v797l", "cinc2015_v797l_vt", 60_000, 75_000, [0, 1]),
    ("cinc2015", "v831l", "cinc2015_v831l_vt", 60_000, 75_000, [0, 1]),
)
EDF_CUT = ("eegmmidb", "S001R01.edf", "eegmmidb_S001R01_20s.edf", 0.0, 20.0)  # seconds
COPIES = (
    ("bonn", "S/S001.txt", "S001.txt"),
    ("bonn", "Z/Z001.txt", "Z001.txt"),
    ("chbmit", "chb01/ictal/chb01_03_ictal.npy", "chb01_03_ictal.npy"),
    ("chbmit", "chb01/preictal_10s/chb01_03_preictal10s.npy", "chb01_03_preictal10s.npy"),
)


def cut_wfdb(src: Path, source: str, out_dir: Path, name: str, sampfrom: int, sampto: int,
             channels: list[int] | None = None) -> None:
    """Write ``out_dir/name.{hea,dat,atr}`` holding samples ``[sampfrom, sampto)`` of ``src``
    (``channels``: those only, and no annotations: a CinC 2015 record has none)."""
    rec = wfdb.rdrecord(str(src), sampfrom=sampfrom, sampto=sampto, physical=False, channels=channels)
    wfdb.wrsamp(
        name,
        fs=rec.fs,
        units=rec.units,
        sig_name=rec.sig_name,
        d_signal=rec.d_signal,  # (t, c) adu, as stored
        fmt=rec.fmt,
        adc_gain=rec.adc_gain,
        baseline=rec.baseline,
        comments=list(rec.comments) + [excerpt_comment(source, sampfrom, sampto)],
        write_dir=str(out_dir),
    )
    if channels is not None:
        return
    ann = wfdb.rdann(str(src), "atr")
    aux = [clean_aux(a) for a in ann.aux_note]
    inside = [i for i, s in enumerate(ann.sample) if sampfrom <= s < sampto]
    before = [i for i, s in enumerate(ann.sample) if s < sampfrom and ann.symbol[i] == RHYTHM_SYMBOL]
    samples = [int(ann.sample[i]) - sampfrom for i in inside]
    symbols = [ann.symbol[i] for i in inside]
    subtype = [int(ann.subtype[i]) for i in inside]
    chan = [int(ann.chan[i]) for i in inside]
    num = [int(ann.num[i]) for i in inside]
    notes = [aux[i] for i in inside]
    if before and not (samples and samples[0] == 0 and symbols[0] == RHYTHM_SYMBOL):
        samples.insert(0, 0)
        symbols.insert(0, RHYTHM_SYMBOL)
        subtype.insert(0, 0)
        chan.insert(0, 0)
        num.insert(0, 0)
        notes.insert(0, aux[before[-1]])
    wfdb.wrann(
        name, "atr", np.asarray(samples, dtype=np.int64), symbol=symbols,
        subtype=np.asarray(subtype), chan=np.asarray(chan), num=np.asarray(num),
        aux_note=notes, fs=rec.fs, write_dir=str(out_dir),
    )


def cut_edf(src: Path, dst: Path, start_s: float, stop_s: float) -> None:
    """Write seconds ``[start_s, stop_s)`` of an EDF(+) file, digital values unchanged."""
    import edfio

    edf = edfio.read_edf(src)
    edf.slice_between_seconds(start_s, stop_s)
    # edfio keeps annotations' durations (S001R01's T0 lasts 60.2 s); clip them to the cut.
    length = stop_s - start_s
    edf.set_annotations([
        edfio.EdfAnnotation(a.onset, None if a.duration is None else
                            min(a.duration, length - a.onset), a.text)
        for a in edf.annotations if a.onset < length
    ])
    edf.write(dst)


def main() -> None:
    out = excerpts_dir()
    out.mkdir(parents=True, exist_ok=True)
    for dataset, record, name, a, b in WFDB_CUTS:
        cut_wfdb(require_dataset(dataset) / record, f"{dataset}/{record}", out, name, a, b)
    for dataset, record, name, a, b, channels in CINC2015_CUTS:
        cut_wfdb(require_dataset(dataset) / record, f"{dataset}/{record}", out, name, a, b, channels)
    dataset, record, name, a, b = EDF_CUT
    cut_edf(require_dataset(dataset) / record, out / name, a, b)
    for dataset, rel, name in COPIES:
        shutil.copyfile(require_dataset(dataset) / rel, out / name)
    total = sum(p.stat().st_size for p in out.iterdir() if p.is_file())
    print(f"wrote {out} ({total / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
