"""models/filter_design.py: designs made once per rate, identical to scipy's, shared read-only."""

import numpy as np
import pytest
from scipy.signal import butter, group_delay, sos2tf, sosfilt_zi

from models import beats, eeg_sqi, qrs
from models.filter_design import butter_sos, rest_state, writable


@pytest.mark.parametrize("fs", [173.61, 250.0, 256.0, 300.0, 360.0, 1000.0])
def test_designs_are_scipys_bit_for_bit_and_read_only(fs):
    sos = butter_sos(2, (5.0, 15.0), "bandpass", fs)
    ref = butter(2, [5.0, 15.0], btype="bandpass", fs=fs, output="sos")
    assert sos.tobytes() == ref.tobytes()
    assert rest_state(2, (5.0, 15.0), "bandpass", fs).tobytes() == sosfilt_zi(ref).tobytes()
    assert butter_sos(4, 2.0, "lowpass", fs).tobytes() == butter(4, 2.0, btype="lowpass", fs=fs, output="sos").tobytes()
    with pytest.raises(ValueError):
        sos[0, 0] = 0.0                              # shared between sessions: nobody may change it
    copy = writable(sos)
    assert copy.flags.writeable and copy.flags.c_contiguous and np.array_equal(copy, sos)


@pytest.mark.parametrize("fs", [250.0, 360.0])
def test_detectors_filter_with_the_same_sections_as_their_own_design(fs):
    """The QRS detector and the beat classifier: their sections, rest state and (QRS) band-pass
    delay are those a design of their own gave, each session's sections its own writable copy."""
    a, b = qrs.RhythmMonitor(fs), qrs.RhythmMonitor(fs)
    ref = butter(2, list(qrs.BAND_HZ), btype="bandpass", fs=fs, output="sos")
    num, den = sos2tf(ref)
    assert a.sos.tobytes() == ref.tobytes() and a.zi_unit.tobytes() == sosfilt_zi(ref).tobytes()
    assert a.delay_bp == int(round(float(group_delay((num, den), w=[10.0], fs=fs)[1][0])))
    assert a.sos is not b.sos and a.sos.flags.writeable
    c = beats.BeatClassifier(fs)
    ref = butter(2, list(beats.BAND_HZ), btype="bandpass", fs=fs, output="sos")
    assert c.sos.tobytes() == ref.tobytes() and c.zi_unit.tobytes() == sosfilt_zi(ref).tobytes()


def test_eeg_band_filters_are_the_designs_of_each_band():
    got = eeg_sqi.band_filters(256.0)
    assert got.flags.writeable                       # a new array: EegQuality filters with it
    for sos, (lo, hi) in zip(got, eeg_sqi.BANDS_HZ):
        if lo is None:
            ref = butter(2 * eeg_sqi.BAND_ORDER, hi, btype="lowpass", fs=256.0, output="sos")
        elif hi is None:
            ref = butter(2 * eeg_sqi.BAND_ORDER, lo, btype="highpass", fs=256.0, output="sos")
        else:
            ref = butter(eeg_sqi.BAND_ORDER, [lo, hi], btype="bandpass", fs=256.0, output="sos")
        assert sos.tobytes() == ref.tobytes()


def test_a_second_session_at_a_rate_designs_nothing():
    qrs.RhythmMonitor(321.0)
    beats.BeatClassifier(321.0)
    misses = butter_sos.cache_info().misses, rest_state.cache_info().misses
    qrs.RhythmMonitor(321.0)
    beats.BeatClassifier(321.0)
    assert (butter_sos.cache_info().misses, rest_state.cache_info().misses) == misses
