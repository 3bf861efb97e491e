"""Every protocol error gets its documented code and close code, while another session streams on."""

from __future__ import annotations

import asyncio

import numpy as np
import orjson
import pytest
import websockets
from service_harness import HEADER, binary_frame, hello, stream, unique

from service import constants as C

TOKEN = "s3cret"


@pytest.fixture(scope="module")
def token_server(make_server):
    return make_server(VIGIL_API_TOKENS=f"other,{TOKEN}")


async def exchange(url: str, messages: list, token: str | None = TOKEN) -> tuple[list[dict], int | None]:
    """Send messages in order; return the server's messages and its close code."""
    headers = {"Authorization": f"Bearer {token}"} if token else None
    got = []
    async with websockets.connect(url, additional_headers=headers, max_size=2**26) as ws:
        try:
            for m in messages:
                await ws.send(m)
        except websockets.ConnectionClosed:
            pass  # the server may close before we are done sending (e.g. unauthorized)
        async def read() -> None:
            async for raw in ws:
                got.append(orjson.loads(raw))
        try:
            await asyncio.wait_for(read(), 30)
        except websockets.ConnectionClosed:
            pass
        return got, ws.close_code


def good_hello(**kw) -> str:
    return orjson.dumps(hello(unique("err"), 360.0, ["MLII", "V1"], **kw)).decode()


CASES = {
    "bad_hello": ([orjson.dumps({**hello("x", 0, ["a"])}).decode()], 4400,
                  "Invalid sample_rate: expected 50–4096 Hz, got 0"),
    "frame_before_hello": ([binary_frame(0, np.zeros((4, 2)))], 4400, "Invalid message"),
    "unsupported_protocol": ([orjson.dumps({**hello("x", 360.0, ["a"]), "protocol": 2}).decode()], 4400,
                             "Invalid protocol"),
    "channel_mismatch": ([good_hello(), binary_frame(0, np.zeros((4, 3)))], 1003, "Invalid n_channels"),
    "bad_dtype": ([good_hello(), HEADER.pack(0, 4, 2, 7, 0) + bytes(32)], 1003, "Invalid dtype"),
    "int16_without_scale": ([good_hello(), HEADER.pack(0, 4, 2, 2, 0) + bytes(16)], 1003, "Invalid dtype"),
    "frame_too_large": ([good_hello(), binary_frame(0, np.zeros((C.MAX_FRAME_BYTES // 8 + 1, 2)))], 1009,
                        "Invalid frame"),
    "malformed": ([good_hello(), "{not json"], 1003, "Invalid message"),
    "malformed_frame": ([good_hello(), HEADER.pack(0, 4, 2, 1, 0) + bytes(12)], 1003, "Invalid frame"),
    "gap_too_large": ([good_hello(), binary_frame(0, np.zeros((4, 2))),
                       binary_frame(int(3601 * 360), np.zeros((4, 2)))], 1003, "Invalid first_sample"),
}
CODES = {"frame_before_hello": C.BAD_HELLO, "int16_without_scale": C.BAD_DTYPE, "malformed_frame": C.MALFORMED}


async def test_errors_leave_other_sessions_alone(token_server, ecg_203):
    x, fs, leads = ecg_203
    x = x[: int(15 * fs)]
    sid = unique("bystander")
    url = token_server.ws + f"?token={TOKEN}"

    bystander = asyncio.create_task(stream(url, hello(sid, fs, leads), x, int(fs / 4)))
    for name, (messages, close, text) in CASES.items():
        got, code = await exchange(token_server.ws, messages)
        errors = [m for m in got if m["type"] == "error"]
        assert errors and errors[-1]["code"] == CODES.get(name, name), (name, got)
        assert text in errors[-1]["message"] and code == close, (name, errors, code)

    got, code = await exchange(token_server.ws, [good_hello()], token=None)
    assert got[-1]["code"] == C.UNAUTHORIZED and code == 1008
    got, code = await exchange(token_server.ws, [good_hello()], token="wrong")
    assert got[-1]["code"] == C.UNAUTHORIZED and code == 1008

    # unknown_type is an error without a close: the session goes on and ends normally
    got, code = await exchange(token_server.ws, [good_hello(), '{"type":"nonsense"}', binary_frame(0, x[:900]),
                                                 '{"type":"end"}'])
    assert [m["code"] for m in got if m["type"] == "error"] == [C.UNKNOWN_TYPE] and code == 1000
    assert any(m["type"] == "prediction" for m in got) and got[-1] == {"type": "ack", "next_sample": 900}

    run = await bystander
    assert not run.errors and run.close == 1000 and run.acks[-1] == len(x)
    assert run.predictions[-1][0] == len(x) - 1
