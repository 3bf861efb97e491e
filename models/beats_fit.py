"""Fit and evaluate the ventricular-beat classifier (:mod:`models.beats`) on MIT-BIH.

``python -m models.beats_fit [--out models/checkpoints/vigil-beats.json] [--json FILE]``

1. Every MIT-BIH record in ``$VIGIL_DATASETS/mitdb``: the QRS detector (:mod:`models.qrs`, lead
   0) finds the beats; :class:`models.beats.BeatClassifier` computes their features exactly as
   the service does (1-s chunks). A detected beat takes the label of the reference beat within
   150 ms: ventricular (``V``, ``E``) or not; detections without one are not used for fitting.
2. Leave-one-record-out: for each record, the MLP is fitted on the other records and scores the
   held-out one: ventricular-beat Se and +P, and VT runs of >= 5 beats at > 100 bpm (DESIGN §7)
   as episodes (episode Se, +P), the runs raised by the service's rule
   (:meth:`models.beats.BeatClassifier.run_step`, replayed over the held-out beats). False
   runs: detected runs that overlap no reference ventricular run of >= 3 beats and no ``(VT``,
   ``(VFL`` or ``(VF`` rhythm interval (a run found during ventricular flutter is a correct
   ventricular-tachyarrhythmia alarm, not a false one).
3. The shipped weights are fitted on all records (same seed and settings).

Seeds are fixed; it takes a few minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import track
from rich.table import Table

from models.beats import ALIKE, FEATURES, RUN_INPUTS, RUN_RULES, WEIGHTS_FILE, BeatClassifier, BeatWeights, VtGate
from models.data.ecg import mitdb_beats, mitdb_rhythms, read_wfdb
from models.data.episodes import vt_episodes
from models.data.labels import RHYTHM_VF, RHYTHM_VFL, RHYTHM_VT, VENTRICULAR_BEATS
from models.data.paths import datasets_dir
from models.mlp import fit_mlp
from models.qrs import RhythmMonitor
from models.vt_leads import second_counts, union_runs

HIDDEN, EPOCHS, LR, WEIGHT_DECAY, SEED = 16, 400, 0.02, 1e-3, 0
THRESHOLD = 0.9  # a beat is ventricular at p >= 0.9 (LORO sweep 0.5-0.98: fewest false runs
                 # before episode Se drops; see docs/beats.md)
MATCH_S = 0.15


def record_beats(path: Path) -> dict:
    """Detected beats of one record with their features and reference labels."""
    rec = read_wfdb(path)
    fs, x = rec.sample_rate, rec.signal.astype(np.float64)
    mon = RhythmMonitor(fs)
    beats = mon.process(x[:, 0], 0, mon.initial_state())[0].beats
    feats, _, info = stream_features(x, fs, beats)        # (n, F) features, (n, 6) run-rule inputs
    # the second lead's detector and its beats' features (models/vt_leads.py: VT runs only)
    beats_b = mon.process(x[:, 1], 0, mon.initial_state())[0].beats if x.shape[1] > 1 else np.zeros(0, np.int64)
    feats_b, _, info_b = stream_features(x, fs, beats_b)
    gate = network_vt(x, fs)
    ref, sym = mitdb_beats(path)
    label = np.full(len(beats), -1)
    j = np.searchsorted(ref, beats)
    for k, b in enumerate(beats):
        near = [i for i in (j[k] - 1, j[k]) if 0 <= i < len(ref)]
        i = min(near, key=lambda i: abs(ref[i] - b))
        if abs(ref[i] - b) <= MATCH_S * fs:
            label[k] = int(sym[i] in VENTRICULAR_BEATS)
    return {"fs": fs, "n": len(x), "beats": beats, "features": feats, "info": info, "label": label,
            "gate": gate_values(gate, fs, beats),
            "beats_b": beats_b, "features_b": feats_b, "info_b": info_b, "gate_b": gate_values(gate, fs, beats_b),
            "vt": vt_episodes(ref, sym, fs), "v_runs3": ventricular_runs(ref, np.isin(sym, list(VENTRICULAR_BEATS)), 3)
            + [(s, e) for lab, s, e in mitdb_rhythms(path) if lab in (RHYTHM_VT, RHYTHM_VFL, RHYTHM_VF)]}


def network_vt(x: np.ndarray, fs: float) -> VtGate | None:
    """The shipped ECG network's ``vt`` outputs over ``x`` (the beat classifier's gate,
    :class:`models.beats.VtGate`), streamed as the service streams it; None when the network is
    not installed."""
    try:
        from models.checkpoint import load_model, resolve
        from models.labels import VT
        from models.stream import run_offline

        network = load_model(resolve("vigil-ecg"))
    except (ImportError, FileNotFoundError):
        return None
    out = run_offline(network, x, fs)
    return VtGate(out.sample, out.probs[:, network.config.labels.index(VT)], np.inf)


def gate_values(gate: VtGate | None, fs: float, beats: np.ndarray) -> np.ndarray:
    """``(m,)`` the network's largest ``vt`` probability near each beat (nan without the network)."""
    if gate is None:
        return np.full(len(beats), np.nan)
    clf = BeatClassifier(fs)
    return np.array([gate.value(int(b), clf.gate_pre, clf.gate_post) for b in beats])


