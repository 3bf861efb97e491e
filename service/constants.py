"""Names other programs rely on, defined once: Redis keys and channels, error codes, alert kinds."""

from __future__ import annotations

from dataclasses import dataclass

from models import labels as L
from models.qrs import REPORT_LAG_S

PROTOCOL_VERSION = 1

# --- Redis (DESIGN §3) ------------------------------------------------------------------------
ALERTS_STREAM = "vigil:alerts"            # XADD ... MAXLEN ~ ALERTS_STREAM_MAXLEN * alert <json>
ALERTS_STREAM_MAXLEN = 1_000_000
ALERTS_LIVE_CHANNEL = "vigil:alerts:live"  # PUBLISH, at-most-once
ALERT_FIELD = "alert"


def snapshot_key(session_id: str) -> str:
    """Redis key of a session's latest snapshot (npz bytes, TTL = resume TTL)."""
    return f"vigil:session:{session_id}:snapshot"


def owner_key(session_id: str) -> str:
    """Redis key naming the replica that holds a live session (JSON: replica, url, host), so that any
    replica can forward the session's REST commands to it (service/routing.py). Not a DESIGN §3
    contract key: an addition, written with a TTL of OWNER_TTL_S refreshed while the session lives
    and deleted when its replica lets it go."""
    return f"vigil:session:{session_id}:owner"


OWNER_TTL_S = 30.0  # an owner key outlives its replica's last refresh by at most this long

# --- Replicas and workers (service/workers.py, service/routing.py) ------------------------------
REPLICA_HEADER = "X-Vigil-Replica"      # every HTTP response: the replica (worker) that answered
OWNER_HEADER = "X-Vigil-Owner"          # a forwarded response: the replica that holds the session
FORWARDED_HEADER = "X-Vigil-Forwarded"  # on a forwarded request (its sender): never forwarded again


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

# Where a kind's condition comes from (service/alarms/sources.py).
SOURCE_MODEL = "model"          # a model label's episodes (the checkpoint's fitted detector)
SOURCE_RHYTHM = "rhythm"        # QRS detector rate events (models/qrs.py), VT runs (models/beats.py)
SOURCE_QUALITY = "quality"      # lost-signal stretches of the raw input (service/quality.py)
SOURCE_WALL_CLOCK = "wall_clock"  # no data for longer than the session's timeout


@dataclass(frozen=True)
class AlertKind:
    """One row of the alarm table (docs/alarms.md shows it).

    ``label`` names the model label (``model``) or rate event kind (``rhythm``) the condition
    comes from; ``hold_s`` is how long the condition must last from its onset before the alert
    is raised (status epilepticus: a seizure of more than 5 min); ``delay_s`` is the default
    generation delay added once the source has confirmed the condition (0–``max_delay_s``,
    settable per session). ``escalates`` names the kind this one supersedes; high-priority
    alerts latch (stay active until acknowledged); ``suppressible`` kinds are withheld while
    the session's alarms are paused, and, when ``poor_signal_held`` too, while the signal is
    poor or lost (asystole and VF never are: a missed one costs a life, IEC 60601-1-8 practice
    and CinC 2015). ``model_label``: a ``rhythm`` kind's fallback, the model label whose episodes
    raise it when the session has no source for it (vt without the beat classifier, af without
    the AF detector).
    """

    name: str
    category: str
    priority: str
    modalities: tuple[str, ...]
    source: str
    label: str
    definition: str
    hold_s: float = 0.0
    delay_s: float = 0.0
    max_delay_s: float = 10.0
    escalates: str | None = None
    suppressible: bool = True
    poor_signal_held: bool = True
    model_label: str = ""

    @property
    def latching(self) -> bool:
        return self.priority == HIGH


