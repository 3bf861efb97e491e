"""Per-session alarm settings: validated overrides of the alarm table's defaults.

A session's settings come from its hello (optional ``"alarms"`` field) or from REST, as a JSON
object; only what differs from the defaults needs to be given::

    {"suppression": true,                       # poor-signal suppression of physiological kinds
     "not_monitoring_timeout_s": 10,            # 2–300 s without data raises not_monitoring
     "status_epilepticus_s": 300,               # 60–1800 s of seizure raises status_epilepticus
     "kinds": {"vt": {"threshold": 0.4,         # model-driven kinds: 0.1–0.9 (default: fitted)
                      "delay_s": 0,             # generation delay, 0–max (docs/alarms.md)
                      "enabled": true}}}        # only medium/low physiological and artifact kinds

Values outside their safe range are refused with one message style
(``Invalid alarms.kinds.vt.threshold: expected 0.1–0.9, got 2``), never clamped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from service import constants as C

SESSION_FIELDS = ("suppression", "not_monitoring_timeout_s", "status_epilepticus_s", "kinds")
KIND_FIELDS = ("threshold", "delay_s", "enabled")


class SettingsError(ValueError):
    """An invalid alarm setting; ``field`` is its dotted path (``alarms.kinds.vt.threshold``)."""

    def __init__(self, field: str, expected: str, got: Any):
        shown = (str(got).lower() if isinstance(got, bool) else got if isinstance(got, (int, float))
                 else repr(got))
        super().__init__(f"Invalid {field}: expected {expected}, got {shown}")
        self.field, self.expected, self.got = field, expected, got


def kinds_of(modality: str) -> list[str]:
    """The alert kinds a session of ``modality`` can raise, in table order."""
    return [k.name for k in C.ALERT_KINDS.values() if modality in k.modalities]


def _number(field: str, v: Any, lo: float, hi: float, unit: str = "") -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not lo <= v <= hi:
        raise SettingsError(field, f"{lo:g}–{hi:g}{unit}", v)
    return float(v)


def can_disable(kind: str) -> bool:
    """High-priority kinds and the loss of monitoring cannot be turned off."""
    k = C.ALERT_KINDS[kind]
    return k.priority != C.HIGH and kind not in (C.SIGNAL_LOSS, C.NOT_MONITORING)


def has_threshold(kind: str) -> bool:
    k = C.ALERT_KINDS[kind]
    return (k.source == C.SOURCE_MODEL or bool(k.model_label)) and k.hold_s == 0.0


def validate(raw: Any, modality: str, base: dict | None = None, prefix: str = "alarms") -> dict:
    """Validated overrides (``raw`` merged over ``base``); raises :class:`SettingsError`."""
    if not isinstance(raw, dict):
        raise SettingsError(prefix, "a JSON object", type(raw).__name__)
    out: dict[str, Any] = {k: (dict(v) if isinstance(v, dict) else v) for k, v in (base or {}).items()}
    out["kinds"] = {k: dict(v) for k, v in (base or {}).get("kinds", {}).items()}
    for key, v in raw.items():
        field = f"{prefix}.{key}"
        if key == "suppression":
            if not isinstance(v, bool):
                raise SettingsError(field, "true or false", v)
            out[key] = v
        elif key == "not_monitoring_timeout_s":
            out[key] = _number(field, v, *C.NOT_MONITORING_RANGE_S, " s")
        elif key == "status_epilepticus_s":
            if modality != "eeg":
                raise SettingsError(field, "an EEG session", modality)
            out[key] = _number(field, v, *C.STATUS_EPILEPTICUS_RANGE_S, " s")
        elif key == "kinds":
            if not isinstance(v, dict):
                raise SettingsError(field, "a JSON object of kind -> settings", type(v).__name__)
            allowed = kinds_of(modality)
            for kind, ks in v.items():
                kf = f"{field}.{kind}"
                if kind not in allowed:
                    raise SettingsError(field, f"kinds of {modality} sessions ({', '.join(allowed)})", kind)
                if not isinstance(ks, dict):
                    raise SettingsError(kf, "a JSON object", type(ks).__name__)
                cur = out["kinds"].setdefault(kind, {})
                spec = C.ALERT_KINDS[kind]
                for name, x in ks.items():
                    f = f"{kf}.{name}"
                    if name == "threshold":
                        if not has_threshold(kind):
                            raise SettingsError(f, f"no threshold: {kind} is not a model label's episode", x)
                        cur[name] = _number(f, x, *C.THRESHOLD_RANGE)
                    elif name == "delay_s":
                        if spec.max_delay_s <= 0:
                            raise SettingsError(f, f"no delay: {kind} has a fixed definition", x)
                        cur[name] = _number(f, x, 0.0, spec.max_delay_s, " s")
                    elif name == "enabled":
                        if not isinstance(x, bool):
                            raise SettingsError(f, "true or false", x)
                        if not x and not can_disable(kind):
                            raise SettingsError(f, f"true ({kind} is {spec.priority} priority or "
                                                   "technical and cannot be turned off)", x)
                        cur[name] = x
                    else:
                        raise SettingsError(kf, "fields " + ", ".join(KIND_FIELDS), name)
        else:
            raise SettingsError(prefix, "fields " + ", ".join(SESSION_FIELDS), key)
    if not out["kinds"]:
        del out["kinds"]
    return out


@dataclass(frozen=True)
class KindSettings:
    """Resolved settings of one kind for one session."""

    enabled: bool
    delay_s: float
    threshold: float | None   # model-driven kinds: None means the fitted or default detector's


@dataclass(frozen=True)
class Resolved:
    """A session's effective alarm settings (defaults, then its overrides)."""

    suppression: bool
    not_monitoring_timeout_s: float
    status_epilepticus_s: float
    kinds: dict[str, KindSettings]

    def to_dict(self) -> dict:
        return {"suppression": self.suppression, "not_monitoring_timeout_s": self.not_monitoring_timeout_s,
                "status_epilepticus_s": self.status_epilepticus_s,
                "kinds": {k: {"enabled": v.enabled, "delay_s": v.delay_s, "threshold": v.threshold}
                          for k, v in self.kinds.items()}}