def stream_features(x: np.ndarray, fs: float, beats: np.ndarray, weights: BeatWeights | None = None
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each beat as the service's classifier sees it, computed in 1-s chunks as in the service.

    Parameters
    ----------
    x : np.ndarray
        ``(n, c)`` signal; ``beats`` ``(m,)`` the QRS detector's beats in it.
    fs : float
        Hz.
    weights : BeatWeights, optional
        The classifier whose probabilities are wanted (none: features only).

    Returns
    -------
    features : np.ndarray
        ``(m, F)``; nan rows for beats without a window.
    p_ventricular : np.ndarray
        ``(m,)``; nan without a window or without ``weights``.
    info : np.ndarray
        ``(m, RUN_INPUTS)`` the run rule's other inputs (:meth:`models.beats.BeatClassifier.run_inputs`).
    """
    clf = BeatClassifier(fs, n_leads=min(2, x.shape[1]), weights=weights)
    st = clf.initial_state()
    step = int(round(fs))
    out, info = {}, []
    for a in range(0, len(x), step):
        b = min(len(x), a + step)
        mine = beats[(beats >= a) & (beats < b)]
        got, _, st = clf.process(x[a:b], a, mine, st, flush=b == len(x), details=info)
        out.update({s: (f, p) for s, f, p, _ in got})
    info = dict(info)
    missing = (np.full(len(FEATURES), np.nan), np.nan)
    got = [out.get(int(b), missing) for b in beats]
    return (np.array([f for f, _ in got]).reshape(-1, len(FEATURES)), np.array([p for _, p in got], np.float64),
            np.array([info.get(int(b), np.full(RUN_INPUTS, np.nan)) for b in beats]).reshape(-1, RUN_INPUTS))


def ventricular_runs(samples: np.ndarray, flag: np.ndarray, n_min: int) -> list[tuple[int, int]]:
    """Runs of >= ``n_min`` consecutive flagged beats as ``[first, last + 1)`` samples."""
    out, i, n = [], 0, len(samples)
    while i < n:
        if not flag[i]:
            i += 1
            continue
        j = i
        while j < n and flag[j]:
            j += 1
        if j - i >= n_min:
            out.append((int(samples[i]), int(samples[j - 1]) + 1))
        i = j
    return out


def vt_runs(beats: np.ndarray, p: np.ndarray, info: np.ndarray, fs: float, threshold: float,
            gate: np.ndarray | None = None, rules: tuple[str, ...] = RUN_RULES) -> list[tuple[int, int]]:
    """Detected VT runs ``[onset, end)`` of ``beats`` with probabilities ``p`` (nan: no window) and run
    inputs ``info``, replayed through :meth:`models.beats.BeatClassifier.run_step` (the service's rule);
    ``gate`` (m,): the network's vt probability near each beat (:func:`gate_values`; None: no gate);
    ``rules``: the runs begun by these rules only (``models.beats.RUN_RULES``)."""
    clf = BeatClassifier(fs)
    st = {k: v for k, v in clf.initial_state().items()
          if k in ("run", "run_sim", "vt_onset", "alt_beats", "alt_info", "strong")}
    events: list = []
    vt = np.zeros(len(beats)) if gate is None else gate          # (run_step reads nan as 0)
    for b, pb, i, g in zip(np.asarray(beats).tolist(), p, info, vt):
        clf.run_step(st, int(b), float(pb), i, events, threshold, vt=float(g))
    out, onset, rule = [], None, ""
    for e in events:
        if e.end_sample is None:
            onset, rule = e.onset_sample, e.rule
        else:
            out.append((int(onset), int(e.end_sample), rule))
            onset = None
    if onset is not None:
        out.append((int(onset), int(beats[-1]) + 1, rule))
    return [(s, e) for s, e, r in out if r in rules]


def fit(features: np.ndarray, labels: np.ndarray, meta: dict | None = None) -> BeatWeights:
    """Fit the MLP on (n, F) features and 0/1 labels (class-balanced, full batch, fixed seed)."""
    return BeatWeights(**fit_mlp(features, labels, hidden=HIDDEN, epochs=EPOCHS, lr=LR, weight_decay=WEIGHT_DECAY,
                                 seed=SEED), threshold=THRESHOLD, meta=meta or {})


def _probabilities(w: BeatWeights, features: np.ndarray) -> np.ndarray:
    """``(m,)`` ventricular probabilities, nan where a beat had no window."""
    p = w.prob(features) if len(features) else np.zeros(0)
    p[~np.isfinite(features).all(axis=1)] = np.nan
    return p


def score_record(r: dict, w: BeatWeights) -> dict:
    """Beat and VT-run statistics of one record under weights ``w``; the VT runs are those of
    both leads' detectors, as in the service (:mod:`models.vt_leads`: the second lead's runs of
    alike beats, where its detector agrees with the first's)."""
    p = _probabilities(w, r["features"])
    is_v = np.isfinite(p) & (p >= w.threshold)
    lab = r["label"]
    tp = int((is_v & (lab == 1)).sum())
    det = vt_runs(r["beats"], p, r["info"], r["fs"], w.threshold, r.get("gate"))
    if len(r["beats_b"]):
        second = vt_runs(r["beats_b"], _probabilities(w, r["features_b"]), r["info_b"], r["fs"], w.threshold,
                         r["gate_b"], rules=(ALIKE,))
        b = np.asarray(r["beats_b"])
        fifth = [int(b[min(np.searchsorted(b, s) + 4, len(b) - 1)]) for s, _ in second]   # established
        det = union_runs(det, [(s, e) for (s, e), est in zip(second, fifth)
                               if second_counts(r["beats"], b, s, est, r["fs"])])
    ref = r["vt"]
    hit = sum(any(s < e2 and s2 < e for s2, e2 in det) for s, e in ref)
    true_det = sum(any(s < e2 and s2 < e for s2, e2 in ref) for s, e in det)
    slack = int(r["fs"])
    false = sum(not any(s < e2 + slack and s2 < e + slack for s2, e2 in r["v_runs3"]) for s, e in det)
    return {"v_beats": int((lab == 1).sum()), "v_tp": tp, "v_fp": int((is_v & (lab == 0)).sum()),
            "vt_ref": len(ref), "vt_hit": hit, "vt_det": len(det), "vt_true_det": true_det, "vt_false": false,
            "hours": r["n"] / r["fs"] / 3600.0}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=WEIGHTS_FILE, help="where to write the fitted weights")
    ap.add_argument("--json", type=Path, default=None, help="write the leave-one-record-out results here")
    ap.add_argument("--cache", type=Path, default=None, help="npz cache of the records' features")
    args = ap.parse_args(argv)
    console = Console()
    root = datasets_dir() / "mitdb"
    names = sorted(p.stem for p in root.glob("*.hea"))
    if not names:
        console.print(f"[red]No MIT-BIH records under {root} (set VIGIL_DATASETS)")
        return 2
    recs = {}
    if args.cache and args.cache.exists():
        recs = {k: r for k, r in np.load(args.cache, allow_pickle=True)["recs"].item().items()
                if "beats_b" in r and r["features"].shape[1:] == (len(FEATURES),)}   # a stale cache is redone
    for name in track([n for n in names if n not in recs], description="beats and features", console=console):
        recs[name] = record_beats(root / name)
    if args.cache:
        np.savez(args.cache, recs=np.array(recs, dtype=object))
    rows = {}
    for name in track(names, description="leave-one-record-out", console=console):
        train = [recs[n] for n in names if n != name]
        f = np.concatenate([r["features"][r["label"] >= 0] for r in train])
        y = np.concatenate([r["label"][r["label"] >= 0] for r in train])
        rows[name] = score_record(recs[name], fit(f, y))
    tot = {k: sum(r[k] for r in rows.values()) for k in next(iter(rows.values()))}
    summary = {
        "v_beat_se": tot["v_tp"] / max(1, tot["v_beats"]),
        "v_beat_ppv": tot["v_tp"] / max(1, tot["v_tp"] + tot["v_fp"]),
        "vt_episode_se": tot["vt_hit"] / max(1, tot["vt_ref"]),
        "vt_episode_ppv": tot["vt_true_det"] / max(1, tot["vt_det"]),
        "vt_false_runs": tot["vt_false"], "vt_false_runs_per_hour": tot["vt_false"] / tot["hours"],
        "vt_reference_episodes": tot["vt_ref"], "records": len(names), "hours": round(tot["hours"], 2),
    }
    table = Table(title="Ventricular beats and VT runs (>= 5 beats, > 100 bpm), MIT-BIH leave-one-record-out")
    for c in ("record", "V beats", "V Se", "V +P", "VT ref", "VT found", "runs", "false runs"):
        table.add_column(c, justify="right")
    for name, r in rows.items():
        se = r["v_tp"] / r["v_beats"] if r["v_beats"] else float("nan")
        ppv = r["v_tp"] / (r["v_tp"] + r["v_fp"]) if r["v_tp"] + r["v_fp"] else float("nan")
        table.add_row(name, str(r["v_beats"]), f"{se:.3f}", f"{ppv:.3f}", str(r["vt_ref"]), str(r["vt_hit"]),
                      str(r["vt_det"]), str(r["vt_false"]))
    console.print(table)
    console.print({k: round(v, 4) if isinstance(v, float) else v for k, v in summary.items()})
    f = np.concatenate([r["features"][r["label"] >= 0] for r in recs.values()])
    y = np.concatenate([r["label"][r["label"] >= 0] for r in recs.values()])
    meta = {"data": f"MIT-BIH, {len(names)} records ({', '.join(names)}), lead 0 QRS, leads 0-1 morphology "
                    "(VT runs: lead 0 and lead 1 QRS, models/vt_leads.py)",
            "split": "leave-one-record-out for the figures; the shipped weights use all records",
            "leave_one_record_out": summary, "command": "python -m models.beats_fit"}
    w = fit(f, y, meta)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(w.to_json(), indent=1))
    console.print(f"weights: {args.out}")
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "records": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
