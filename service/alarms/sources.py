"""Condition sources: where an alarm condition's onset, confirmation and end come from.

Every source turns its input into *condition events* on the session's sample axis, so that the
state machine (:mod:`service.alarms.machine`) treats them alike:

- ``("begin", kind, onset)``: the condition may have started at ``onset`` (pending),
- ``("confirm", kind, at)``: the source has confirmed it at sample ``at`` (the alert may be raised),
- ``("end", kind, end)``: it ended; ``end`` is exclusive.

Sources: a model label's episodes (:class:`LabelTracker`, the checkpoint's fitted detector),
lost-signal stretches of the raw input (:class:`LossTracker`), and the rate events of the QRS
detector (:class:`RhythmSource`, ``models/qrs.py``). All state is JSON, and every sample they
report is a function of the signal alone, never of how it was chunked.
"""

from __future__ import annotations

import base64
import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from models.beats import SIGNAL_STATE, bytes_of
from models.flatline import saturated_as_missing
from models.detector import EpisodeDetector
from service import constants as C

Event = tuple[str, str, int]


def steps_for(seconds: float, rate: float) -> int:
    """Whole output steps covering ``seconds`` (at least one)."""
    return max(1, math.ceil(round(seconds * rate, 9)))


@dataclass(frozen=True)
class LabelRule:
    """A model label's episode rule: smoothed probability >= ``threshold`` for ``min_s`` raises;
    ``gap_s`` below it ends (DESIGN: the detectors training fitted, :mod:`models.detector`)."""

    label: str
    threshold: float
    min_s: float
    gap_s: float
    smooth_s: float

    @classmethod
    def from_detector(cls, d: EpisodeDetector, threshold: float | None = None) -> "LabelRule":
        return cls(d.label, d.threshold if threshold is None else threshold, d.min_duration_s, d.join_gap_s,
                   d.smooth_s)


class LabelTracker:
    """Episodes of one label over output steps, exactly as :meth:`EpisodeDetector.detect` finds
    them offline: a causal moving average over ``smooth_s``, an episode once the average has been
    >= threshold for ``min_s`` (onset at the start of that stretch, across joined gaps), ended once
    it has been below for ``gap_s`` (end at the first step below)."""

    def __init__(self, rule: LabelRule, output_rate: float):
        self.rule = rule
        self.min_steps = steps_for(rule.min_s, output_rate)
        self.gap_steps = steps_for(rule.gap_s, output_rate)
        self.k = EpisodeDetector(rule.label, smooth_s=rule.smooth_s).smooth_steps(output_rate)

    def smooth(self, st: dict, p: float) -> float:
        """Push one probability into the moving average held in ``st["win"]``; the average."""
        if self.k <= 1:
            return p
        st["win"] = (st.get("win", []) + [p])[-self.k:]
        return self.average(st)

    def average(self, st: dict) -> float:
        """The moving average as it stands (0 before any step)."""
        w = st.get("win") or [0.0]
        return math.fsum(w) / len(w)

    def step(self, st: dict, p: float, start: int, sample: int) -> list[tuple[str, int]]:
        """One output step (covering input samples ``start..sample``); events ``(type, sample)``."""
        ep = st.get("ep")
        if ep is None:
            if p < self.rule.threshold:
                return []
            ep = st["ep"] = {"onset": start, "steps": 0, "below": 0, "end": None, "confirmed": False}
            out = [("begin", start)]
        else:
            out = []
        ep["steps"] += 1
        if p >= self.rule.threshold:
            ep["below"], ep["end"] = 0, None
            if not ep["confirmed"] and ep["steps"] >= self.min_steps:
                ep["confirmed"] = True
                out.append(("confirm", sample))
        else:
            ep["below"] += 1
            if ep["end"] is None:
                ep["end"] = start
            if ep["below"] >= self.gap_steps:
                out.append(("end", ep["end"]))
                st["ep"] = None
        return out


