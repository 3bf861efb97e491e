"""The alarm state machine of one session: conditions from generic sources become alerts.

Per kind, a condition goes ``inactive -> pending -> active -> cleared``:

- a source reports that it *began* (pending), then *confirmed* it at a sample; the alert is raised
  at ``due = max(confirm + delay, onset + hold)`` (generation delay; ``hold`` makes a seizure of
  more than 5 min a status epilepticus) if the condition is still present, else it is dropped;
- when raised, the suppression rules are checked at that sample (:meth:`Alarms._suppression`):
  a suppressed condition becomes an alert kept in history with ``evidence.suppressed: true`` and
  the reason, not published; it is re-examined every ``SUPPRESS_RECHECK_S`` while present and
  raised (a new transition of the same alert) once nothing suppresses it;
- when the condition ends, a non-latching alert clears; a high-priority (latching) alert that is
  not acknowledged publishes its ``end_sample`` and stays ``active`` until acknowledged;
- an escalation (vt -> vf, seizure -> status_epilepticus) is a new alert whose ``supersedes``
  names the old one, which clears (``evidence.superseded_by``); while the escalated condition
  lasts, the old kind is suppressed.

Sources (:mod:`service.alarms.sources`): model label episodes (the checkpoint's fitted detectors),
lost-signal stretches (:mod:`service.quality`) and the QRS detector's rate events. Decisions that
need another source's evidence wait until every source has processed their sample, so every
sample index and decision is a function of the signal alone, never of how it was chunked; all
state is JSON (it travels in the session snapshot), so a resumed session raises identical alerts.
"""

from __future__ import annotations

import copy
import logging
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Callable

import numpy as np

from models.beats import ALIKE
from models.detector import DEFAULT_DETECTORS, EpisodeDetector
from models.labels import VT
from service import constants as C
from service.alarms import settings as S
from service.alarms.sources import (LabelRule, LabelTracker, LossTracker, RhythmSource, af_detector_for,
                                    beat_classifier_for, heart_rate, rhythm_factory)
from service.quality import cause_names

log = logging.getLogger(__name__)
HR_WINDOW_S = 30.0        # the heart rate in a rate alert's evidence is from beats this recent
AUTO = object()


def iso(t: datetime | None) -> str | None:
    """ISO 8601 UTC with milliseconds and a Z, the time format of alerts and sessions."""
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z") if t else None


@dataclass(frozen=True)
class AlertContext:
    """What every alert of a session carries."""

    session_id: str
    patient_id: str | None
    modality: str
    sample_rate: float
    channels: tuple[str, ...]
    model: dict[str, str]


def fresh_state() -> dict[str, Any]:
    return {"v": 2, "settings": {}, "src": {}, "loss": None, "rhythm": None, "rq": [], "conds": {}, "alerts": {},
            "ev": {"lost": [], "noise": []}, "steps": [], "last": -1, "strips": {}, "pause": None}


# The smoothing window of the suppressing poor-signal probability (the network's own quality
# output, ``Alarms.process(suppress_q=...)``) in the alarm state's ``src``.
_SUPPRESS_KEY = "quality:suppress"


def steps_with_signal(attribution: np.ndarray | None, n: int) -> np.ndarray:
    """``(n,)`` bool: whether each output step's token had a channel with signal.

    The network pools only channels with at least half of the token's samples valid
    (:class:`models.network.Network`); a token with none gets all-zero pooling weights
    (``attribution``), does not update the SSM state, and its outputs come from no input at all
    (for the shipped ECG model vf 0.503, above its 0.5 threshold). Such a step is no evidence for
    or against any label: the alarm engine skips it (``signal_loss`` covers the stretch).
    """
    if attribution is None or np.ndim(attribution) != 2:
        return np.ones(n, bool)
    return np.asarray(attribution).any(axis=1)      # the weights are >= 0


def _add_interval(intervals: list[list[int]], a: int, b: int) -> None:
    """Append [a, b) to sorted, merged intervals (a >= every earlier start)."""
    if intervals and a <= intervals[-1][1]:
        intervals[-1][1] = max(intervals[-1][1], b)
    else:
        intervals.append([a, b])


