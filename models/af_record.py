"""Record-level AF decision for short recordings (the CinC 2017 ``A`` class).

A 9-60 s record is too short for the AF alarm's episode rule (:mod:`models.af`: 12 beats to fill
the window, then 20 s to confirm), so the CinC 2017 record decision looks at the whole record at
once, from what the streaming path produced for it:

- the RR irregularity of all its clean RR intervals (:func:`models.af.rr_features`, plus the
  share of successive differences > 50 ms and > 20 ms, the coefficient of variation, the Poincaré
  SD1/SD2 ratio, sample entropy and COSEn (Lake & Moorman 2011), the shortest and longest RR over
  the median, and the number of intervals);
- the mean of the AF detector's per-beat probabilities, the share of clean intervals, beats per s;
- the record's morphology (:mod:`models.morphology`, from the signal and the beats; AF has no P
  waves, and f waves instead): P-wave presence before R (each beat's correlation with the median
  P segment, the share of beats that have one, its amplitude, coherence and signal-to-noise
  ratio), activity in the TQ segments (the residual after the median TQ pattern, the share of 4-9
  Hz f-wave power in it) and the beat-to-beat QRS-T correlation;
- the network's mean probabilities over the record (after its burn-in; labels in
  ``meta["labels"]``).

A small MLP (fitted by ``python -m models.af_record`` on the CinC 2017 train and validation
records, threshold by 5-fold cross-validation over them) gives P(AF); ``vigil evaluate ecg`` calls
a record ``A`` when it is at or above the threshold (noisy ``~`` records are decided first, by
the network's rule). The weights live in ``models/checkpoints/vigil-af-record.json``; their
``features`` list names the inputs, and a file fitted on other features is refused.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.af import ECTOPIC_P, FEATURES as RR_FEATURES, RR_RANGE_S, AfDetector, rr_features
from models.af import load_weights as load_af
from models.af_fit import record_beats
from models.mlp import TanhMLP, fit_mlp, load_weights_file
from models.morphology import FEATURES as MORPHOLOGY
from models.morphology import morphology_features
from models.record_rules import segment_score
from models.stream import run_offline

WEIGHTS_FILE = Path(__file__).resolve().parent / "checkpoints" / "vigil-af-record.json"
SAMPEN_M, SAMPEN_R_S = 1, 0.03   # sample entropy: template length, tolerance (s)
# record features after the AF detector's RR_FEATURES (then the network's labels, "network_<label>")
EXTRA = ("pnn50", "pnn20", "cv", "sd1_sd2", "sample_entropy", "cosen", "min_over_median", "max_over_median",
         "n_rr", "af_prob_mean", "clean_fraction", "beats_per_s", *MORPHOLOGY)
MIN_RR = 5                       # fewest clean RR intervals for the RR features (else nan)
# the MLP (hidden units, full-batch Adam steps, learning rate, L2 decay, seed) and the CV folds
HIDDEN, EPOCHS, LR, WEIGHT_DECAY, SEED, FOLDS = 8, 1000, 0.01, 1e-2, 0, 5


def sample_entropy(rr: np.ndarray, m: int = SAMPEN_M, r: float = SAMPEN_R_S) -> tuple[float, float]:
    """Sample entropy of an RR series and its COSEn (sample entropy - ln(2r) - ln(mean RR)).

    Parameters
    ----------
    rr : np.ndarray
        ``(k,)`` RR intervals, s.
    m, r : int, float
        Template length and tolerance (s).

    Returns
    -------
    (sampen, cosen) : tuple of float
        Undefined (no matching templates) gives (2.5, 0.0), a high-entropy stand-in.
    """
    x = np.asarray(rr, np.float64)
    n = len(x)

    def pairs(mm: int) -> float:
        t = np.lib.stride_tricks.sliding_window_view(x, mm)[: n - m]
        d = np.max(np.abs(t[:, None, :] - t[None, :, :]), axis=2)
        return (np.sum(d <= r) - len(t)) / 2.0

    a, b = pairs(m + 1), pairs(m)
    if a == 0 or b == 0:
        return 2.5, 0.0
    se = float(-np.log(a / b))
    return se, se - float(np.log(2 * r)) - float(np.log(x.mean()))


def record_features(beats: np.ndarray, p_ventricular: np.ndarray, fs: float, n_samples: int,
                    af_probs: np.ndarray, network_means: np.ndarray, morphology: np.ndarray | None = None
                    ) -> np.ndarray:
    """Features of one record.

    Parameters
    ----------
    beats, p_ventricular : np.ndarray
        ``(m,)`` beat samples and ventricular probabilities (:func:`models.af_fit.record_beats`).
    fs : float
        Hz; ``n_samples`` the record's length.
    af_probs : np.ndarray
        ``(m,)`` the AF detector's per-beat probabilities (nan before its window filled).
    network_means : np.ndarray
        ``(L,)`` the network's mean probabilities over the record.
    morphology : np.ndarray, optional
        ``(len(MORPHOLOGY),)`` :func:`models.morphology.morphology_features` of the record (None:
        unknown, all nan).

    Returns
    -------
    np.ndarray
        ``(len(RR_FEATURES) + len(EXTRA) + L,)``; nan where undefined (fewer than 5 clean RR, too
        few beats for the morphology), which the MLP reads as the training mean.
    """
    beats = np.asarray(beats, np.int64)
    ect = np.nan_to_num(np.asarray(p_ventricular, np.float64), nan=0.0) >= ECTOPIC_P
    rr = np.diff(beats) / fs
    ok = ~ect[1:] & ~ect[:-1] & (rr >= RR_RANGE_S[0]) & (rr <= RR_RANGE_S[1])
    clean = rr[ok]
    if len(clean) >= MIN_RR:
        d = np.diff(clean)
        sd1 = float(np.std(d)) / np.sqrt(2)
        sd2 = float(np.sqrt(max(1e-12, 2 * np.var(clean) - sd1 ** 2)))
        se, cosen = sample_entropy(clean)
        med = float(np.median(clean))
        rr_part = np.concatenate([rr_features(clean, float(ect.mean())),
                                  [np.mean(np.abs(d) > 0.05), np.mean(np.abs(d) > 0.02), clean.std() / clean.mean(),
                                   sd1 / sd2, se, cosen, clean.min() / med, clean.max() / med, len(clean)]])
    else:
        rr_part = np.full(len(RR_FEATURES) + 9, np.nan)
    p = np.asarray(af_probs, np.float64)
    p = p[np.isfinite(p)]
    other = [p.mean() if len(p) else np.nan, ok.sum() / max(1, len(rr)), len(beats) / max(1e-9, n_samples / fs)]
    morph = np.full(len(MORPHOLOGY), np.nan) if morphology is None else np.asarray(morphology, np.float64)
    return np.concatenate([rr_part, other, morph, np.asarray(network_means, np.float64)])


def feature_names(labels) -> list[str]:
    """Names of :func:`record_features`' outputs for a network with these labels."""
    return [*RR_FEATURES, *EXTRA, *(f"network_{k}" for k in labels)]


