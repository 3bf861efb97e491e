"""The lead the rhythm follows: the first lead, or the second while the first is lost.

The QRS detector that gives the heart rate, asystole, bradycardia and tachycardia, and the beats
the VT and AF detectors classify (:class:`service.alarms.sources.RhythmSource`) follows one
signal. It is the first lead; when that lead is lost (NaN, an electrode off, or a flat line,
:mod:`models.flatline`) for ``SWITCH_S`` it follows the second lead instead, and it returns to the
first once that has carried signal again for ``SWITCH_S``. Without this a session whose first lead
came off lost its rate alarms, AF and most of its VT while the second lead still showed the
rhythm, and no technical alarm said so (``signal_loss`` needs every lead lost).

The switch is causal and chunk-exact (the state is carried). The detector sees a missing sample
where the signal changes lead, so it restarts its filters there, as after a gap, instead of
taking the jump for a beat; while the first lead is lost and the switch has not happened yet it
sees the first lead (missing).
"""

from __future__ import annotations

import numpy as np

from models.flatline import FLAT_LEAD_S, flat_samples, run_lengths

SWITCH_S = 1.0   # the first lead lost (or back) this long before the rhythm changes lead, s


class RateLead:
    """Builds the signal the rhythm's QRS detector follows from a two-lead chunk.

    Parameters
    ----------
    fs : float
        Session sample rate, Hz.
    """

    def __init__(self, fs: float):
        self.switch_n = max(1, round(SWITCH_S * float(fs)))
        self.flat_n = round(FLAT_LEAD_S * float(fs))

    @staticmethod
    def initial_state() -> dict:
        """JSON-able: the lead followed (0, 1), whether the first lead's last sample carried
        signal and for how many samples its state has held, each lead's flat-line state."""
        return {"src": 0, "ok": True, "held": 0, "last": [0.0, 0.0], "run": [0, 0]}

    @staticmethod
    def to_array(st: dict) -> np.ndarray:
        """The state as a ``(7,)`` float64 array (for states made of numpy arrays); exact."""
        return np.asarray([st["src"], st["ok"], st["held"], *st["last"], *st["run"]], np.float64)

    @staticmethod
    def from_array(a: np.ndarray) -> dict:
        """The state from :meth:`to_array`."""
        a = np.asarray(a, np.float64)
        return {"src": int(a[0]), "ok": bool(a[1]), "held": int(a[2]), "last": [float(a[3]), float(a[4])],
                "run": [int(a[5]), int(a[6])]}

    def select(self, x: np.ndarray, st: dict) -> np.ndarray:
        """The signal to follow over a chunk.

        Parameters
        ----------
        x : np.ndarray
            ``(n, 2)`` the chunk's first and second lead (any unit; NaN = missing).
        st : dict
            From :meth:`initial_state` or the previous call; updated in place.

        Returns
        -------
        np.ndarray
            ``(n,)`` the first lead where it is followed, the second lead (NaN where that is
            lost) where the rhythm follows it, NaN at each sample where the lead changes.
        """
        x = np.asarray(x, np.float64)
        n = len(x)
        if n == 0:
            return np.zeros(0)
        finite = np.isfinite(x) & (np.abs(x) < 1e15)
        flat, last, run = flat_samples(np.where(finite, x, np.nan), np.asarray(st["last"], np.float64),
                                       np.asarray(st["run"], np.int64), self.flat_n)
        ok = finite & ~flat                                                   # (n, 2) carries signal
        first = ok[:, 0]
        if int(st["src"]) == 0 and st["ok"] and first.all():
            # the usual chunk: the first lead, followed and carrying signal throughout (what the
            # general case below gives then: its state holds on, no switch)
            out, src_end, held_end = x[:, 0].copy(), 0, int(st["held"]) + n
        else:
            prev = np.r_[bool(st["ok"]), first[:-1]]
            held = run_lengths((first == prev)[:, None], np.asarray([st["held"]]))[:, 0]   # (n,) samples the state has held
            decisive = np.where(held >= self.switch_n, np.where(first, 0, 1), -1)
            src = _fill_forward(decisive, int(st["src"]))                     # (n,) lead followed
            out = np.where(src == 0, x[:, 0], np.where(ok[:, 1], x[:, 1], np.nan))
            out[src != np.r_[int(st["src"]), src[:-1]]] = np.nan              # a restart where it changes lead
            src_end, held_end = int(src[-1]), int(held[-1])
        st.update(src=src_end, ok=bool(first[-1]), held=held_end,
                  last=[float(v) if np.isfinite(v) else 0.0 for v in last], run=[int(v) for v in run])
        return out


def _fill_forward(values: np.ndarray, initial: int) -> np.ndarray:
    """``values`` with each -1 replaced by the last value that was not -1 (``initial`` before any)."""
    pos = np.where(values >= 0, np.arange(len(values)), -1)
    pos = np.maximum.accumulate(pos)
    return np.where(pos >= 0, values[np.maximum(pos, 0)], initial)
