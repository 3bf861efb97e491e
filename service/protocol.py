"""Protocol v1 at the boundary: hello validation and sample-frame parsing (DESIGN §2).

One set of helpers and one message style: ``Invalid sample_rate: expected 50–4096 Hz, got 0``.
"""

from __future__ import annotations

import math
import re
import struct
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import numpy as np

from service import constants as C

HEADER = struct.Struct("<QIHBB")  # first_sample, n_samples, n_channels, dtype, flags
_SESSION_ID = re.compile(C.SESSION_ID_PATTERN)
_DTYPES = {C.DTYPE_FLOAT32: np.dtype("<f4"), C.DTYPE_INT16: np.dtype("<i2")}


class ProtocolError(Exception):
    """A client error with its protocol code; the close code follows from the code."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def close_code(self) -> int | None:
        return C.CLOSE_CODES[self.code]


def ack_message(next_sample: int) -> bytes:
    """The ``ack`` message (DESIGN §2): every sample below ``next_sample`` is durable."""
    return b'{"type":"ack","next_sample":%d}' % next_sample


def invalid(field: str, expected: str, got: Any, code: str = C.BAD_HELLO) -> ProtocolError:
    """The one error message style: ``Invalid {field}: expected {expected}, got {got}``."""
    shown = got if isinstance(got, (int, float)) and not isinstance(got, bool) else repr(got)
    return ProtocolError(code, f"Invalid {field}: expected {expected}, got {shown}")


def _number(d: dict, field: str, lo: float, hi: float, unit: str) -> float:
    v = d.get(field)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not lo <= v <= hi:
        raise invalid(field, f"{lo:g}–{hi:g}{unit}", v)
    return float(v)


@dataclass(frozen=True)
class Hello:
    """A validated hello."""

    session_id: str
    modality: str
    sample_rate: float
    channels: tuple[str, ...]
    units: str
    patient_id: str | None = None
    start_time: datetime | None = None
    predictions: bool = True
    scale: float | None = None
    alarms: dict | None = None   # per-session alarm settings (service/alarms/settings.py), validated

    def to_dict(self) -> dict[str, Any]:
        return {"type": "hello", "protocol": C.PROTOCOL_VERSION, "session_id": self.session_id,
                "modality": self.modality, "sample_rate": self.sample_rate, "channels": list(self.channels),
                "units": self.units, "patient_id": self.patient_id,
                "start_time": self.start_time.isoformat() if self.start_time else None,
                "predictions": self.predictions, "scale": self.scale,
                **({"alarms": self.alarms} if self.alarms is not None else {})}


def parse_hello(msg: Any) -> Hello:
    """Validate a decoded hello message; raises :class:`ProtocolError`."""
    if not isinstance(msg, dict):
        raise invalid("message", "a JSON object", type(msg).__name__)
    if msg.get("type") != "hello":
        raise invalid("message", "a hello first", msg.get("type"))
    if msg.get("protocol") != C.PROTOCOL_VERSION:
        raise invalid("protocol", str(C.PROTOCOL_VERSION), msg.get("protocol"), C.UNSUPPORTED_PROTOCOL)
    sid = msg.get("session_id")
    if not isinstance(sid, str) or not _SESSION_ID.fullmatch(sid):
        raise invalid("session_id", "1–128 characters of [A-Za-z0-9._:-]", sid)
    if msg.get("modality") not in C.MODALITIES:
        raise invalid("modality", " or ".join(C.MODALITIES), msg.get("modality"))
    rate = _number(msg, "sample_rate", C.MIN_SAMPLE_RATE, C.MAX_SAMPLE_RATE, " Hz")
    ch = msg.get("channels")
    if (not isinstance(ch, list) or not 1 <= len(ch) <= C.MAX_CHANNELS
            or not all(isinstance(c, str) and c for c in ch)):
        raise invalid("channels", f"a list of 1–{C.MAX_CHANNELS} channel names", ch)
    if msg.get("units") not in C.UNITS:
        raise invalid("units", "one of " + ", ".join(C.UNITS), msg.get("units"))
    pid = msg.get("patient_id")
    if pid is not None and (not isinstance(pid, str) or len(pid) > 256):
        raise invalid("patient_id", "a string of up to 256 characters", pid)
    start = msg.get("start_time")
    if start is not None:
        start = parse_time(start)
    predictions = msg.get("predictions", True)
    if not isinstance(predictions, bool):
        raise invalid("predictions", "true or false", predictions)
    scale = msg.get("scale")
    if scale is not None:
        scale = _number(msg, "scale", 1e-12, 1e12, " units per count")
    alarms = msg.get("alarms")
    if alarms is not None:
        from service.alarms.settings import SettingsError, validate

        try:
            alarms = validate(alarms, msg["modality"])
        except SettingsError as e:
            raise ProtocolError(C.BAD_HELLO, str(e)) from None
    return Hello(sid, msg["modality"], rate, tuple(ch), msg["units"], pid, start, predictions, scale, alarms)


def parse_time(value: Any) -> datetime:
    """An ISO 8601 time (``Z`` allowed) as an aware UTC datetime."""
    try:
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except (AttributeError, ValueError):
        raise invalid("start_time", "an ISO 8601 time", value) from None
    return (t if t.tzinfo else t.replace(tzinfo=timezone.utc)).astimezone(timezone.utc)


@dataclass(frozen=True)
class Frame:
    """Samples of one frame: ``x`` (n, c) float32 in the hello's units, NaN where missing."""

    first_sample: int
    x: np.ndarray
    leads_off: bool = False