@dataclass
class RecordWeights(TanhMLP):
    """The record classifier (a :class:`models.mlp.TanhMLP`) and its threshold.

    Attributes
    ----------
    threshold : float
        P(AF) at or above which the record is ``A``.
    meta : dict
        ``labels`` (the network's, for ``network_means``), data, split, metrics.
    """

    threshold: float
    meta: dict

    def to_json(self) -> dict:
        return {"features": feature_names(self.meta.get("labels", [])), **self.params_json(),
                "threshold": float(self.threshold), "meta": self.meta}

    @classmethod
    def from_json(cls, d: dict) -> "RecordWeights":
        """The weights of :meth:`to_json` data.

        Raises
        ------
        ValueError
            When they were fitted on other features (an older file, e.g. without the morphology).
        """
        meta = d.get("meta", {})
        want = feature_names(meta.get("labels", []))
        if "features" in d and list(d["features"]) != want:
            missing = [f for f in want if f not in d["features"]]
            raise ValueError(f"record weights fitted on other features (missing {missing or 'none'}, "
                             f"{len(d['features'])} against {len(want)}): refit with python -m models.af_record")
        w = cls(**TanhMLP.params_from_json(d), threshold=float(d["threshold"]), meta=meta)
        if w.mean.shape != (len(want),):
            raise ValueError(f"record weights take {w.mean.shape[0]} features, {len(want)} expected: "
                             "refit with python -m models.af_record")
        return w


