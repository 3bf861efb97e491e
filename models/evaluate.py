"""Evaluation: ``vigil evaluate ecg|eeg`` through the streaming path, scored as the field does.

Every record goes through :func:`models.stream.run_offline` (the serving preprocessor from the
record's own rate and units, then the network with carried state; chunk-equivalence with
:func:`models.stream.run_chunked` is tested elsewhere), so the numbers are those the service
produces. Episodes come from the checkpoint's detectors (:mod:`models.detector`), record and
segment decisions from its fitted rules (:mod:`models.record_rules`).

ECG (held-out records of :mod:`models.splits`):

- MIT-BIH: per record, AF episodes (DESIGN §7: ``af_episodes``, 5-min learning period,
  atrial flutter excluded) and VT episodes (runs of >= 5 ventricular beats at > 100 bpm;
  detections scored over the whole record), episode Se/+P and duration Se/+P; 3-4 beat runs
  reported apart (share overlapped by a VT detection). The ``AF`` and ``VT>=5`` rows are the
  service's alarm sources (:func:`rhythm_episodes`: the QRS detector, the ventricular-beat
  classifier of :mod:`models.beats` and the RR-interval AF detector of :mod:`models.af`, in 1-s
  chunks); the ``(network)`` rows are the network's af and vt episodes, for comparison. The beat
  classifier was fitted on all MIT-BIH records: its held-out VT figures are the
  leave-one-record-out ones of ``python -m models.beats_fit``, shown in a table of their own.
- CinC 2017: per-class F1 on the test records, by the network's record rule and with the AF class
  decided by the record model of :mod:`models.af_record` (RR irregularity and morphology; when
  shipped).
- CinC 2015: VT alarm decision from the VT output in the 10 s before the alarm at 300 s,
  score (TP+TN)/(TP+TN+FP+5 FN) on the test half with a bootstrap 95 % interval, with the
  stored VT threshold and with a threshold chosen by 5-fold cross-validation over records; and
  from the service's VT runs (beat classifier) overlapping those 10 s.
- NSTDB 118e00/e12/e24 (electrode motion, never trained on): noise AUROC, tokens inside the
  noise blocks against tokens outside, of the service's noise probability (the network's, fused
  with the ECG quality head of :mod:`models.ecg_sqi`) and of the network alone; false AF and VT
  episodes of the service's sources.

EEG:

- Bonn: segment sensitivity, specificity and AUROC of S vs Z/O/N/F on the test segments at
  gain x1, x0.5, x2, next to a line-length baseline (threshold fitted on the validation
  segments at x1).
- CHB-MIT chb01: ictal vs pre-ictal AUROC on the test seizures (segment and token level).
- Artifacts added to held-out background at the input (before preprocessing): token AUROC per
  type, held-out types (electrode pops, motion) first, of the service's artifact probability (the
  network fused with the EEG quality head of :mod:`models.eeg_sqi`) and of the network alone.
- SzCORE event scoring on a continuous stream of Bonn test segments (four non-seizure, one
  seizure, repeated), with false positives per hour, hours and latency.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np

from models.af_record import features_of, stream_record
from models.af_record import load_weights as load_record_weights
from models.checkpoint import load_model, resolve
from models.data import ecg as ecg_data
from models.data import eeg as eeg_data
from models.data.episodes import af_episodes, clip_intervals, episode_stats, short_vt_runs, szcore_score, vt_episodes
from models.data.paths import datasets_dir
from models.detector import detectors_from_meta, steps_to_samples
from models.labels import AF, ARTIFACT, NOISE, NORMAL, SEIZURE, VT
from models.network import Network
from models.record_rules import auroc, classify_cinc2017, f1_per_class, fit_binary_threshold, segment_score
from models.splits import (ARTIFACTS_HELD_OUT, ARTIFACTS_TRAIN, EEGMMIDB_RUNS, MITDB_TEST, MITDB_VAL, NSTDB_TEST,
                           TEST, VAL, bonn_split, chbmit_split, cinc2015_split, cinc2017_split)
from models.stream import StreamOutput, run_offline

BURN_IN_S = 3.0  # seconds of each record left out of segment scores (fresh state)
ALARM_WINDOW_S = (290.0, 300.0)
BOOTSTRAP = 1000
GAINS = (1.0, 0.5, 2.0)


# --- helpers -------------------------------------------------------------------------------

def _nan(v) -> float | None:
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else v


def _table(title: str, columns: list[str], rows: list[list]) -> dict:
    return {"title": title, "columns": columns, "rows": rows}


def _fmt(v) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return "n/a" if math.isnan(v) else f"{v:.3f}"
    return str(v)


def token_times(n: int, network: Network) -> np.ndarray:
    """(n, 2) start/end seconds of tokens 0..n-1."""
    d = network.config.patch_len / network.config.sample_rate
    k = np.arange(n)
    return np.stack([k * d, (k + 1) * d], axis=1)


def episodes_samples(out: StreamOutput, network: Network, label: str, input_rate: float) -> list[tuple[int, int]]:
    """Detected episodes of ``label`` in input samples."""
    cfg = network.config
    det = detectors_from_meta(getattr(network, "meta", {}), cfg.labels)[label]
    steps = det.detect(out.probs[:, cfg.labels.index(label)], cfg.output_rate)
    return steps_to_samples(steps, cfg.patch_len, cfg.sample_rate, input_rate)


def _stats_row(name: str, part: str, kind: str, st: dict) -> list:
    return [name, part, kind, st["n_reference"], st["n_detected"], _nan(st["episode_se"]), _nan(st["episode_ppv"]),
            _nan(st["duration_se"]), _nan(st["duration_ppv"]), st["fp_detected"]]


EPISODE_COLUMNS = ["record", "part", "type", "ref", "det", "episode Se", "episode +P", "duration Se",
                   "duration +P", "false"]


def alarm_score(truth: np.ndarray, alarm: np.ndarray) -> float:
    """CinC 2015 score, 100 (TP + TN) / (TP + TN + FP + 5 FN)."""
    t, a = np.asarray(truth, bool), np.asarray(alarm, bool)
    tp, tn = int((t & a).sum()), int((~t & ~a).sum())
    fp, fn = int((~t & a).sum()), int((t & ~a).sum())
    den = tp + tn + fp + 5 * fn
    return 100.0 * (tp + tn) / den if den else float("nan")


def bootstrap_ci(truth: np.ndarray, alarm: np.ndarray, rng: np.random.Generator, n: int = BOOTSTRAP):
    """95 % percentile interval of :func:`alarm_score` over records resampled with replacement."""
    idx = rng.integers(0, len(truth), size=(n, len(truth)))
    s = [alarm_score(truth[i], alarm[i]) for i in idx]
    return float(np.nanpercentile(s, 2.5)), float(np.nanpercentile(s, 97.5))


def alarm_decisions(truth: np.ndarray, alarm: np.ndarray, rng: np.random.Generator) -> dict:
    """Score (1 decimal), bootstrap 95 % interval (1 decimal) and counts of alarm decisions."""
    t, a = np.asarray(truth, bool), np.asarray(alarm, bool)
    lo, hi = bootstrap_ci(t, a, rng)
    return {"score": round(alarm_score(t, a), 1), "ci95": [round(lo, 1), round(hi, 1)],
            "tp": int((t & a).sum()), "fp": int((~t & a).sum()), "tn": int((~t & ~a).sum()), "fn": int((t & ~a).sum())}


def cv_threshold_alarms(scores: np.ndarray, truth: np.ndarray, rng: np.random.Generator, folds: int = 5) -> np.ndarray:
    """Alarm decisions where each fold's threshold maximises the score on the other folds."""
    order = rng.permutation(len(scores))
    alarm = np.zeros(len(scores), bool)
    for f in range(folds):
        test = order[f::folds]
        train = np.setdiff1d(order, test)
        u = np.unique(scores[train])  # candidate thresholds: midpoints between training scores
        cands = np.concatenate([[u[0] - 1e-6], (u[1:] + u[:-1]) / 2, [u[-1] + 1e-6]])
        best = max(cands, key=lambda t: alarm_score(truth[train], scores[train] >= t))
        alarm[test] = scores[test] >= best
    return alarm


