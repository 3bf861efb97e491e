"""Fit and evaluate the ECG quality head (:mod:`models.ecg_sqi`).

``python -m models.ecg_sqi_fit [--out models/checkpoints/vigil-ecg-sqi.json] [--json FILE]``

1. Data: the first ``MINUTES`` minutes of each MIT-BIH *train* record (split of
   :mod:`models.splits`; record 118 left out, since the NSTDB electrode-motion test records are
   118 with noise added) and, for validation, of the *validation* records. From minute 1 on,
   1-minute blocks alternate clean and noisy; a noisy block carries NSTDB ``bw`` or ``ma`` noise
   (the training noise types; electrode motion stays held out) at an SNR drawn from
   :data:`models.augment.ECG_SNRS_DB`: the RMS ratio in the model's pass band (0.5-40 Hz), so
   that baseline wander the preprocessor removes does not count as noise. Train records take
   their noise from the first half of the noise records, validation records from the second.
2. Labels per token (as the network's ``noise`` target): noise at <= 6 dB is positive, noise at
   > 6 and <= 12 dB is left out, clean or > 12 dB negative.
3. Features through the streaming head (the preprocessor, then :class:`models.ecg_sqi.EcgQuality`
   over the whole record: chunking does not change them, tested); a logistic regression
   (Newton's method, an L2 penalty, classes balanced).
4. Reported: token AUROC on the validation records, and on the NSTDB electrode-motion records
   118e00/e12/e24 (noise blocks against the rest, after 30 s), per record and pooled.

Seeds are fixed; it takes about 2 minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from scipy.signal import butter, sosfiltfilt
from rich.console import Console
from rich.progress import track
from rich.table import Table

from models.augment import ECG_SNRS_DB
from models.config import ecg_config
from models.data.ecg import nstdb_noise_blocks, read_nstdb_noise, read_wfdb, tokens_in_blocks
from models.data.paths import datasets_dir
from models.ecg_sqi import FEATURES, WEIGHTS_FILE, EcgQuality, EcgQualityWeights
from models.preprocess import Preprocessor
from models.record_rules import auroc
from models.splits import MITDB_ALL, NSTDB_TEST, NSTDB_TRAIN_NOISE, TRAIN, VAL, mitdb_split

MINUTES = 12            # minutes of each MIT-BIH record used
BLOCK_S = 60.0          # clean / noisy block length, s
BURN_IN_S = 30.0        # tokens before this are not scored (templates and detector warm up)
LEFT_OUT = ("118",)     # the NSTDB test records' clean source
POSITIVE_DB, UNKNOWN_DB = 0.0, 6.0  # noise at <= POSITIVE_DB is poor signal; up to UNKNOWN_DB left out
L2, SEED = 1e-2, 0


def token_features(x: np.ndarray, fs: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Head features of a recording, as the service computes them.

    Parameters
    ----------
    x : (t, c) float
        Signal in µV at ``fs`` Hz (c <= 2).
    fs : float

    Returns
    -------
    features : (n, len(FEATURES)) float
    defined : (n,) bool
    spans : (n, 2) int
        First and last input sample of each token.
    """
    cfg = ecg_config()
    pre = Preprocessor(cfg, fs, x.shape[1], "uV")
    y, mask, _ = pre.process(x, pre.init_state())
    head = EcgQuality(cfg, x.shape[1], None)
    f, ok, _ = head.features(y, mask, head.initial_state())
    k = np.arange(len(f))
    first = np.maximum(pre.input_index(k * cfg.patch_len - 1) + 1, 0)
    return f, ok, np.stack([first, pre.input_index((k + 1) * cfg.patch_len - 1)], 1)


def _band_rms(x: np.ndarray, band: np.ndarray) -> np.ndarray:
    """(c,) RMS of ``x`` (t, c) in the model's pass band (what the network and the head see)."""
    return np.sqrt(np.mean(np.square(sosfiltfilt(band, x, axis=0)), axis=0)).clip(1e-9)


def noisy_record(x: np.ndarray, fs: float, noise: dict[str, np.ndarray], rng: np.random.Generator
                 ) -> tuple[np.ndarray, list[tuple[int, int, float]]]:
    """``x`` with noise added in alternate ``BLOCK_S`` blocks from the second; ``(start, end, snr)`` blocks."""
    y, blocks = x.copy(), []
    n, step = len(x), round(BLOCK_S * fs)
    band = butter(2, ecg_config().bandpass_hz, btype="bandpass", fs=fs, output="sos")
    rms = _band_rms(x, band)
    for a in range(step, n, 2 * step):
        b = min(n, a + step)
        kind = str(rng.choice(sorted(noise)))
        src = noise[kind]
        s0 = int(rng.integers(0, len(src) - (b - a)))
        seg = src[s0:s0 + b - a][:, rng.permutation(src.shape[1])[:x.shape[1]]]
        snr = float(rng.choice(ECG_SNRS_DB))
        y[a:b] += seg * (rms / _band_rms(seg, band)) * 10 ** (-snr / 20)
        blocks.append((a, b, snr))
    return y, blocks


