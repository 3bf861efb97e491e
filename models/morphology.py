"""Record-level ECG morphology for the AF decision: P waves, f waves and beat-to-beat variability.

AF has no P waves; fibrillatory (f) waves of 4-9 Hz fill the TQ interval instead. From one lead
and the detected beats (:func:`models.af_fit.record_beats`), on the 0.5-40 Hz band-passed signal
(zero-phase: a record is decided offline), with the beats aligned on the median QRS and the
signal sign-normalised (the median QRS's largest deflection positive), every amplitude over the
median QRS amplitude (so inverted leads and gain do not matter):

- **P-wave presence** in the window :data:`P_WIN_S` before R, cut after the previous beat's T
  wave (:data:`T_END_S`, Bazett-scaled) and before the QRS onset of the median beat (a wide QRS
  too), each segment detrended (so that only a bump such as a P wave is left): the median
  correlation of each beat's segment with the median segment (``p_corr``); the share of beats
  whose correlation is at least :data:`P_PRESENT_CORR` (``p_present``); the median segment's
  range over the QRS amplitude (``p_amp``); the coherence of the segments (the power of their
  mean over their mean power, corrected for their number: about 1 for a repeated P wave, about 0
  for uncorrelated activity; ``p_coherence``); the log of the median segment's range over the
  beats' median RMS deviation from it (``p_snr``);
- **TQ (f-wave) activity** in the segments from the previous T wave's end to the QRS onset,
  aligned on R: the RMS after removing the median TQ pattern (the P wave when there is one) over
  the QRS amplitude (``tq_residual``), the TQ RMS over the QRS amplitude (``tq_rms``), and of the
  residual's power spectrum the share of 4-9 Hz in 1-25 Hz (``f_band_share``) and of the 1-Hz
  band around its 4-9 Hz peak (``f_peak_share``);
- **QRS-T variability**: the median correlation of each beat's QRS-T window with the median
  beat's (``qrst_corr``).

Beats called ventricular (p >= :data:`models.af.ECTOPIC_P`) are left out. A record with fewer
than :data:`MIN_BEATS` usable beats (or segments) gets nan for the features it cannot define:
the record model (:class:`models.mlp.TanhMLP`) reads nan as the training mean, the neutral value,
and its probability stays finite.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import signal as sps

from models.af import ECTOPIC_P

# the features, in this order (see the module docstring)
FEATURES = ("p_corr", "p_amp", "p_coherence", "p_present", "p_snr", "tq_residual", "tq_rms", "f_band_share",
            "f_peak_share", "qrst_corr")
BAND_HZ = (0.5, 40.0)        # band-pass of the morphology signal, Hz
FILTER_ORDER = 2             # Butterworth order of the band-pass (doubled by the zero-phase pass)
ALIGN_S = 0.05               # each detected beat moves by at most this to match the median QRS, s
QRS_HALF_S = 0.06            # the QRS amplitude is the peak-to-peak within +-QRS_HALF_S of R, s
P_WIN_S = (-0.30, -0.08)     # P-wave window relative to R, s
T_END_S = 0.40               # the T wave ends T_END_S * sqrt(RR / 1 s) after R (Bazett), s
RR_CLIP_S = (0.3, 1.5)       # RR range of that correction, s
PRE_END_S = 0.08             # the P window and TQ segment end at least this long before R, s
ONSET_SLOPE = 0.15           # the QRS onset: the median beat's |slope| under this share of its QRS peak ...
ONSET_QUIET_S = 0.016        # ... for this long, s
ONSET_MAX_S = 0.15           # the QRS onset is searched back to this long before R, s
ONSET_GAP_S = 0.02           # the P window and TQ segment end at least this long before the QRS onset, s
PRE_MAX_S = 0.60             # the TQ segment reaches back at most this long before R, s
MIN_TQ_S = 0.15              # a TQ segment shorter than this is not used for the spectrum, s
QRST_WIN_S = (-0.08, 0.40)   # QRS-T window relative to R, s (cut where the next beat's TQ segment ends)
P_PRESENT_CORR = 0.5         # a beat's P segment correlating at least this well with the median's has one
SNR_EPS = 1e-4               # added to both sides of p_snr's ratio, in QRS amplitudes (a noiseless record)
MIN_P_S = 0.06               # fewest seconds of a beat's P window (after cutting) for it to count
MIN_BEATS = 4                # fewest usable beats (or segments) for a feature to be defined
MIN_COLUMN = 3               # fewest beats with a sample at a lag for the median template there
F_BAND_HZ = (4.0, 9.0)       # f-wave band, Hz
TOTAL_BAND_HZ = (1.0, 25.0)  # reference band of the spectral shares, Hz
PEAK_HALF_HZ = 0.5           # half width of the band around the f-wave peak, Hz
NFFT_S = 1.7                 # the residual segments are zero-padded to at least this long, s


def bandpass(x: np.ndarray, fs: float) -> np.ndarray:
    """``(n,)`` zero-phase :data:`BAND_HZ` band-pass of a ``(n,)`` signal sampled at ``fs`` Hz."""
    hi = min(BAND_HZ[1], 0.45 * fs)
    sos = sps.butter(FILTER_ORDER, [BAND_HZ[0], hi], "bandpass", fs=fs, output="sos")
    x = np.asarray(x, np.float64)
    if len(x) <= 3 * (2 * len(sos) + 1):
        return x - x.mean() if len(x) else x
    return sps.sosfiltfilt(sos, x)


def align_beats(y: np.ndarray, beats: np.ndarray, fs: float) -> tuple[np.ndarray, float]:
    """Beats moved onto the median QRS, and the lead's polarity.

    Each beat is shifted by the lag within +-:data:`ALIGN_S` that best matches (covariance) the
    median QRS (+-:data:`QRS_HALF_S`), twice (the template re-estimated after the first pass), then
    placed on the median QRS's largest deflection: the same point of every beat, even when the
    QRS has two peaks of about the same size.

    Parameters
    ----------
    y : np.ndarray
        ``(n,)`` band-passed signal.
    beats : np.ndarray
        ``(m,)`` detected beat samples (a few samples off R).
    fs : float
        Hz.

    Returns
    -------
    r : np.ndarray
        ``(m,)`` aligned beat samples (the R peak of the median QRS).
    sign : float
        +1 or -1, the sign of the median QRS's largest deflection (the lead's polarity).
    """
    a, q = int(round(ALIGN_S * fs)), int(round(QRS_HALF_S * fs))
    shifts, lags = np.arange(-a, a + 1), np.arange(-q, q + 1)
    r = np.asarray(beats, np.int64)
    for _ in range(2):
        tmpl = np.median(y[np.clip(r[:, None] + lags[None, :], 0, len(y) - 1)], axis=0)           # (2q+1,)
        tmpl = tmpl - tmpl.mean()
        idx = np.clip(r[:, None, None] + shifts[None, :, None] + lags[None, None, :], 0, len(y) - 1)
        seg = y[idx]                                                       # (m, 2a+1, 2q+1)
        cov = ((seg - seg.mean(2, keepdims=True)) * tmpl).sum(2)          # (m, 2a+1)
        r = np.clip(r + shifts[np.argmax(cov, axis=1)], 0, len(y) - 1)
    tmpl = np.median(y[np.clip(r[:, None] + lags[None, :], 0, len(y) - 1)], axis=0)
    peak = int(np.argmax(np.abs(tmpl - np.median(tmpl))))
    sign = 1.0 if tmpl[peak] >= np.median(tmpl) else -1.0
    return np.clip(r + lags[peak], 0, len(y) - 1), sign


def windows(y: np.ndarray, r: np.ndarray, lo: np.ndarray, hi: np.ndarray, fs: float, win_s: tuple[float, float]
            ) -> np.ndarray:
    """Per-beat windows aligned on R, nan outside each beat's allowed span.

    Parameters
    ----------
    y : np.ndarray
        ``(n,)`` signal.
    r : np.ndarray
        ``(m,)`` R samples.
    lo, hi : np.ndarray
        ``(m,)`` first and last allowed sample of each beat's window (absolute samples).
    fs : float
        Hz.
    win_s : (float, float)
        Window relative to R, s.

    Returns
    -------
    np.ndarray
        ``(m, L)`` samples of ``y``; nan where outside ``[lo, hi]`` or the record.
    """
    lags = np.arange(int(round(win_s[0] * fs)), int(round(win_s[1] * fs)) + 1)
    idx = r[:, None] + lags[None, :]                                      # (m, L)
    ok = (idx >= np.maximum(lo, 0)[:, None]) & (idx <= np.minimum(hi, len(y) - 1)[:, None])
    return np.where(ok, y[np.clip(idx, 0, len(y) - 1)], np.nan)


def template(seg: np.ndarray) -> np.ndarray:
    """``(L,)`` median over beats of ``(m, L)`` windows; nan where fewer than :data:`MIN_COLUMN` beats."""
    n = np.isfinite(seg).sum(0)
    with np.errstate(all="ignore"):
        t = np.nanmedian(np.where(n[None, :] > 0, seg, 0.0), axis=0)
    return np.where(n >= MIN_COLUMN, t, np.nan)


def row_corr(seg: np.ndarray, tmpl: np.ndarray, min_len: int) -> np.ndarray:
    """``(m,)`` Pearson correlation of each window with the template over their common samples
    (nan where fewer than ``min_len`` of them, or a flat window)."""
    ok = np.isfinite(seg) & np.isfinite(tmpl)[None, :]
    n = ok.sum(1)
    a = np.where(ok, seg, 0.0)
    b = np.where(ok, tmpl[None, :], 0.0)
    with np.errstate(all="ignore"):
        a = np.where(ok, a - a.sum(1, keepdims=True) / n[:, None], 0.0)
        b = np.where(ok, b - b.sum(1, keepdims=True) / n[:, None], 0.0)
        c = (a * b).sum(1) / np.sqrt((a * a).sum(1) * (b * b).sum(1))
    return np.where((n >= min_len) & np.isfinite(c), c, np.nan)


def centred(seg: np.ndarray) -> np.ndarray:
    """``(m, L)`` windows less each row's mean over its finite samples."""
    with np.errstate(all="ignore"):
        return seg - np.nanmean(seg, axis=1, keepdims=True)