# --- ECG -----------------------------------------------------------------------------------

def rhythm_episodes(x: np.ndarray, fs: float, chunk_s: float = 1.0, network_out: StreamOutput | None = None,
                    network: Network | None = None, saturation: float | None = None
                    ) -> dict[str, list[tuple[int, int]]]:
    """AF and VT episodes of the service's rhythm source over a recording.

    Parameters
    ----------
    x : np.ndarray
        ``(n, c)`` signal; lead 0 for the QRS detector, leads 0-1 for the beat classifier.
    fs : float
        Hz.
    chunk_s : float
        Chunk length (s) fed to :class:`service.alarms.sources.RhythmSource`, as the service does.
    network_out, network : StreamOutput, Network, optional
        The network's outputs over ``x`` and the network: their ``vt`` column is the beat
        classifier's gate (:class:`models.beats.VtGate`), as in the service. None: no gate.
    saturation : float, optional
        ``|x|`` above this (``x``'s units) is missing to the detectors, as in the service
        (:class:`service.alarms.sources.RhythmSource`). None: ``network``'s ``abs_limit_uv`` (``x``
        in µV), no limit without a network.

    Returns
    -------
    dict
        ``{"af": [(onset, end), ...], "vt": [...]}`` in samples; an episode still open at the end
        ends at ``n``. Empty lists when a source is not installed.
    """
    from models.qrs import RhythmMonitor
    from service.alarms.sources import RhythmSource, af_detector_for, beat_classifier_for

    mon = RhythmMonitor(fs)
    beats = beat_classifier_for(mon)
    if saturation is None:
        saturation = network.config.abs_limit_uv if network is not None else math.inf
    src = RhythmSource(mon, beats, af_detector_for(mon, beats), gate=network_out is not None,
                       saturation=saturation)
    st, step = src.initial_state(), max(1, round(chunk_s * fs))
    if network_out is not None:   # the steps each chunk completes arrive with it, as in the service
        step_end, p_vt = network_out.sample, network_out.probs[:, network.config.labels.index(VT)]
    out: dict[str, list[tuple[int, int]]] = {"af": [], "vt": []}
    open_: dict[str, int] = {}
    for a in range(0, len(x), step):
        b = min(len(x), a + step)
        if network_out is not None:
            sel = (step_end >= a) & (step_end < b)
            src.add_steps(st, step_end[sel], p_vt[sel])
        for typ, kind, smp, *_ in src.update(st, x[a:b], a, flush=b == len(x)):
            if kind not in out:
                continue
            if typ == "begin":
                open_.setdefault(kind, smp)
            elif kind in open_:
                out[kind].append((open_.pop(kind), smp))
    for kind, onset in open_.items():
        out[kind].append((onset, len(x)))
    return out


