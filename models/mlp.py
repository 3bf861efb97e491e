"""The small classifier the rhythm detectors share: standardised features, one tanh hidden layer,
one logit; fitted full-batch with torch, run with numpy, stored as JSON.

Used by the ventricular-beat classifier (:mod:`models.beats`), the AF detector (:mod:`models.af`)
and the CinC 2017 record decision (:mod:`models.af_record`), each adding its own threshold and
rule constants to the stored weights.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

PARAMS = ("mean", "scale", "w1", "b1", "w2")


def zero_non_finite(z: np.ndarray) -> np.ndarray:
    """``numpy.nan_to_num(z)``, but ``z`` itself when every value is finite (the usual case: on a
    streaming chunk's few rows ``nan_to_num`` costs more than the MLP)."""
    return z if np.count_nonzero(np.isfinite(z)) == z.size else np.nan_to_num(z)


@dataclass
class TanhMLP:
    """Standardisation and a 1-hidden-layer tanh MLP with one output.

    Attributes
    ----------
    mean, scale : np.ndarray
        ``(F,)`` feature standardisation (a nan feature becomes 0 after it: the training mean).
    w1 : np.ndarray
        ``(F, H)``; ``b1`` ``(H,)``; ``w2`` ``(H,)``; ``b2`` float.
    """

    mean: np.ndarray
    scale: np.ndarray
    w1: np.ndarray
    b1: np.ndarray
    w2: np.ndarray
    b2: float

    def logit(self, f: np.ndarray) -> np.ndarray:
        """(n,) logits from (n, F) (or (F,)) features: :meth:`prob` before the sigmoid."""
        z = zero_non_finite((np.atleast_2d(f) - self.mean) / self.scale)
        return np.tanh(z @ self.w1 + self.b1) @ self.w2 + self.b2

    def prob(self, f: np.ndarray) -> np.ndarray:
        """(n,) probability from (n, F) (or (F,)) features."""
        return 1.0 / (1.0 + np.exp(-self.logit(f)))

    def params_json(self) -> dict:
        """The parameters as JSON-able lists."""
        return {**{k: getattr(self, k).tolist() for k in PARAMS}, "b2": float(self.b2)}

    @staticmethod
    def params_from_json(d: dict) -> dict:
        """Constructor keyword arguments from :meth:`params_json` data."""
        return {**{k: np.asarray(d[k], np.float64) for k in PARAMS}, "b2": float(d["b2"])}


def load_weights_file(cls, path: str | Path):
    """``cls.from_json`` of a weights file, or None when it is absent.

    Parsed once per file version (path and modification time) and shared: sessions, records and
    evaluations ask for the same shipped file over and over, and the weights are read-only.
    """
    p = Path(path)
    try:
        version = p.stat().st_mtime_ns
    except FileNotFoundError:
        return None
    return _load(cls, str(p.resolve()), version)


@functools.lru_cache(maxsize=32)
def _load(cls, path: str, version: int):
    return cls.from_json(json.loads(Path(path).read_text()))


def fit_mlp(x: np.ndarray, y: np.ndarray, *, hidden: int, epochs: int, lr: float, weight_decay: float, seed: int,
            sample_weight: np.ndarray | None = None) -> dict:
    """Fit a :class:`TanhMLP` on (n, F) features and 0/1 labels, the classes balanced.

    Parameters
    ----------
    x : np.ndarray
        ``(n, F)``; nan entries become the feature mean.
    y : np.ndarray
        ``(n,)`` 0/1.
    hidden, epochs, lr, weight_decay, seed
        Hidden units, full-batch Adam steps, learning rate, L2 weight decay, torch seed.
    sample_weight : np.ndarray, optional
        ``(n,)`` relative weights (e.g. one over the record's window count, so that every record
        weighs the same); the class balance is computed under them.

    Returns
    -------
    dict
        :class:`TanhMLP` keyword arguments.
    """
    import torch

    torch.manual_seed(seed)
    x = np.asarray(x, np.float64)
    mean, scale = np.nanmean(x, axis=0), np.nanstd(x, axis=0) + 1e-6
    z = torch.tensor(np.nan_to_num((x - mean) / scale), dtype=torch.float32)
    t = torch.tensor(np.asarray(y), dtype=torch.float32)
    sw = np.ones(len(t)) if sample_weight is None else np.asarray(sample_weight, np.float64)
    pos = float((sw * np.asarray(y)).sum() / sw.sum())
    weight = torch.tensor(sw / sw.mean(), dtype=torch.float32) * torch.where(
        t > 0, 0.5 / max(pos, 1e-6), 0.5 / max(1 - pos, 1e-6))
    net = torch.nn.Sequential(torch.nn.Linear(z.shape[1], hidden), torch.nn.Tanh(), torch.nn.Linear(hidden, 1))
    opt = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=weight_decay)
    for _ in range(epochs):
        opt.zero_grad()
        torch.nn.functional.binary_cross_entropy_with_logits(net(z)[:, 0], t, weight=weight).backward()
        opt.step()
    l1, l2 = net[0], net[2]
    return {"mean": mean, "scale": scale, "w1": l1.weight.detach().double().numpy().T,
            "b1": l1.bias.detach().double().numpy(), "w2": l2.weight.detach().double().numpy()[0],
            "b2": float(l2.bias.detach()[0])}
