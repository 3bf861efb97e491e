"""Model benchmark: offline vs pooled streaming throughput, fast scan vs reference, state size.

Run: ``.venv/bin/python bench/model_bench.py [--seconds 120] [--threads 1]``

Every figure is measured in the same run, so the ratios hold on a noisy machine. Throughput is
seconds of signal per wall second; with ``--threads 1`` (the default) it is per core.

- offline: one session, the whole recording in one pass (preprocessor once, chunked scan).
- pooled streaming: N sessions, 0.25-s frames; each tick steps all N sessions through the state
  pool in one network call. "model" counts the network step alone (inputs preprocessed ahead);
  "end to end" adds each session's preprocessor call per frame.
- scan: the chunked scan against the reference recurrence, on one long sequence (offline
  evaluation; the network uses the chunked scan there) and on a batch (training, pooled
  streaming; the network uses the reference there, see ``models.scan.selective_scan``).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from models.checkpoint import load_model
from models.config import ModelConfig, ecg_config, eeg_config
from models.network import Network
from models.preprocess import Preprocessor
from models.scan import selective_scan_chunked, selective_scan_ref
from models.state import StatePool, arrays_to_bytes, state_nbytes
from models.stream import run_offline

FRAME_S = 0.25


def signal(seconds: float, fs: float, channels: int, seed: int = 0) -> np.ndarray:
    """(t, c) float32 µV of band-limited noise plus a 1.2-Hz spike train (ECG-like rhythm)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * fs))
    x = rng.standard_normal((len(t), channels)).cumsum(0) * 2
    x -= np.convolve(x[:, 0], np.ones(int(fs)) / fs, "same")[:, None]
    x[(t % int(fs / 1.2)) == 0] += 800
    return x.astype(np.float32)


def timed(fn, repeat: int = 3) -> float:
    """Best wall time of ``repeat`` calls, seconds."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def offline_throughput(network: Network, x: np.ndarray, fs: float) -> float:
    return len(x) / fs / timed(lambda: run_offline(network, x, fs), repeat=2)


def pooled_throughput(network: Network, x: np.ndarray, fs: float, sessions: int, frames: int,
                      with_preprocessor: bool) -> float:
    """Seconds of signal per second for ``sessions`` sessions stepped together in 0.25-s frames."""
    c = x.shape[1]
    pre = Preprocessor(network.config, fs, c)
    frame = int(FRAME_S * fs)
    y, m, _ = pre.process(x, pre.init_state())  # model-rate input, shared by the sessions
    step = int(FRAME_S * network.config.sample_rate)
    pool = StatePool(network, c, capacity=sessions)
    slots = [pool.alloc() for _ in range(sessions)]
    states = [pre.init_state() for _ in range(sessions)]
    # warm up one tick
    pool.step(slots, [y[:step]] * sessions, [m[:step]] * sessions)
    t0 = time.perf_counter()
    for k in range(frames):
        if with_preprocessor:
            xs, ms = [], []
            for i in range(sessions):
                yi, mi, states[i] = pre.process(x[k * frame:(k + 1) * frame], states[i])
                xs.append(yi)
                ms.append(mi)
        else:
            xs = [y[k * step:(k + 1) * step]] * sessions
            ms = [m[k * step:(k + 1) * step]] * sessions
        pool.step(slots, xs, ms)
    return sessions * frames * FRAME_S / (time.perf_counter() - t0)


def scan_speed(d_inner: int, d_state: int, length: int, batch: int = 1) -> tuple[float, float]:
    """Token rows per second (batch * length / s) of the reference and the chunked scan."""
    g = torch.Generator().manual_seed(0)
    shape = (batch, length, d_inner)
    u, dt = torch.randn(*shape, generator=g), torch.rand(*shape, generator=g) * 0.1
    A = -torch.rand(d_inner, d_state, generator=g)
    B, C = torch.randn(batch, length, d_state, generator=g), torch.randn(batch, length, d_state, generator=g)
    D, h = torch.ones(d_inner), torch.zeros(batch, d_inner, d_state)
    with torch.inference_mode():
        ref = timed(lambda: selective_scan_ref(u, dt, A, B, C, D, h), repeat=1)
        fast = timed(lambda: selective_scan_chunked(u, dt, A, B, C, D, h))
    return batch * length / ref, batch * length / fast


def shipped_or_default(name: str, default: ModelConfig) -> Network:
    """The shipped checkpoint's network (its sizes), or an untrained one of the default config."""
    try:
        return load_model(name)
    except FileNotFoundError:
        return Network(default).eval()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=120.0, help="signal length of the offline pass")
    ap.add_argument("--frames", type=int, default=40, help="0.25-s frames per pooled run")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1 = per core)")
    ap.add_argument("--sessions", default="1,64,512")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    console = Console()
    cases = [("ECG", "vigil-ecg", ecg_config(), 360.0, 2), ("EEG", "vigil-eeg", eeg_config(), 256.0, 19)]
    table = Table(title=f"Vigil model benchmark ({args.threads} thread(s), 0.25-s frames)")
    for col in ("model", "measure", "value", "ratio to offline"):
        table.add_column(col, justify="right" if col in ("value", "ratio to offline") else "left")
    captions: list[str] = []
    for name, shipped, default, fs, c in cases:
        network = shipped_or_default(shipped, default)
        cfg = network.config
        captions.append(f"{name}: {'shipped ' + shipped if hasattr(network, 'meta') else 'untrained default config'}, "
                        f"d_model {cfg.d_model}, {cfg.n_layers} layers, d_state {cfg.d_state}")
        x = signal(max(args.seconds, args.frames * FRAME_S + 1), fs, c)
        with torch.inference_mode():
            off = offline_throughput(network, x, fs)
        table.add_row(name, f"offline, 1 session ({fs:g} Hz, {c} ch -> {cfg.sample_rate:g} Hz)", f"{off:,.0f} s/s", "1.00")
        for n in (int(s) for s in args.sessions.split(",")):
            model = pooled_throughput(network, x, fs, n, args.frames, with_preprocessor=False)
            e2e = pooled_throughput(network, x, fs, n, max(4, args.frames // 4), with_preprocessor=True)
            table.add_row(name, f"pooled streaming, {n} sessions, model", f"{model:,.0f} s/s", f"{model / off:.2f}")
            table.add_row(name, f"pooled streaming, {n} sessions, end to end", f"{e2e:,.0f} s/s", f"{e2e / off:.2f}")
        pre = Preprocessor(cfg, fs, c)
        _, _, pst = pre.process(x[: int(10 * fs)], pre.init_state())
        model_bytes = state_nbytes(network.init_state(1, c))
        table.add_row(name, "state per session: model / preprocessor (serialised)",
                      f"{model_bytes / 1024:.1f} / {len(arrays_to_bytes(pst.to_arrays())) / 1024:.1f} KiB", "")
        for batch, length in ((1, 4096), (32, 512)):
            ref, fast = scan_speed(network.blocks[0].d_inner, cfg.d_state, length, batch)
            table.add_row(name, f"scan tokens/s, batch {batch} x {length}: reference / chunked",
                          f"{ref:,.0f} / {fast:,.0f}", f"chunked x{fast / ref:.1f}")
    table.caption = "; ".join(captions)
    console.print(table)


if __name__ == "__main__":
    main()
