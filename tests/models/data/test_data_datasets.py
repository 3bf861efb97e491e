"""Readers and reference episodes on the full datasets (``-m datasets``; skipped without them)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import wfdb

from models.data import ecg, eeg
from models.data.episodes import af_episodes, short_vt_runs, vt_episodes
from models.data.excerpts import excerpt_path
from models.data.labels import BONN_SETS, CINC2017_CLASSES, RHYTHM_VF
from models.data.paths import datasets_dir

pytestmark = pytest.mark.datasets


def dataset(sub: str) -> Path:
    path = datasets_dir() / sub
    if not path.is_dir():
        pytest.skip(f"dataset {sub} not found under {datasets_dir()} (set VIGIL_DATASETS)")
    return path


# --- MIT-BIH -------------------------------------------------------------------------------

def test_mitdb_rhythm_labels_are_clean():
    root = dataset("mitdb")
    labels = Counter()
    for hea in sorted(root.glob("*.hea")):
        for label, start, end in ecg.mitdb_rhythms(hea):
            assert label.startswith("(") and "\x00" not in label and end > start
            labels[label] += 1
    assert {"(N", "(AFIB", "(AFL", "(VT", "(VFL"} <= set(labels)


def test_mitdb_af_and_vt_reference_on_201_and_203(capsys):
    root = dataset("mitdb")
    found = {}
    for record in ("201", "203"):
        rhythms = ecg.mitdb_rhythms(root / record)
        ref = af_episodes(rhythms, 360.0, ecg.record_length(root / record))
        samples, symbols = ecg.mitdb_beats(root / record)
        found[record] = (ref, vt_episodes(samples, symbols, 360.0),
                         short_vt_runs(samples, symbols, 360.0))
        with capsys.disabled():
            print(f"\nmitdb {record}: AF episodes {ref.episodes}, AFL {ref.neither}, "
                  f"VT>=5 {found[record][1]}, 3-4 beat runs {len(found[record][2])}")
    af201, vt201, short201 = found["201"]
    # (AFIB 60-136226 clipped to 108000 (78.4 s), 171815-185068 (36.8 s), 574742-643411.
    assert af201.episodes == [(108_000, 136_226), (171_815, 185_068), (574_742, 643_411)]
    assert vt201 == [] and short201 == []
    af203, vt203, short203 = found["203"]
    # AF with VT runs and a (T stretch (all < 10 s), then flutter 273375-386962, then AF.
    assert af203.episodes == [(108_000, 272_866), (387_405, 650_000)]
    assert af203.neither == [(273_375, 386_962)]
    assert vt203 == [(109_377, 110_456), (578_000, 578_718)]  # 9 and 7 beats
    assert len(short203) == 19  # the other 19 (VT annotations are 3-4 beats


def test_excerpts_match_their_sources():
    for name in ("mitdb_201_af", "mitdb_203_vt", "nstdb_118e24_noise"):
        path = excerpt_path(name)
        source, a, b = ecg.excerpt_source(path)
        dataset(source.split("/")[0])
        src = datasets_dir() / source
        np.testing.assert_array_equal(ecg.read_wfdb(path).signal,
                                      ecg.read_wfdb(src, sampfrom=a, sampto=b).signal)
        s, y = ecg.mitdb_beats(path)
        s0, y0 = ecg.mitdb_beats(src)
        keep = (s0 >= a) & (s0 < b)
        np.testing.assert_array_equal(s, s0[keep] - a)
        assert y == [v for v, k in zip(y0, keep) if k]
    full = eeg.read_edf(dataset("eegmmidb") / "S001R01.edf")
    cut = eeg.read_edf(excerpt_path("eegmmidb_S001R01"))
    np.testing.assert_array_equal(cut.signal, full.signal[: cut.n_samples])


# --- NSTDB, CUDB ---------------------------------------------------------------------------

@pytest.mark.parametrize("record", ["118e00", "118e24"])
def test_nstdb_noise_blocks_against_clean_118(record):
    clean = wfdb.rdrecord(str(dataset("mitdb") / "118"), physical=False).d_signal.astype(int)
    noisy = wfdb.rdrecord(str(dataset("nstdb") / record), physical=False).d_signal.astype(int)
    diff = noisy - clean  # (t, 2) adu: the added noise plus a constant
    n = len(diff)
    blocks = ecg.nstdb_noise_blocks(n)
    assert blocks[0] == (108_000, 151_200) and blocks[-1] == (626_400, 650_000)
    edges = [0] + [x for b in blocks for x in b] + [n]
    m = 3  # edge slack, samples
    for k in range(0, len(edges) - 1, 2):  # clean stretches: constant difference
        seg = diff[edges[k] + (m if k else 0): edges[k + 1] - m]
        if len(seg) == 0:  # the record ends inside a noise block
            continue
        assert np.all(seg == seg[0]), (record, edges[k], edges[k + 1])
    for s, e in blocks:  # noise: never constant for long
        assert np.unique(diff[s + m: e - m, 0]).size > 100
    assert ecg.nstdb_snr_db(dataset("nstdb") / record) == float(record[-2:])


def test_nstdb_noise_records():
    for kind in ("bw", "ma"):
        rec = ecg.read_nstdb_noise(dataset("nstdb"), kind)
        assert rec.signal.shape == (650_000, 2) and rec.channels == ["noise1", "noise2"]
        assert 50 < np.std(rec.signal) < 1000  # µV


def test_cudb_vf_onset():
    path = dataset("cudb") / "cu01"
    assert ecg.cudb_vf_onset(path) == 53_541
    assert ecg.mitdb_rhythms(path) == [(RHYTHM_VF, 53_541, 127_232)]
    ann = ecg.read_annotations(path)
    assert [(int(s), y) for s, y in zip(ann.sample, ann.symbol) if y in "[]"] == [
        (53_546, "["), (127_231, "]")]
    rec = ecg.read_wfdb(path)
    assert rec.sample_rate == 250.0 and rec.signal.shape == (127_232, 1)


# --- CinC ----------------------------------------------------------------------------------

def test_cinc2017():
    root = dataset("cinc2017")
    records = ecg.cinc2017_records(root)
    assert len(records) == 4000 and {lab for _, lab in records} == set(CINC2017_CLASSES)
    rec = ecg.read_cinc2017(root, records[0][0])
    assert rec.sample_rate == 300.0 and rec.signal.shape[1] == 1
    assert 9 * 300 <= rec.n_samples <= 61 * 300


def test_cinc2015():
    root = dataset("cinc2015")
    alarms = ecg.cinc2015_alarms(root)
    assert len(alarms) == 60 and sum(t for _, t in alarms) == 30
    for name, _ in alarms[:10]:
        rec = ecg.read_cinc2015_ecg(root / name)
        assert rec.sample_rate == 250.0 and len(rec.channels) == 2
        assert not {"PLETH", "ABP", "RESP"} & set(rec.channels)
        assert rec.n_samples == (75_000 if name.endswith("s") else 82_500)


# --- EEG -----------------------------------------------------------------------------------

def test_bonn():
    segments = eeg.bonn_segments(dataset("bonn"))
    assert Counter(letter for _, letter in segments) == {k: 70 for k in BONN_SETS}
    for path, _ in segments[::35]:
        assert eeg.read_bonn(path).signal.shape == (4097, 1)


def test_chbmit():
    root = dataset("chbmit") / "chb01"
    summary = root / "chb01-summary.txt"
    assert eeg.chbmit_channels(summary) == list(eeg.CHBMIT_CHB01_CHANNELS)
    seizures = {k: v for k, v in eeg.chbmit_seizures(summary).items() if v}
    assert len(seizures) == 7 and seizures["chb01_03.edf"] == [(2996.0, 3036.0)]
    for edf, events in seizures.items():  # the WFDB .seizures files agree with the summary
        ann = wfdb.rdann(str(root / edf), "seizures")
        assert [tuple(ann.sample[i:i + 2] / 256.0) for i in range(0, len(ann.sample), 2)] == events
    for npy in sorted(root.glob("*/*.npy")):
        assert eeg.read_chbmit_npy(npy).signal.shape == (2561, 23)


def test_eegmmidb():
    rec = eeg.read_edf(dataset("eegmmidb") / "S001R01.edf")
    assert rec.signal.shape == (9600, 64) and rec.sample_rate == 160.0
    assert eeg.read_edf_annotations(dataset("eegmmidb") / "S001R01.edf") == [(0.0, 60.2, "T0")]


def test_uci_eye_state():
    rec, closed = eeg.read_uci_eye_state(dataset("uci_eye_state") / "EEG_Eye_State.arff")
    assert rec.signal.shape == (14_980, 14) and rec.sample_rate == 128.0
    assert set(np.unique(closed)) == {0, 1} and closed.shape == (14_980,)
    assert np.median(rec.signal) > 3000  # raw Emotiv values carry a ~4200 µV offset