ALERT_KINDS: dict[str, AlertKind] = {k.name: k for k in (
    AlertKind("af", PHYSIOLOGICAL, MEDIUM, ("ecg",), SOURCE_RHYTHM, "af",
              "atrial fibrillation: irregular RR intervals, ectopic beats removed, for the fitted time (AF "
              "detector on the classified beats, models/af.py; without it, the model's af episode)",
              model_label=L.AF),
    AlertKind("vt", PHYSIOLOGICAL, HIGH, ("ecg",), SOURCE_RHYTHM, "vt",
              "ventricular tachycardia: >= 5 ventricular beats > 100 bpm (beat classifier on the QRS "
              "detectors' beats of both leads, models/beats.py and models/vt_leads.py, the model's vt output "
              "confirming beats it is unsure of and, "
              "when confident, runs of unalike beats; a run of alike beats is not held back by poor signal; "
              "without it, the model's vt episode)", model_label=L.VT),
    AlertKind("vf", PHYSIOLOGICAL, HIGH, ("ecg",), SOURCE_MODEL, L.VF,
              "ventricular fibrillation or flutter (>= 4 s): the model's vf episode; supersedes vt",
              escalates="vt", poor_signal_held=False),
    AlertKind("asystole", PHYSIOLOGICAL, HIGH, ("ecg",), SOURCE_RHYTHM, "asystole",
              "no QRS for >= 4 s (QRS detector, CinC 2015; with two leads on neither lead, models/asystole_leads.py)", poor_signal_held=False),
    AlertKind("bradycardia", PHYSIOLOGICAL, HIGH, ("ecg",), SOURCE_RHYTHM, "bradycardia",
              "extreme bradycardia: < 40 bpm for 5 beats, ending at >= 45 bpm (QRS detector, CinC 2015; with "
              "two leads not contradicted by the second lead, models/brady_leads.py)"),
    AlertKind("tachycardia", PHYSIOLOGICAL, HIGH, ("ecg",), SOURCE_RHYTHM, "tachycardia",
              "extreme tachycardia: > 140 bpm for 17 beats, ending at <= 135 bpm (QRS detector, CinC 2015)"),
    AlertKind("seizure", PHYSIOLOGICAL, HIGH, ("eeg",), SOURCE_MODEL, L.SEIZURE,
              "electrographic seizure: the model's seizure episode"),
    AlertKind("status_epilepticus", PHYSIOLOGICAL, HIGH, ("eeg",), SOURCE_MODEL, L.SEIZURE,
              "a seizure lasting longer than 5 min (settable 1–30 min); supersedes seizure",
              hold_s=300.0, escalates="seizure"),
    AlertKind("artifact", TECHNICAL, LOW, ("ecg", "eeg"), SOURCE_MODEL, "",
              "poor signal quality: the model's noise (ECG) or artifact (EEG) episode, the network's "
              "probability fused with the quality head (models/sqi.py)", suppressible=False),
    AlertKind("signal_loss", TECHNICAL, MEDIUM, ("ecg", "eeg"), SOURCE_QUALITY, "",
              "every model channel lost for >= 1 s: gap, NaN/Inf, saturation, leads-off flag, "
              "or a flat line (identical values) of >= 4 s", max_delay_s=0.0, suppressible=False),
    AlertKind("not_monitoring", TECHNICAL, MEDIUM, ("ecg", "eeg"), SOURCE_WALL_CLOCK, "",
              "a streaming session received no data for longer than its timeout (wall clock, default 10 s)",
              max_delay_s=0.0, suppressible=False),
)}
SIGNAL_LOSS = "signal_loss"
NOT_MONITORING = "not_monitoring"
ARTIFACT = "artifact"

# Model label -> alert kind (labels without an entry, like "normal", raise nothing).
LABEL_KINDS: dict[str, str] = {L.AF: "af", L.VT: "vt", L.VF: "vf", L.NOISE: "artifact",
                               L.SEIZURE: "seizure", L.ARTIFACT: "artifact"}
# The model label whose episodes mean poor signal, per modality (artifact alerts, suppression).
QUALITY_LABELS: dict[str, str] = {"ecg": L.NOISE, "eeg": L.ARTIFACT}
# An escalation names the alert it supersedes (DESIGN §3).
ESCALATES: dict[str, str] = {k.name: k.escalates for k in ALERT_KINDS.values() if k.escalates}

# --- Alarm defaults and bounds (per-session settings: hello "alarms" field or REST) -----------
LOSS_MIN_S = 1.0               # lost signal for this long raises signal_loss
LOSS_CLEAR_S = 1.0             # valid signal for this long clears it
FLAT_S = 4.0                   # identical values for this long are a flat line (lost from its start)
STRIP_PRE_S, STRIP_POST_S = 10.0, 5.0  # an alert's strip: this long before its onset to this long after
SUPPRESS_WINDOW_S = 5.0        # poor signal within this long before a decision suppresses it
SUPPRESS_NOISE_P = 0.5         # smoothed noise/artifact probability that counts as poor signal
SUPPRESS_RECHECK_S = 1.0       # a suppressed, still present condition is re-examined this often
RHYTHM_LAG_S = REPORT_LAG_S    # the QRS detector reports a beat within this long (search-back: 3 s + its
                               # decision delay); a rate alert with a generation delay waits for it
NOT_MONITORING_S = 10.0        # default timeout of a streaming session without data
NOT_MONITORING_RANGE_S = (2.0, 300.0)
STATUS_EPILEPTICUS_RANGE_S = (60.0, 1800.0)
THRESHOLD_RANGE = (0.1, 0.9)   # a model-driven kind's threshold may be set within this range
MAX_PAUSE_S = 600.0            # the longest alarm pause
MIN_PAUSE_S = 10.0
AUDIT_ACK, AUDIT_PAUSE, AUDIT_RESUME, AUDIT_SETTINGS = "ack", "pause", "resume", "settings"