def cinc2015_network_pass(network: Network, path: Path) -> tuple[np.ndarray, float, StreamOutput]:
    """A CinC 2015 record's ECG ``(n, c)``, its sample rate (Hz) and ``network``'s outputs over it
    (:func:`models.stream.run_offline`): what :func:`vt_run_before_alarm` decides from."""
    rec = ecg_data.read_cinc2015_ecg(path)
    return rec.signal, rec.sample_rate, run_offline(network, rec.signal, rec.sample_rate)


def cinc2015_vt_alarm(network: Network, path: Path,
                      passed: tuple[np.ndarray, float, StreamOutput] | None = None) -> tuple[bool, float]:
    """One CinC 2015 alarm record's VT decisions for the alarm at 300 s.

    Parameters
    ----------
    network : Network
        The ECG network, streamed over the record (its ``vt`` output gates the beat classifier).
    path : Path
        The record (WFDB, without extension).
    passed : tuple, optional
        :func:`cinc2015_network_pass` of the record and ``network``, when already computed.

    Returns
    -------
    run : bool
        The service's rhythm source (:func:`rhythm_episodes`, beat classifier with the network's
        gate, fed the signal up to the alarm) has a VT run overlapping ``ALARM_WINDOW_S``.
    score : float
        The network's own smoothed ``vt`` probability, its largest in ``ALARM_WINDOW_S``.
    """
    cfg = network.config
    det = detectors_from_meta(network.meta, cfg.labels)[VT]
    x, fs, out = passed if passed is not None else cinc2015_network_pass(network, path)
    p = det.smooth(out.probs[:, cfg.labels.index(VT)], cfg.output_rate)
    t = token_times(len(p), network)
    sel = (t[:, 1] > ALARM_WINDOW_S[0]) & (t[:, 1] <= ALARM_WINDOW_S[1])
    return vt_run_before_alarm(x, fs, out, network), float(p[sel].max()) if sel.any() else 0.0


def vt_run_before_alarm(x: np.ndarray, fs: float, network_out: StreamOutput, network: Network) -> bool:
    """Whether the service's rhythm source, fed ``x`` up to the alarm with ``network_out`` as its
    gate (:func:`rhythm_episodes`), has a VT run overlapping ``ALARM_WINDOW_S``.

    Parameters
    ----------
    x : np.ndarray
        ``(n, c)`` CinC 2015 record, the alarm at 300 s.
    fs : float
        Hz.
    network_out, network : StreamOutput, Network
        The network's outputs over ``x`` (:func:`models.stream.run_offline`) and the network.
    """
    lo, hi = round(ALARM_WINDOW_S[0] * fs), round(ALARM_WINDOW_S[1] * fs)
    vt = rhythm_episodes(x[:hi], fs, network_out=network_out, network=network)["vt"]
    return any(a < hi and lo < b for a, b in vt)


def _mitdb_rows(network: Network, path: Path, name: str, part: str, learning_s: float) -> list[list]:
    rec = ecg_data.read_wfdb(path)
    fs, n = rec.sample_rate, rec.n_samples
    out = run_offline(network, rec.signal, fs)
    service = rhythm_episodes(rec.signal, fs, network_out=out, network=network)
    rhythms = ecg_data.mitdb_rhythms(path)
    beats, symbols = ecg_data.mitdb_beats(path)
    ref_af = af_episodes(rhythms, fs, n, learning_s=learning_s)
    ref_vt = vt_episodes(beats, symbols, fs)
    lo = round(learning_s * fs)
    rows = []
    for tag, det_af, det_vt in (("", service["af"], service["vt"]),
                                (" (network)", episodes_samples(out, network, AF, fs), episodes_samples(out, network, VT, fs))):
        det_af = clip_intervals(det_af, lo, n)
        rows += [_stats_row(name, part, "AF" + tag, episode_stats(ref_af.episodes, det_af, n, exclude=ref_af.neither)),
                 _stats_row(name, part, "VT>=5" + tag, episode_stats(ref_vt, det_vt, n))]
    short = short_vt_runs(beats, symbols, fs)
    st = episode_stats(short, service["vt"], n)
    rows.append([name, part, "VT 3-4 beats", st["n_reference"], None, _nan(st["episode_se"]), None, None, None, None])
    return rows


def _pooled_row(rows: list[list], kind: str, part: str) -> list:
    """Episodes pooled over the ``part`` rows of ``kind``: Se and +P (durations stay per record)."""
    sel = [r for r in rows if r[2] == kind and r[1] == part]
    ref, det = sum(r[3] for r in sel), sum(r[4] or 0 for r in sel)
    tp_ref = sum(round((r[5] or 0) * r[3]) for r in sel)
    false = sum(r[9] or 0 for r in sel)
    return ["pooled", part, kind, ref, det, tp_ref / ref if ref else None,
            (det - false) / det if det else None, None, None, false]