def load_weights(path: str | Path = WEIGHTS_FILE) -> RecordWeights | None:
    """The shipped record model, or None when its file is absent (shared, read-only); a file fitted
    on other features raises ValueError (:meth:`RecordWeights.from_json`)."""
    return load_weights_file(RecordWeights, path)


def fit(x: np.ndarray, y: np.ndarray, seed: int = SEED) -> RecordWeights:
    """The MLP on (n, F) record features and 0/1 labels (classes balanced, full batch)."""
    return RecordWeights(**fit_mlp(x, y, hidden=HIDDEN, epochs=EPOCHS, lr=LR, weight_decay=WEIGHT_DECAY, seed=seed),
                         threshold=0.5, meta={})


def f1_af(truth: np.ndarray, decided: np.ndarray) -> float:
    """F1 of the AF class from boolean truth and decisions."""
    tp = int((truth & decided).sum())
    den = 2 * tp + int((~truth & decided).sum()) + int((truth & ~decided).sum())
    return 2 * tp / den if den else float("nan")


def cv_threshold(x: np.ndarray, y: np.ndarray, seed: int = SEED) -> tuple[float, float]:
    """Threshold maximising the out-of-fold F1 (``FOLDS`` folds over records); (threshold, F1)."""
    fold = np.random.default_rng(seed).integers(0, FOLDS, len(y))
    oof = np.zeros(len(y))
    for k in range(FOLDS):
        oof[fold == k] = fit(x[fold != k], y[fold != k], seed).prob(x[fold == k])
    grid = np.round(np.arange(0.05, 1.0, 0.025), 3)
    scores = [f1_af(y > 0, oof >= t) for t in grid]
    i = int(np.nanargmax(scores))
    return float(grid[i]), float(scores[i])


def stream_record(network, x: np.ndarray, fs: float, burn_in_s: float = 3.0) -> dict:
    """What the streaming path gives for one record: beats, ventricular and AF probabilities, the
    network's mean probabilities (its own outputs: the record model and the CinC 2017 rule were
    fitted on them, before the quality head of :mod:`models.sqi` was fused into ``noise``), and the
    record's morphology features (``morph``, :func:`models.morphology.morphology_features`)."""
    beats, pv = record_beats(x, fs)
    det = AfDetector(fs, load_af())
    scored, _, _ = det.process(list(zip(beats.tolist(), pv.tolist())), det.initial_state())
    out = run_offline(network, x, fs, quality=False)
    return {"beats": beats, "pv": pv, "fs": fs, "n": len(x), "af": np.array([p for _, _, p in scored]),
            "network": segment_score(out.probs, int(burn_in_s * network.config.output_rate)),
            "morph": morphology_features(x, fs, beats, pv), "morph_features": list(MORPHOLOGY)}


def features_of(s: dict) -> np.ndarray:
    """:func:`record_features` of a :func:`stream_record` result (without ``morph``: nan morphology)."""
    return record_features(s["beats"], s["pv"], s["fs"], s["n"], s["af"], s["network"], s.get("morph"))


def evaluate_f1(w: RecordWeights, network, streams: dict, records: list[tuple[str, str]]) -> tuple[float, int]:
    """AF F1 over ``records`` (name, label) as ``vigil evaluate ecg`` decides them (the network's
    CinC 2017 rule for ``~`` first, then ``w``; :func:`models.evaluate._cinc2017_class`), from their
    :func:`stream_record` results in ``streams``; (F1, number of records)."""
    from models.evaluate import _cinc2017_class
    from models.record_rules import classify_cinc2017, f1_per_class

    labels = tuple(network.config.labels)
    rule = network.meta.get("rules", {}).get("cinc2017", {"t_noise": 0.5, "t_af": 0.5, "t_normal": 0.5})
    pred = [_cinc2017_class(streams[n], classify_cinc2017(streams[n]["network"], labels, rule), w, labels, rule)
            for n, _ in records]
    return f1_per_class([lab for _, lab in records], pred)["A"], len(records)


