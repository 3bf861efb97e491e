"""The lead the rhythm follows (:mod:`models.rate_lead`): the second while the first is lost."""

from __future__ import annotations

import numpy as np
import pytest
from synthetic import feed_rhythm_source, random_bounds

from models.qrs import RhythmMonitor
from models.rate_lead import SWITCH_S, RateLead
from service.alarms.sources import RhythmSource, beat_classifier_for

FS = 250.0


def _select(x: np.ndarray, bounds: list[int]) -> np.ndarray:
    rl = RateLead(FS)
    st, parts, cuts = rl.initial_state(), [], [0, *bounds, len(x)]
    for a, b in zip(cuts[:-1], cuts[1:]):
        parts.append(rl.select(x[a:b], st))
    return np.concatenate(parts)


def test_switches_after_the_first_lead_is_lost_and_back_after_it_returns():
    """Lead 1 NaN over [10, 20) s, flat (one value) over [30, 40) s: the second lead is followed
    from SWITCH_S after each loss began (the flat line counts from FLAT_LEAD_S into it) until
    SWITCH_S after lead 1 carries signal again, with one missing sample at each change; the same
    on any chunking."""
    from models.flatline import FLAT_LEAD_S

    rng = np.random.default_rng(0)
    x = rng.standard_normal((int(50 * FS), 2))
    x[int(10 * FS):int(20 * FS), 0] = np.nan
    x[int(30 * FS):int(40 * FS), 0] = 3.0
    out = _select(x, [])
    s = lambda t: int(round(t * FS))                       # noqa: E731
    sw = s(SWITCH_S)
    on2 = [(s(10) + sw - 1, s(20) + sw - 1), (s(30) + s(FLAT_LEAD_S) - 1 + sw - 1, s(40) + sw - 1)]
    want = x[:, 0].copy()
    for a, b in on2:
        want[a:b] = x[a:b, 1]
        want[a] = want[b] = np.nan
    assert np.array_equal(out, want, equal_nan=True)
    for seed in range(4):
        assert np.array_equal(_select(x, random_bounds(len(x), FS, np.random.default_rng(seed))), out, equal_nan=True)


def _two_leads(pause_from: float, seconds: float = 60.0) -> np.ndarray:
    """(n, 2) mV: narrow QRS every 0.8 s until ``pause_from`` on both leads (lead 2 smaller, other
    noise), then low-level noise only: an asystole."""
    t = np.arange(int(seconds * FS)) / FS
    rng = np.random.default_rng(0)
    x = 0.02 * rng.standard_normal((len(t), 2))
    for b in np.arange(0.5, pause_from, 0.8):
        q = np.exp(-0.5 * ((t - b) / 0.012) ** 2) - 0.3 * np.exp(-0.5 * ((t - b - 0.03) / 0.01) ** 2)
        x[:, 0] += 1.2 * q
        x[:, 1] += 0.7 * q
    return x


def _rate_events(x: np.ndarray, bounds: list[int], roundtrip: bool = False, failover: bool = True):
    mon = RhythmMonitor(FS)
    src = RhythmSource(mon, beat_classifier_for(mon))
    if not failover:
        src.rate_lead = None
    return [e for e in feed_rhythm_source(src, x, bounds, roundtrip) if e[1] in ("asystole", "bradycardia", "tachycardia")]


@pytest.mark.parametrize("loss", ["nan", "flat"])
def test_asystole_on_the_second_lead_while_the_first_is_lost(loss):
    """Lead 1 lost from 20 s (NaN, or held at one value), the heart stops at 40 s: the asystole is
    raised from lead 2, with its onset at lead 2's last beat; following lead 1 alone, no asystole
    is raised at all (a lost lead has none). Chunk-exact, through JSON snapshots."""
    x = _two_leads(40.0)
    x[int(20 * FS):, 0] = np.nan if loss == "nan" else x[int(20 * FS), 0]
    seconds = list(range(int(FS), len(x), int(FS)))
    got = _rate_events(x, seconds)
    begins = [e for e in got if e[0] == "begin" and e[1] == "asystole"]
    assert len(begins) == 1 and 39.5 * FS < begins[0][2] < 40.0 * FS
    assert not [e for e in _rate_events(x, seconds, failover=False) if e[1] == "asystole"]
    assert _rate_events(x, random_bounds(len(x), FS, np.random.default_rng(2)), roundtrip=True) == got


def test_both_leads_intact_follow_the_first_lead_exactly():
    """With both leads carrying signal the rhythm is the first lead's, sample for sample."""
    x = _two_leads(40.0)
    seconds = list(range(int(FS), len(x), int(FS)))
    assert _rate_events(x, seconds) == _rate_events(x, seconds, failover=False) != []
