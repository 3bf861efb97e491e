"""`vigil demo`: run Vigil embedded and stream real ECG and EEG excerpts shipped in the repo.

The service starts in-process on a free port with a temporary data dir (embedded Redis and
SQLite); one websockets client per excerpt streams it at ``speed`` x real time, and every alert
transition is printed as it arrives.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson
from rich.console import Console
from rich.table import Table

from models.data.ecg import read_wfdb
from models.data.eeg import read_bonn
from models.data.excerpts import CATALOGUE, excerpt_path
from models.data.recording import Recording

HEADER = struct.Struct("<QIHBB")
PRIORITY_STYLE = {"high": "bold red", "medium": "yellow", "low": "cyan"}
LEADS_OFF_S = (20.0, 23.0)  # a simulated electrode problem in the ECG stream (a technical alarm)
DEMO_EXCERPTS = {"mitdb_203_vt": ("ecg", read_wfdb), "bonn_S001": ("eeg", read_bonn)}


@dataclass
class Result:
    name: str
    predictions: int = 0
    alerts: int = 0
    acks: int = 0
    error: str | None = None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def stream_excerpt(url: str, name: str, modality: str, rec: Recording, seconds: float, speed: float,
                         console: Console, leads_off: tuple[float, float] | None = None) -> Result:
    """Stream one recording in 0.25-s binary frames; print alert transitions as they come.

    ``leads_off`` (start, end) in seconds flags those frames as leads-off, as a monitor would.
    """
    import websockets

    res = Result(name)
    x = np.ascontiguousarray(rec.signal[: int(seconds * rec.sample_rate)], dtype="<f4")
    hello = {"type": "hello", "protocol": 1, "session_id": f"demo-{name}-{int(time.time())}", "modality": modality,
             "sample_rate": rec.sample_rate, "channels": rec.channels, "units": "uV"}
    async with websockets.connect(url, max_size=2**24) as ws:
        await ws.send(orjson.dumps(hello).decode())
        ready = orjson.loads(await ws.recv())
        if ready.get("type") != "ready":
            res.error = str(ready)
            return res

        async def read() -> None:
            async for raw in ws:
                m = orjson.loads(raw)
                if m["type"] == "prediction":
                    res.predictions += 1
                elif m["type"] == "ack":
                    res.acks += 1
                elif m["type"] == "error":
                    res.error = m["message"]
                elif m["type"] == "alert":
                    a = m["alert"]
                    res.alerts += 1
                    style = PRIORITY_STYLE.get(a["priority"], "")
                    console.print(f"[{style}]{a['priority'].upper():6}[/] {name:14} {a['kind']:12} {a['state']:8} "
                                  f"onset {a['onset_sample'] / rec.sample_rate:7.1f} s  "
                                  f"confidence {a['confidence']:.2f}  {a['alert_id']}")

        reader = asyncio.create_task(read())
        step, t0 = max(1, int(rec.sample_rate / 4)), time.perf_counter()
        for i in range(0, len(x), step):
            if speed > 0:
                await asyncio.sleep(max(0.0, t0 + i / rec.sample_rate / speed - time.perf_counter()))
            block = x[i:i + step]
            off = leads_off is not None and leads_off[0] <= i / rec.sample_rate < leads_off[1]
            await ws.send(HEADER.pack(i, len(block), x.shape[1], 1, int(off)) + block.tobytes())
        await ws.send('{"type":"end"}')
        await reader
    return res


async def _demo(duration: float, speed: float, console: Console, leads_off: bool) -> int:
    import uvicorn

    from service.app import create_app

    with tempfile.TemporaryDirectory(prefix="vigil-demo-") as tmp:
        port = free_port()
        app = create_app(host="127.0.0.1", port=port, data_dir=Path(tmp))
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        serving = asyncio.create_task(server.serve())
        while not server.started:
            if serving.done():
                return 1
            await asyncio.sleep(0.05)
        console.print(f"[bold]Vigil[/] on http://127.0.0.1:{port} (data in {tmp}); streaming at "
                      f"{'max' if speed <= 0 else f'{speed:g}x'} speed. Decision support only, not a medical device.")
        jobs = []
        for name, (modality, reader) in DEMO_EXCERPTS.items():
            rec = reader(excerpt_path(name))
            off = LEADS_OFF_S if leads_off and modality == "ecg" and duration > LEADS_OFF_S[1] else None
            console.print(f"  {name}: {CATALOGUE[name].source}; {CATALOGUE[name].shows}"
                          + (f"; simulated leads-off {off[0]:g}-{off[1]:g} s" if off else ""))
            jobs.append(stream_excerpt(f"ws://127.0.0.1:{port}/v1/stream", name, modality, rec, duration, speed,
                                       console, off))
        results = await asyncio.gather(*jobs)
        server.should_exit = True
        await serving
    table = Table(title="Vigil demo")
    for col in ("excerpt", "predictions", "alert transitions", "acks", "error"):
        table.add_column(col)
    for r in results:
        table.add_row(r.name, str(r.predictions), str(r.alerts), str(r.acks), r.error or "")
    console.print(table)
    return 0 if all(r.error is None and r.predictions for r in results) else 1


def run_demo(duration: float, speed: float, console: Console, leads_off: bool = True) -> int:
    """Run the demo; the exit status (0: every excerpt streamed and got predictions)."""
    return asyncio.run(_demo(duration, speed, console, leads_off))
