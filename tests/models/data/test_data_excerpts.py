"""Readers and reference episodes on the excerpts shipped in clients/excerpts (always run)."""

from __future__ import annotations

import numpy as np
import pytest
import wfdb

from models.data import ecg, eeg
from models.data.episodes import af_episodes, short_vt_runs, vt_episodes
from models.data.excerpts import CATALOGUE, excerpt_path, excerpts_dir
from models.data.labels import RHYTHM_AF, RHYTHM_NORMAL, RHYTHM_VT
from models.data.paths import DATASETS_ENV, datasets_dir, require_dataset

MB = 1024 * 1024


def test_catalogue_files_exist_and_total_size_is_small():
    for name, e in CATALOGUE.items():
        path = excerpt_path(name)
        assert path.name == e.file
        if path.suffix == ".hea":   # (a CinC 2015 record has no annotation file: its alarm is in the header)
            assert path.with_suffix(".dat").exists()
            assert path.with_suffix(".atr").exists() == (not name.startswith("cinc2015_"))
    total = sum(p.stat().st_size for p in excerpts_dir().iterdir() if p.is_file())
    assert total < 3 * MB
    assert (excerpts_dir() / "README.md").exists()


def test_excerpt_path_errors_clearly():
    with pytest.raises(FileNotFoundError, match="nope.hea"):
        excerpt_path("nope.hea")


def test_datasets_dir_env_and_require(tmp_path, monkeypatch):
    monkeypatch.setenv(DATASETS_ENV, str(tmp_path))
    assert datasets_dir() == tmp_path
    (tmp_path / "mitdb").mkdir()
    assert require_dataset("mitdb") == tmp_path / "mitdb"
    with pytest.raises(FileNotFoundError, match=f"Dataset cudb not found under .*{DATASETS_ENV}"):
        require_dataset("cudb")
    monkeypatch.delenv(DATASETS_ENV)
    assert datasets_dir().parts[-2:] == ("shared", "data")


def test_cinc2015_v797l_excerpt():
    path = excerpt_path("cinc2015_v797l_vt")
    rec = ecg.read_wfdb(path)
    assert rec.signal.shape == (15_000, 2) and rec.sample_rate == 250.0 and rec.channels == ["II", "V"]
    assert 50 < np.nanstd(rec.signal[:, 0]) < 5000  # µV
    assert ecg.excerpt_source(path) == ("cinc2015/v797l", 60_000, 75_000)
    assert "True alarm" in wfdb.rdheader(str(path.with_suffix(""))).comments


def test_mitdb_201_af_onset():
    path = excerpt_path("mitdb_201_af")
    rec = ecg.read_wfdb(path)
    assert rec.signal.shape == (54_000, 2) and rec.signal.dtype == np.float32
    assert rec.sample_rate == 360.0 and rec.channels == ["MLII", "V1"]
    assert 50 < np.nanstd(rec.signal[:, 0]) < 1000  # µV, not mV
    assert ecg.excerpt_source(path) == ("mitdb/201", 156_000, 210_000)
    rhythms = ecg.mitdb_rhythms(path)
    assert rhythms[0] == (RHYTHM_NORMAL, 0, 15_815)  # starting rhythm added at sample 0
    assert rhythms[1] == (RHYTHM_AF, 15_815, 29_068)
    assert rhythms[-1][2] == 54_000
    samples, symbols = ecg.mitdb_beats(path)
    assert samples.dtype == np.int64 and len(samples) == len(symbols) == 150
    assert "+" not in symbols
    ref = af_episodes(rhythms, rec.sample_rate, rec.n_samples, learning_s=0)
    assert ref.episodes == [(15_815, 29_068)] and ref.neither == []
    # With the 5-min learning period the whole 150-s excerpt is unscored.
    assert af_episodes(rhythms, rec.sample_rate, rec.n_samples).episodes == []


