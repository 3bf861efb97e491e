"""Fit and evaluate the RR-interval AF detector (:mod:`models.af`).

``python -m models.af_fit [--out models/checkpoints/vigil-af.json] [--json FILE] [--cache FILE]``

1. Beats, through the service's path: the QRS detector (:mod:`models.qrs`, lead 0) and the
   shipped ventricular-beat classifier (:mod:`models.beats`, 1-s chunks) on every CinC 2017
   record and every MIT-BIH record in ``$VIGIL_DATASETS``, and on the NSTDB electrode-motion
   records (118e00/e12/e24, held-out noise).
2. The MLP is fitted on the windows (one per beat) of the CinC 2017 *train* records, AF (``A``)
   against normal and other rhythms (``N``, ``O``; noisy ``~`` records are left out), each record
   weighing the same and the classes balanced; the window AUROC is reported on the CinC 2017
   validation and test records (split of :mod:`models.splits`, by record).
3. The episode rule: ``off_s`` = 10 s (the reference joins AF closer than 10 s) and
   ``back_beats`` = 8 are fixed; the threshold and ``on_s`` are chosen on the MIT-BIH *train and
   validation* records (no AF in them): the lowest threshold in 0.5-0.9, then the shortest
   ``on_s`` in 10/20/30 s, that raises no AF episode there.
4. The MIT-BIH *test* records (201, 203, 223: the AF records 201 and 203 among them) are scored
   per DESIGN §7 (AF ``(AFIB`` episodes joined < 10 s apart, >= 30 s, after the 5-minute learning
   period; ``(AFL`` neither); so are the NSTDB records (false AF episodes per 30 minutes).

Caveat: the ventricular-beat classifier that removes ectopic beats was fitted on all MIT-BIH
records, the test records included (it does not know AF; see docs/af.md).

Seeds are fixed; it takes about 4 minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.progress import track
from rich.table import Table

from models.af import FEATURES, WEIGHTS_FILE, AfDetector, AfWeights
from models.beats import load_weights as load_beat_weights
from models.beats_fit import stream_features
from models.data.ecg import cinc2017_records, mitdb_rhythms, read_wfdb
from models.data.episodes import af_episodes, episode_stats
from models.data.paths import datasets_dir
from models.mlp import fit_mlp
from models.qrs import RhythmMonitor
from models.record_rules import auroc
from models.splits import NSTDB_TEST, TEST, TRAIN, VAL, cinc2017_split, mitdb_split

HIDDEN, EPOCHS, LR, WEIGHT_DECAY, SEED = 8, 500, 0.02, 1e-3, 0
OFF_S, BACK_BEATS = 10.0, 8
THRESHOLDS, ON_S = (0.5, 0.6, 0.7, 0.8, 0.9), (10.0, 20.0, 30.0)


def record_beats(x: np.ndarray, fs: float) -> tuple[np.ndarray, np.ndarray]:
    """Beats of a recording and their ventricular probabilities, as the service finds them.

    Parameters
    ----------
    x : np.ndarray
        ``(n, c)`` signal (any unit).
    fs : float
        Hz.

    Returns
    -------
    beats : np.ndarray
        ``(m,)`` beat samples.
    p_ventricular : np.ndarray
        ``(m,)``; nan where the beat had no complete window.
    """
    x = np.asarray(x, np.float64)
    x = x[:, None] if x.ndim == 1 else x
    mon = RhythmMonitor(fs)
    beats = np.asarray(mon.process(x[:, 0], 0, mon.initial_state())[0].beats, np.int64)
    return beats, stream_features(x, fs, beats, load_beat_weights())[1]


def window_features(beats: np.ndarray, pv: np.ndarray, fs: float) -> np.ndarray:
    """``(m, F)`` features of each beat's window (nan rows before :data:`models.af.MIN_RR`)."""
    det = AfDetector(fs)
    scored, _, _ = det.process(list(zip(beats.tolist(), pv.tolist())), det.initial_state())
    return np.array([f if f is not None else np.full(len(FEATURES), np.nan) for _, f, _ in scored]).reshape(
        len(beats), len(FEATURES))


def fit(features: np.ndarray, labels: np.ndarray, groups: np.ndarray) -> dict:
    """The MLP on (n, F) windows and 0/1 labels, each group (record) weighing the same, classes
    balanced: :class:`models.mlp.TanhMLP` keyword arguments."""
    _, inv, cnt = np.unique(groups, return_inverse=True, return_counts=True)
    return fit_mlp(features, labels, hidden=HIDDEN, epochs=EPOCHS, lr=LR, weight_decay=WEIGHT_DECAY, seed=SEED,
                   sample_weight=1.0 / cnt[inv])