class LossTracker:
    """signal_loss from lost stretches ``(start, end, onset, causes)`` of :mod:`service.quality`:
    confirmed once the lost stretch (from its onset, across short valid gaps) has lasted
    ``LOSS_MIN_S``; ended once ``LOSS_CLEAR_S`` of valid signal has followed (end: the first valid
    sample)."""

    def __init__(self, sample_rate: float):
        self.min_n = math.ceil(C.LOSS_MIN_S * sample_rate)
        self.clear_n = math.ceil(C.LOSS_CLEAR_S * sample_rate)

    def update(self, st: dict, stretches: list[tuple], end: int) -> list[tuple[str, int, int]]:
        """Events ``(type, sample, causes)`` of a chunk whose samples end before ``end``."""
        out = []
        for a, b, onset, *rest in stretches:
            causes = rest[0] if rest else 0
            cur = st.get("loss")
            if cur is not None and a - cur["until"] >= self.clear_n:
                out.append(("end", cur["until"], cur["causes"]))
                cur = None
            if cur is None:
                cur = st["loss"] = {"onset": onset, "until": b, "causes": 0, "confirmed": False}
                out.append(("begin", onset, 0))
            cur["until"], cur["causes"] = b, cur["causes"] | causes
            if not cur["confirmed"] and b - cur["onset"] >= self.min_n:
                cur["confirmed"] = True
                out.append(("confirm", max(a, cur["onset"] + self.min_n - 1), cur["causes"]))
        cur = st.get("loss")
        if cur is not None and end - cur["until"] >= self.clear_n:
            out.append(("end", cur["until"], cur["causes"]))
            st["loss"] = None
        return out


# ------------------------------------------------------------------ QRS detector (models/qrs.py)