def _dataset(records: list[str], root: Path, noise: dict[str, np.ndarray], rng, what: str, minutes: int):
    feats, labels = [], []
    for r in track(records, description=f"{what} records"):
        rec = read_wfdb(root / "mitdb" / r)
        fs = rec.sample_rate
        x = rec.signal[:round(minutes * 60 * fs)]
        y, blocks = noisy_record(x, fs, noise, rng)
        f, ok, spans = token_features(y, fs)
        pos = tokens_in_blocks(spans, [(a, b) for a, b, s in blocks if s <= POSITIVE_DB])
        unknown = tokens_in_blocks(spans, [(a, b) for a, b, s in blocks if POSITIVE_DB < s <= UNKNOWN_DB])
        keep = ok & ~unknown & (spans[:, 1] >= BURN_IN_S * fs)
        feats.append(f[keep])
        labels.append(pos[keep])
    return np.concatenate(feats), np.concatenate(labels)


def fit_logistic(f: np.ndarray, y: np.ndarray, l2: float = L2, iters: int = 50) -> tuple[np.ndarray, float]:
    """Balanced, L2-penalised logistic regression by Newton's method: ``(coef, intercept)``."""
    X = np.column_stack([f, np.ones(len(f))])
    w = np.where(y, 0.5 / max(y.sum(), 1), 0.5 / max((~y).sum(), 1)) * len(y)
    beta = np.zeros(X.shape[1])
    pen = np.full(X.shape[1], l2)
    pen[-1] = 0.0
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-np.clip(X @ beta, -50, 50)))
        grad = X.T @ (w * (p - y)) / len(y) + pen * beta
        hess = (X * (w * p * (1 - p))[:, None]).T @ X / len(y) + np.diag(pen)
        step = np.linalg.solve(hess, grad)
        beta -= step
        if np.abs(step).max() < 1e-8:
            break
    return beta[:-1], float(beta[-1])


def nstdb_scores(weights: EcgQualityWeights, root: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Head probabilities and in-block labels of the NSTDB electrode-motion tokens after ``BURN_IN_S``."""
    out = {}
    for name in NSTDB_TEST:
        if not (root / "nstdb" / f"{name}.hea").exists():
            continue
        rec = read_wfdb(root / "nstdb" / name)
        f, ok, spans = token_features(rec.signal, rec.sample_rate)
        p = np.where(ok, weights.prob(f), 0.0)
        inside = tokens_in_blocks(spans, nstdb_noise_blocks(rec.n_samples, rec.sample_rate))
        keep = spans[:, 1] >= BURN_IN_S * rec.sample_rate
        out[name] = (p[keep], inside[keep])
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m models.ecg_sqi_fit", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=WEIGHTS_FILE, help="weights JSON to write")
    ap.add_argument("--json", type=Path, default=None, help="also write the report here")
    ap.add_argument("--minutes", type=int, default=MINUTES, help="minutes of each MIT-BIH record used")
    args = ap.parse_args(argv)
    console = Console()
    root = datasets_dir()
    rng = np.random.default_rng(SEED)
    noise = {k: read_nstdb_noise(root / "nstdb", k).signal for k in NSTDB_TRAIN_NOISE}
    half = {k: len(v) // 2 for k, v in noise.items()}
    train_noise = {k: v[:half[k]] for k, v in noise.items()}
    val_noise = {k: v[half[k]:] for k, v in noise.items()}
    records = [r for r in MITDB_ALL if r not in LEFT_OUT and (root / "mitdb" / f"{r}.hea").exists()]
    train = [r for r in records if mitdb_split(r) == TRAIN]
    val = [r for r in records if mitdb_split(r) == VAL]
    f_tr, y_tr = _dataset(train, root, train_noise, rng, "train", args.minutes)
    f_va, y_va = _dataset(val, root, val_noise, rng, "validation", args.minutes)
    coef, intercept = fit_logistic(f_tr, y_tr)
    weights = EcgQualityWeights(coef, intercept)
    metrics = {"train_auroc": auroc(weights.prob(f_tr), y_tr), "val_auroc": auroc(weights.prob(f_va), y_va),
               "train_tokens": [int(y_tr.sum()), int((~y_tr).sum())], "val_tokens": [int(y_va.sum()), int((~y_va).sum())]}
    scores = nstdb_scores(weights, root)
    for name, (p, y) in scores.items():
        metrics[f"nstdb_auroc_{name}"] = auroc(p, y)
    if scores:
        metrics["nstdb_auroc_pooled"] = auroc(np.concatenate([p for p, _ in scores.values()]),
                                              np.concatenate([y for _, y in scores.values()]))
    weights.meta = {
        "command": "python -m models.ecg_sqi_fit", "seed": SEED, "minutes_per_record": args.minutes, "block_s": BLOCK_S,
        "data": {"train": train, "validation": val, "left_out": list(LEFT_OUT), "noise": list(NSTDB_TRAIN_NOISE),
                 "snrs_db": list(ECG_SNRS_DB), "positive_db": POSITIVE_DB, "unknown_db": UNKNOWN_DB,
                 "held_out_noise": list(NSTDB_TEST)},
        "metrics": metrics,
    }
    args.out.write_text(json.dumps(weights.to_json(), indent=1) + "\n")
    table = Table(title="ECG quality head: token AUROC")
    table.add_column("data")
    table.add_column("AUROC", justify="right")
    for k, v in metrics.items():
        if "auroc" in k:
            table.add_row(k, f"{v:.3f}")
    console.print(table)
    console.print(f"coef {dict(zip(FEATURES, np.round(coef, 3)))}, intercept {intercept:.3f} -> {args.out}")
    if args.json:
        args.json.write_text(json.dumps(weights.meta, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