def _nstdb_row(network: Network, path: Path, name: str, offset: int = 0
               ) -> tuple[list, np.ndarray, np.ndarray, np.ndarray]:
    """One NSTDB record: noise AUROC of the service's noise probability (the network fused with the
    quality head of :mod:`models.sqi`) and of the network alone, tokens inside the noise blocks
    against the rest after the burn-in, and the service's false AF and VT episodes.
    Returns the row, the service's scores, the in-block labels and the network's own scores."""
    rec = ecg_data.read_wfdb(path)
    fs, n = rec.sample_rate, rec.n_samples
    out = run_offline(network, rec.signal, fs)
    service = rhythm_episodes(rec.signal, fs, network_out=out, network=network)
    inside = ecg_data.tokens_in_blocks(token_times(len(out.probs), network) * fs,
                                       ecg_data.nstdb_noise_blocks(n, fs, offset))
    j = network.config.labels.index(NOISE)
    burn = int(BURN_IN_S * network.config.output_rate)
    score, pos, own = out.probs[burn:, j], inside[burn:], out.quality_network[burn:]
    n_af, n_vt = len(service["af"]), len(service["vt"])
    minutes = n / fs / 60
    return [name, _nan(auroc(score, pos)), _nan(auroc(own, pos)), int(pos.sum()),
            int((~pos).sum()), n_af, n_vt, round(minutes, 1)], score, pos, own


NSTDB_COLUMNS = ["record", "noise AUROC", "network alone", "noise tokens", "clean tokens", "AF episodes",
                 "VT episodes", "minutes"]


