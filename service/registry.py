"""The served models: one network per modality, loaded once at startup."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from models.checkpoint import load_model
from models.config import ModelConfig, ecg_config, eeg_config
from models.detector import EpisodeDetector, detectors_from_meta
from models.sqi import alert_detectors
from models.network import Network

log = logging.getLogger(__name__)

# ECG leads in order of preference when a monitor sends more than the model takes.
LEAD_PREFERENCE = ("MLII", "II", "I", "V5", "V1", "V2", "V4", "III", "AVF", "V", "MCL", "ECG")


@dataclass(frozen=True)
class ServedModel:
    """A network with the identity clients see (``ready.model``)."""

    network: Network
    name: str
    version: str
    trained: bool

    @property
    def config(self) -> ModelConfig:
        return self.network.config

    @property
    def fitted_detectors(self) -> dict[str, EpisodeDetector] | None:
        """Episode detectors fitted in training (``meta["detectors"]``); None for an untrained model."""
        meta = getattr(self.network, "meta", None)
        return detectors_from_meta(meta, self.config.labels) if meta and "detectors" in meta else None

    @property
    def detectors(self) -> dict[str, EpisodeDetector] | None:
        """:attr:`fitted_detectors` with the quality label's replaced where a quality head is fused
        (:func:`models.sqi.alert_detectors`): a session's alert rules."""
        return alert_detectors(self.config, self.fitted_detectors)

    def channel_index(self, channels: tuple[str, ...]) -> list[int]:
        """Which hello channels feed the model: all for EEG; the preferred leads for ECG."""
        k = self.config.max_channels
        if k is None or len(channels) <= k:
            return list(range(len(channels)))
        rank = {name: i for i, name in enumerate(LEAD_PREFERENCE)}
        order = sorted(range(len(channels)), key=lambda i: (rank.get(channels[i].upper(), len(rank)), i))
        return sorted(order[:k])


def load_served(spec: str, fallback: ModelConfig) -> ServedModel:
    """Load a checkpoint (path or shipped name); without one, an untrained seeded model, loudly."""
    try:
        net = load_model(spec)
        return ServedModel(net, net.config.name, net.config.version, True)
    except FileNotFoundError as e:
        log.warning("!!! NO TRAINED %s MODEL: %s -- serving an UNTRAINED seeded model; its outputs "
                    "and alerts are meaningless !!!", fallback.modality.upper(), e)
        torch.manual_seed(0)
        return ServedModel(Network(fallback).eval(), fallback.name, f"{fallback.version}-untrained", False)


def load_all(ecg: str, eeg: str) -> dict[str, ServedModel]:
    return {"ecg": load_served(ecg, ecg_config()), "eeg": load_served(eeg, eeg_config())}