def _overlaps(intervals: list[list[int]], lo: int, hi: int) -> bool:
    """Whether any interval holds a sample in [lo, hi]."""
    return any(a <= hi and b > lo for a, b in intervals)


class Alarms:
    """Alarm state of one session; :meth:`process` returns the transitions a chunk caused.

    Parameters
    ----------
    ctx : AlertContext
    labels : tuple of str
        The model's output labels (columns of ``probs``).
    output_rate : float
        Model output steps per second.
    state : dict, optional
        A previous :attr:`state` (JSON), e.g. from a snapshot.
    detectors : dict, optional
        Fitted episode detectors by label (``meta["detectors"]``); defaults otherwise.
    rhythm : callable or None
        ``fs -> RhythmMonitor`` (default: ``models.qrs`` when it exists, ECG only).
    saturation : float
        ``|x|`` above this, in the session's units, is saturation (the limit of
        :class:`service.quality.Quality`): the QRS detectors and the beat classifier read it as
        missing (:class:`service.alarms.sources.RhythmSource`). Default: no limit.
    """

    def __init__(self, ctx: AlertContext, labels: tuple[str, ...], output_rate: float,
                 state: dict[str, Any] | None = None, detectors: dict[str, EpisodeDetector] | None = None,
                 rhythm: Callable[[float], Any] | None | object = AUTO, saturation: float = math.inf):
        self.ctx, self.labels, self.output_rate = ctx, tuple(labels), output_rate
        self.detectors = detectors or {}
        if rhythm is AUTO:
            rhythm = rhythm_factory() if ctx.modality == "ecg" else None
        if rhythm is not None:
            monitor = rhythm(ctx.sample_rate)
            beats = beat_classifier_for(monitor)
            self.rhythm = RhythmSource(monitor, beats, af_detector_for(monitor, beats), gate=VT in self.labels,
                                       saturation=saturation)
        else:
            self.rhythm = None
        self.loss = LossTracker(ctx.sample_rate)
        self.kinds = S.kinds_of(ctx.modality)
        self.quality_label = C.QUALITY_LABELS[ctx.modality]
        self.start_time: datetime | None = None
        self._hello_settings: Any = None
        self.state = state if state is not None else fresh_state()

    # ------------------------------------------------------------------ state and settings

    @property
    def state(self) -> dict[str, Any]:
        """The alarm state as JSON-able data (the QRS detector's arrays encoded), for snapshots."""
        st = dict(self._state)
        if st["rhythm"] is not None:
            st["rhythm"] = self.rhythm.export(st["rhythm"]) if self.rhythm is not None else None
        return st

    @state.setter
    def state(self, st: dict[str, Any]) -> None:
        if st.get("v") != 2:  # a snapshot of the first alert rule: start the alarm state afresh
            if st:
                log.warning("session %s: alarm state of an older version dropped", self.ctx.session_id)
            st = fresh_state()
        st = dict(st)
        if self.rhythm is not None:
            st["rhythm"] = self.rhythm.initial_state() if st.get("rhythm") is None else self.rhythm.load(st["rhythm"])
        else:
            st["rhythm"] = None
        self._state = st
        self._configure()

    def _configure(self) -> None:
        """Derived, non-state parts from the session's settings: resolved settings and trackers."""
        self.settings = S.resolve(self._state["settings"], self.ctx.modality)
        fs, r = self.ctx.sample_rate, self.output_rate
        by_label: dict[str, list[str]] = {}
        supplied = self.rhythm.kinds if self.rhythm is not None else ()
        self.rhythm_kinds = tuple(k for k in self.kinds if k in supplied)
        for kind in self.kinds:
            spec = C.ALERT_KINDS[kind]
            label = (spec.label or self.quality_label) if spec.source == C.SOURCE_MODEL else spec.model_label
            if label and kind not in self.rhythm_kinds and label in self.labels:
                by_label.setdefault(label, []).append(kind)
        if self.rhythm is not None and "vt" in self.rhythm_kinds:
            self.rhythm.vt_threshold = self.settings.kinds["vt"].threshold
        if self.rhythm is not None and "af" in self.rhythm_kinds:
            self.rhythm.af_threshold = self.settings.kinds["af"].threshold
        self.trackers: list[tuple[str, int, LabelTracker, list[str]]] = []
        for label, kinds in by_label.items():
            det = self.detectors.get(label) or DEFAULT_DETECTORS.get(label) or EpisodeDetector(label)
            rule = LabelRule.from_detector(det, self.settings.kinds[kinds[0]].threshold)
            self.trackers.append((label, self.labels.index(label), LabelTracker(rule, r), kinds))
        self.delay_n = {k: math.ceil(round(self.settings.kinds[k].delay_s * fs, 9)) for k in self.kinds}
        hold = {k: C.ALERT_KINDS[k].hold_s for k in self.kinds}
        if "status_epilepticus" in hold:
            hold["status_epilepticus"] = self.settings.status_epilepticus_s
        self.hold_n = {k: math.ceil(round(v * fs, 9)) for k, v in hold.items()}
        self.window_n = math.ceil(C.SUPPRESS_WINDOW_S * fs)
        self.recheck_n = math.ceil(C.SUPPRESS_RECHECK_S * fs)
        self.lag_n = math.ceil(C.RHYTHM_LAG_S * fs)

    def configure(self, overrides: dict) -> None:
        """Replace the session's overrides (already validated, :func:`service.alarms.settings.validate`)."""
        self._state["settings"] = overrides
        self._configure()

    def use_hello(self, hello: Any) -> None:
        """Apply a hello's ``alarms`` settings once (merged over the session's current ones)."""
        raw = getattr(hello, "alarms", None)
        if raw is None or raw is self._hello_settings:
            return
        self._hello_settings = raw
        self.configure(S.validate(raw, self.ctx.modality, base=self._state["settings"]))

    def pause(self, from_sample: int, duration_s: float, kinds: list[str], by: str | None, at: str) -> dict:
        """Pause (withhold) the listed kinds for ``duration_s`` of signal from ``from_sample``."""
        until = from_sample + math.ceil(duration_s * self.ctx.sample_rate)
        self._state["pause"] = {"from": from_sample, "until": until, "kinds": list(kinds), "by": by, "at": at,
                               "duration_s": duration_s}
        return dict(self._state["pause"])

    def resume(self, at_sample: int) -> dict | None:
        """End a pause early (from ``at_sample``); the pause as it was, or None."""
        p = self._state["pause"]
        if p is None or p["until"] <= at_sample:
            self._state["pause"] = None
            return None
        self._state["pause"] = None
        return {**p, "until": max(p["from"], at_sample)}

    # ------------------------------------------------------------------ processing

    def process(self, first: int, end: int, stretches: list[tuple] = (), starts: np.ndarray | None = None,
                samples: np.ndarray | None = None, probs: np.ndarray | None = None,
                attribution: np.ndarray | None = None, x: np.ndarray | None = None, flush: bool = False,
                suppress_q: np.ndarray | None = None) -> list[dict]:
        """Advance over one chunk and return its alert transitions, in order.

        Parameters
        ----------
        first, end : int
            The chunk's raw input samples ``[first, end)``.
        stretches : list of (start, end, onset, causes)
            Lost stretches of the chunk (:meth:`service.quality.Quality.update`).
        starts, samples : (n,) int
            First and last input sample covered by each output step completed in this chunk.
        probs : (n, L) float
            The steps' probabilities; ``attribution`` (n, c) their per-channel weights.
        x : (t, c) float, optional
            The chunk's raw model channels in the session's units (the QRS detector reads lead 0).
        flush : bool
            End of the session: decide what is pending, clear active alerts at ``end``.
        suppress_q : (n,) float, optional
            The steps' poor-signal probability that suppresses physiological alarms: the network's
            own quality output (the quality column of ``probs`` is fused with the quality head of
            ``models/sqi.py``, which raises ``artifact`` alerts but does not suppress: on
            MIT-BIH 203 it rates the signal around a true VT poor). None: the quality column.
        """
        out: list[dict] = []
        self._loss(stretches, end, out)
        seen = steps_with_signal(attribution, len(probs)) if probs is not None and len(probs) else None
        if self.rhythm is not None and self.rhythm.gate and seen is not None:
            # the network's vt output confirms beats the classifier is unsure of (models/beats.py)
            self.rhythm.add_steps(self._state["rhythm"], samples, probs[:, self.labels.index(VT)] * seen)
        if self.rhythm is not None and x is not None and (len(x) or flush):
            try:
                events = self.rhythm.update(self._state["rhythm"], x, first, flush)
            except Exception:  # a detector failure must not stop the session's other alarms
                log.exception("session %s: QRS detector failed; rate alarms are off for this session",
                              self.ctx.session_id)
                self.rhythm, self._state["rhythm"], self._state["rq"], events = None, None, [], []
            self._state["rq"] += [list(e) for e in events]
        if probs is not None and len(probs):
            j = self.labels.index(self.quality_label) if self.quality_label in self.labels else None
            if suppress_q is None and j is not None:
                suppress_q = probs[:, j]
            if not (seen.all() and self._quiet(starts, samples, probs, suppress_q)):
                for i in range(len(probs)):
                    self._step(int(starts[i]), int(samples[i]), probs[i],
                               attribution[i] if attribution is not None else None, out,
                               float(suppress_q[i]) if suppress_q is not None else None, bool(seen[i]))
        rhythm_h = (self._state["rhythm"]["end"] if self.rhythm is not None else end) - 1 - self.lag_n
        self._rhythm(math.inf if flush else self._state["last"], math.inf if flush else rhythm_h, out, end)
        # drop evidence no decision still to come can look at: every pending one is after ``limit``
        # (rate events still queued and rate conditions not yet decided included)
        pending = [e[3] for e in self._state["rq"] if e[0] == "begin"]
        pending += [c["due"] for k, c in self._state["conds"].items()
                    if c["due"] is not None and k in self.rhythm_kinds]
        limit = min([self._state["last"], rhythm_h, *pending])
        ev = self._state["ev"]
        for name in ("lost", "noise"):
            ev[name] = [iv for iv in ev[name] if iv[1] >= limit - self.window_n]
        if self.rhythm is not None:
            self._state["steps"] = [s for s in self._state["steps"] if s[1] >= limit]
            lo = limit - math.ceil(HR_WINDOW_S * self.ctx.sample_rate)
            beats = self._state["rhythm"]["beats"]
            keep = max(self.rhythm.run_beats.values())  # a run's first beat, for its established sample
            self._state["rhythm"]["beats"] = [b for i, b in enumerate(beats) if b >= lo or i >= len(beats) - keep]
        if flush:
            out += self.finish(end)
        return out

    def _loss(self, stretches: list[tuple], end: int, out: list[dict]) -> None:
        for a, b, *_ in stretches:
            _add_interval(self._state["ev"]["lost"], a, b)
        for typ, smp, causes in self.loss.update(self._state, list(stretches), end):
            if typ == "begin":
                self._begin(C.SIGNAL_LOSS, smp)
            elif typ == "confirm":
                cond = self._state["conds"][C.SIGNAL_LOSS]
                cond["causes"] = causes
                self._confirm(C.SIGNAL_LOSS, smp)
                self._decide(C.SIGNAL_LOSS, smp, out, extra={"causes": cause_names(causes)})
            else:
                self._end(C.SIGNAL_LOSS, smp, out)

    def _quiet(self, starts: np.ndarray, samples: np.ndarray, probs: np.ndarray,
               suppress_q: np.ndarray | None = None) -> bool:
        """The common case at once: no label episode is open and no smoothed probability of these
        steps comes near its threshold (nor the noise probability near the suppression level), so
        no step can change anything but the moving averages; advance them, True. Else False (the
        exact per-step path runs)."""
        src, margin = self._state["src"], 1e-6
        new_windows = {}
        for label, j, tracker, _ in self.trackers:
            st = src.get(label) or {"ep": None}
            if st["ep"] is not None:
                return False
            series = [(label, probs[:, j], tracker.rule.threshold)]
            if label == self.quality_label and suppress_q is not None:
                series.append((_SUPPRESS_KEY, suppress_q, C.SUPPRESS_NOISE_P))
            for key, values, limit in series:
                win = (src.get(key) or {}).get("win", [])
                p = np.asarray(values, np.float64)
                if max(float(p.max()), max(win, default=0.0)) >= limit - margin:  # a mean is never above its largest term
                    both = np.concatenate([np.asarray(win, np.float64), p])
                    c = np.concatenate([[0.0], np.cumsum(both)])
                    i = np.arange(len(win) + 1, len(both) + 1)
                    lo = np.maximum(i - tracker.k, 0)
                    if ((c[i] - c[lo]) / (i - lo)).max() >= limit - margin:  # (n,) causal moving average
                        return False
                if tracker.k > 1:
                    new_windows[key] = (win + p.tolist())[-tracker.k:]
        for key, win in new_windows.items():
            src.setdefault(key, {"ep": None})["win"] = win
        for label, _, _, _ in self.trackers:
            src.setdefault(label, {"ep": None})
        if self.rhythm is not None:
            self._state["steps"] += [[int(a), int(b), [round(v, 6) for v in row]]
                                     for a, b, row in zip(starts.tolist(), samples.tolist(), probs.tolist())]
        self._state["last"] = int(samples[-1])
        return True

    def _step(self, start: int, sample: int, p: np.ndarray, attr: np.ndarray | None, out: list[dict],
              suppress_q: float | None = None, seen: bool = True) -> None:
        """One model output step: label episodes, evidence, and the decisions due by ``sample``.
        A step without signal (``seen`` False, :func:`steps_with_signal`) only moves the clock:
        its outputs neither enter the moving averages nor count as a step of an episode."""
        src, smoothed, q = self._state["src"], {}, None
        for label, j, tracker, _ in self.trackers:
            st = src.setdefault(label, {"ep": None})
            smoothed[label] = tracker.smooth(st, float(p[j])) if seen else tracker.average(st)
            if seen and label == self.quality_label and suppress_q is not None:
                q = tracker.smooth(src.setdefault(_SUPPRESS_KEY, {"ep": None}), suppress_q)
        if q is not None and q >= C.SUPPRESS_NOISE_P:
            _add_interval(self._state["ev"]["noise"], start, sample + 1)
        if self.rhythm is not None and seen:
            self._state["steps"].append([start, sample, [round(float(v), 6) for v in p]])
        self._state["last"] = sample
        for label, _, tracker, kinds in self.trackers:
            for typ, smp in (tracker.step(src[label], smoothed[label], start, sample) if seen else []):
                for kind in kinds:
                    if typ == "begin":
                        self._begin(kind, smp)
                    elif typ == "confirm":
                        self._confirm(kind, smp)
                    else:
                        self._end(kind, smp, out)
        for label, _, tracker, kinds in self.trackers:
            for kind in kinds:
                cond = self._state["conds"].get(kind)
                if cond is not None and cond["due"] is not None and cond["due"] <= sample:
                    self._decide(kind, sample, out, probs=p, attr=attr, confidence=smoothed[label],
                                 extra={"threshold": tracker.rule.threshold})

    def _rhythm(self, model_h: float, rhythm_h: float, out: list[dict], end: float = math.inf) -> None:
        """Rate events in order. A decision at ``due`` waits until the model's outputs cover it
        (``model_h``, suppression evidence) and, when a generation delay put it after the sample
        where the condition was established, until the detector has reported every beat up to it
        (``rhythm_h``: the search-back can report a beat up to ``RHYTHM_LAG_S`` late); none is made
        at or after ``end``, the first sample not received (a suppressed condition is re-examined
        every ``SUPPRESS_RECHECK_S``: at the end of a session, with every horizon open, a kind that
        stays suppressed, e.g. a disabled af, would otherwise be re-examined for ever)."""
        rq, conds = self._state["rq"], self._state["conds"]

        def ready(cond: dict) -> bool:
            return cond["due"] <= model_h and (cond["due"] == cond["confirm"] or cond["due"] <= rhythm_h)

        while rq:
            typ, kind, smp, at, *rule = rq[0]     # (rule: absent in a snapshot from before it)
            if typ == "begin":
                if kind not in conds:
                    self._begin(kind, smp)
                    self._confirm(kind, at)
                    conds[kind]["rule"] = rule[0] if rule else ""
                rq.pop(0)
                continue
            cond = conds.get(kind)
            if cond is not None and cond["due"] is not None and cond["due"] < smp:
                if not ready(cond):
                    break
                self._decide_rate(kind, cond["due"], out)
                continue
            self._end(kind, smp, out)
            rq.pop(0)
        for kind in self.rhythm_kinds:
            while (cond := conds.get(kind)) is not None and cond["due"] is not None and cond["due"] < end \
                    and ready(cond):
                self._decide_rate(kind, cond["due"], out)

    def _decide_rate(self, kind: str, t: int, out: list[dict]) -> None:
        step = next((s for s in reversed(self._state["steps"]) if s[0] <= t), None)
        hr = heart_rate(self._state["rhythm"]["beats"], t, self.ctx.sample_rate, window_s=HR_WINDOW_S)
        rule = self._state["conds"][kind].get("rule")
        self._decide(kind, t, out, probs=np.array(step[2]) if step else None, confidence=1.0,
                     extra={"hr_bpm": hr, **({"run_rule": rule} if rule else {})})

    # ------------------------------------------------------------------ the state machine

    def _begin(self, kind: str, onset: int) -> None:
        conds = self._state["conds"]
        if kind in conds:
            return
        conds[kind] = {"onset": onset + self.hold_n.get(kind, 0), "source_onset": onset, "confirm": None,
                       "due": None, "alert": None, "absorbed": False}

    def _confirm(self, kind: str, at: int) -> None:
        cond = self._state["conds"].get(kind)
        if cond is not None and cond["confirm"] is None:
            cond["confirm"] = at
            cond["due"] = max(at + self.delay_n.get(kind, 0), cond["onset"])

    def _end(self, kind: str, end: int, out: list[dict]) -> None:
        cond = self._state["conds"].pop(kind, None)
        if cond is None or cond["alert"] is None or cond["absorbed"]:
            return  # never raised (a pending condition is dropped), or superseded
        alert = self._state["alerts"].get(cond["alert"])
        if alert is None:
            return
        end = max(end, alert["onset_sample"])
        if alert["evidence"]["suppressed"] or not C.ALERT_KINDS[kind].latching or alert["acknowledged"]:
            out.append(self._clear(alert, end))
        else:  # latched: the condition's end is published, the alert stays active until acknowledged
            alert.update(seq=alert["seq"] + 1, end_sample=end, end_time=self._time(end))
            out.append(copy.deepcopy(alert))

    def _decide(self, kind: str, t: int, out: list[dict], probs: np.ndarray | None = None,
                attr: np.ndarray | None = None, confidence: float = 1.0, extra: dict | None = None) -> None:
        """Raise (or re-examine a suppressed) condition of ``kind`` at sample ``t``."""
        cond = self._state["conds"][kind]
        held = self._state["alerts"].get(cond["alert"]) if cond["alert"] else None
        if held is not None and not held["evidence"]["suppressed"]:
            cond["due"] = None
            return
        reason = self._suppression(kind, t)
        cond["due"] = t + self.recheck_n if reason else None
        if held is not None and reason:
            return
        older = None if reason else self._superseded(kind)
        if held is None:
            alert = self._new(kind, cond["onset"], t, confidence, probs, attr, extra, reason)
            cond["alert"] = alert["alert_id"]
            self._state["alerts"][alert["alert_id"]] = alert
            self._strip(alert)
        else:  # a suppressed condition is raised now that nothing suppresses it
            alert = held
            alert.update(seq=alert["seq"] + 1, raised_sample=t, confidence=round(float(confidence), 6))
            alert["evidence"].update(self._evidence(alert["alert_id"], probs, attr, extra, None))
        if older is not None:
            alert["supersedes"] = older["alert_id"]
        out.append(copy.deepcopy(alert))
        if older is not None:
            older["evidence"]["superseded_by"] = alert["alert_id"]
            for c in self._state["conds"].values():
                if c["alert"] == older["alert_id"]:
                    c["absorbed"] = True
            end = older["end_sample"] if older["end_sample"] is not None else max(alert["onset_sample"],
                                                                                  older["onset_sample"])
            out.append(self._clear(older, end))

    def _superseded(self, kind: str) -> dict | None:
        """The latest held, published alert of the kind ``kind`` escalates from."""
        old = C.ALERT_KINDS[kind].escalates
        held = [a for a in self._state["alerts"].values() if a["kind"] == old and not a["evidence"]["suppressed"]]
        return max(held, key=lambda a: a["onset_sample"]) if held else None

    def _suppression(self, kind: str, t: int) -> dict | None:
        """Why the condition of ``kind`` is withheld at sample ``t``, or None."""
        spec = C.ALERT_KINDS[kind]
        if not spec.suppressible:
            return None
        if not self.settings.kinds[kind].enabled:
            return {"reason": "disabled", "detail": f"{kind} is turned off in the session's alarm settings"}
        p = self._state["pause"]
        if p is not None and p["from"] <= t < p["until"] and kind in p["kinds"]:
            return {"reason": "paused", "detail": f"alarms paused by {p['by'] or 'unknown'} at {p['at']} for "
                                                  f"{p['duration_s']:g} s", "until_sample": p["until"]}
        for k, spec2 in C.ALERT_KINDS.items():
            if spec2.escalates == kind:
                c = self._state["conds"].get(k)
                a = self._state["alerts"].get(c["alert"]) if c and c["alert"] else None
                if a is not None and not a["evidence"]["suppressed"]:
                    return {"reason": "superseded", "detail": f"{k} ({a['alert_id']}) is active"}
        if self.settings.suppression and spec.poor_signal_held:
            lo = t - self.window_n
            if _overlaps(self._state["ev"]["lost"], lo, t):
                return {"reason": "signal_loss",
                        "detail": f"signal lost within {C.SUPPRESS_WINDOW_S:g} s before the decision"}
            if _overlaps(self._state["ev"]["noise"], lo, t) and not self._alike_run(kind):
                return {"reason": "poor_signal",
                        "detail": f"{self.quality_label} probability >= {C.SUPPRESS_NOISE_P:g} within "
                                  f"{C.SUPPRESS_WINDOW_S:g} s before the decision"}
        return None

    def _alike_run(self, kind: str) -> bool:
        """Whether the condition of ``kind`` is a VT run the beat classifier began on alike beats
        (:data:`models.beats.ALIKE`): five or more complexes of one shape, which noise does not make,
        so the network's noise output does not hold it back (that output reads fast wide complexes
        as noise, as it reads VF; docs/alarms.md). Lost signal still does."""
        cond = self._state["conds"].get(kind)
        return cond is not None and cond.get("rule") == ALIKE

    def finish(self, end_sample: int) -> list[dict]:
        """End of session: clear held alerts (end_sample: their condition's end, else ``end_sample``),
        drop pending conditions."""
        out = []
        for alert in list(self._state["alerts"].values()):
            out.append(self._clear(alert, alert["end_sample"] if alert["end_sample"] is not None else end_sample))
        st = self._state
        st["conds"], st["rq"], st["loss"], st["src"], st["pause"] = {}, [], None, {}, None
        return out

    def acknowledge(self, alert_id: str) -> dict | None:
        """Acknowledge a held, published alert: the transition (cleared too when latched after its
        condition ended), or None when it is not held here or already acknowledged."""
        alert = self._state["alerts"].get(alert_id)
        if alert is None or alert["acknowledged"] or alert["evidence"]["suppressed"]:
            return None
        alert["acknowledged"] = True
        if alert["end_sample"] is not None:
            return self._clear(alert, alert["end_sample"])
        alert["seq"] += 1
        return copy.deepcopy(alert)

    def not_monitoring(self, on: bool, sample: int, last: int, detail: dict | None = None) -> list[dict]:
        """Raise (``on``) or clear the wall-clock not_monitoring alert; ``sample`` is the next expected
        sample (its onset, or the end when data resumed), ``last`` the last processed one."""
        kind, conds, out = C.NOT_MONITORING, self._state["conds"], []
        if on and kind not in conds:
            self._begin(kind, sample)
            self._confirm(kind, sample)
            self._decide(kind, last, out, extra=detail)
        elif not on and kind in conds:
            self._end(kind, sample, out)
        return out

    def held(self) -> list[dict]:
        """Alerts held by the machine (active, latched, or suppressed while present)."""
        return list(self._state["alerts"].values())

    def held_alert(self, alert_id: str) -> dict | None:
        """The machine's own copy of a held alert (later transitions are copies of it), or None."""
        return self._state["alerts"].get(alert_id)

    def has_condition(self, kind: str) -> bool:
        return kind in self._state["conds"]

    @property
    def overrides(self) -> dict:
        """The session's settings overrides (validated)."""
        return self._state["settings"]

    @property
    def paused(self) -> dict | None:
        return self._state["pause"]

    # ------------------------------------------------------------------ strips

    def _strip(self, alert: dict) -> None:
        """Register the raw-signal strip of a new alert: STRIP_PRE_S before its onset to STRIP_POST_S
        after (before and after its raise when that came more than STRIP_PRE_S after the onset)."""
        fs = self.ctx.sample_rate
        anchor = alert["onset_sample"]
        if alert["raised_sample"] - anchor > C.STRIP_PRE_S * fs:
            anchor = alert["raised_sample"]
        a = max(0, anchor - math.ceil(C.STRIP_PRE_S * fs))
        self._state["strips"][alert["alert_id"]] = [a, anchor + math.ceil(C.STRIP_POST_S * fs), a]

    def strip_parts(self, end: int, final: bool = False) -> list[tuple[str, int, int, int]]:
        """Parts of pending strips that samples before ``end`` complete: ``(alert_id, window_start,
        a, b)``; a strip is done once its window is written (or at the session's end)."""
        parts, strips = [], self._state["strips"]
        for aid, (start, stop, written) in list(strips.items()):
            b = min(stop, end)
            if b > written:
                parts.append((aid, start, written, b))
                strips[aid][2] = b
            if b >= stop or final:
                del strips[aid]
        return parts

    # ------------------------------------------------------------------ alert objects

    def _time(self, sample: int | None) -> str | None:
        if sample is None or self.start_time is None:
            return None
        return iso(self.start_time + timedelta(seconds=sample / self.ctx.sample_rate))

    def _evidence(self, alert_id: str, probs, attr, extra: dict | None, reason: dict | None) -> dict:
        ev: dict[str, Any] = {"strip": f"/v1/alerts/{alert_id}/strip", "suppressed": reason is not None,
                              "suppression": reason, "channels": list(self.ctx.channels)}
        if probs is not None:
            ev["probabilities"] = {lab: round(float(p), 6) for lab, p in zip(self.labels, probs)}
        if attr is not None:
            ev["attribution"] = {ch: round(float(w), 6) for ch, w in zip(self.ctx.channels, attr)}
        if extra:
            ev.update(extra)
        return ev

    def _new(self, kind: str, onset: int, raised: int, confidence: float, probs, attr, extra: dict | None,
             reason: dict | None) -> dict:
        ctx, k = self.ctx, C.ALERT_KINDS[kind]
        alert_id = f"{ctx.session_id}:{kind}:{onset}"
        evidence = self._evidence(alert_id, probs, attr, extra, reason)
        evidence["source"] = k.source
        return {"alert_id": alert_id, "seq": 1, "session_id": ctx.session_id, "patient_id": ctx.patient_id,
                "modality": ctx.modality, "kind": kind, "category": k.category, "priority": k.priority,
                "state": C.ACTIVE, "acknowledged": False, "onset_sample": onset, "raised_sample": raised,
                "end_sample": None, "onset_time": self._time(onset), "end_time": None,
                "confidence": round(float(confidence), 6), "supersedes": None, "model": dict(ctx.model),
                "evidence": evidence}

    def _clear(self, alert: dict, end_sample: int) -> dict:
        """The alert's cleared transition; it is no longer held."""
        alert.update(state=C.CLEARED, seq=alert["seq"] + 1, end_sample=end_sample, end_time=self._time(end_sample))
        self._state["alerts"].pop(alert["alert_id"], None)
        return copy.deepcopy(alert)