def evaluate_ecg(network: Network, data: str = "datasets", root: Path | None = None, log=None) -> dict:
    """ECG report: tables and a flat summary (see module docstring)."""
    log = log or (lambda s: None)
    cfg = network.config
    tables, summary = [], {}
    rng = np.random.default_rng(0)
    if data == "excerpts":
        from models.data.excerpts import excerpt_path

        rows = []
        for name in ("mitdb_201_af", "mitdb_203_vt"):
            rows += _mitdb_rows(network, excerpt_path(name), name, "excerpt", learning_s=0.0)
        tables.append(_table("MIT-BIH excerpts: AF and VT episodes (learning period 0)", EPISODE_COLUMNS, rows))
        path = excerpt_path("nstdb_118e24_noise")
        src = ecg_data.excerpt_source(path)
        row, _, _, _ = _nstdb_row(network, path, "nstdb_118e24_noise", src[1] if src else 0)
        tables.append(_table("NSTDB electrode-motion noise", NSTDB_COLUMNS, [row]))
        summary["noise_auroc_118e24_excerpt"] = row[1]
        summary["af_episode_se_mitdb_201_af"] = rows[0][5]
        return {"tables": tables, "summary": summary}

    root = Path(root) if root is not None else datasets_dir()
    # MIT-BIH
    rows = []
    for r in MITDB_TEST + MITDB_VAL:
        if (root / "mitdb" / f"{r}.hea").exists():
            rows += _mitdb_rows(network, root / "mitdb" / r, r, TEST if r in MITDB_TEST else VAL, learning_s=300.0)
    log("mitdb")
    for kind in ("AF", "VT>=5"):
        rows.append(_pooled_row(rows, kind, TEST))
    tables.append(_table("MIT-BIH AF and VT episodes per record (DESIGN §7; AF after the 5-min learning period); "
                         "AF, VT>=5: the service's RR-interval AF detector and beat classifier; (network): the "
                         "network's episodes", EPISODE_COLUMNS, rows))
    loro = _beats_loro()
    if loro:
        tables.append(loro)
        summary["mitdb_vt_loro_episode_se"] = loro["rows"][-1][2] / loro["rows"][-1][1]
    for kind in ("AF", "VT>=5"):
        sel = [r for r in rows if r[2] == kind and r[1] == TEST and r[3] > 0 and r[0] != "pooled"]
        if sel:
            summary[f"mitdb_{kind}_records"] = [r[0] for r in sel]
            summary[f"mitdb_{kind}_episode_se_mean"] = _nan(float(np.nanmean([r[5] if r[5] is not None else np.nan for r in sel])))
    for r in rows:
        if r[2] in ("AF", "VT>=5") and r[0] != "pooled":
            summary[f"mitdb_{r[0]}_{r[2]}"] = {"episode_se": r[5], "episode_ppv": r[6], "duration_se": r[7],
                                               "duration_ppv": r[8], "false": r[9]}
    # CinC 2017
    c17 = root / "cinc2017"
    if c17.is_dir():
        rule = network.meta.get("rules", {}).get("cinc2017", {"t_noise": 0.5, "t_af": 0.5, "t_normal": 0.5})
        rw = load_record_weights()
        if rw is not None and rw.meta.get("labels") != list(cfg.labels):
            rw = None                                        # fitted on another network's outputs
        truth, pred, pred_net = [], [], []
        for name, label in ecg_data.cinc2017_records(c17):
            if cinc2017_split(name) != TEST:
                continue
            rec = ecg_data.read_cinc2017(c17, name)
            st = stream_record(network, rec.signal, rec.sample_rate, BURN_IN_S)
            truth.append(label)
            pred_net.append(classify_cinc2017(st["network"], cfg.labels, rule))
            pred.append(_cinc2017_class(st, pred_net[-1], rw, cfg.labels, rule))
        # the summary's cinc2017_f1 is the decision in use: the record model's when shipped
        decisions = [("network rule", pred_net, "cinc2017_f1_network" if rw is not None else "cinc2017_f1")]
        if rw is not None:
            decisions.append(("AF from the record model (RR and morphology)", pred, "cinc2017_f1"))
        for what, guess, key in decisions:
            f1 = f1_per_class(truth, guess)
            confusion = {t: {p: sum(a == t and b == p for a, b in zip(truth, guess)) for p in "NAO~"} for t in "NAO~"}
            tables.append(_table(f"CinC 2017 test records ({len(truth)}), {what}: F1 per class",
                                 ["class", "F1", "records", "predicted N", "predicted A", "predicted O", "predicted ~"],
                                 [[c, _nan(f1[c]), sum(t == c for t in truth), *confusion[c].values()] for c in "NAO~"]))
            summary[key] = {c: _nan(v) for c, v in f1.items()}
            if key == "cinc2017_f1":
                summary["cinc2017_f1_mean_NAO"] = _nan(float(np.nanmean([f1["N"], f1["A"], f1["O"]])))
        log("cinc2017")
    # CinC 2015
    c15 = root / "cinc2015"
    if c15.is_dir():
        alarms = ecg_data.cinc2015_alarms(c15)
        split = cinc2015_split(alarms)
        det = detectors_from_meta(network.meta, cfg.labels)[VT]
        names, truth, scores, runs = [], [], [], []
        for name, is_true in alarms:
            if split[name] != TEST:
                continue
            run, score = cinc2015_vt_alarm(network, c15 / name)
            names.append(name)
            truth.append(is_true)
            runs.append(run)
            scores.append(score)
        truth_a, scores_a = np.array(truth), np.array(scores)
        fixed = scores_a >= det.threshold
        cv = cv_threshold_alarms(scores_a, truth_a, np.random.default_rng(1))
        rows = []
        for what, alarm in ((f"network: stored VT threshold {det.threshold}", fixed),
                            ("network: 5-fold CV threshold", cv),
                            ("service: beat-classifier VT run in the 10 s", np.array(runs, bool))):
            d = alarm_decisions(truth_a, alarm, rng)
            rows.append([what, d["score"], "[{:.1f}, {:.1f}]".format(*d["ci95"]), d["tp"], d["fp"], d["tn"], d["fn"]])
        tables.append(_table(f"CinC 2015 VT alarms, test half ({len(truth)} records): score (TP+TN)/(TP+TN+FP+5FN)",
                             ["decision", "score", "bootstrap 95% CI", "TP", "FP", "TN", "FN"], rows))
        summary["cinc2015_vt_score"] = rows[0][1]
        summary["cinc2015_vt_score_cv"] = rows[1][1]
        summary["cinc2015_vt_score_beats"] = rows[2][1]
        summary["cinc2015_vt_auroc"] = _nan(auroc(scores_a, truth_a))
        log("cinc2015")
    # NSTDB electrode motion
    rows, all_s, all_p, all_own = [], [], [], []
    for name in NSTDB_TEST:
        path = root / "nstdb" / name
        if (root / "nstdb" / f"{name}.hea").exists():
            row, s, p, own = _nstdb_row(network, path, name)
            rows.append(row)
            all_s.append(s)
            all_p.append(p)
            all_own.append(own)
            summary[f"noise_auroc_{name}"] = row[1]
            summary[f"noise_auroc_network_{name}"] = row[2]
            summary[f"false_af_vt_{name}"] = row[5] + row[6]
    if rows:
        pooled = _nan(auroc(np.concatenate(all_s), np.concatenate(all_p)))
        own = _nan(auroc(np.concatenate(all_own), np.concatenate(all_p)))
        rows.append(["pooled", pooled, own, sum(r[3] for r in rows), sum(r[4] for r in rows), None, None, None])
        summary["noise_auroc_network_pooled"] = own
        summary["noise_auroc_pooled"] = pooled
        tables.append(_table("NSTDB electrode-motion records (held-out noise type): noise AUROC (network fused with "
                             "the quality head, and the network alone), false episodes", NSTDB_COLUMNS, rows))
        log("nstdb")
    return {"tables": tables, "summary": summary}


def _cinc2017_class(stream: dict, by_network: str, rw, labels: tuple[str, ...], rule: dict) -> str:
    """A CinC 2017 record's class: noisy (``~``) by the network's rule; else ``A`` when the record
    RR model (:mod:`models.af_record`) says AF; else the network's N / O decision (its ``A`` becomes
    N or O by its normal threshold)."""
    if rw is None or by_network == "~":
        return by_network
    if rw.prob(features_of(stream))[0] >= rw.threshold:
        return "A"
    if by_network != "A":
        return by_network
    return "N" if stream["network"][labels.index(NORMAL)] >= rule["t_normal"] else "O"