def parse_binary(data: bytes, n_channels: int, scale: float | None) -> Frame:
    """Decode a binary sample frame (``<QIHBB`` header, sample-major values)."""
    if len(data) > C.MAX_FRAME_BYTES:
        raise invalid("frame", f"at most {C.MAX_FRAME_BYTES} bytes", len(data), C.FRAME_TOO_LARGE)
    if len(data) < HEADER.size:
        raise invalid("frame", f"a {HEADER.size}-byte header", len(data), C.MALFORMED)
    first, n, c, dtype, flags = HEADER.unpack_from(data)
    if c != n_channels:
        raise invalid("n_channels", f"{n_channels} as in the hello", c, C.CHANNEL_MISMATCH)
    if dtype not in _DTYPES:
        raise invalid("dtype", "1 (float32) or 2 (int16)", dtype, C.BAD_DTYPE)
    if dtype == C.DTYPE_INT16 and scale is None:
        raise invalid("dtype", "1 (float32), or a hello scale for int16", dtype, C.BAD_DTYPE)
    if flags & ~C.FLAG_LEADS_OFF:
        raise invalid("flags", "only bit 0", flags, C.MALFORMED)
    dt = _DTYPES[dtype]
    if len(data) - HEADER.size != n * c * dt.itemsize:
        raise invalid("frame", f"{n * c * dt.itemsize} bytes of samples", len(data) - HEADER.size, C.MALFORMED)
    x = np.frombuffer(data, dtype=dt, offset=HEADER.size).reshape(n, c)  # (n, c) view
    if dtype == C.DTYPE_INT16:
        x = x.astype(np.float32) * np.float32(scale)
    return Frame(first, x, bool(flags & C.FLAG_LEADS_OFF))


def parse_samples(msg: dict, n_channels: int) -> Frame:
    """Decode a JSON samples message; ``null`` becomes NaN."""
    first = msg.get("first_sample")
    if isinstance(first, bool) or not isinstance(first, int) or first < 0:
        raise invalid("first_sample", "an integer >= 0", first, C.MALFORMED)
    data = msg.get("data")
    if not isinstance(data, list):
        raise invalid("data", "a list of sample rows", type(data).__name__, C.MALFORMED)
    try:
        x = np.array(data, dtype=np.float32).reshape(len(data), -1) if data else np.zeros((0, n_channels), np.float32)
    except (TypeError, ValueError):
        raise invalid("data", f"rows of {n_channels} numbers or nulls", "a ragged or non-numeric list",
                      C.MALFORMED) from None
    if x.shape[1] != n_channels:
        raise invalid("channels per row", f"{n_channels} as in the hello", x.shape[1], C.CHANNEL_MISMATCH)
    return Frame(first, x)
