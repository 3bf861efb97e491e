"""A lead that holds one value is no signal: causal flat-line marking for the ECG detectors.

A monitor sends a constant when an electrode is off or a lead has failed; a real ECG, even in
asystole, carries noise and changes every few samples. A flat lead must not look like a silent
heart (a false asystole) or stand in for a lead in the beat classifier (it would hide a VT seen on
the other lead), so the QRS detector (:mod:`models.qrs`) and the beat classifier
(:mod:`models.beats`) treat its samples as missing, as they treat NaN.

A sample is *flat* when it and the ``FLAT_LEAD_S`` seconds of samples before it hold one value
(causal: the first ``FLAT_LEAD_S`` of a flat stretch are still signal, and carry no beat). In the
shared recordings the longest run of identical digital values on a lead that carries signal is
0.74 s (MIT-BIH 116, MLII; CinC 2017 0.18 s; NSTDB and CUDB < 0.05 s); the CinC 2015 lead-off
stretches hold one value for 6-29 s. ``FLAT_LEAD_S`` is half of the 4 s an asystole needs, so a flat
lead never reaches one.

(The service's ``signal_loss`` alert uses its own, longer flat-line rule on the raw input,
:mod:`service.quality`, with the onset at the start of the run.)

A saturated sample (beyond the model's ``abs_limit_uv``, the limit of the network's preprocessor
and of ``signal_loss``) is no signal either: :func:`saturated_as_missing`, applied by the service's
rhythm source (docs/qrs.md, "Saturation").
"""

from __future__ import annotations

import numpy as np

FLAT_LEAD_S = 2.0   # a value held this long (s) is a flat line


def saturated_as_missing(x: np.ndarray, limit: float) -> np.ndarray:
    """``x`` with its samples beyond ``limit`` (``|x| > limit``, ``x``'s units) set to NaN (missing);
    ``x`` itself when ``limit`` is infinite. A saturated artefact fed to the QRS detector would raise
    its QRS level until no real QRS clears the threshold (a false asystole)."""
    return np.where(np.abs(x) > limit, np.nan, x) if np.isfinite(limit) else x


def flat_samples(x: np.ndarray, last: np.ndarray, run: np.ndarray, n_flat: int, tol: float = 0.0
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mark the flat samples of a chunk, carrying the run across chunks (chunk-exact).

    Parameters
    ----------
    x : np.ndarray
        ``(n, L)`` samples of ``L`` leads (NaN = missing: never flat, and it ends a run).
    last : np.ndarray
        ``(L,)`` the value of each lead's previous sample (any value where ``run`` is 0).
    run : np.ndarray
        ``(L,)`` int, how many samples up to and including the previous one held ``last``
        (0 at the start).
    n_flat : int
        A sample is flat when it ends a run of at least ``n_flat`` identical values.
    tol : float
        Consecutive values that differ by at most this count as identical (0: exactly equal; a
        held value after a filter decays towards zero rather than repeating exactly).

    Returns
    -------
    flat : np.ndarray
        ``(n, L)`` bool.
    last, run : np.ndarray
        The state after the chunk, to pass to the next call.
    """
    x = np.asarray(x, np.float64)
    n = len(x)
    if n == 0:
        return np.zeros(x.shape, bool), np.asarray(last, np.float64).copy(), np.asarray(run, np.int64).copy()
    d = np.empty(x.shape)                                               # (n, L) |change from the sample before|
    np.subtract(x[0], np.asarray(last, np.float64), out=d[0])
    np.subtract(x[1:], x[:-1], out=d[1:])
    same = np.abs(d, out=d) <= tol                                      # NaN is never the same
    finite = np.isfinite(x)
    if not np.count_nonzero(same):              # every sample starts a run (most chunks of a live lead)
        length = finite.astype(np.int64)
    else:
        length = run_lengths(same, run)                                 # (n, L) run length at each sample
        length[~finite] = 0
    return length >= n_flat, x[-1].copy(), length[-1].copy()


def run_lengths(same: np.ndarray, carried: np.ndarray) -> np.ndarray:
    """How many samples each sample's run has lasted, itself included, carried across chunks.

    Parameters
    ----------
    same : np.ndarray
        ``(n, L)`` bool: the sample continues the run of the one before it.
    carried : np.ndarray
        ``(L,)`` int, the run length at the sample before the chunk (0 at the start).

    Returns
    -------
    np.ndarray
        ``(n, L)`` int64: 1 where a run starts, one more than the sample before where it goes on.
    """
    idx = np.arange(len(same), dtype=np.int64)[:, None]
    start = np.where(same, np.iinfo(np.int64).min, idx)                 # a new run starts here, (n, L)
    if len(start):                              # the run carried into the chunk started at -carried
        np.maximum(start[0], -np.asarray(carried, np.int64), out=start[0])
    np.maximum.accumulate(start, axis=0, out=start)                     # where each sample's run started
    np.subtract(idx + 1, start, out=start)
    return start