def _beats_loro() -> dict | None:
    """The beat classifier's leave-one-record-out VT table (``vigil-beats-eval.json``), if shipped."""
    from models.beats import WEIGHTS_FILE

    path = WEIGHTS_FILE.with_name("vigil-beats-eval.json")
    if not path.exists():
        return None
    ev = json.loads(path.read_text())
    rows = [[name, r["vt_ref"], r["vt_hit"], r["vt_det"], r["vt_false"]] for name, r in ev["records"].items()
            if r["vt_ref"] or r["vt_det"]]
    sm = ev["summary"]
    rows.append(["all", sm["vt_reference_episodes"], round(sm["vt_episode_se"] * sm["vt_reference_episodes"]), None,
                 sm["vt_false_runs"]])
    return _table(f"MIT-BIH VT runs >= 5 beats, beat classifier leave-one-record-out (python -m models.beats_fit): "
                  f"episode Se {sm['vt_episode_se']:.3f}, {sm['vt_false_runs_per_hour']:.2f} false runs/h over "
                  f"{sm['hours']} h", ["record", "VT ref", "VT found", "runs", "false runs"], rows)


# --- EEG -----------------------------------------------------------------------------------

def line_length(x: np.ndarray) -> float:
    """Mean absolute first difference (µV per sample) over all channels."""
    return float(np.nanmean(np.abs(np.diff(x, axis=0)))) if len(x) > 1 else float("nan")


def _seizure_score(network: Network, x: np.ndarray, fs: float) -> tuple[float, np.ndarray]:
    out = run_offline(network, x, fs)
    j = network.config.labels.index(SEIZURE)
    burn = int(BURN_IN_S * network.config.output_rate)
    return float(segment_score(out.probs, burn)[j]), out.probs[:, j]


def _bonn_table(network, test, val, threshold):
    """Segment Se/Sp/AUROC at each gain for the model and the line-length baseline."""
    ll_thr = fit_binary_threshold(np.array([line_length(x) for x, _ in val]), np.array([s for _, s in val]))
    y = np.array([s for _, s in test])
    rows, summary = [], {}
    for g in GAINS:
        model = np.array([_seizure_score(network, x * g, eeg_data.BONN_SAMPLE_RATE)[0] for x, _ in test])
        ll = np.array([line_length(x * g) for x, _ in test])
        for what, s, t in (("model", model, threshold), ("line length", ll, ll_thr)):
            se = float(((s >= t) & y).sum() / max(y.sum(), 1))
            sp = float(((s < t) & ~y).sum() / max((~y).sum(), 1))
            rows.append([f"x{g:g}", what, round(se, 3), round(sp, 3), _nan(auroc(s, y)), int(y.sum()), int((~y).sum())])
            if what == "model":
                summary[f"bonn_x{g:g}"] = {"se": se, "sp": sp, "auroc": _nan(auroc(s, y))}
    return rows, summary


def _artifact_rows(network: Network, backgrounds: list[tuple[np.ndarray, float]], kinds, rng) -> tuple[list, dict]:
    """Token AUROC of ``artifact`` for artifacts added at the input (raw) signal: the service's
    probability (the network fused with the EEG quality head, :mod:`models.eeg_sqi`) and the
    network's own (``StreamOutput.quality_network``)."""
    from models.augment import insert_artifact

    j = network.config.labels.index(ARTIFACT)
    cfg = network.config
    rows, summary = [], {}
    clean_scores, clean_own = [], []
    for x, fs in backgrounds:
        out = run_offline(network, x, fs)
        clean_scores.append(out.probs[int(BURN_IN_S * cfg.output_rate):, j])
        clean_own.append(out.quality_network[int(BURN_IN_S * cfg.output_rate):])
    neg, neg_own = np.concatenate(clean_scores), np.concatenate(clean_own)
    for kind in kinds:
        pos_scores, pos_own = [], []
        for x, fs in backgrounds:
            y, a, b, _ = insert_artifact(x, fs, kind, rng, start_s=BURN_IN_S)
            out = run_offline(network, y, fs)
            t = token_times(len(out.probs), network) * fs
            inside = (t[:, 0] >= a) & (t[:, 1] <= b)
            pos_scores.append(out.probs[inside, j])
            pos_own.append(out.quality_network[inside])
        pos = np.concatenate(pos_scores)
        truth = np.concatenate([np.ones(len(pos), bool), np.zeros(len(neg), bool)])
        auc = _nan(auroc(np.concatenate([pos, neg]), truth))
        own = _nan(auroc(np.concatenate([*pos_own, neg_own]), truth))
        held = kind in ARTIFACTS_HELD_OUT
        rows.append([kind, "held out" if held else "trained", auc, own, len(pos), len(neg)])
        summary[f"artifact_auroc_{kind}"] = auc
        summary[f"artifact_auroc_network_{kind}"] = own
    held = [r[2] for r in rows if r[1] == "held out" and r[2] is not None]
    summary["artifact_auroc_held_out_mean"] = float(np.mean(held)) if held else None
    held_own = [r[3] for r in rows if r[1] == "held out" and r[3] is not None]
    summary["artifact_auroc_network_held_out_mean"] = float(np.mean(held_own)) if held_own else None
    return rows, summary


