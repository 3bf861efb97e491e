"""Deterministic test signals and chunkings, shared by the test packages."""

from __future__ import annotations

import numpy as np
import orjson


def random_bounds(n: int, fs: float, rng: np.random.Generator, max_s: float = 5.0) -> list[int]:
    """Cut points for a random chunking of n samples: chunk lengths from 0 to max_s seconds,
    with runs of 1-sample chunks and some empty chunks mixed in."""
    bounds, pos = [], 0
    while pos < n:
        r = rng.random()
        if r < 0.1:
            step = 0                                   # empty chunk
        elif r < 0.2:
            for _ in range(int(rng.integers(5, 40))):  # a run of single samples
                pos += 1
                bounds.append(min(pos, n))
            continue
        else:
            step = int(rng.integers(1, int(max_s * fs) + 1))
        pos = min(n, pos + step)
        bounds.append(pos)
    return bounds[:-1] if bounds and bounds[-1] == n else bounds


def feed_rhythm_source(src, x: np.ndarray, bounds: list[int], roundtrip: bool = False,
                       steps: tuple[np.ndarray, np.ndarray] | None = None) -> list[tuple]:
    """Events of a fresh state of ``src`` (a ``service.alarms.sources.RhythmSource``) over ``x`` cut
    at ``bounds``: the state through a JSON round trip at every boundary when ``roundtrip``;
    ``steps``: ``(step_end, p_vt)``, the network's vt outputs, fed with the chunk that completes
    them as the alarm engine feeds them (the network gate)."""
    st, events = src.initial_state(), []
    cuts = [0, *bounds, len(x)]
    for a, b in zip(cuts[:-1], cuts[1:]):
        if roundtrip:
            st = src.load(orjson.loads(orjson.dumps(src.export(st), option=orjson.OPT_SERIALIZE_NUMPY)))
        if steps is not None:
            sel = (steps[0] >= a) & (steps[0] < b)
            src.add_steps(st, steps[0][sel], steps[1][sel])
        events += src.update(st, x[a:b], a, flush=b == len(x))
    return events


def synthetic_signal(seconds: float, fs: float, n_channels: int, seed: int = 0, amplitude: float = 200.0) -> np.ndarray:
    """(t, c) float32 µV: a few sinusoids with slowly varying amplitude, spikes and noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * fs)) / fs
    x = np.zeros((len(t), n_channels))
    for c in range(n_channels):
        f = rng.uniform(0.8, 12.0, size=3)
        env = 1 + 0.5 * np.sin(2 * np.pi * rng.uniform(0.005, 0.05) * t)
        x[:, c] = env * sum(np.sin(2 * np.pi * fi * t + rng.uniform(0, 6)) for fi in f)
        spikes = rng.random(len(t)) < 1.0 / fs
        x[:, c] += 4 * np.convolve(spikes.astype(float), np.hanning(max(3, int(0.04 * fs))), "same")
    x += 0.1 * rng.standard_normal(x.shape)
    return (amplitude * x).astype(np.float32)
