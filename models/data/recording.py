"""The one in-memory form every reader returns."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)
class Recording:
    """A multichannel recording in physical units.

    Attributes
    ----------
    signal : np.ndarray
        ``(t, c)`` float32 in µV. Samples the source marks invalid are NaN.
    sample_rate : float
        Samples per second per channel (Hz).
    channels : list of str
        ``c`` channel names in column order (as the source spells them; CHB-MIT repeats
        ``T8-P8``).
    name : str
        Record name, e.g. ``"201"`` or ``"chb01_03_ictal"``.
    """

    signal: np.ndarray  # (t, c) float32 µV
    sample_rate: float  # Hz
    channels: list[str]
    name: str

    def __post_init__(self) -> None:
        if self.signal.ndim != 2 or self.signal.shape[1] != len(self.channels):
            raise ValueError(
                f"Invalid signal: expected shape (t, {len(self.channels)}), got {self.signal.shape}"
            )
        if not self.sample_rate > 0:
            raise ValueError(f"Invalid sample_rate: expected > 0 Hz, got {self.sample_rate}")

    @property
    def n_samples(self) -> int:
        """Number of samples per channel ``t``."""
        return int(self.signal.shape[0])

    @property
    def duration_s(self) -> float:
        """Length in seconds."""
        return self.n_samples / self.sample_rate

    def channel(self, name: str) -> np.ndarray:
        """The first column called ``name``: ``(t,)`` float32 µV."""
        try:
            return self.signal[:, self.channels.index(name)]
        except ValueError:
            raise KeyError(f"Unknown channel {name!r}: expected one of {self.channels}") from None