def detect(rec: dict, weights: AfWeights) -> list[tuple[int, int]]:
    """AF episodes of a record (beats and ventricular probabilities) under ``weights``; an episode
    still open at the end ends at the record's end."""
    det = AfDetector(rec["fs"], weights)
    _, events, _ = det.process(list(zip(rec["beats"].tolist(), rec["pv"].tolist())), det.initial_state())
    out, onset = [], None
    for e in events:
        if e.end_sample is None:
            onset = e.onset_sample
        else:
            out.append((e.onset_sample, e.end_sample))
            onset = None
    if onset is not None:
        out.append((onset, rec["n"]))
    return out


def score(rec: dict, weights: AfWeights, learning: bool = True) -> dict:
    """DESIGN §7 AF statistics of one MIT-BIH-annotated record (``learning``: skip the first 5 min)."""
    fs, n = rec["fs"], rec["n"]
    ref = af_episodes(rec.get("rhythms", []), fs, n, learning_s=300.0 if learning else 0.0)
    lo = round(300 * fs) if learning else 0
    det = [(max(a, lo), b) for a, b in detect(rec, weights) if b > lo]
    st = episode_stats(ref.episodes, det, n, exclude=ref.neither)
    st.update(minutes=n / fs / 60.0, detected=[(round(a / fs, 1), round(b / fs, 1)) for a, b in det],
              reference=[(round(a / fs, 1), round(b / fs, 1)) for a, b in ref.episodes])
    return st


def pooled(stats: list[dict]) -> dict:
    """Episode and duration Se / +P pooled over records."""
    t = {k: sum(s[k] for s in stats) for k in ("tp_reference", "n_reference", "tp_detected", "n_detected",
                                                  "reference_samples", "detected_samples", "overlap_samples")}
    r = (lambda a, b: a / b if b else float("nan"))
    return {"episode_se": r(t["tp_reference"], t["n_reference"]), "episode_ppv": r(t["tp_detected"], t["n_detected"]),
            "duration_se": r(t["overlap_samples"], t["reference_samples"]),
            "duration_ppv": r(t["overlap_samples"], t["detected_samples"]), **t}