def encode_arrays(arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    """numpy arrays as JSON (dtype, shape, base64 bytes): exact, so a snapshot restores bit for bit."""
    return {k: {"dtype": v.dtype.str, "shape": list(v.shape),
                "b64": base64.b64encode(np.ascontiguousarray(v).tobytes()).decode()}
            for k, v in ((k, np.asarray(v)) for k, v in arrays.items())}


def decode_arrays(d: dict[str, Any]) -> dict[str, np.ndarray]:
    return {k: np.frombuffer(base64.b64decode(v["b64"]), dtype=np.dtype(v["dtype"])).reshape(v["shape"]).copy()
            for k, v in d.items()}


def rhythm_factory() -> Callable[[float], Any] | None:
    """``models.qrs.RhythmMonitor`` when that module exists (the QRS detector with the CinC 2015 rate
    conditions), else None: asystole, bradycardia and tachycardia then stay silent (docs/alarms.md)."""
    try:
        from models.qrs import RhythmMonitor
    except ImportError:
        return None
    return RhythmMonitor


def beat_classifier_for(monitor: Any) -> Any | None:
    """A :class:`models.beats.BeatClassifier` (two leads) for a real QRS detector when the shipped
    beat weights exist, else None (VT then comes from the model's vt episodes)."""
    try:
        from models.beats import BeatClassifier, load_weights
        from models.qrs import RhythmMonitor
    except ImportError:
        return None
    if not isinstance(monitor, RhythmMonitor):
        return None
    weights = load_weights()
    return BeatClassifier(monitor.fs, 2, weights) if weights is not None else None


def af_detector_for(monitor: Any, beats: Any | None) -> Any | None:
    """A :class:`models.af.AfDetector` when there is a beat classifier (it removes the ectopic
    beats) and the shipped AF weights exist, else None (AF then comes from the model's af
    episodes)."""
    if beats is None:
        return None
    try:
        from models.af import AfDetector, load_weights
    except ImportError:
        return None
    weights = load_weights()
    return AfDetector(monitor.fs, weights) if weights is not None else None


RATE_KINDS = ("asystole", "bradycardia", "tachycardia")
TWO_LEAD_KINDS = ("asystole", "bradycardia")   # with two leads: both leads' detectors decide them


class RhythmSource:
    """Rate conditions (asystole, bradycardia, tachycardia) from a :class:`models.qrs.RhythmMonitor`
    on the session's first model lead (with the beat classifier and two leads: on the second while
    the first is lost, :class:`models.rate_lead.RateLead`), VT runs from a :class:`models.beats.BeatClassifier` on its
    beats (first two model leads) and, with two leads, on the beats of a second detector on the
    second lead (:class:`models.vt_leads.LeadRunUnion`: either lead's run is the VT condition), and
    AF episodes from a :class:`models.af.AfDetector` on the first lead's classified beats, when they
    are installed; the state travels JSON-encoded in the alarm state.

    A condition's onset is the detector's (asystole: the last beat; bradycardia, tachycardia and
    VT: the first beat of the run; AF: the start of the irregular RR window); it is *established*
    (confirmed) where the definition is met: 4 s after the last beat, at the 5th (17th; VT: 5th
    ventricular) beat of the run, or once the AF probability has held for the rule's ``on_s``.
    """

    BATCH_S = 1.0
    SECOND_LEAD = True      # VT runs from the second lead's QRS detector too (models/vt_leads.py)
    GATE_KEEP_S = 10.0      # the network's vt outputs kept for beats still to be reported, s (> RHYTHM_LAG_S)
    GATE_MAX_WAIT_S = 2.0   # a beat waits at most this long for the network's outputs (a caller
                            # that gives none); in the service they lag the signal by < 0.2 s

    def __init__(self, monitor: Any, beats: Any | None = None, af: Any | None = None, gate: bool = False,
                 saturation: float = math.inf):
        self.monitor, self.beats = monitor, beats
        # |x| above this (the caller's units) is saturation, not ECG: the detectors and the beat
        # classifier read it as missing, as the network's preprocessor and the signal-loss alarm do
        # (DESIGN §3). Fed to the detector, a saturated artefact raises its QRS level so far that it
        # takes no QRS for a beat until the next artefact: a false asystole (docs/qrs.md).
        self.saturation = float(saturation)
        self.gate = bool(gate) and beats is not None   # the network's vt output confirms unsure beats
        self.af = af if beats is not None else None
        self.kinds = RATE_KINDS + (("vt",) if beats is not None else ()) + (("af",) if self.af is not None else ())
        self.vt_threshold: float | None = None   # the beat classifier's (None: the fitted one)
        self.af_threshold: float | None = None   # the AF detector's (None: the fitted one)
        fs = float(getattr(monitor, "fs", 250.0))
        self.batch_n = max(1, round(self.BATCH_S * fs))
        self.gate_keep_n, self.gate_wait_n = round(self.GATE_KEEP_S * fs), round(self.GATE_MAX_WAIT_S * fs)
        self.rate_lead = None
        if beats is not None:    # the second lead stands in for a lost first one (models/rate_lead.py)
            from models.rate_lead import RateLead

            self.rate_lead = RateLead(fs)
        self.union = self.asystole = self.brady = None
        if beats is not None and self.SECOND_LEAD:   # VT runs from both leads' detectors (models/vt_leads.py)
            from models.asystole_leads import AsystoleLeads
            from models.brady_leads import BradycardiaLeads
            from models.vt_leads import LeadRunUnion

            self.union = LeadRunUnion(fs)
            self.asystole = AsystoleLeads(fs)   # asystole: no QRS on either lead (models/asystole_leads.py)
            self.brady = BradycardiaLeads(fs)   # bradycardia the second lead does not contradict
        try:
            from models import qrs
            self.asystole_n, self.run_beats = round(qrs.ASYSTOLE_S * fs), {"bradycardia": qrs.BRADY_BEATS,
                                                                          "tachycardia": qrs.TACHY_BEATS}
        except (ImportError, AttributeError):
            self.asystole_n, self.run_beats = round(4.0 * fs), {"bradycardia": 5, "tachycardia": 17}

    def initial_state(self) -> dict:
        """The source's state: the detector's arrays, the beat classifier's, recent beats, and the
        samples not yet given to them (they run once ``BATCH_S`` of signal has gathered: their cost
        is per call); with the beat classifier, the second lead's detector and classifier (``m2``,
        ``b2``) and the union of the two leads' runs (``u``)."""
        return {"m": self.monitor.initial_state(), "b": self.beats.initial_state() if self.beats else None,
                "a": self.af.initial_state() if self.af else None, "beats": [], "buf": np.zeros((0, 1)), "end": 0,
                "vt": self._no_steps(), **self._second_lead()}

    def _second_lead(self) -> dict:
        """A fresh state of the second lead's detector and classifier and of the union (empty
        without the beat classifier)."""
        if self.union is None:
            return {}
        return {"m2": self.monitor.initial_state(), "b2": self.beats.initial_state(), "u": self.union.initial_state(),
                "as": self.asystole.initial_state(), "br": self.brady.initial_state()}

    @staticmethod
    def _no_steps() -> dict:
        """The network's recent vt outputs before any: step end samples, probabilities, horizon."""
        return {"s": [], "p": [], "h": -1}

    def add_steps(self, st: dict, samples: np.ndarray, p_vt: np.ndarray) -> None:
        """The network's ``vt`` probabilities of output steps ending at ``samples`` (the beat
        classifier's gate, :class:`models.beats.VtGate`); :meth:`update` drops those no beat still
        to come can look at."""
        if not self.gate or not len(samples):
            return
        g = st["vt"]
        g["s"] += [int(v) for v in np.asarray(samples).tolist()]
        g["p"] += [round(float(v), 6) for v in np.asarray(p_vt).tolist()]
        g["h"] = max(int(g["h"]), g["s"][-1])

    def export(self, st: dict) -> dict:
        """``st`` as JSON-able data (exact). The second lead's classifier filters the same two leads
        as the first, so its filtered buffer and filter state (:data:`models.beats.SIGNAL_STATE`,
        a sixth of an ECG snapshot) are the first's whenever both started together: they are then
        written once, and ``"b2_shares"`` names them."""
        out = {**st, "m": encode_arrays(st["m"]), "b": encode_arrays(st["b"]) if st.get("b") is not None else None,
               "a": encode_arrays(st["a"]) if st.get("a") is not None else None,
               "buf": encode_arrays({"x": st["buf"]})}
        if "m2" in st:
            b, b2 = st["b"], st["b2"]
            shared = [k for k in SIGNAL_STATE if k in b and k in b2 and bytes_of(b[k]) == bytes_of(b2[k])]
            out |= {"m2": encode_arrays(st["m2"]), "b2": encode_arrays({k: v for k, v in b2.items() if k not in shared}),
                    "b2_shares": shared}
        return out

    def load(self, st: dict) -> dict:
        b = decode_arrays(st["b"]) if st.get("b") is not None else None
        if self.beats is not None and b is None:      # a snapshot from before the beat classifier
            b = self.beats.initial_state()
        a = decode_arrays(st["a"]) if st.get("a") is not None else None
        if self.af is not None and a is None:         # a snapshot from before the AF detector
            a = self.af.initial_state()
        buf = decode_arrays(st["buf"])["x"]
        if "m2" in st:
            own, shares = decode_arrays(st["b2"]), set(st.get("b2_shares", ()))
            # the shared arrays back in their places: both classifiers' states have the same key order
            b2 = {k: b[k].copy() if k in shares else own[k] for k in b if k in shares or k in own}
            b2 |= {k: v for k, v in own.items() if k not in b2}
            second = {"m2": decode_arrays(st["m2"]), "b2": b2, "u": st["u"]}
        else:
            second = self._second_lead()               # (a snapshot from before the second lead: it starts now)
        st = {k: v for k, v in st.items() if k != "b2_shares"}
        return {**st, "m": decode_arrays(st["m"]), "b": b if self.beats is not None else None,
                "a": a if self.af is not None else None,
                "buf": buf if buf.ndim == 2 else buf[:, None],
                "vt": st.get("vt") or self._no_steps(),   # (a snapshot from before the gate)
                **second}

    def _two_lead_rate(self, st: dict, update: Any, update2: Any, final: int, flush: bool
                       ) -> list[tuple[str, str, int, int, str]]:
        """Asystole and bradycardia events of a two-lead session: the rhythm detector's (``update``)
        held against the second lead's detector (``update2``), both final up to ``final``
        (models/asystole_leads.py, models/brady_leads.py)."""
        asystole = self.asystole.update(st.setdefault("as", self.asystole.initial_state()), update.events,
                                        update2.beats, final, flush=flush)
        brady = self.brady.update(st.setdefault("br", self.brady.initial_state()), update.events, update.beats,
                                  update2.beats, final, flush=flush)
        return ([(typ, "asystole", sample, at, "") for typ, sample, at in asystole]
                + [(typ, "bradycardia", sample, at, "") for typ, sample, at in brady])

    def update(self, st: dict, x: np.ndarray, first: int, flush: bool = False) -> list[tuple[str, str, int, int, str]]:
        """Events ``(type, kind, sample, established, rule)`` once ``BATCH_S`` of signal has gathered
        (or at the end), from ``x`` (n,) or (n, c) starting at ``first`` (``sample``: the onset of a
        begin, the exclusive end of an end; ``rule``: the run rule that began a VT run,
        ``models.beats.RUN_RULES``, else empty). ``st["end"]`` is the first sample the detector has not seen;
        the beats are kept in ``st["beats"]`` (the machine trims them, keeping at least the longest
        run)."""
        x = np.asarray(x, np.float64)
        x = x[:, :2] if x.ndim > 1 else x[:, None]
        x = saturated_as_missing(x, self.saturation)
        if self.beats is None:
            x = x[:, :1]
        prev = st["buf"]
        if len(prev) and prev.shape[1] != x.shape[1]:
            prev = prev[:, :1] if x.shape[1] == 1 else np.repeat(prev[:, :1], x.shape[1], axis=1)
        buf = st["buf"] = np.concatenate([prev, x]) if len(prev) else x
        if len(buf) == 0 or (len(buf) < self.batch_n and not flush):
            return []
        rate = buf[:, 0]
        if buf.shape[1] > 1 and self.rate_lead is not None:   # the lead the rhythm follows
            rate = self.rate_lead.select(buf, st.setdefault("rl", self.rate_lead.initial_state()))
        update, st["m"] = self.monitor.process(rate, st["end"], st["m"])
        runs, af_events, two_leads = [], [], None
        if self.beats is not None:
            gate = None
            if self.gate:
                from models.beats import VtGate

                g = st["vt"]
                horizon = math.inf if flush else max(int(g["h"]), st["end"] + len(buf) - 1 - self.gate_wait_n)
                gate = VtGate(np.asarray(g["s"], np.int64), np.asarray(g["p"], np.float64), horizon)
            classified, runs, st["b"] = self.beats.process(buf, st["end"], update.beats, st["b"], flush=flush,
                                                           threshold=self.vt_threshold, gate=gate)
            pending = st["b"]["pending"]
            if buf.shape[1] > 1 and self.union is not None:   # the second lead's detector and classifier
                update2, st["m2"] = self.monitor.process(buf[:, 1], st["end"], st["m2"])
                _, runs2, st["b2"] = self.beats.process(buf, st["end"], update2.beats, st["b2"], flush=flush,
                                                        threshold=self.vt_threshold, gate=gate)
                pending2 = st["b2"]["pending"]
                runs = self.union.update(st["u"], (runs, runs2), (update.beats, update2.beats), (pending, pending2),
                                         st["end"] + len(buf), flush=flush)
                pending = np.concatenate([pending, pending2])
                final = min(self.monitor.decided_until(st["m"]), self.monitor.decided_until(st["m2"]))
                two_leads = self._two_lead_rate(st, update, update2, final, flush)
            if gate is not None:   # keep the outputs near beats still pending or still to be reported
                keep_from = min(st["end"] + len(buf) - self.gate_keep_n,
                                int(pending.min()) if len(pending) else math.inf) - self.beats.gate_pre
                k = int(np.searchsorted(gate.samples, keep_from))
                g["s"], g["p"] = g["s"][k:], g["p"][k:]
            if self.af is not None:
                _, af_events, st["a"] = self.af.process([(s, p) for s, _, p, _ in classified], st["a"],
                                                        threshold=self.af_threshold)
        st["end"] += len(buf)
        st["buf"] = np.zeros((0, buf.shape[1]))
        beats = st["beats"] = st["beats"] + [int(b) for b in np.asarray(update.beats).tolist()]
        out = []
        for e in update.events:
            if e.kind not in RATE_KINDS or (two_leads is not None and e.kind in TWO_LEAD_KINDS):
                continue
            if e.end_sample is not None:
                out.append(("end", e.kind, int(e.end_sample), int(e.end_sample), ""))
                continue
            onset = int(e.onset_sample)
            if e.kind == "asystole":
                at = onset + self.asystole_n
            else:
                i = next((i for i in range(len(beats) - 1, -1, -1) if beats[i] == onset), None)
                n = self.run_beats[e.kind]
                at = beats[i + n - 1] if i is not None and i + n - 1 < len(beats) else onset
            out.append(("begin", e.kind, onset, at, ""))
        out += two_leads or []
        for kind, episodes in (("vt", runs), ("af", af_events)):   # (each source's events in sample order)
            for e in episodes:
                if e.end_sample is None:
                    out.append(("begin", kind, int(e.onset_sample), int(e.established),
                                e.rule if kind == "vt" else ""))
                else:
                    out.append(("end", kind, int(e.end_sample), int(e.end_sample), ""))
        return out


def heart_rate(beats: list[int], at: int, sample_rate: float, n: int = 5, window_s: float = 30.0) -> float | None:
    """Median heart rate (bpm) of the last ``n`` RR intervals of beats in the ``window_s`` up to ``at``."""
    lo = at - window_s * sample_rate
    b = [x for x in beats if lo <= x <= at][-(n + 1):]
    if len(b) < 2:
        return None
    return round(60.0 * sample_rate / float(np.median(np.diff(b))), 1)
