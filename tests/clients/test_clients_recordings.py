"""Recording readers, annotated episodes, demo scoring and alert filters (no server needed)."""

from __future__ import annotations

import pytest

from clients.demo import score
from clients.recordings import Episode, load, rate_episodes
from clients.watch import AlertFilter
from models.data.excerpts import CATALOGUE, excerpt_path


@pytest.mark.parametrize("name", list(CATALOGUE))
def test_every_shipped_excerpt_loads_with_its_modality(name):
    src = load(excerpt_path(name))
    assert src.modality == CATALOGUE[name].modality
    assert src.recording.n_samples > 0 and src.recording.signal.shape[1] == len(src.recording.channels)


def test_episodes_follow_the_reference_definitions():
    kinds = lambda name: [(e.kind, e.start, e.end) for e in load(excerpt_path(name)).episodes]  # noqa: E731
    assert ("af", 15815, 29068) in kinds("mitdb_201_af")  # excerpt README: (AFIB 15815-29068
    assert kinds("mitdb_203_vt") == [("af", 0, 54000), ("vt", 19377, 20456)]
    assert kinds("nstdb_118e24_noise") == [("artifact", 10800, 54000)]
    assert kinds("bonn_S001") == [("seizure", 0, 4097)] and kinds("bonn_Z001") == []
    assert kinds("chbmit_chb01_03_ictal") == [("seizure", 0, 2561)] and kinds("chbmit_chb01_03_preictal") == []


def test_rate_episodes():
    beats = [0, 360, 720, 1080, 1440, 2160, 2880, 3600, 4320, 5040]  # 60 bpm, then 30 bpm from 1440
    # 5 beats from 1080 span 7 s: 34 bpm (< 40); from 720, 6 s: 40 bpm (not < 40)
    assert rate_episodes(beats, 360.0, 5, below=40.0) == [(1080, 5041)]
    assert rate_episodes(beats, 360.0, 5, above=140.0) == []


def test_window_clips_and_shifts_episodes():
    src = load(excerpt_path("mitdb_203_vt")).window(50.0, 10.0)
    assert src.recording.n_samples == 3600 and src.offset_s == 50.0
    assert [(e.kind, e.start, e.end) for e in src.episodes] == [("af", 0, 3600), ("vt", 19377 - 18000, 20456 - 18000)]


def _alert(kind: str, onset: int, raised: int, end: int | None, category: str = "physiological") -> dict:
    return {"alert_id": f"s:{kind}:{onset}", "kind": kind, "priority": "high", "state": "cleared",
            "category": category, "onset_sample": onset, "raised_sample": raised, "end_sample": end}


def test_score_found_missed_false():
    src = load(excerpt_path("mitdb_203_vt"))
    alerts = [_alert("af", 100, 3700, 54000), _alert("vf", 30000, 30400, 31000),
              _alert("artifact", 40000, 40100, 40500, "technical")]
    rows = {(what.split(":")[0], outcome) for what, _, _, outcome in score(src, alerts, (1.0, 2.0))}
    assert rows == {("AF episode", "found"), ("VT run", "missed"), ("leads-off", "missed"),
                    ("high vf alert (cleared)", "false"), ("high artifact alert (cleared)", "technical")}


def test_alert_filter():
    a = {"session_id": "icu-3-bed-12", "kind": "vt", "priority": "high"}
    assert AlertFilter(("icu-3-*",), ("vt", "vf"), "medium")(a)
    assert not AlertFilter(("icu-4-*",))(a) and not AlertFilter(kinds=("af",))(a)
    assert not AlertFilter(min_priority="high")({**a, "priority": "medium"})
