"""Per-token targets from hand-made annotations (models.targets) and window batching."""

from __future__ import annotations

import numpy as np
import pytest

from models.config import ecg_config, eeg_config
from models.datasets import Example, collate, sample_window
from models.labels import AF, ECG_LABELS, NOISE, NORMAL, SEIZURE, VF, VT
from models.targets import (cinc2015_track, cinc2017_track, cudb_track, eeg_segment_track, mitdb_track,
                            token_coverage)

CFG = ecg_config()  # 250 Hz, 25-sample tokens: 0.1 s per token
FS = 360.0  # annotations at the MIT-BIH rate; 36 input samples per token


def col(track, name):
    return ECG_LABELS.index(name)


def test_coverage_counts_the_share_of_each_token():
    cov = token_coverage([(36, 54), (108, 180)], 6, FS, CFG)  # token k = [36 k, 36 k + 36)
    np.testing.assert_allclose(cov, [0, 0.5, 0, 1, 1, 0])


def test_mitdb_track_from_rhythms_and_beats():
    n_tok = 100  # 10 s = 3600 samples
    rhythms = [("(N", 0, 720), ("(AFIB", 720, 1800), ("(AFL", 1800, 2160), ("(N", 2160, 3600)]
    # 4 ventricular beats at 150 bpm (144 samples apart) from 2520: a 3-4 beat run -> vt
    beats = np.array([100, 400, 2520, 2664, 2808, 2952, 3300])
    symbols = ["N", "N", "V", "V", "V", "V", "N"]
    tr = mitdb_track(rhythms, beats, symbols, FS, n_tok, CFG)
    t, w = tr.targets, tr.weights
    assert t[:20, col(tr, NORMAL)].all() and not t[:20, col(tr, AF)].any()
    assert t[20:50, col(tr, AF)].all() and not t[20:50, col(tr, NORMAL)].any()
    assert (w[50:60, col(tr, AF)] == 0).all() and (w[:50, col(tr, AF)] == 1).all()   # flutter: unknown
    vt = np.flatnonzero(t[:, col(tr, VT)])
    assert vt.min() == 70 and vt.max() == 81                                            # 2520/36 .. 2953/36
    assert not t[vt, col(tr, NORMAL)].any()
    assert not t[:, col(tr, VF)].any() and not t[:, col(tr, NOISE)].any()


def test_mitdb_track_before_first_rhythm_is_unknown():
    tr = mitdb_track([("(N", 360, 3600)], np.array([]), [], FS, 100, CFG)
    assert (tr.weights[:10, col(tr, NORMAL)] == 0).all() and (tr.weights[10:, col(tr, NORMAL)] == 1).all()


@pytest.mark.parametrize("label, normal, af, noise, vt_weight",
                         [("N", 1, 0, 0, 1), ("A", 0, 1, 0, 1), ("O", 0, 0, 0, 0), ("~", 0, 0, 1, 0)])
def test_cinc2017_record_labels(label, normal, af, noise, vt_weight):
    tr = cinc2017_track(label, 30, CFG)
    assert (tr.targets[:, col(tr, NORMAL)] == normal).all() and (tr.targets[:, col(tr, AF)] == af).all()
    assert (tr.targets[:, col(tr, NOISE)] == noise).all() and (tr.weights[:, col(tr, VT)] == vt_weight).all()
    assert (tr.weights[:, col(tr, NORMAL)] == (0 if label == "~" else 1)).all()


def test_cudb_and_cinc2015_tracks():
    tr = cudb_track(vf_onset=500, input_rate=250.0, n_tokens=40, config=CFG)  # onset at 2 s = token 20
    assert not tr.targets[:20, col(tr, VF)].any() and tr.targets[20:, col(tr, VF)].all()
    true = cinc2015_track(True, 250.0, 3000, CFG)                              # 300 s
    j = col(true, VT)
    assert true.targets[2900:, j].all() and (true.weights[:2900, j] == 0).all() and not true.bags.any()
    bag = cinc2015_track(True, 250.0, 3000, CFG, bag=True)                     # --cinc2015-bags
    assert bag.bags[2900:, j].all() and not bag.bags[:2900, j].any()            # the 10 s before the alarm
    assert (bag.weights[:, j] == 0).all() and not np.delete(bag.bags, j, axis=1).any()
    false = cinc2015_track(False, 250.0, 3000, CFG)
    assert (false.weights[:, col(false, VT)] == 1).all() and not false.targets.any()


def test_windows_pad_and_burn_in():
    cfg = eeg_config()
    n_tok = 40
    ex = Example("x", "bonn", "train", np.ones((n_tok * cfg.patch_len, 1), np.float32),
                 np.zeros((n_tok * cfg.patch_len, 1), bool), eeg_segment_track(True, n_tok, cfg))
    rng = np.random.default_rng(0)
    short = sample_window(ex, 100, cfg.patch_len, rng)                          # record shorter than window
    full = sample_window(ex, 20, cfg.patch_len, rng, focus=np.array([30]))
    assert len(short.targets) == 40 and len(full.targets) == 20
    x, mask, lengths, tg, wt, bags = collate([short, full], burn_in_tokens=5)
    assert x.shape == (2, 40 * cfg.patch_len, 1) and lengths.tolist() == [40 * cfg.patch_len, 20 * cfg.patch_len]
    assert mask[1, 20 * cfg.patch_len:].all() and not mask[0].any()
    assert (wt[:, :5] == 0).all() and (wt[1, 20:] == 0).all() and (wt[0, 5:] == 1).all()
    assert tg[0, :, cfg.labels.index(SEIZURE)].all()


def test_a_bag_is_kept_only_whole():
    """A window keeps a bag only when it holds all of it, outside the burn-in; noise that buries
    part of it drops it too."""
    n_tok = 3000
    ex = Example("v1", "cinc2015", "train", np.ones((n_tok * CFG.patch_len, 2), np.float32),
                 np.zeros((n_tok * CFG.patch_len, 2), bool), cinc2015_track(True, 250.0, n_tok, CFG, bag=True))
    j = col(ex.track, VT)
    rng = np.random.default_rng(0)
    whole = sample_window(ex, 300, CFG.patch_len, rng, focus=np.array([2999]))  # the last 30 s
    cut = sample_window(ex, 300, CFG.patch_len, rng, focus=np.array([2750]))    # ends inside the bag
    assert whole.bags[:, j].sum() == 100 and not cut.bags.any()
    *_, bags = collate([whole, whole], burn_in_tokens=30)
    assert bags[:, :, j].sum(1).tolist() == [100, 100]
    *_, bags = collate([whole], burn_in_tokens=250)                             # burn-in reaches into it
    assert not bags.any()
    whole.drop_bags(slice(250, 260))
    assert not whole.bags.any()
