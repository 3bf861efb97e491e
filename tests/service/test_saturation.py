"""A saturated artefact is missing signal to the QRS detectors (service/alarms/sources.py,
``RhythmSource(saturation=...)``): fed to them, it raises the QRS level until no QRS clears the
threshold, a false asystole while the heart beats on (CinC 2015 v204s: docs/qrs.md)."""

from __future__ import annotations

import numpy as np
import pytest

from models.config import ecg_config
from models.data.ecg import read_wfdb
from models.data.excerpts import excerpt_path
from models.flatline import saturated_as_missing
from models.qrs import RhythmMonitor
from models.state import StatePool
from service.alarms.sources import RhythmSource, beat_classifier_for
from service.config import Settings
from service.protocol import Hello
from service.registry import load_all
from service.sessions import Session
from synthetic import feed_rhythm_source

LIMIT_UV = ecg_config().abs_limit_uv   # 20 mV: what the preprocessor and the signal-loss alarm call saturation
ARTEFACT = (40.0, 41.5)                # s


def _saturated() -> tuple[np.ndarray, np.ndarray, float]:
    """The shipped real excerpt of MIT-BIH 201 (MLII + V1, µV) clean, and with 1.5 s of motion
    artefact that drives both leads to the amplifier's rails (±57 mV, as in CinC 2015 v204s), and
    its rate."""
    rec = read_wfdb(excerpt_path("mitdb_201_af"))
    x, fs = rec.signal.astype(np.float64), rec.sample_rate
    y = x.copy()
    a, b = (int(t * fs) for t in ARTEFACT)
    t = np.arange(b - a) / fs
    swing = 57_000.0 * np.clip(3.0 * np.sin(2 * np.pi * 2.5 * t), -1.0, 1.0)   # rail to rail, 2.5 Hz
    y[a:b] = swing[:, None] * np.array([1.0, -0.8])
    return x, y, fs


def _run(x: np.ndarray, fs: float, saturation: float = np.inf) -> list[tuple]:
    """Events of a fresh two-lead rhythm source over ``x`` in 1-s chunks."""
    mon = RhythmMonitor(fs)
    src = RhythmSource(mon, beat_classifier_for(mon), saturation=saturation)
    return feed_rhythm_source(src, x, list(range(int(fs), len(x), int(fs))))


def _lead0_beats(x: np.ndarray, fs: float, saturation: float = np.inf) -> np.ndarray:
    """Lead 0's detector beats as the rhythm source sees them (saturated samples missing)."""
    y = saturated_as_missing(x[:, 0], saturation)
    mon = RhythmMonitor(fs)
    return np.asarray(mon.process(y, 0, mon.initial_state())[0].beats)


def test_a_saturated_artefact_blinds_the_detector_that_reads_it():
    """The premise: fed the artefact, both leads' detectors take no QRS for a beat after it, and
    the heart that beats on reads as an asystole."""
    x, y, fs = _saturated()
    events = _run(y, fs)
    asystole = [e for e in events if e[1] == "asystole" and e[0] == "begin"]
    assert asystole and ARTEFACT[0] <= asystole[0][2] / fs <= ARTEFACT[1] + 1.0
    after = _lead0_beats(y, fs)
    clean = _lead0_beats(x, fs)
    span = lambda b: ((b > (ARTEFACT[1] + 5) * fs) & (b < (ARTEFACT[1] + 25) * fs)).sum()  # noqa: E731
    assert span(clean) > 20 and span(after) < span(clean) / 4


def test_saturation_is_missing_signal_to_the_detectors():
    """With the model's saturation limit the artefact is a gap: no asystole, and from 5 s after it
    the first lead's detector finds the clean recording's beats."""
    x, y, fs = _saturated()
    events = _run(y, fs, saturation=LIMIT_UV)
    assert not [e for e in events if e[1] == "asystole"]
    got, clean = _lead0_beats(y, fs, LIMIT_UV), _lead0_beats(x, fs)
    lo = (ARTEFACT[1] + 5) * fs
    got, clean = got[got > lo], clean[clean > lo]
    assert len(clean) > 100 and len(got) == len(clean) and np.abs(got - clean).max() <= round(0.01 * fs)
    # below the limit nothing changes: the clean recording's events are the same with and without it
    assert _run(x, fs, saturation=LIMIT_UV) == _run(x, fs)


@pytest.fixture(scope="module")
def ecg_model():
    s = Settings()
    return load_all(s.ecg_model, s.eeg_model)["ecg"]


@pytest.mark.parametrize("units, scale", [("uV", 1.0), ("mV", 1e-3)])
def test_a_session_gives_its_rhythm_source_the_saturation_limit_in_its_units(ecg_model, units, scale):
    """The session's rhythm source reads the same limit as its signal-loss detector, in the units the
    device sends: the artefact sent in mV raises no asystole either."""
    hello = Hello("sat-1", "ecg", 360.0, ("MLII", "V1"), units)
    pool = StatePool(ecg_model.network, 2, 2)
    s = Session.build(hello, ecg_model, pool, pool.alloc(), 10.0)
    assert s.alarms.rhythm.saturation == pytest.approx(LIMIT_UV * scale) == pytest.approx(s.quality.limit)
    _, y, fs = _saturated()
    events = feed_rhythm_source(s.alarms.rhythm, y * scale, list(range(int(fs), len(y), int(fs))))
    assert not [e for e in events if e[1] == "asystole"]