def main(argv: list[str] | None = None) -> int:
    """``python -m models.af_record [--out FILE] [--cache FILE]``: fit on CinC 2017 train + validation,
    report the test records' AF F1."""
    import torch
    from rich.console import Console
    from rich.progress import track

    from models.checkpoint import load_model
    from models.data import ecg as ecg_data
    from models.data.paths import datasets_dir
    from models.splits import TEST, cinc2017_split

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=WEIGHTS_FILE)
    ap.add_argument("--model", default="vigil-ecg", help="the network whose mean probabilities are features")
    ap.add_argument("--cache", type=Path, default=None,
                    help="npz cache of the records' streams (morphology added to an older one; delete it after "
                         "changing models/morphology.py's settings)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    console = Console()
    root = datasets_dir() / "cinc2017"
    if not root.is_dir():
        console.print(f"[red]No CinC 2017 under {datasets_dir()} (set VIGIL_DATASETS)")
        return 2
    network = load_model(args.model)
    streams = np.load(args.cache, allow_pickle=True)["s"].item() if args.cache and args.cache.exists() else {}
    records = ecg_data.cinc2017_records(root)
    for name, _ in track([r for r in records if r[0] not in streams], description="records", console=console):
        rec = ecg_data.read_cinc2017(root, name)
        streams[name] = stream_record(network, rec.signal, rec.sample_rate)
    stale = [n for n, s in streams.items() if s.get("morph_features") != list(MORPHOLOGY)]
    for name in track(stale, description="morphology (cache without it)", console=console):
        rec = ecg_data.read_cinc2017(root, name)
        streams[name]["morph"] = morphology_features(rec.signal, rec.sample_rate, streams[name]["beats"],
                                                     streams[name]["pv"])
        streams[name]["morph_features"] = list(MORPHOLOGY)
    if args.cache:
        np.savez(args.cache, s=np.array(streams, dtype=object))
    fit_names = [n for n, lab in records if cinc2017_split(n) != TEST and lab != "~"]
    test_names = [n for n, lab in records if cinc2017_split(n) == TEST and lab != "~"]
    label = dict(records)
    x = np.array([features_of(streams[n]) for n in fit_names])
    y = np.array([label[n] == "A" for n in fit_names], float)
    thr, oof_f1 = cv_threshold(x, y)
    w = fit(x, y)
    w.threshold = thr
    xt = np.array([features_of(streams[n]) for n in test_names])
    yt = np.array([label[n] == "A" for n in test_names])
    test_f1 = f1_af(yt, w.prob(xt) >= thr)
    pipeline_f1, n_all = evaluate_f1(w, network, streams, [(n, lab) for n, lab in records if cinc2017_split(n) == TEST])
    w.meta = {"labels": list(network.config.labels), "network": args.model,
              "data": f"CinC 2017 train + validation records without ~ ({len(fit_names)}, {int(y.sum())} AF)",
              "split": "CinC 2017 by record (crc32 rule of models/splits.py); test records held out",
              "threshold": f"{FOLDS}-fold cross-validation over the fitting records (out-of-fold F1 {oof_f1:.3f})",
              "features": f"RR irregularity, AF detector, morphology (models/morphology.py: {', '.join(MORPHOLOGY)}), "
                          f"network means",
              "test_f1_af_vs_n_o": test_f1, "test_f1_af_evaluate": pipeline_f1,
              "command": "python -m models.af_record"}
    args.out.write_text(json.dumps(w.to_json(), indent=1))
    console.print(f"threshold {thr} (out-of-fold F1 {oof_f1:.3f}); test records without ~ ({len(test_names)}, "
                  f"{int(yt.sum())} AF): AF F1 {test_f1:.3f}; as vigil evaluate ecg decides (the network's ~ "
                  f"first), all {n_all} test records: AF F1 {pipeline_f1:.3f}; wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
