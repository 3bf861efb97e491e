"""Names other programs rely on, defined once: Redis keys and channels, error codes, alert kinds."""

from __future__ import annotations

from dataclasses import dataclass

from models import labels as L

PROTOCOL_VERSION = 1

# --- Redis (DESIGN §3) ------------------------------------------------------------------------
ALERTS_STREAM = "vigil:alerts"            # XADD ... MAXLEN ~ ALERTS_STREAM_MAXLEN * alert <json>
ALERTS_STREAM_MAXLEN = 1_000_000
ALERTS_LIVE_CHANNEL = "vigil:alerts:live"  # PUBLISH, at-most-once
ALERT_FIELD = "alert"


def snapshot_key(session_id: str) -> str:
    """Redis key of a session's latest snapshot (npz bytes, TTL = resume TTL)."""
    return f"vigil:session:{session_id}:snapshot"


# --- WebSocket errors (DESIGN §2): code -> close code (None: the connection stays open) -------
BAD_HELLO = "bad_hello"
UNSUPPORTED_PROTOCOL = "unsupported_protocol"
UNAUTHORIZED = "unauthorized"
CHANNEL_MISMATCH = "channel_mismatch"
BAD_DTYPE = "bad_dtype"
MALFORMED = "malformed"
FRAME_TOO_LARGE = "frame_too_large"
GAP_TOO_LARGE = "gap_too_large"
SESSION_ENDED = "session_ended"
TAKEN_OVER = "taken_over"
OVERLOADED = "overloaded"
SHUTTING_DOWN = "shutting_down"
UNKNOWN_TYPE = "unknown_type"

CLOSE_CODES: dict[str, int | None] = {
    BAD_HELLO: 4400, UNSUPPORTED_PROTOCOL: 4400, UNAUTHORIZED: 1008, CHANNEL_MISMATCH: 1003,
    BAD_DTYPE: 1003, MALFORMED: 1003, FRAME_TOO_LARGE: 1009, GAP_TOO_LARGE: 1003,
    SESSION_ENDED: 4409, TAKEN_OVER: 4409, OVERLOADED: 1013, SHUTTING_DOWN: 1012,
    UNKNOWN_TYPE: None,
}
CLOSE_NORMAL = 1000

# --- Protocol limits -------------------------------------------------------------------------
MAX_FRAME_BYTES = 8 * 1024 * 1024
MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 50.0, 4096.0
MAX_CHANNELS = 256
MAX_GAP_S = 3600.0
SESSION_ID_PATTERN = r"[A-Za-z0-9._:-]{1,128}"
UNITS = ("uV", "mV", "V")
MODALITIES = ("ecg", "eeg")
DTYPE_FLOAT32, DTYPE_INT16 = 1, 2
FLAG_LEADS_OFF = 0x01

# --- Alerts (DESIGN §3) ----------------------------------------------------------------------
PHYSIOLOGICAL, TECHNICAL = "physiological", "technical"
HIGH, MEDIUM, LOW = "high", "medium", "low"
ACTIVE, CLEARED = "active", "cleared"


@dataclass(frozen=True)
class AlertKind:
    """An alert kind with its category and priority."""

    name: str
    category: str
    priority: str


ALERT_KINDS: dict[str, AlertKind] = {k.name: k for k in (
    AlertKind("af", PHYSIOLOGICAL, MEDIUM),
    AlertKind("vt", PHYSIOLOGICAL, HIGH),
    AlertKind("vf", PHYSIOLOGICAL, HIGH),
    AlertKind("asystole", PHYSIOLOGICAL, HIGH),
    AlertKind("bradycardia", PHYSIOLOGICAL, HIGH),
    AlertKind("tachycardia", PHYSIOLOGICAL, HIGH),
    AlertKind("seizure", PHYSIOLOGICAL, HIGH),
    AlertKind("status_epilepticus", PHYSIOLOGICAL, HIGH),
    AlertKind("artifact", TECHNICAL, LOW),
    AlertKind("signal_loss", TECHNICAL, MEDIUM),
    AlertKind("not_monitoring", TECHNICAL, MEDIUM),
)}
SIGNAL_LOSS = "signal_loss"

# Model label -> alert kind (labels without an entry, like "normal", raise nothing).
LABEL_KINDS: dict[str, str] = {L.AF: "af", L.VT: "vt", L.VF: "vf", L.NOISE: "artifact",
                               L.SEIZURE: "seizure", L.ARTIFACT: "artifact"}
# An escalation names the alert it supersedes (DESIGN §3).
ESCALATES: dict[str, str] = {"vf": "vt", "status_epilepticus": "seizure"}
