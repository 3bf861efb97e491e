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


@pytest.mark.parametrize("width", [1, 2, 65, 94])
def test_row_medians_median_and_norms_are_numpys_bit_for_bit(width):
    from models.small_arrays import median, norm, row_medians, row_norms

    a = np.random.default_rng(width).standard_normal((7, width)) * 300.0
    assert row_medians(a).tobytes() == np.median(a, axis=1, keepdims=True).tobytes()
    assert np.array([median(a[0])]).tobytes() == np.array([np.median(a[0])]).tobytes()
    assert row_norms(a).tobytes() == np.linalg.norm(a, axis=1).tobytes()
    assert np.array([norm(a[0])]).tobytes() == np.array([np.linalg.norm(a[0])]).tobytes()


def test_finite_columns_names_the_columns_without_nan_or_inf():
    from models.small_arrays import finite_columns

    a = np.ones((5, 3))
    assert finite_columns(a) == [0, 1, 2]
    a[2, 1], a[4, 2] = np.nan, np.inf
    assert finite_columns(a) == [0]