def load_records(cache: Path | None, console: Console) -> dict[str, dict]:
    """Beats of every CinC 2017, MIT-BIH and NSTDB electrode-motion record (cached in ``cache``)."""
    root = datasets_dir()
    recs: dict[str, dict] = {}
    if cache and cache.exists():
        recs = np.load(cache, allow_pickle=True)["recs"].item()
    todo = [("cinc2017", n, lab) for n, lab in cinc2017_records(root / "cinc2017")] if (root / "cinc2017").exists() else []
    todo += [("mitdb", p.stem, None) for p in sorted((root / "mitdb").glob("*.hea"))]
    todo += [("nstdb", n, None) for n in NSTDB_TEST if (root / "nstdb" / f"{n}.hea").exists()]
    for src, name, label in track([t for t in todo if f"{t[0]}/{t[1]}" not in recs], description="beats",
                                  console=console):
        path = root / src / name
        rec = read_wfdb(path)
        beats, pv = record_beats(rec.signal, rec.sample_rate)
        r = {"source": src, "name": name, "fs": rec.sample_rate, "n": len(rec.signal), "beats": beats, "pv": pv}
        if src == "cinc2017":
            r.update(label=label, split=cinc2017_split(name))
        else:
            r.update(rhythms=mitdb_rhythms(path), split=mitdb_split(name) if src == "mitdb" else TEST)
        recs[f"{src}/{name}"] = r
    if cache:
        np.savez(cache, recs=np.array(recs, dtype=object))
    return recs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=WEIGHTS_FILE, help="where to write the fitted detector")
    ap.add_argument("--json", type=Path, default=None, help="write the evaluation here")
    ap.add_argument("--cache", type=Path, default=None, help="npz cache of the records' beats")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    console = Console()
    recs = load_records(args.cache, console)
    cinc = {k: r for k, r in recs.items() if r["source"] == "cinc2017" and r["label"] != "~"}
    mit = {k: r for k, r in recs.items() if r["source"] == "mitdb"}
    if not cinc or not mit:
        console.print(f"[red]Need CinC 2017 and MIT-BIH under {datasets_dir()} (set VIGIL_DATASETS)")
        return 2
    for r in track(list(cinc.values()), description="windows", console=console):
        r["features"] = window_features(r["beats"], r["pv"], r["fs"])

    def windows(split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        sel = [r for r in cinc.values() if r["split"] == split]
        ok = [np.isfinite(r["features"]).all(axis=1) for r in sel]
        return (np.concatenate([r["features"][m] for r, m in zip(sel, ok)]),
                np.concatenate([np.full(m.sum(), r["label"] == "A", float) for r, m in zip(sel, ok)]),
                np.concatenate([np.full(m.sum(), r["name"]) for r, m in zip(sel, ok)]))

    f, y, g = windows(TRAIN)
    net = fit(f, y, g)
    metrics: dict = {"cinc2017_windows": {}}
    for split in (TRAIN, VAL, TEST):
        fs_, ys, _ = windows(split)
        w0 = AfWeights(**net, threshold=0.5, on_s=0, off_s=0, back_beats=0, meta={})
        metrics["cinc2017_windows"][split] = {"auroc": auroc(w0.prob(fs_), ys > 0), "windows": int(len(ys)),
                                              "af_windows": int(ys.sum())}
    console.print({"CinC 2017 window AUROC (A vs N, O)": {k: round(v["auroc"], 4)
                                                          for k, v in metrics["cinc2017_windows"].items()}})

    tune = [r for r in mit.values() if r["split"] in (TRAIN, VAL)]
    grid, chosen = [], None
    for thr in THRESHOLDS:
        for on in ON_S:
            w = AfWeights(**net, threshold=thr, on_s=on, off_s=OFF_S, back_beats=BACK_BEATS, meta={})
            false = sum(score(r, w)["fp_detected"] for r in tune)
            grid.append({"threshold": thr, "on_s": on, "false_episodes": false})
            if chosen is None and false == 0:
                chosen = (thr, on)
    thr, on = chosen or (THRESHOLDS[-1], ON_S[-1])
    hours = sum(r["n"] / r["fs"] for r in tune) / 3600.0
    console.print(f"episode rule: threshold {thr}, on {on} s, off {OFF_S} s, back {BACK_BEATS} beats "
                  f"(no false AF on {len(tune)} MIT-BIH train/validation records, {hours:.1f} h)")
    rule = dict(threshold=thr, on_s=on, off_s=OFF_S, back_beats=BACK_BEATS)
    w = AfWeights(**net, **rule, meta={})

    rows = {k: score(r, w) for k, r in recs.items() if r["source"] in ("mitdb", "nstdb")}
    table = Table(title="AF episodes (DESIGN §7), MIT-BIH and NSTDB electrode-motion records")
    for c in ("record", "split", "ref", "det", "ep Se", "ep +P", "dur Se", "dur +P", "false", "min"):
        table.add_column(c, justify="right", no_wrap=True)
    fmt = (lambda v: "n/a" if v != v else f"{v:.3f}")
    for k, s in rows.items():
        table.add_row(k, recs[k]["split"], str(s["n_reference"]), str(s["n_detected"]), fmt(s["episode_se"]),
                      fmt(s["episode_ppv"]), fmt(s["duration_se"]), fmt(s["duration_ppv"]), str(s["fp_detected"]),
                      f"{s['minutes']:.1f}")
    console.print(table)
    test = pooled([s for k, s in rows.items() if recs[k]["source"] == "mitdb" and recs[k]["split"] == TEST])
    console.print({"MIT-BIH test records, pooled": {k: round(v, 4) for k, v in test.items() if "_" in k and
                                                    isinstance(v, float)}})
    metrics.update(rule_grid=grid, mitdb_test_pooled=test,
                   records={k: {kk: v for kk, v in s.items()} for k, s in rows.items()})
    meta = {"data": "CinC 2017 train records (A vs N, O) for the MLP; MIT-BIH train/validation records for the "
                    "episode rule", "split": "CinC 2017 by record (crc32 rule of models/splits.py); MIT-BIH by "
                    "record: test 201, 203, 223", "command": "python -m models.af_fit",
            "rule_selection": "lowest threshold, then shortest on_s, with no false AF episode on the MIT-BIH "
                              "train/validation records",
            "cinc2017_windows": metrics["cinc2017_windows"], "mitdb_test_pooled": test}
    out = AfWeights(**net, **rule, meta=meta)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out.to_json(), indent=1))
    console.print(f"wrote {args.out}")
    if args.json:
        args.json.write_text(json.dumps(metrics, indent=1, default=float))
        console.print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