def detrended(seg: np.ndarray) -> np.ndarray:
    """``(m, L)`` windows less each row's least-squares line over its finite samples (the tail of the
    previous T wave and the baseline), so that only a bump such as a P wave is left."""
    ok = np.isfinite(seg)
    t = np.where(ok, np.arange(seg.shape[1])[None, :], 0.0)
    n = np.maximum(ok.sum(1, keepdims=True), 1)
    v = np.where(ok, seg, 0.0)
    tm, vm = t.sum(1, keepdims=True) / n, v.sum(1, keepdims=True) / n
    dt = np.where(ok, t - tm, 0.0)
    slope = (dt * (v - vm)).sum(1, keepdims=True) / np.maximum((dt * dt).sum(1, keepdims=True), 1e-12)
    return np.where(ok, v - vm - slope * dt, np.nan)


def p_wave_features(seg: np.ndarray, qrs_amp: float, fs: float) -> tuple[float, ...]:
    """``(p_corr, p_amp, p_coherence, p_present, p_snr)`` of ``(m, L)`` P-window segments sampled at
    ``fs`` Hz (nan where cut by the previous T wave; a row needs :data:`MIN_P_S` of samples)."""
    need = int(round(MIN_P_S * fs))
    seg = detrended(seg[np.isfinite(seg).sum(1) >= need])                 # (k, L)
    med = template(seg)                                                   # (L,)
    if len(seg) < MIN_BEATS or np.isfinite(med).sum() < need:
        return (np.nan,) * 5
    corr = row_corr(seg, med, need)
    amp = float(np.nanmax(med) - np.nanmin(med)) / qrs_amp
    cols = np.isfinite(med)
    s = seg[:, cols]
    n = np.isfinite(s).sum(0)                                             # beats per lag
    with np.errstate(all="ignore"):
        coherent = np.nansum(n * np.nanmean(s, 0) ** 2) / max(float(np.nansum(s ** 2)), 1e-12)   # in [1/k, 1]
    k = float(np.mean(n))
    noise = float(np.nanmedian(np.sqrt(np.nanmean((s - med[cols]) ** 2, axis=1))))   # per-beat residual RMS
    eps = SNR_EPS * qrs_amp
    return (float(np.nanmedian(corr)), amp, float((k * coherent - 1.0) / (k - 1.0)),
            float(np.mean(np.nan_to_num(corr, nan=-1.0) >= P_PRESENT_CORR)),
            float(np.log((amp * qrs_amp + eps) / (noise + eps))))