def evaluate_eeg(network: Network, data: str = "datasets", root: Path | None = None, log=None) -> dict:
    """EEG report: tables and a flat summary (see module docstring)."""
    log = log or (lambda s: None)
    rules = network.meta.get("rules", {})
    thr = rules.get("seizure_segment_threshold", 0.5)
    rng = np.random.default_rng(0)
    tables, summary = [], {}
    seg_cols = ["gain", "detector", "Se", "Sp", "AUROC", "seizure segments", "other segments"]
    art_cols = ["artifact type", "status", "AUROC", "network alone", "artifact tokens", "clean tokens"]
    if data == "excerpts":
        from models.data.excerpts import excerpt_path

        bonn = [(eeg_data.read_bonn(excerpt_path(n)).signal, n == "bonn_S001") for n in ("bonn_S001", "bonn_Z001")]
        rows, s = _bonn_table(network, bonn, bonn, thr)
        tables.append(_table("Bonn excerpts S001 vs Z001 (threshold from the checkpoint)", seg_cols, rows))
        summary.update(s)
        bg = [(bonn[1][0], eeg_data.BONN_SAMPLE_RATE)]
        rows, s = _artifact_rows(network, bg, ARTIFACTS_HELD_OUT + ARTIFACTS_TRAIN, rng)
        tables.append(_table("Artifacts added to Bonn Z001", art_cols, rows))
        summary.update(s)
        return {"tables": tables, "summary": summary}

    root = Path(root) if root is not None else datasets_dir()
    # Bonn
    segs = eeg_data.bonn_segments(root / "bonn") if (root / "bonn").is_dir() else []
    test = [(eeg_data.read_bonn(p).signal, s == "S") for p, s in segs if bonn_split(int(p.stem[1:])) == TEST]
    val = [(eeg_data.read_bonn(p).signal, s == "S") for p, s in segs if bonn_split(int(p.stem[1:])) == VAL]
    if test:
        rows, s = _bonn_table(network, test, val, thr)
        tables.append(_table(f"Bonn S vs Z/O/N/F, test segments 061-070 (model threshold {thr:.3f} and line-length "
                             "threshold fitted on validation 051-060 at x1)", seg_cols, rows))
        summary.update(s)
        log("bonn")
    # CHB-MIT
    chb = root / "chbmit" / "chb01"
    if chb.is_dir():
        rows = []
        for part in (TEST, VAL):
            seg_s, seg_y, tok_s, tok_y = [], [], [], []
            for folder, ictal in (("ictal", True), ("preictal_10s", False)):
                for p in sorted((chb / folder).glob("*.npy")):
                    if chbmit_split(p.stem.split("_")[1]) != part:
                        continue
                    rec = eeg_data.read_chbmit_npy(p)
                    s, probs = _seizure_score(network, rec.signal, rec.sample_rate)
                    seg_s.append(s)
                    seg_y.append(ictal)
                    burn = int(BURN_IN_S * network.config.output_rate)
                    tok_s.append(probs[burn:])
                    tok_y.append(np.full(len(probs[burn:]), ictal))
            if seg_s:
                seg_auc = _nan(auroc(np.array(seg_s), np.array(seg_y)))
                tok_auc = _nan(auroc(np.concatenate(tok_s), np.concatenate(tok_y)))
                rows.append([part, sum(seg_y), len(seg_y) - sum(seg_y), seg_auc, tok_auc])
                summary[f"chbmit_{part}_auroc_segment"] = seg_auc
                summary[f"chbmit_{part}_auroc_token"] = tok_auc
        tables.append(_table("CHB-MIT chb01 ictal vs pre-ictal (split by seizure: test 21 26, validation 18)",
                             ["part", "ictal", "pre-ictal", "segment AUROC", "token AUROC"], rows))
        log("chbmit")
    # Artifacts on held-out background
    bg = [(x, eeg_data.BONN_SAMPLE_RATE) for x, s in test if not s][:20]
    mmi = root / "eegmmidb"
    for run in EEGMMIDB_RUNS[TEST]:
        if (mmi / f"S001{run}.edf").exists():
            rec = eeg_data.read_edf(mmi / f"S001{run}.edf")
            step = int(20 * rec.sample_rate)
            bg += [(rec.signal[i:i + step], rec.sample_rate) for i in range(0, rec.n_samples - step + 1, step)][:3]
    if chb.is_dir():
        bg += [(eeg_data.read_chbmit_npy(p).signal, 256.0) for p in sorted((chb / "preictal_10s").glob("*.npy"))
               if chbmit_split(p.stem.split("_")[1]) == TEST]
    if bg:
        rows, s = _artifact_rows(network, bg, ARTIFACTS_HELD_OUT + ARTIFACTS_TRAIN, rng)
        tables.append(_table(f"Artifacts added at the input to {len(bg)} held-out backgrounds (Bonn Z/O/N/F test, "
                             "EEGMMIDB R02/R06, CHB-MIT test pre-ictal): token AUROC", art_cols, rows))
        summary.update(s)
        log("artifacts")
    # SzCORE on a Bonn stream
    if test:
        non = [x for x, s in test if not s]
        sz = [x for x, s in test if s]
        parts, ref, t = [], [], 0.0
        fs = eeg_data.BONN_SAMPLE_RATE
        for i, x in enumerate(sz):
            for y in non[4 * i:4 * i + 4]:
                parts.append(y)
                t += len(y) / fs
            parts.append(x)
            ref.append((t, t + len(x) / fs))
            t += len(x) / fs
        stream = np.concatenate(parts)
        out = run_offline(network, stream, fs)
        det = detectors_from_meta(network.meta, network.config.labels)[SEIZURE]
        j = network.config.labels.index(SEIZURE)
        steps = det.detect(out.probs[:, j], network.config.output_rate)
        d = network.config.patch_len / network.config.sample_rate
        sc = szcore_score(ref, [(s * d, e * d) for s, e in steps], len(stream) / fs)
        lat = [v for v in sc["latencies_s"] if not math.isnan(v)]
        tables.append(_table("SzCORE event scoring on a continuous stream of Bonn test segments (4 non-seizure, 1 seizure, x10)",
                             ["events", "detected", "false", "sensitivity", "precision", "F1", "FP/h", "hours",
                              "median latency s"],
                             [[sc["n_reference"], sc["tp"], sc["fp"], _nan(sc["sensitivity"]), _nan(sc["precision"]),
                               _nan(sc["f1"]), _nan(sc["fp_per_hour"]), round(sc["hours"], 3),
                               float(np.median(lat)) if lat else None]]))
        summary["szcore_bonn"] = {k: _nan(sc[k]) for k in ("sensitivity", "precision", "f1", "fp_per_hour", "hours")}
        log("szcore")
    return {"tables": tables, "summary": summary}