def test_mitdb_203_vt_runs():
    path = excerpt_path("mitdb_203_vt")
    rec = ecg.read_wfdb(path, leads=["V1"])
    assert rec.signal.shape == (54_000, 1) and rec.channels == ["V1"]
    samples, symbols = ecg.mitdb_beats(path)
    assert vt_episodes(samples, symbols, 360.0) == [(19_377, 20_456)]  # 9 beats, 160 bpm
    assert short_vt_runs(samples, symbols, 360.0) == [(6_885, 7_152), (18_616, 18_986)]
    rhythms = ecg.mitdb_rhythms(path)
    assert [r for r in rhythms if r[0] == RHYTHM_VT] == [
        (RHYTHM_VT, 6_818, 7_315), (RHYTHM_VT, 18_537, 19_079), (RHYTHM_VT, 19_293, 20_710)]
    # VT runs are < 10 s gaps in the AF: one AF episode over the whole excerpt.
    assert af_episodes(rhythms, 360.0, rec.n_samples, learning_s=0).episodes == [(0, 54_000)]


def test_nstdb_118e24_noise_blocks():
    path = excerpt_path("nstdb_118e24_noise")
    rec = ecg.read_wfdb(path)
    src, a, b = ecg.excerpt_source(path)
    assert (src, a, b) == ("nstdb/118e24", 97_200, 162_000)
    assert ecg.nstdb_snr_db(path) == 24.0
    blocks = ecg.nstdb_noise_blocks(rec.n_samples, rec.sample_rate, offset=a)
    assert blocks == [(10_800, 54_000)]
    assert ecg.mitdb_rhythms(path) == [(RHYTHM_NORMAL, 0, 64_800)]
    # Electrode-motion noise shows as more power at 1-10 Hz... loosely: more sample-to-sample
    # variation of the beat-free baseline. Compare robust spread of first differences.
    d = np.diff(rec.signal[:, 0])
    noisy, clean = d[blocks[0][0]:blocks[0][1]], np.r_[d[:blocks[0][0]], d[blocks[0][1]:]]
    assert np.percentile(np.abs(noisy), 50) > np.percentile(np.abs(clean), 50)


def test_bonn_segments():
    s = eeg.read_bonn(excerpt_path("bonn_S001"))
    z = eeg.read_bonn(excerpt_path("bonn_Z001"))
    for r in (s, z):
        assert r.signal.shape == (4097, 1) and r.sample_rate == 173.61
    assert eeg.bonn_set(excerpt_path("bonn_S001")) == "S"
    assert eeg.bonn_set(excerpt_path("bonn_Z001")) == "Z"
    assert s.signal[:3, 0].tolist() == [100.0, 124.0, 153.0]
    assert np.std(s.signal) > 2 * np.std(z.signal)  # ictal EEG is much larger


def test_chbmit_npy():
    ictal = eeg.read_chbmit_npy(excerpt_path("chbmit_chb01_03_ictal"))
    pre = eeg.read_chbmit_npy(excerpt_path("chbmit_chb01_03_preictal"))
    for r in (ictal, pre):
        assert r.signal.shape == (2561, 23) and r.sample_rate == 256.0
        assert r.channels[0] == "FP1-F7" and r.channels.count("T8-P8") == 2
    raw = np.load(excerpt_path("chbmit_chb01_03_ictal"))
    np.testing.assert_allclose(ictal.signal, raw.T, rtol=1e-6, atol=1e-3)
    assert np.std(ictal.signal) > 2 * np.std(pre.signal)


def test_eegmmidb_edf_excerpt():
    path = excerpt_path("eegmmidb_S001R01")
    rec = eeg.read_edf(path)
    assert rec.signal.shape == (3200, 64) and rec.sample_rate == 160.0
    assert rec.channels[0] == "Fc5."
    assert 5 < np.std(rec.signal) < 500  # µV
    assert np.all(rec.signal == np.round(rec.signal))  # 1 µV per digital step
    assert eeg.read_edf_annotations(path) == [(0.0, 20.0, "T0")]
    two = eeg.read_edf(path, channels=["Cz..", "Fc5."])
    np.testing.assert_array_equal(two.signal[:, 1], rec.signal[:, 0])
