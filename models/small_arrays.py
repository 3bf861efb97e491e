"""Exact, cheaper stand-ins for numpy and scipy calls on a streaming chunk's small arrays.

The detectors (:mod:`models.qrs`, :mod:`models.beats`) and the quality heads run on chunks of
0.25-1 s and on single beats' windows, where scipy's and numpy's per-call checks and axis moves cost more than the arithmetic.
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


def finite_columns(a: np.ndarray) -> list[int]:
    """The columns of ``a`` (n, L) whose values are all finite (usually all of them: one check)."""
    finite = np.isfinite(a)
    if finite.all():
        return list(range(a.shape[1]))
    return np.flatnonzero(finite.all(axis=0)).tolist()


def norm(v: np.ndarray) -> np.float64:
    """``np.linalg.norm(v)`` of a 1-d float64 array (its own computation: the square root of
    ``v.dot(v)``)."""
    return np.sqrt(v.dot(v))


def row_norms(a: np.ndarray) -> np.ndarray:
    """``np.linalg.norm(a, axis=1)`` of a 2-d float64 array (its own computation: the square root
    of the summed squares, ``np.add.reduce``)."""
    return np.sqrt(np.add.reduce(a * a, axis=1))


def row_medians(a: np.ndarray) -> np.ndarray:
    """``np.median(a, axis=1, keepdims=True)`` of a 2-d float64 array without NaN: its own
    computation (the same partition, then the mean of the middle one or two values) without its
    NaN checks and dispatch."""
    w = a.shape[1]
    kth = [w // 2 - 1, w // 2, -1] if w % 2 == 0 else [w // 2, -1]   # (-1: np.median's NaN check)
    middle = np.partition(a, kth, axis=1)[:, (w - 1) // 2: w // 2 + 1]
    return np.add.reduce(middle, axis=1, keepdims=True) / middle.shape[1]


def median(v: np.ndarray) -> np.floating:
    """``numpy.median`` of a finite 1-D ``v``: the same partition and mean of the middle values
    (the same bits), without the wrapper's checks."""
    h = len(v) // 2
    if len(v) % 2:
        mid = np.partition(v, [h, -1])[h:h + 1]
    else:
        mid = np.partition(v, [h - 1, h, -1])[h - 1:h + 1]
    return np.add.reduce(mid) / len(mid)