# --- entry point ---------------------------------------------------------------------------

def report_markdown(report: dict) -> list[str]:
    """Markdown lines of a report's tables."""
    lines = []
    for t in report["tables"]:
        lines += [f"**{t['title']}**", "", "| " + " | ".join(t["columns"]) + " |",
                  "|" + "---|" * len(t["columns"])]
        lines += ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in t["rows"]]
        lines.append("")
    return lines


def print_report(report: dict, console) -> None:
    from rich.table import Table

    for t in report["tables"]:
        table = Table(title=t["title"], title_justify="left")
        for c in t["columns"]:
            table.add_column(c)
        for row in t["rows"]:
            table.add_row(*(_fmt(v) for v in row))
        console.print(table)


def evaluate(modality: str, model: str | None = None, json_out: str | None = None, data: str = "datasets",
             card: bool = False, console=None, root: Path | None = None, lose_lead: str | None = None) -> dict:
    """Evaluate a checkpoint, print the tables, optionally write JSON and the model card.

    Parameters
    ----------
    modality : {"ecg", "eeg", "alarms"}
        ``alarms``: false high-priority alarms with and without suppression and the true CinC 2015
        VT alarms detected, through the service's alarm engine (:mod:`service.alarms.evaluate`).
    model : str, optional
        Checkpoint file or shipped name; default ``vigil-<modality>`` (``vigil-ecg`` for alarms).
    json_out : str, optional
        Where to write the report.
    data : {"datasets", "excerpts"}
        Held-out records of the full datasets, or the shipped excerpts (fast smoke check).
    card : bool
        Rewrite the model card next to the checkpoint with these metrics.
    lose_lead : {"nan", "flat"}, optional
        ``alarms`` only: play every record with its first lead lost from 200 s.
    """
    from rich.console import Console

    console = console or Console()
    if modality == "alarms":  # the alarm engine over ECG streams (service/alarms/evaluate.py)
        from service.alarms.evaluate import main as evaluate_alarms

        return evaluate_alarms(model=model, json_out=json_out, data=data, console=console, root=root,
                               lose_lead=lose_lead)
    if lose_lead is not None:
        raise ValueError(f"Invalid lose_lead: only the alarms evaluation loses a lead, not {modality}")
    if modality not in ("ecg", "eeg"):
        raise ValueError(f"Invalid modality: expected ecg, eeg or alarms, got {modality!r}")
    path = resolve(model or f"vigil-{modality}")
    network = load_model(path)
    if network.config.modality != modality:
        raise ValueError(f"Invalid model: {path} is an {network.config.modality} model, not {modality}")
    fn = evaluate_ecg if modality == "ecg" else evaluate_eeg
    with console.status(f"evaluating {path.name} on {data}"):
        report = fn(network, data, root=root, log=lambda s: console.log(f"scored {s}"))
    args = " ".join(a for a in sys.argv[1:]) if sys.argv and sys.argv[0].endswith("vigil") else ""
    report.update({"modality": modality, "model": str(path), "data": data,
                   "command": f"vigil {args}" if args else f"vigil evaluate {modality} --data {data}"})
    print_report(report, console)
    if json_out:
        Path(json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(json_out).write_text(json.dumps(report, indent=1, default=_json_default))
    if card:
        from models.model_card import write_card

        write_card(path, evaluation=report, limits=network.meta.get("limits"))
    return report


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return None if math.isnan(o) else float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (np.bool_,)):
        return bool(o)
    raise TypeError(type(o))
