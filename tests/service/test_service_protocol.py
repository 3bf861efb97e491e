"""Boundary validation: hello fields and sample frames, one message style."""

from __future__ import annotations

import numpy as np
import pytest

from service import constants as C
from service.protocol import HEADER, ProtocolError, parse_binary, parse_hello, parse_samples

HELLO = {"type": "hello", "protocol": 1, "session_id": "bed-12-20261129T0800", "modality": "ecg",
         "sample_rate": 360.0, "channels": ["MLII", "V5"], "units": "uV"}


def test_valid_hello_defaults():
    h = parse_hello({**HELLO, "start_time": "2026-11-29T08:00:00Z"})
    assert h.predictions and h.patient_id is None and h.start_time.isoformat() == "2026-11-29T08:00:00+00:00"


@pytest.mark.parametrize("field, value, code, message", [
    ("sample_rate", 0, C.BAD_HELLO, "Invalid sample_rate: expected 50–4096 Hz, got 0"),
    ("sample_rate", "360", C.BAD_HELLO, "Invalid sample_rate: expected 50–4096 Hz, got '360'"),
    ("sample_rate", True, C.BAD_HELLO, "Invalid sample_rate"),
    ("protocol", 2, C.UNSUPPORTED_PROTOCOL, "Invalid protocol: expected 1, got 2"),
    ("session_id", "bed 12", C.BAD_HELLO, "Invalid session_id"),
    ("session_id", "x" * 129, C.BAD_HELLO, "Invalid session_id"),
    ("modality", "emg", C.BAD_HELLO, "Invalid modality"),
    ("channels", [], C.BAD_HELLO, "Invalid channels"),
    ("channels", ["c"] * 257, C.BAD_HELLO, "Invalid channels"),
    ("units", "uv", C.BAD_HELLO, "Invalid units"),
    ("start_time", "yesterday", C.BAD_HELLO, "Invalid start_time"),
    ("predictions", "yes", C.BAD_HELLO, "Invalid predictions"),
    ("type", "samples", C.BAD_HELLO, "Invalid message: expected a hello first"),
])
def test_invalid_hello(field, value, code, message):
    with pytest.raises(ProtocolError) as e:
        parse_hello({**HELLO, field: value})
    assert e.value.code == code and e.value.message.startswith(message)
    assert e.value.close_code == C.CLOSE_CODES[code]


def test_binary_frames():
    x = np.arange(12, dtype="<f4").reshape(6, 2)
    f = parse_binary(HEADER.pack(7, 6, 2, 1, 1) + x.tobytes(), 2, None)
    assert f.first_sample == 7 and f.leads_off and np.array_equal(f.x, x)
    counts = np.array([[1, -2]], dtype="<i2")
    assert parse_binary(HEADER.pack(0, 1, 2, 2, 0) + counts.tobytes(), 2, 0.5).x.tolist() == [[0.5, -1.0]]
    for data, code in [(HEADER.pack(0, 6, 3, 1, 0) + x.tobytes(), C.CHANNEL_MISMATCH),
                       (HEADER.pack(0, 6, 2, 3, 0) + x.tobytes(), C.BAD_DTYPE),
                       (HEADER.pack(0, 6, 2, 2, 0) + x.tobytes(), C.BAD_DTYPE),
                       (HEADER.pack(0, 6, 2, 1, 2) + x.tobytes(), C.MALFORMED),
                       (HEADER.pack(0, 7, 2, 1, 0) + x.tobytes(), C.MALFORMED),
                       (b"\x00" * 5, C.MALFORMED),
                       (bytes(C.MAX_FRAME_BYTES + 1), C.FRAME_TOO_LARGE)]:
        with pytest.raises(ProtocolError) as e:
            parse_binary(data, 2, None)
        assert e.value.code == code


def test_json_samples_null_is_nan():
    f = parse_samples({"type": "samples", "first_sample": 3, "data": [[1, None], [2.5, 3]]}, 2)
    assert f.first_sample == 3 and np.isnan(f.x[0, 1]) and f.x[1].tolist() == [2.5, 3.0]
    for msg, code in [({"first_sample": -1, "data": []}, C.MALFORMED),
                      ({"first_sample": 0, "data": [[1, 2], [3]]}, C.MALFORMED),
                      ({"first_sample": 0, "data": [["a", 2]]}, C.MALFORMED),
                      ({"first_sample": 0, "data": [[1, 2, 3]]}, C.CHANNEL_MISMATCH)]:
        with pytest.raises(ProtocolError) as e:
            parse_samples(msg, 2)
        assert e.value.code == code
