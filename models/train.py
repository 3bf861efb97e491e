"""Training: ``vigil train ecg|eeg``.

1. Read the training and validation records of :mod:`models.splits` (or the shipped excerpts),
   run each whole record once through the serving preprocessor and cache it at the model rate
   (:mod:`models.datasets`).
2. Train the :class:`models.network.Network` on random windows with fresh state per window
   (the chunked scan over the whole window), weighted BCE on per-token multi-labels; padding,
   the first ``burn_in_s`` of each window and unknown labels carry no loss. Augmentations in
   :mod:`models.augment`.
3. On the validation records (whole, one pass): fit the label temperatures
   (:mod:`models.calibrate`, ECE before/after), then the episode detectors' thresholds
   (:mod:`models.detector`) and the record rules (:mod:`models.record_rules`).
4. Save the checkpoint with all of it, and the split, in its metadata, and a model card.

Defaults fit the 30-minute / 2-core budget: the shipped sizes of :mod:`models.config` (48 wide,
3 layers, d_state 8), one thread per process.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from models import augment
from models.calibrate import calibrate
from models.checkpoint import CHECKPOINT_DIR, save_checkpoint
from models.config import ModelConfig, ecg_config, eeg_config
from models.datasets import (TRAIN, VAL, Example, collate, load_ecg, load_ecg_excerpts, load_ecg_noise,
                             load_eeg, load_eeg_excerpts, positive_tokens, sample_window)
from models.detector import DEFAULT_DETECTORS, fit_threshold
from models.labels import AF, SEIZURE, VF, VT
from models.network import Network
from models.record_rules import fit_binary_threshold, fit_cinc2017_rule, segment_score
from models.splits import ARTIFACTS_NEGATIVE, ARTIFACTS_TRAIN, describe
from models.state import state_nbytes

MAX_STATE_BYTES = 64 * 1024
VALIDATION_RESERVE_S = 90.0  # seconds kept for calibration and threshold fitting at the end


@dataclass
class TrainSettings:
    """What ``vigil train`` runs.

    Parameters
    ----------
    modality : {"ecg", "eeg"}
    minutes : float
        Wall-clock budget of the whole run: the optimisation loop gets what is left after
        loading, minus ``VALIDATION_RESERVE_S`` for the validation step.
    steps : int
        Maximum optimiser steps (the loop stops at whichever comes first).
    seed : int
    batch : int
        Windows per step.
    window_s : float
        Window length in seconds (shorter records are taken whole and padded).
    lr : float
        Peak AdamW learning rate (cosine decay to 10 % over the run).
    burn_in_s : float
        Seconds at the start of each window without loss (fresh state).
    data : {"datasets", "excerpts"}
        The full datasets of :mod:`models.splits`, or the shipped excerpts (tests, smoke runs).
    cinc2017_per_class : int
        At most this many CinC 2017 records per class and split part.
    model : dict
        Overrides of the modality's :class:`ModelConfig`.
    device : str
        Torch device of the optimisation loop (``cpu``, or ``cuda`` where one exists); the
        validation step and the saved checkpoint are on the CPU either way.
    cinc2015_test : tuple of str
        CinC 2015 records kept out of training (a cross-validation fold, ``models/vt_cv.py``);
        the others are trained on. Empty: the split of :mod:`models.splits` (half each).
    cinc2015_bags : bool
        Train the ``vt`` output on a true CinC 2015 alarm's 10 s as a bag (multiple-instance:
        :func:`token_loss`) instead of ``vt`` on every token of them. An experiment, off for
        the shipped network (docs/beats.md, "Training the vt output on bags").
    """

    modality: str
    minutes: float = 28.0
    steps: int = 100_000
    seed: int = 0
    batch: int = 8
    window_s: float = 30.0
    lr: float = 2e-3
    burn_in_s: float = 3.0
    data: str = "datasets"
    cinc2017_per_class: int = 800
    model: dict = field(default_factory=dict)
    device: str = "cpu"
    cinc2015_test: tuple[str, ...] = ()
    cinc2015_bags: bool = False


def build_config(settings: TrainSettings) -> ModelConfig:
    """The model config for a run (modality defaults plus the overrides)."""
    if settings.modality == "ecg":
        return ecg_config(**settings.model)
    if settings.modality == "eeg":
        return eeg_config(**settings.model)
    raise ValueError(f"Invalid modality: expected ecg or eeg, got {settings.modality!r}")


def seed_everything(seed: int) -> np.random.Generator:
    """Seed torch and return the numpy generator of the run."""
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


# --- batches -------------------------------------------------------------------------------

class BatchSampler:
    """Draws augmented training windows from cached examples.

    ECG: each window picks a source (MIT-BIH, CinC 2017 class-balanced, CinC 2015 around the
    alarm, CUDB around VF), often centred on a rare rhythm; then gain, polarity, lead choice
    (swap, drop one), a surrogate second lead for single-lead records, and NSTDB noise. EEG: each batch comes from one source (all its windows have the same
    channel count); then gain, polarity, channel dropout and added artifacts of the training
    types (plus line noise as a negative).
    """

    ECG_SOURCES = {"mitdb": 0.35, "cinc2017": 0.4, "cinc2015": 0.15, "cudb": 0.1}
    CINC2017_CLASS_P = {"N": 0.3, "A": 0.35, "O": 0.25, "~": 0.1}
    EEG_SOURCES = {"bonn": 0.6, "chbmit": 0.25, "eegmmidb": 0.15}
    EEG_ARTIFACT_P = 0.5

    def __init__(self, config: ModelConfig, examples: list[Example], rng: np.random.Generator,
                 noise: dict[str, np.ndarray] | None = None, window_s: float = 30.0):
        self.config, self.rng, self.noise = config, rng, noise or {}
        self.by_source: dict[str, list[Example]] = {}
        for ex in examples:
            self.by_source.setdefault(ex.source, []).append(ex)
        self.n_tokens = max(1, int(round(window_s * config.output_rate)))
        lab = config.labels
        self.focus = {id(ex): {name: positive_tokens(ex, lab.index(name))
                               for name in (AF, VT, VF, SEIZURE) if name in lab} for ex in examples}

    def _source(self, table: dict[str, float]) -> str:
        names = [s for s in table if s in self.by_source]
        p = np.array([table[s] for s in names])
        return str(self.rng.choice(names, p=p / p.sum()))

    def _ecg_window(self):
        rng, src = self.rng, self._source(self.ECG_SOURCES)
        pool = self.by_source[src]
        if src == "cinc2017":
            classes = [c for c in self.CINC2017_CLASS_P if any(e.label == c for e in pool)]
            p = np.array([self.CINC2017_CLASS_P[c] for c in classes])
            cls = rng.choice(classes, p=p / p.sum())
            pool = [e for e in pool if e.label == cls]
        ex = pool[int(rng.integers(len(pool)))]
        focus = None
        if src in ("mitdb", "cudb", "cinc2015") and rng.random() < 0.6:
            cands = [f for f in self.focus[id(ex)].values() if len(f)]
            if src == "cinc2015":  # the alarm: a true one's bag (its last token), a false one's last 10 s
                j = self.config.labels.index(VT)
                bag = np.flatnonzero(ex.track.bags[:, j])
                cands = [bag[-1:] if len(bag) else np.flatnonzero(ex.track.weights[:, j] > 0)[-self.n_tokens // 3:]]
            if cands:
                focus = cands[int(rng.integers(len(cands)))]
        w = sample_window(ex, self.n_tokens, self.config.patch_len, rng, focus)
        augment.gain(w, rng)
        augment.polarity(w, rng)
        augment.lead_choice(w, rng)
        augment.surrogate_lead(w, rng)
        if self.noise and rng.random() < 0.35:
            augment.ecg_noise(w, rng, self.noise, self.config.labels, self.config.patch_len)
        return w

    def _eeg_windows(self, batch: int):
        rng, src = self.rng, self._source(self.EEG_SOURCES)
        pool = self.by_source[src]
        out = []
        for _ in range(batch):
            if src in ("bonn", "chbmit"):  # balance seizure / non-seizure
                want = rng.random() < 0.4
                j = self.config.labels.index(SEIZURE)
                sub = [e for e in pool if (e.track.targets[:, j].mean() > 0.5) == want] or pool
            else:
                sub = pool
            ex = sub[int(rng.integers(len(sub)))]
            w = sample_window(ex, self.n_tokens, self.config.patch_len, rng)
            augment.gain(w, rng)
            augment.polarity(w, rng, p=0.5)
            augment.channel_dropout(w, rng)
            if rng.random() < self.EEG_ARTIFACT_P:
                kinds = ARTIFACTS_TRAIN + ARTIFACTS_NEGATIVE
                augment.eeg_artifact(w, rng, str(rng.choice(kinds)), self.config)
            out.append(w)
        return out

    def batch(self, size: int, burn_in_tokens: int):
        """Tensors for one step: x, mask, lengths, targets, weights, bags (see :func:`collate`)."""
        if self.config.modality == "ecg":
            windows = [self._ecg_window() for _ in range(size)]
        else:
            windows = self._eeg_windows(size)
        return collate(windows, burn_in_tokens)


# --- loss ----------------------------------------------------------------------------------

def token_loss(logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor,
               valid: torch.Tensor, bags: torch.Tensor | None = None) -> torch.Tensor:
    """Weighted BCE: per label the mean over its weighted tokens, then the mean over labels
    that have any weight in the batch.

    A bag (``bags``: some of its tokens hold the label, :mod:`models.targets`) is one positive
    term on its largest logit (multiple-instance learning: the network may mark the label on
    the tokens that show it and leave the rest), weighted as many tokens as the bag has, so a
    bag weighs as much as the per-token positives it replaces.

    logits, targets, weights : (b, l, n_labels); valid : (b, l) bool; bags : (b, l, n_labels) bool.
    """
    w = weights * valid.unsqueeze(-1).to(weights.dtype)
    bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    per_label_w = w.sum((0, 1))                                            # (n_labels,)
    per_label_sum = (bce * w).sum((0, 1))                                  # (n_labels,)
    if bags is not None:
        in_bag = bags & valid.unsqueeze(-1)                                # (b, l, n_labels)
        size = in_bag.sum(1).to(logits.dtype)                              # (b, n_labels) tokens per bag
        top = logits.masked_fill(~in_bag, float("-inf")).amax(1)           # (b, n_labels) largest logit
        bag_bce = F.softplus(-top.masked_fill(size == 0, 0.0))             # -log sigmoid(top): target 1
        per_label_sum = per_label_sum + (bag_bce * size).sum(0)
        per_label_w = per_label_w + size.sum(0)
    per_label = per_label_sum / per_label_w.clamp_min(1.0)
    present = per_label_w > 0
    return per_label[present].mean() if present.any() else logits.sum() * 0.0


# --- validation ----------------------------------------------------------------------------

@torch.no_grad()
def predict_examples(network: Network, examples: list[Example]) -> list[np.ndarray]:
    """Per example, (l, n_labels) logits of one pass from a fresh state (temperature included)."""
    network.eval()
    out = []
    for ex in examples:
        y, _ = network(torch.from_numpy(ex.x)[None], network.init_state(1, ex.x.shape[1]),
                       torch.from_numpy(ex.mask)[None])
        out.append(y.logits[0].numpy())
    return out


def artifact_copies(examples: list[Example], config: ModelConfig, rng: np.random.Generator) -> list[Example]:
    """Copies of EEG validation examples with one training-type artifact each (seeded), so that
    the ``artifact`` output has positives to be calibrated and thresholded on."""
    from models.datasets import Window

    out = []
    for i, ex in enumerate(examples):
        w = Window(ex.x.copy(), ex.mask.copy(), ex.track.targets.copy(), ex.track.weights.copy(), ex.track.bags.copy())
        augment.eeg_artifact(w, rng, ARTIFACTS_TRAIN[i % len(ARTIFACTS_TRAIN)], config)
        track = type(ex.track)(w.targets, w.weights, w.bags)
        out.append(Example(ex.name + "+artifact", "artifact", ex.split, w.x, w.mask, track, ex.label))
    return out


def fit_on_validation(network: Network, val: list[Example], burn_in_tokens: int) -> dict:
    """Calibrate the temperatures, then fit detectors and record rules, on validation examples.

    Sets ``network.temperature`` and returns the metadata to store.
    """
    cfg, labels = network.config, network.config.labels
    if cfg.modality == "eeg":
        val = list(val) + artifact_copies(val, cfg, np.random.default_rng(12345))
    network.temperature.fill_(1.0)
    logits = predict_examples(network, val)
    keep = [slice(burn_in_tokens, None)] * len(val)
    z = np.concatenate([lg[k] for lg, k in zip(logits, keep)]) if val else np.zeros((0, len(labels)))
    y = np.concatenate([ex.track.targets[k] for ex, k in zip(val, keep)]) if val else z
    w = np.concatenate([ex.track.weights[k] for ex, k in zip(val, keep)]) if val else z
    cal = calibrate(z, y, w, labels)
    network.temperature.copy_(torch.tensor(cal["temperature"], dtype=torch.float32))
    probs = [1 / (1 + np.exp(-lg / np.asarray(cal["temperature"]))) for lg in logits]
    detectors, det_f1 = {}, {}
    for j, name in enumerate(labels):
        tracks = [(p[:, j], ex.track.targets[:, j], ex.track.weights[:, j] * (np.arange(ex.n_tokens) >= burn_in_tokens))
                  for p, ex in zip(probs, val)]
        det, f1 = fit_threshold(DEFAULT_DETECTORS[name], tracks, cfg.output_rate)
        detectors[name], det_f1[name] = det.to_dict(), f1
    rules: dict = {}
    if cfg.modality == "ecg":
        c17 = [(segment_score(p, burn_in_tokens), ex.label) for p, ex in zip(probs, val) if ex.source == "cinc2017"]
        if c17:
            rules["cinc2017"] = fit_cinc2017_rule([s for s, _ in c17], [t for _, t in c17], labels)
    else:
        j = labels.index(SEIZURE)
        seg = [(segment_score(p, burn_in_tokens)[j], ex.label) for p, ex in zip(probs, val)
               if ex.source in ("bonn", "chbmit")]
        if seg:
            rules["seizure_segment_threshold"] = fit_binary_threshold(
                np.array([s for s, _ in seg]), np.array([lab in ("S", "ictal") for _, lab in seg]))
    return {"calibration": cal, "detectors": detectors, "detector_val_token_f1": det_f1, "rules": rules,
            "val_records": sorted({f"{ex.source}/{ex.name}" for ex in val})}


# --- the run -------------------------------------------------------------------------------

def default_out(modality: str) -> Path:
    return CHECKPOINT_DIR / f"vigil-{modality}.pt"


def load_data(settings: TrainSettings, config: ModelConfig, rng: np.random.Generator, log=print):
    """(train examples, validation examples, ECG noise bank) for a run."""
    if settings.data == "excerpts":
        ex = load_ecg_excerpts(config) if config.modality == "ecg" else load_eeg_excerpts(config)
        return ex, ex, {}
    if settings.data != "datasets":
        raise ValueError(f"Invalid data: expected datasets or excerpts, got {settings.data!r}")
    if config.modality == "ecg":
        fold = settings.cinc2015_test or None
        bags = settings.cinc2015_bags
        train = load_ecg(config, (TRAIN,), rng, settings.cinc2017_per_class, progress=log, cinc2015_test=fold,
                         cinc2015_bags=bags)
        val = load_ecg(config, (VAL,), None, settings.cinc2017_per_class, progress=log, cinc2015_test=fold,
                       cinc2015_bags=bags)
        noise = load_ecg_noise(config)
    else:
        train = load_eeg(config, (TRAIN,), progress=log)
        val = load_eeg(config, (VAL,), progress=log)
        noise = {}
    if not train:
        raise FileNotFoundError("No training records found: set VIGIL_DATASETS or use --data excerpts")
    return train, val, noise


def train(settings: TrainSettings, out: str | Path | None = None, console=None) -> tuple[Path, dict]:
    """Run one training; returns the checkpoint path and its metadata.

    Parameters
    ----------
    settings : TrainSettings
    out : path, optional
        Checkpoint file; default ``models/checkpoints/vigil-<modality>.pt``. The model card is
        written beside it (``.md``).
    console : rich.console.Console, optional
        Where progress goes (a quiet console in tests).
    """
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    console = console or Console()
    t_start = time.time()
    rng = seed_everything(settings.seed)
    config = build_config(settings)
    network = Network(config)
    n_state = state_nbytes(network.init_state(1, config.max_channels or 23))
    if n_state > MAX_STATE_BYTES:
        raise ValueError(f"Invalid model size: state of {n_state} bytes per session exceeds {MAX_STATE_BYTES}")

    with console.status("reading and preprocessing records"):
        train_ex, val_ex, noise = load_data(settings, config, rng, log=lambda s: console.log(f"loaded {s}"))
    t_loaded = time.time()
    console.log(f"{len(train_ex)} training and {len(val_ex)} validation records in {t_loaded - t_start:.0f} s")

    sampler = BatchSampler(config, train_ex, rng, noise, settings.window_s)
    burn_in = int(round(settings.burn_in_s * config.output_rate))
    opt = torch.optim.AdamW(network.parameters(), lr=settings.lr, weight_decay=0.01)
    budget_s = max(10.0, settings.minutes * 60.0 - (t_loaded - t_start) - VALIDATION_RESERVE_S)
    losses: list[float] = []
    network.train()
    columns = [TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total} steps"),
               TextColumn("loss {task.fields[loss]:.4f}"), TimeElapsedColumn()]
    step = 0
    device = torch.device(settings.device)
    network.to(device)
    with Progress(*columns, console=console, transient=False) as progress, device:
        task = progress.add_task(f"train {config.modality}", total=settings.steps, loss=float("nan"))
        t0 = time.time()
        while step < settings.steps and time.time() - t0 < budget_s:
            frac = max(step / settings.steps, (time.time() - t0) / budget_s)
            for g in opt.param_groups:  # linear warm-up over 50 steps, cosine to 10 %
                g["lr"] = settings.lr * min(1.0, (step + 1) / 50) * (0.1 + 0.45 * (1 + math.cos(math.pi * min(frac, 1.0))))
            x, mask, lengths, targets, weights, bags = (t.to(device) for t in sampler.batch(settings.batch, burn_in))
            out_, _ = network(x, network.init_state(x.shape[0], x.shape[2]), mask, lengths)
            loss = token_loss(out_.logits, targets, weights, out_.valid, bags)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(network.parameters(), 1.0)
            opt.step()
            losses.append(loss.item())
            step += 1
            progress.update(task, advance=1, loss=float(np.mean(losses[-50:])))
            if step % 200 == 0:  # a line in logs too (the bar only redraws on a terminal)
                progress.log(f"step {step}: loss {np.mean(losses[-200:]):.4f}, {time.time() - t0:.0f} s")
    network.cpu()
    t_trained = time.time()

    with console.status("calibrating and fitting detectors on validation records"):
        fitted = fit_on_validation(network, val_ex, burn_in)
    network.eval()
    n_first = max(1, min(50, len(losses) // 5))
    meta = {
        "modality": config.modality,
        "split": describe(config.modality, settings.cinc2015_test),
        "data": settings.data,
        "train_records": sorted(f"{ex.source}/{ex.name}" for ex in train_ex),
        "n_train_records": _counts(train_ex),
        "n_val_records": _counts(val_ex),
        "training": {"settings": asdict(settings), "steps": step, "seconds_total": round(time.time() - t_start, 1),
                     "seconds_loading": round(t_loaded - t_start, 1), "seconds_training": round(t_trained - t_loaded, 1),
                     "threads": torch.get_num_threads(), "loss_first": float(np.mean(losses[:n_first])) if losses else None,
                     "loss_last": float(np.mean(losses[-n_first:])) if losses else None,
                     "state_bytes_per_session": n_state},
        **fitted,
    }
    path = save_checkpoint(network, out or default_out(config.modality), meta)
    from models.model_card import write_card

    write_card(path)
    console.log(f"saved {path} ({step} steps, loss {meta['training']['loss_first']:.4f} -> "
                f"{meta['training']['loss_last']:.4f}, {meta['training']['seconds_total']:.0f} s)")
    return path, meta


def _counts(examples: list[Example]) -> dict[str, int]:
    out: dict[str, int] = {}
    for ex in examples:
        out[ex.source] = out.get(ex.source, 0) + 1
    return out


def refit_validation(checkpoint: str | Path, out: str | Path | None = None, console=None) -> Path:
    """Re-run step 3 (calibration, detector thresholds, record rules) on an existing checkpoint
    with the validation records of its split, keeping the weights; rewrites checkpoint and card.

    Deterministic given the weights: the temperatures are refitted from 1.
    """
    from rich.console import Console

    from models.checkpoint import load_model, resolve
    from models.model_card import write_card

    console = console or Console()
    path = resolve(checkpoint)
    network = load_model(path)
    meta = dict(network.meta)
    settings = TrainSettings(**{**meta["training"]["settings"], "model": meta["training"]["settings"].get("model", {})})
    config = network.config
    with console.status("reading validation records"):
        if settings.data == "excerpts":
            val = load_ecg_excerpts(config) if config.modality == "ecg" else load_eeg_excerpts(config)
        elif config.modality == "ecg":
            val = load_ecg(config, (VAL,), None, settings.cinc2017_per_class)
        else:
            val = load_eeg(config, (VAL,))
    meta.update(fit_on_validation(network, val, int(round(settings.burn_in_s * config.output_rate))))
    meta.setdefault("notes", []).append(
        "calibration, detector thresholds and record rules refitted on the validation split with "
        "models.train.refit_validation (weights unchanged)")
    meta.pop("temperature", None)
    new = save_checkpoint(network.eval(), out or path, meta)
    write_card(new)
    return new