def resolve(overrides: dict | None, modality: str) -> Resolved:
    o = overrides or {}
    kinds = {}
    for kind in kinds_of(modality):
        ks = o.get("kinds", {}).get(kind, {})
        spec = C.ALERT_KINDS[kind]
        kinds[kind] = KindSettings(ks.get("enabled", True), ks.get("delay_s", spec.delay_s), ks.get("threshold"))
    return Resolved(o.get("suppression", True), o.get("not_monitoring_timeout_s", C.NOT_MONITORING_S),
                    o.get("status_epilepticus_s", C.ALERT_KINDS["status_epilepticus"].hold_s), kinds)


def pause_kinds(raw: Any, modality: str) -> list[str]:
    """Validated kinds of a pause (default: every physiological kind of the modality)."""
    allowed = [k for k in kinds_of(modality) if C.ALERT_KINDS[k].suppressible]
    if raw is None:
        return [k for k in allowed if C.ALERT_KINDS[k].category == C.PHYSIOLOGICAL]
    if not isinstance(raw, list) or not raw or not all(isinstance(k, str) and k in allowed for k in raw):
        raise SettingsError("kinds", f"a list of kinds a pause can withhold ({', '.join(allowed)})", raw)
    return list(dict.fromkeys(raw))


def pause_duration(raw: Any) -> float:
    return _number("duration_s", raw, C.MIN_PAUSE_S, C.MAX_PAUSE_S, " s")


def bounds(modality: str) -> dict:
    """The settable ranges, for REST clients."""
    return {"not_monitoring_timeout_s": list(C.NOT_MONITORING_RANGE_S),
            **({"status_epilepticus_s": list(C.STATUS_EPILEPTICUS_RANGE_S)} if modality == "eeg" else {}),
            "kinds": {k: {**({"threshold": list(C.THRESHOLD_RANGE)} if has_threshold(k) else {}),
                          **({"delay_s": [0.0, C.ALERT_KINDS[k].max_delay_s]} if C.ALERT_KINDS[k].max_delay_s else {}),
                          "can_disable": can_disable(k)} for k in kinds_of(modality)},
            "pause_s": [C.MIN_PAUSE_S, C.MAX_PAUSE_S]}
