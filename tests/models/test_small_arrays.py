"""models/small_arrays.py: each stand-in gives its numpy/scipy counterpart's result bit for bit."""

import numpy as np
import pytest
from scipy.signal import butter, lfilter, sosfilt, sosfilt_zi

from models import small_arrays
from models.small_arrays import fir_filter, median_of_few, sos_filter


@pytest.mark.parametrize("n", [1, 2, 7, 250, 360])
def test_sos_filter_is_sosfilt_bit_for_bit_and_leaves_the_state_alone(n):
    rng = np.random.default_rng(n)
    sos = np.ascontiguousarray(butter(2, [5.0, 15.0], btype="band", fs=360.0, output="sos"))
    x = rng.standard_normal(n) * 500.0
    zi = sosfilt_zi(sos) * 3.0
    zi_before = zi.copy()
    y, z = sos_filter(sos, x, zi)
    y_ref, z_ref = sosfilt(sos, x, zi=zi)
    assert y.tobytes() == y_ref.tobytes() and z.tobytes() == z_ref.tobytes()
    assert np.array_equal(zi, zi_before)


def test_sos_filter_falls_back_to_the_public_function(monkeypatch):
    monkeypatch.setattr(small_arrays, "sosfilt_core", None)
    sos = np.ascontiguousarray(butter(2, 0.2, output="sos"))
    x = np.linspace(-1.0, 1.0, 50)
    y, z = sos_filter(sos, x, np.zeros((1, 2)))
    assert np.array_equal(y, sosfilt(sos, x, zi=np.zeros((1, 2)))[0])


@pytest.mark.parametrize("n", [1, 3, 90, 360])
def test_fir_filter_is_lfilter_bit_for_bit(n):
    rng = np.random.default_rng(10 + n)
    b = rng.standard_normal(5)
    x, zi = rng.standard_normal(n), rng.standard_normal(4)
    y, z = fir_filter(b, x, zi)
    y_ref, z_ref = lfilter(b, 1.0, x, zi=zi)
    assert y.tobytes() == y_ref.tobytes() and z.tobytes() == z_ref.tobytes()


@pytest.mark.parametrize("values", [[3.0], [0.0, -0.0], [-0.0, -0.0], [1.0, 2.0], [0.1, 0.7, 0.2],
                                    [5, 1, 4, 2, 3, 8, 7, 6], list(np.random.default_rng(1).random(9))])
def test_median_of_few_is_np_median_bit_for_bit(values):
    got, ref = median_of_few(values), float(np.median(values))
    assert np.array([got]).tobytes() == np.array([ref]).tobytes()
