"""A first alert rule: per-label episode detectors run causally, plus ``signal_loss`` from
lost-sample stretches. It produces DESIGN §3 alert objects with deterministic ids; the full
clinical alarm engine replaces this module.

The label rules are the detectors training fitted on validation (``meta["detectors"]``, see
:mod:`models.detector`), so the alerts raised are the episodes ``vigil evaluate`` scores: a causal
moving average over ``smooth_s``, an alert once the smoothed probability has been >= threshold for
``min_duration_s`` (onset at the start of that stretch, across joined gaps), cleared once it has
been below for ``join_gap_s`` (end at the first sample below). An untrained model gets ``RULES``.

All state is JSON (it travels in the session snapshot), and every sample index it reports is a
function of the signal alone, never of how it was chunked.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from models.detector import EpisodeDetector
from service import constants as C


def iso(t: datetime | None) -> str | None:
    """ISO 8601 UTC with milliseconds and a Z, the time format of alerts and sessions."""
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z") if t else None


@dataclass(frozen=True)
class LabelRule:
    """Raise ``kind`` once a label's smoothed probability has been >= ``on`` (then >= ``off``)
    for ``min_s``; clear once it has been below ``off`` for ``gap_s``."""

    label: str
    kind: str
    on: float
    off: float
    min_s: float
    gap_s: float = 0.0
    smooth_s: float = 0.0


# Label -> alert kind, and the defaults of an untrained model (no fitted detectors).
RULES: dict[str, tuple[LabelRule, ...]] = {
    "ecg": (LabelRule("af", "af", 0.7, 0.5, 10.0), LabelRule("vt", "vt", 0.7, 0.5, 1.5),
            LabelRule("vf", "vf", 0.7, 0.5, 2.0), LabelRule("noise", "artifact", 0.8, 0.6, 5.0)),
    "eeg": (LabelRule("seizure", "seizure", 0.7, 0.5, 5.0), LabelRule("artifact", "artifact", 0.8, 0.6, 5.0)),
}


def label_rules(modality: str, detectors: dict[str, EpisodeDetector] | None = None) -> list[LabelRule]:
    """The modality's rules, with the fitted detector's parameters where there is one."""
    out = []
    for r in RULES[modality]:
        d = (detectors or {}).get(r.label)
        out.append(r if d is None else replace(r, on=d.threshold, off=d.threshold, min_s=d.min_duration_s,
                                               gap_s=d.join_gap_s, smooth_s=d.smooth_s))
    return out


def _steps(seconds: float, rate: float) -> int:
    """Whole output steps covering ``seconds`` (at least one)."""
    return max(1, math.ceil(round(seconds * rate, 9)))


LOSS_MIN_S = 1.0    # lost signal for this long raises signal_loss
LOSS_CLEAR_S = 1.0  # valid signal for this long clears it
FLAT_S = 1.0        # identical values for this long are a flat line


@dataclass(frozen=True)
class AlertContext:
    """What every alert of a session carries."""

    session_id: str
    patient_id: str | None
    modality: str
    sample_rate: float
    channels: tuple[str, ...]
    model: dict[str, str]


class Alarms:
    """Alarm state of one session; each ``on_*`` call returns the transitions it caused."""

    def __init__(self, ctx: AlertContext, labels: tuple[str, ...], output_rate: float,
                 state: dict[str, Any] | None = None, detectors: dict[str, EpisodeDetector] | None = None):
        self.ctx = ctx
        self.labels = labels
        # (rule, label column, min steps, gap steps, smoothing window steps)
        self.rules = [(r, labels.index(r.label), _steps(r.min_s, output_rate), _steps(r.gap_s, output_rate),
                       EpisodeDetector(r.label, smooth_s=r.smooth_s).smooth_steps(output_rate))
                      for r in label_rules(ctx.modality, detectors) if r.label in labels]
        self._floor = min((r.on for r, *_ in self.rules), default=math.inf)
        # kinds: kind -> {"onset", "steps" (since onset), "below" (steps), "end", "alert" (dict or None)};
        # smooth: label -> last probabilities of its moving average; loss: current condition or None
        self.state: dict[str, Any] = state or {"kinds": {}, "loss": None, "smooth": {}}
        self.start_time: datetime | None = None

    # ------------------------------------------------------------------ rules

    def on_steps(self, starts: np.ndarray, samples: np.ndarray, probs: np.ndarray,
                 attribution: np.ndarray) -> list[dict]:
        """Run the label rules over output steps (first and last input sample, probs (n, L))."""
        kinds, smooth = self.state["kinds"], self.state.setdefault("smooth", {})
        if not kinds and (len(probs) == 0 or max([probs.max(initial=0.0)] + [max(w, default=0.0)
                                                 for w in smooth.values()]) < self._floor):
            # nothing can start: a mean is never above its largest value; just move the windows
            for rule, j, _, _, k in self.rules:
                if k > 1:
                    smooth[rule.label] = (smooth.get(rule.label, []) + probs[-k:, j].tolist())[-k:]
            return []
        out = []
        for i in range(len(probs)):
            for rule, j, min_steps, gap_steps, k in self.rules:
                p = float(probs[i, j])
                if k > 1:  # causal moving average over the last k steps (exact, order-independent)
                    w = smooth[rule.label] = (smooth.get(rule.label, []) + [p])[-k:]
                    p = math.fsum(w) / len(w)
                st = kinds.get(rule.kind)
                if st is None:
                    if p < rule.on:
                        continue
                    st = kinds[rule.kind] = {"onset": int(starts[i]), "steps": 0, "below": 0, "end": None,
                                             "alert": None}
                st["steps"] += 1
                if p >= rule.off:
                    st["below"], st["end"] = 0, None
                    if st["alert"] is None and st["steps"] >= min_steps:
                        st["alert"] = self._raise(rule.kind, st["onset"], int(samples[i]), p, probs[i], attribution[i])
                        out.append(dict(st["alert"]))
                else:
                    st["below"] = st.get("below", 0) + 1
                    if st.get("end") is None:
                        st["end"] = int(starts[i])
                    if st["below"] >= gap_steps:
                        if st["alert"] is not None:
                            out.append(self._clear(st["alert"], st["end"]))
                        del kinds[rule.kind]
        return out

    def on_loss(self, stretches: list[tuple[int, int, int]], end: int) -> list[dict]:
        """Run the signal_loss rule over lost stretches of a chunk that ends before ``end``."""
        fs = self.ctx.sample_rate
        min_n, clear_n = math.ceil(LOSS_MIN_S * fs), math.ceil(LOSS_CLEAR_S * fs)
        out = []
        for a, b, onset in stretches:
            cur = self.state["loss"]
            if cur is not None and a - cur["until"] >= clear_n:
                out += self._end_loss(cur)
                cur = None
            if cur is None:
                cur = self.state["loss"] = {"onset": onset, "until": b, "alert": None}
            cur["until"] = b
            if cur["alert"] is None and b - cur["onset"] >= min_n:
                raised = max(a, cur["onset"] + min_n - 1)
                cur["alert"] = self._raise(C.SIGNAL_LOSS, cur["onset"], raised, 1.0, None, None)
                out.append(dict(cur["alert"]))
        cur = self.state["loss"]
        if cur is not None and end - cur["until"] >= clear_n:
            out += self._end_loss(cur)
        return out

    def _end_loss(self, cur: dict) -> list[dict]:
        self.state["loss"] = None
        return [self._clear(cur["alert"], cur["until"])] if cur["alert"] is not None else []

    def finish(self, end_sample: int) -> list[dict]:
        """End of session: clear active alerts at ``end_sample``, drop pending conditions."""
        active = [st["alert"] for st in self.state["kinds"].values() if st["alert"] is not None]
        if self.state["loss"] is not None and self.state["loss"]["alert"] is not None:
            active.append(self.state["loss"]["alert"])
        self.state = {"kinds": {}, "loss": None, "smooth": {}}
        return [self._clear(a, end_sample) for a in active]

    def acknowledge(self, alert_id: str) -> dict | None:
        """Mark an active alert acknowledged; the new transition, or None when not active here."""
        conds = list(self.state["kinds"].values()) + ([self.state["loss"]] if self.state["loss"] else [])
        for st in conds:
            a = st["alert"]
            if a is not None and a["alert_id"] == alert_id and not a["acknowledged"]:
                a.update(acknowledged=True, seq=a["seq"] + 1)
                return dict(a)
        return None

    # ------------------------------------------------------------------ alert objects

    def _time(self, sample: int | None) -> str | None:
        if sample is None or self.start_time is None:
            return None
        return iso(self.start_time + timedelta(seconds=sample / self.ctx.sample_rate))

    def _raise(self, kind: str, onset: int, raised: int, confidence: float,
               probs: np.ndarray | None, attribution: np.ndarray | None) -> dict:
        ctx, k = self.ctx, C.ALERT_KINDS[kind]
        alert_id = f"{ctx.session_id}:{kind}:{onset}"
        older = self.state["kinds"].get(C.ESCALATES.get(kind, ""), {}).get("alert")
        evidence: dict[str, Any] = {"strip": f"/v1/alerts/{alert_id}/strip", "suppressed": False,
                                    "channels": list(ctx.channels)}
        if probs is not None:
            evidence["probabilities"] = {lab: round(float(p), 6) for lab, p in zip(self.labels, probs)}
            evidence["attribution"] = {ch: round(float(w), 6) for ch, w in zip(ctx.channels, attribution)}
        return {"alert_id": alert_id, "seq": 1, "session_id": ctx.session_id, "patient_id": ctx.patient_id,
                "modality": ctx.modality, "kind": kind, "category": k.category, "priority": k.priority,
                "state": C.ACTIVE, "acknowledged": False, "onset_sample": onset, "raised_sample": raised,
                "end_sample": None, "onset_time": self._time(onset), "end_time": None,
                "confidence": round(confidence, 6), "supersedes": older["alert_id"] if older else None,
                "model": dict(ctx.model), "evidence": evidence}

    def _clear(self, alert: dict, end_sample: int) -> dict:
        alert.update(state=C.CLEARED, seq=alert["seq"] + 1, end_sample=end_sample, end_time=self._time(end_sample))
        return dict(alert)
