"""Engine benchmark: the server's per-tick work for N real-time sessions, in process, no sockets.

Run: ``.venv/bin/python bench/engine_bench.py [--sessions 200] [--seconds 20] [--tick 0.01]``

Half the sessions are ECG (2 leads, 360 Hz), half EEG (19 channels, 256 Hz), the same shipped
excerpts as ``bench/load_bench.py``, cut into 0.25-s frames with the sessions' phases spread
over a frame. Simulated time advances in ticks of ``--tick`` seconds of signal; each tick
accepts the frames that are due (``Engine.accept``'s session side), then runs the engine's
``_gather`` and ``_compute`` (preprocessing, one pooled model step per pool, alarm rules,
prediction JSON, snapshots) on this thread, and with ``--store`` writes the tick's history to a
real SQLite store. Nothing waits on a clock, so the figure is CPU, not latency.

Printed: CPU ms per session-second of signal (process CPU, so the SQLite thread counts), the
mean batch size, the slowest tick, and the CPU of opening a session (``Session.build``, which the
server runs on its event loop: every frame waits behind it while hundreds reconnect). It is the
engine's share of the server's cost; the websocket side (about 1 ms per session-second here, see
NOTES) comes on top.
``--dump FILE`` saves every prediction row, so two versions of the code can be compared.
``--compare-quality`` runs twice, with the quality heads (``models/sqi.py``) and without, and
prints the ratio of the two costs (same run, same machine load); ``--compare-second-lead`` does the
same for the second lead's QRS detector and beat classifier of the VT runs (``models/vt_leads.py``).
``--against DIR`` compares this checkout's engine with another checkout's (say a ``git worktree``
of an older commit), each in its own process with its own code, interleaved over ``--rounds``
rounds: the ratio of the best CPU of each, so that drift in the machine's load hits both.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # load_bench's signals
from load_bench import FRAME_S, signals  # noqa: E402

from service.config import Settings  # noqa: E402
from service.engine import Engine  # noqa: E402
from service.protocol import Frame, Hello  # noqa: E402
from service.registry import load_all  # noqa: E402
from service.sessions import Session  # noqa: E402
from service.store import Store  # noqa: E402


async def main_async(args) -> dict:
    torch.set_num_threads(1)
    settings = Settings()
    models = load_all(settings.ecg_model, settings.eeg_model)
    store = await Store.connect(None, Path(tempfile.mkdtemp(prefix="vigil-ebench-"))) if args.store else None
    engine = Engine(settings, models, None, store)
    (ecg, fs_e, ch_e), (eeg, fs_g, ch_g) = signals(args.seconds)
    sessions, opened = [], 0.0
    for i in range(args.sessions):
        modality, x, fs, ch = ("ecg", ecg, fs_e, ch_e) if i % 2 == 0 else ("eeg", eeg, fs_g, ch_g)
        hello = Hello(f"bench-{i}", modality, fs, tuple(ch), "uV")
        model = models[modality]
        key = (modality, len(model.channel_index(hello.channels)))
        pool = engine.pools.get(key)
        if pool is None:
            from models.state import StatePool
            pool = engine.pools[key] = StatePool(model.network, key[1], 16)
        t_open = time.thread_time()
        s = Session.build(hello, model, pool, pool.alloc(), settings.strip_seconds, quality_heads=args.quality)
        if i >= 2:                                 # each modality's first session loads shared files
            opened += time.thread_time() - t_open
        engine.sessions[s.id] = s
        frame = int(FRAME_S * fs)
        sessions.append((s, x, fs, frame, FRAME_S * i / args.sessions, [0]))
    rows, n_ticks, n_calls, n_batched, worst, ticks = [], 0, 0, 0, 0.0, []
    cpu0, wall0 = time.process_time(), time.perf_counter()
    t = 0.0
    while t < args.seconds + FRAME_S:
        t += args.tick
        tick0 = time.thread_time()
        for s, x, fs, frame, phase, pos in sessions:
            # frame k is sent once its last sample has been "recorded": at phase + (k + 1) * FRAME_S
            while pos[0] < len(x) and phase + (pos[0] // frame + 1) * FRAME_S <= t:
                block = x[pos[0]:pos[0] + frame]
                s.accept(Frame(pos[0], block))
                pos[0] += len(block)
            if pos[0] >= len(x) and not s.ending:
                s.ending = True
        works = engine._gather()
        if not works:
            continue
        outcomes = engine._compute(works)
        n_ticks += 1
        pools = {id(w.session.pool) for w in works}
        n_calls += len(pools)
        n_batched += len(works)
        for o in outcomes:
            if o.snapshot is not None or o.finished:
                o.session.acked = o.ack
            if o.finished:
                engine.sessions.pop(o.session.id, None)
        if store is not None:
            await store.write(predictions=[r for o in outcomes for r in o.rows],
                              alerts=[a for o in outcomes for a in o.alerts],
                              strips=[r for o in outcomes for r in o.strips])
        if args.dump:
            rows += [r[:3] for o in outcomes for r in o.rows]
        worst = max(worst, time.thread_time() - tick0)
        ticks.append((time.thread_time() - tick0, sum(o.snapshot is not None for o in outcomes)))
    # the rest: pending ends
    while engine.sessions:
        works = engine._gather()
        if not works:
            break
        outcomes = engine._compute(works)
        for o in outcomes:
            if o.snapshot is not None or o.finished:
                o.session.acked = o.ack
            if o.finished:
                engine.sessions.pop(o.session.id, None)
        if args.dump:
            rows += [r[:3] for o in outcomes for r in o.rows]
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    if store is not None:
        await store.close()
    engine._executor.shutdown()
    if args.dump:
        sid = np.array([r[0] for r in rows])
        smp = np.array([r[1] for r in rows], np.int64)
        np.savez(args.dump, sid=sid, sample=smp, probs=np.array([r[2] for r in rows]))
    cost = np.array([c for c, _ in ticks])
    snap = np.array([k for _, k in ticks])
    return dict(cpu=cpu, wall=wall, open_ms=1e3 * opened / max(1, args.sessions - 2), ticks=n_ticks, calls=n_calls, batched=n_batched, worst=worst,
                predictions=len(rows), p50=np.percentile(cost, 50), p99=np.percentile(cost, 99),
                snap_ticks=(cost[snap > 0].mean() if (snap > 0).any() else float("nan"), snap.max()))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sessions", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--tick", type=float, default=0.01, help="seconds of signal per tick")
    ap.add_argument("--store", action="store_true", help="write history to a real SQLite store")
    ap.add_argument("--profile", default=None, help="write a cProfile of the run to this file")
    ap.add_argument("--dump", default=None, help="save every prediction row (npz) to compare versions")
    ap.add_argument("--no-quality", dest="quality", action="store_false", help="sessions without quality heads")
    ap.add_argument("--compare-quality", action="store_true",
                    help="run without and with the quality heads; print the cost ratio")
    ap.add_argument("--compare-second-lead", action="store_true",
                    help="run without and with the second lead's VT detector; print the cost ratio")
    ap.add_argument("--against", type=Path, default=None,
                    help="another checkout: run its engine and this one's, interleaved; print the CPU ratio")
    ap.add_argument("--rounds", type=int, default=3, help="with --against: runs of each checkout")
    args = ap.parse_args()
    if args.against is not None:
        return against(args)
    if args.compare_quality or args.compare_second_lead:
        from service.alarms.sources import RhythmSource

        what = "the quality heads" if args.compare_quality else "the second lead's VT detector"
        costs = {}
        for on in (False, True, False, True):               # interleaved: drift in load hits both
            if args.compare_quality:
                args.quality = on
            else:
                RhythmSource.SECOND_LEAD = on
            r = asyncio.run(main_async(args))
            costs.setdefault(on, []).append(r["cpu"])
            print(f"{what} {'on ' if on else 'off'}: CPU {r['cpu']:.2f} s")
        off, on = min(costs[False]), min(costs[True])
        print(f"engine CPU with / without {what}: {on / off:.3f} (best of 2 each)")
        return 0
    if args.profile:
        import cProfile
        prof = cProfile.Profile(time.thread_time)  # CPU, not wall: the machine is shared
        r = prof.runcall(asyncio.run, main_async(args))
        prof.dump_stats(args.profile)
    else:
        r = asyncio.run(main_async(args))
    ss = args.sessions * args.seconds
    print(f"engine: {args.sessions} sessions x {args.seconds:g} s, tick {args.tick * 1e3:g} ms"
          f"{' + SQLite store' if args.store else ''}: CPU {r['cpu']:.2f} s = {1e3 * r['cpu'] / ss:.3f} ms per "
          f"session-second; mean batch {r['batched'] / max(r['calls'], 1):.1f} over {r['calls']} pool calls; "
          f"slowest tick {1e3 * r['worst']:.1f} ms CPU; wall {r['wall']:.1f} s")
    print(f"  tick CPU p50 {1e3 * r['p50']:.1f} ms, p99 {1e3 * r['p99']:.1f} ms; ticks with snapshots: mean "
          f"{1e3 * r['snap_ticks'][0]:.1f} ms, up to {r['snap_ticks'][1]} snapshots in one tick")
    print(f"  opening a session (Session.build, on the event loop in the server): {r['open_ms']:.2f} ms CPU")
    return 0


def against(args) -> int:
    """Run this checkout's benchmark and ``args.against``'s in turn, each in a fresh process with
    its own code (the same flags), and print the ratio of their best CPU figures."""
    here = Path(__file__).resolve().parents[1]
    flags = ["--sessions", str(args.sessions), "--seconds", str(args.seconds), "--tick", str(args.tick)]
    flags += (["--store"] if args.store else []) + ([] if args.quality else ["--no-quality"])
    costs: dict[str, list[float]] = {"this": [], "other": []}
    opens: dict[str, list[float]] = {"this": [], "other": []}
    for _ in range(args.rounds):
        for name, root in (("other", args.against.resolve()), ("this", here)):
            out = subprocess.run([sys.executable, str(root / "bench" / "engine_bench.py"), *flags], cwd=root,
                                 env={**os.environ, "PYTHONPATH": str(root)}, capture_output=True, text=True, check=True)
            ms = float(re.search(r"= ([0-9.]+) ms per session-second", out.stdout).group(1))
            costs[name].append(ms)
            found = re.search(r"opening a session .*: ([0-9.]+) ms CPU", out.stdout)  # absent in older checkouts
            opens[name].append(float(found.group(1)) if found else float("nan"))
            print(f"{name:5s} ({root}): {ms:.3f} ms per session-second, {opens[name][-1]:.2f} ms per session opened")
    this, other = min(costs["this"]), min(costs["other"])
    print(f"engine CPU, this checkout / {args.against}: {this:.3f} / {other:.3f} ms per session-second = "
          f"{this / other:.3f} (best of {args.rounds} each)")
    this, other = min(opens["this"]), min(opens["other"])
    print(f"opening a session, this checkout / {args.against}: {this:.2f} / {other:.2f} ms CPU = "
          f"{this / other:.3f} (best of {args.rounds} each)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
