"""Exact, cheaper stand-ins for numpy and scipy calls on a streaming chunk's small arrays.

The detectors (:mod:`models.qrs`, :mod:`models.beats`) and the quality heads run on chunks of
0.25-1 s, where scipy's and numpy's per-call checks and axis moves cost more than the arithmetic.
Each function here gives its public counterpart's result bit for bit: the same operations in the
same order (the service's evaluations and snapshots depend on that).
"""

from __future__ import annotations

import numpy as np
from scipy.signal import sosfilt

try:                                     # the C core of scipy.signal.sosfilt (private; same arithmetic)
    from scipy.signal._sosfilt import _sosfilt as sosfilt_core
except ImportError:                      # pragma: no cover - another scipy layout: the public function
    sosfilt_core = None


def sos_filter(sos: np.ndarray, x: np.ndarray, zi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``scipy.signal.sosfilt(sos, x, zi=zi)`` of a non-empty 1-d float64 ``x``, bit for bit.

    Calls ``sosfilt``'s C core directly when available (the same arithmetic): the public
    function's checks and axis moves cost most of a call on a 1-s chunk. ``sos`` must be
    C-contiguous float64; ``zi`` is not modified.
    """
    if sosfilt_core is None:
        return sosfilt(sos, x, zi=zi)
    y = np.array(x, np.float64, ndmin=2, order="C")    # (1, n) a copy: filtered in place
    z = np.array(zi, np.float64, ndmin=3, order="C")   # (1, sections, 2) a copy
    sosfilt_core(sos, y, z)
    return y[0], z[0]


def fir_filter(b: np.ndarray, x: np.ndarray, zi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``scipy.signal.lfilter(b, 1.0, x, zi=zi)`` of a 1-d float64 ``x`` (``len(zi) == len(b) - 1``),
    bit for bit: with ``a`` of length 1 scipy computes exactly this (``np.convolve`` plus the
    carried state), behind checks that cost more than the convolution on a 1-s chunk."""
    full = np.convolve(b, x)
    full[:len(zi)] += zi
    return full[:len(x)], full[len(x):]


def median_of_few(values: list) -> float:
    """``float(np.median(values))`` of a short list of numbers without NaN, bit for bit: ``np.mean``
    of the middle value or the middle two, a sum from 0.0 (so a zero median is +0.0), divided by
    the count."""
    s = sorted(float(v) for v in values)
    k = len(s)
    return 0.0 + s[k // 2] if k % 2 else (0.0 + s[k // 2 - 1] + s[k // 2]) / 2.0