def spectrum_shares(res: np.ndarray, fs: float) -> tuple[float, float]:
    """``(f_band_share, f_peak_share)`` of the summed power spectra of ``(m, L)`` residual segments.

    Each row's finite run (at least :data:`MIN_TQ_S`) is demeaned, Hann-tapered and zero-padded to
    ``nfft`` (>= :data:`NFFT_S`); the shares are over :data:`TOTAL_BAND_HZ`.
    """
    nfft = int(2 ** np.ceil(np.log2(NFFT_S * fs)))
    spec, used = np.zeros(nfft // 2 + 1), 0
    for row in res:
        v = row[np.isfinite(row)]
        if len(v) < MIN_TQ_S * fs:
            continue
        spec += np.abs(np.fft.rfft((v - v.mean()) * np.hanning(len(v)), nfft)) ** 2
        used += 1
    if used < MIN_BEATS:
        return np.nan, np.nan
    f = np.fft.rfftfreq(nfft, 1.0 / fs)                                   # (nfft/2+1,) Hz
    total = spec[(f >= TOTAL_BAND_HZ[0]) & (f <= TOTAL_BAND_HZ[1])].sum()
    if total <= 0:
        return np.nan, np.nan
    band = (f >= F_BAND_HZ[0]) & (f <= F_BAND_HZ[1])
    peak_f = f[band][np.argmax(spec[band])]
    peak = spec[np.abs(f - peak_f) <= PEAK_HALF_HZ].sum()
    return float(spec[band].sum() / total), float(peak / total)


def qrs_onset(y: np.ndarray, r: np.ndarray, fs: float) -> int:
    """Samples from the median beat's QRS onset to R: going back from R, the first point where
    the median beat's |slope| stays under :data:`ONSET_SLOPE` of its QRS peak for
    :data:`ONSET_QUIET_S` (at most :data:`ONSET_MAX_S`)."""
    back, q = int(round(ONSET_MAX_S * fs)), int(round(QRS_HALF_S * fs))
    lags = np.arange(-back - int(round(ONSET_QUIET_S * fs)) - 1, q + 1)
    med = np.median(y[np.clip(r[:, None] + lags[None, :], 0, len(y) - 1)], axis=0)
    slope = np.abs(np.diff(med))                                          # (len(lags)-1,) slope after each lag
    zero = int(np.searchsorted(lags, 0))
    quiet = slope < ONSET_SLOPE * slope[zero - q: zero + q].max()
    run = int(round(ONSET_QUIET_S * fs))
    for k in range(zero - 1, run, -1):                                    # k: a lag before R
        if quiet[k - run: k].all():
            return min(back, zero - k)
    return back


def t_wave_end(r: np.ndarray, fs: float) -> np.ndarray:
    """``(m,)`` samples from each beat's previous R to that beat's T-wave end: :data:`T_END_S`
    scaled by Bazett's sqrt(RR) with the RR ending at the previous beat (the median RR for the
    first two beats)."""
    rr = np.diff(r) / fs                                                  # (m-1,) s
    med = float(np.median(rr)) if len(rr) else 1.0
    before_prev = np.concatenate([[med, med], rr[:-1]])[: len(r)]         # RR ending at beat i-1, s
    return np.round(T_END_S * np.sqrt(np.clip(before_prev, *RR_CLIP_S)) * fs).astype(np.int64)


def morphology_features(x: np.ndarray, fs: float, beats: np.ndarray, p_ventricular: np.ndarray | None = None
                        ) -> np.ndarray:
    """Morphology features of one record (:data:`FEATURES`).

    Parameters
    ----------
    x : np.ndarray
        ``(n,)`` or ``(n, c)`` signal (any unit; lead 0 is used).
    fs : float
        Hz.
    beats : np.ndarray
        ``(m,)`` detected beat samples.
    p_ventricular : np.ndarray, optional
        ``(m,)`` ventricular probabilities (nan: unknown); beats at or above
        :data:`models.af.ECTOPIC_P` are left out of the templates.

    Returns
    -------
    np.ndarray
        ``(len(FEATURES),)``; nan where undefined (too few usable beats, a flat signal).
    """
    with warnings.catch_warnings():                                      # empty slices give nan, on purpose
        warnings.simplefilter("ignore", RuntimeWarning)
        return _features(x, fs, beats, p_ventricular)


def _features(x: np.ndarray, fs: float, beats: np.ndarray, p_ventricular: np.ndarray | None) -> np.ndarray:
    """:func:`morphology_features`, warnings not silenced."""
    out = np.full(len(FEATURES), np.nan)
    x = np.asarray(x, np.float64)
    x = x[:, 0] if x.ndim == 2 else x
    beats = np.asarray(beats, np.int64)
    keep = (beats >= 0) & (beats < len(x))
    beats = beats[keep]
    if len(beats) < MIN_BEATS or not np.isfinite(x).all():
        return out
    pv = np.zeros(len(beats)) if p_ventricular is None else np.asarray(p_ventricular, np.float64)[keep]
    y = bandpass(x, fs)
    r, sign = align_beats(y, beats, fs)
    y = sign * y
    q = int(round(QRS_HALF_S * fs))
    qrs = windows(y, r, r - q, r + q, fs, (-QRS_HALF_S, QRS_HALF_S))     # (m, 2q+1)
    qrs_amp = float(np.nanmedian(np.nanmax(qrs, 1) - np.nanmin(qrs, 1)))
    if not qrs_amp > 0:
        return out
    normal = ~(np.nan_to_num(pv, nan=0.0) >= ECTOPIC_P)                  # (m,)
    prev = np.concatenate([[-10 ** 9], r[:-1]])                           # previous R (none: far)
    nxt = np.concatenate([r[1:], [10 ** 9]])                              # next R (none: far)
    t_end = prev + t_wave_end(r, fs)                                      # (m,) previous T wave's end
    # the P window and TQ segment end before the QRS (a wide one too)
    pre_end = max(int(round(PRE_END_S * fs)), qrs_onset(y, r, fs) + int(round(ONSET_GAP_S * fs)))
    first = normal & (np.arange(len(r)) > 0)                              # a previous beat bounds it
    # P waves: the window must lie after the previous beat's T wave
    out[0:5] = p_wave_features(windows(y, r, t_end, r - pre_end, fs, P_WIN_S)[first], qrs_amp, fs)
    # TQ segments, aligned on the R that ends them; residual after the median pattern
    tq = centred(windows(y, r, t_end, r - pre_end, fs, (-PRE_MAX_S, -PRE_END_S))[first])
    if (np.isfinite(tq).sum(1) >= MIN_TQ_S * fs).sum() >= MIN_BEATS:
        res = centred(tq - template(tq)[None, :])                         # (k, L)
        rms_res = np.sqrt(np.nanmean(res ** 2, axis=1))
        rms_raw = np.sqrt(np.nanmean(tq ** 2, axis=1))
        with np.errstate(all="ignore"):
            out[5] = float(np.nanmedian(rms_res)) / qrs_amp
            out[6] = float(np.nanmedian(rms_raw)) / qrs_amp
        out[7:9] = spectrum_shares(res, fs)
    # QRS-T variability
    qt = windows(y, r, r + int(round(QRST_WIN_S[0] * fs)), nxt - pre_end, fs, QRST_WIN_S)[normal]
    if len(qt) >= MIN_BEATS:
        c = row_corr(qt, template(qt), int(0.5 * qt.shape[1]))
        if np.isfinite(c).sum() >= MIN_BEATS:
            out[9] = float(np.nanmedian(c))
    return out
