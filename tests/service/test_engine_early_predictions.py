"""A tick's predictions go out before its alarm rules run (service/engine.py, ``Engine._compute``).

The engine runs in process with the shipped models and a real event loop; the session's
connection is a recorder of what the engine hands to it (the websocket's place: its timing is the
point, and a real socket cannot say when the engine let go of a message). The alarm rules are
held until the tick's predictions have reached that recorder, which happens only when the engine
sends them before the rules run; otherwise the hold times out and the test fails.
"""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import orjson

from models.data.ecg import read_wfdb
from models.data.excerpts import excerpt_path
from models.state import StatePool
from service.alarms.machine import Alarms
from service.config import Settings
from service.engine import Engine
from service.protocol import Frame, Hello
from service.registry import load_all
from service.sessions import Session

HOLD_S = 5.0


class Recorder:
    """What the engine hands to a session's connection, in order."""

    def __init__(self):
        self.messages: list[dict] = []
        self.got_prediction = threading.Event()

    def send_many(self, messages: list[bytes]) -> None:
        for m in messages:
            d = orjson.loads(m)
            self.messages.append(d)
            if d["type"] == "prediction":
                self.got_prediction.set()


def test_predictions_are_sent_before_the_alarm_rules_run(monkeypatch):
    rec = read_wfdb(excerpt_path("mitdb_203_vt"))
    fs, x = rec.sample_rate, rec.signal[: int(8 * rec.sample_rate)]
    settings = Settings()
    models = load_all(settings.ecg_model, settings.eeg_model)
    engine = Engine(settings, models, None, None)
    hello = Hello("early-1", "ecg", fs, tuple(rec.channels), "uV")
    model = models["ecg"]
    pool = StatePool(model.network, len(model.channel_index(hello.channels)), 4)
    s = Session.build(hello, model, pool, pool.alloc(), settings.strip_seconds)
    s.connection = Recorder()
    engine.sessions[s.id] = s

    held = []   # per alarm-rule call: had the tick's predictions reached the connection meanwhile?
    process = Alarms.process

    def held_process(self, *args, **kwargs):
        held.append(s.connection.got_prediction.wait(HOLD_S))
        return process(self, *args, **kwargs)

    monkeypatch.setattr(Alarms, "process", held_process)

    async def run() -> None:
        engine._loop = asyncio.get_running_loop()
        s.accept(Frame(0, x))
        works = engine._gather()
        assert [w.session for w in works] == [s]
        outcomes = await engine._call(engine._compute, works)
        await asyncio.sleep(0)   # the loop runs the callbacks the engine scheduled (FIFO)
        assert outcomes[0].rows, "the tick produced no output step"

    try:
        asyncio.run(run())
    finally:
        engine._executor.shutdown()
    assert held == [True]
    kinds = [m["type"] for m in s.connection.messages]
    assert set(kinds) <= {"prediction", "alert"} and "prediction" in kinds
    # every prediction of the tick went out, in sample order, before any alert of the tick
    samples = [m["sample"] for m in s.connection.messages if m["type"] == "prediction"]
    assert samples == sorted(samples)
    assert "alert" not in kinds or kinds.index("alert") > max(i for i, k in enumerate(kinds) if k == "prediction")
