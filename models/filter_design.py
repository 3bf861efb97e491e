"""Butterworth designs, computed once per (order, edges, type, sample rate).

Every session builds its own QRS detectors, beat classifiers and quality heads, and a session is
opened on the service's event loop: a ``scipy.signal.butter`` design and its ``sosfilt_zi`` cost
about a millisecond each there, most of a session's start, which frames of every other session
wait behind (a reconnect storm opens hundreds at once). The designs depend only on these
arguments, so they are made once and shared, read-only: the same arrays, bit for bit.
"""

from __future__ import annotations

import functools

import numpy as np
from scipy.signal import butter, sosfilt_zi


@functools.lru_cache(maxsize=128)
def butter_sos(order: int, edges: float | tuple[float, float], btype: str, fs: float) -> np.ndarray:
    """``scipy.signal.butter(order, edges, btype, fs=fs, output="sos")``, read-only.

    Parameters
    ----------
    order : int
        Filter order (a band-pass has twice as many poles).
    edges : float or (float, float)
        Cut-off frequency or band edges, Hz.
    btype : {"lowpass", "highpass", "bandpass", "bandstop"}
    fs : float
        Sample rate, Hz.

    Returns
    -------
    (S, 6) float64
        Second-order sections. Read-only: ``sosfilt``'s core refuses them, so a filter that
        runs them takes a copy (:func:`writable`).
    """
    sos = butter(order, edges, btype=btype, fs=fs, output="sos")
    sos.flags.writeable = False
    return sos


@functools.lru_cache(maxsize=128)
def rest_state(order: int, edges: float | tuple[float, float], btype: str, fs: float) -> np.ndarray:
    """``(S, 2)`` ``scipy.signal.sosfilt_zi`` of :func:`butter_sos`: the filter state at rest on a
    unit input (scaled by a chunk's first sample to start without a step). Read-only."""
    zi = sosfilt_zi(butter_sos(order, edges, btype, fs))
    zi.flags.writeable = False
    return zi


def writable(sos: np.ndarray) -> np.ndarray:
    """A C-contiguous float64 copy of ``sos`` that ``sosfilt`` (and its core) accepts."""
    return np.array(sos, np.float64, order="C")
