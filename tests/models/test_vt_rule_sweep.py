"""tools/vt_rule_sweep.py: every record's decision at every pair of levels is the service rhythm
source's, with its fold's network as the gate; a work folder without fold networks is refused."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from models.beats import GATE_VT, STRONG_VT
from models.checkpoint import load_model
from models.data import ecg as ecg_data
from models.evaluate import vt_run_before_alarm
from models.stream import run_offline
from models.vt_cv import beat_rule_levels, fold_checkpoint

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "models" / "checkpoints" / "vigil-ecg.pt"


def _sweep():
    spec = importlib.util.spec_from_file_location("vt_rule_sweep", ROOT / "tools" / "vt_rule_sweep.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


@pytest.fixture
def two_records(two_cinc2015_alarms, tmp_path):
    """The two-record CinC 2015 data set (v197l true, v140s false), its alarms, and a work folder
    whose five fold networks are the shipped one."""
    data = two_cinc2015_alarms
    work = tmp_path / "work"
    work.mkdir()
    for k in range(5):
        fold_checkpoint(work, k).symlink_to(SHIPPED)
    return data, dict(ecg_data.cinc2015_alarms(data)), work


@pytest.mark.datasets
def test_decisions_are_the_rhythm_sources_at_each_pair_of_levels(two_records, tmp_path):
    data, records, work = two_records
    out = tmp_path / "sweep.json"
    pairs = [(GATE_VT, STRONG_VT), (0.9, 0.95)]
    assert _sweep()([str(work), f"{GATE_VT},0.9", f"{STRONG_VT},0.95", "--json", str(out)]) == 0
    got = json.loads(out.read_text())
    assert sorted(got) == sorted(f"{g},{s}" for g in (GATE_VT, 0.9) for s in (STRONG_VT, 0.95))
    # at the shipped levels: the service's decisions of the alarms evaluation
    assert got[f"{GATE_VT},{STRONG_VT}"] == records
    assert got["0.9,0.95"]["v197l"] is False          # the levels reach the rule: a strict gate misses it
    network = load_model(SHIPPED)
    for name in records:
        rec = ecg_data.read_cinc2015_ecg(data / name)
        net_out = run_offline(network, rec.signal, rec.sample_rate)
        for gate, strong in pairs:
            with beat_rule_levels(GATE_VT=gate, STRONG_VT=strong):
                want = vt_run_before_alarm(rec.signal, rec.sample_rate, net_out, network)
            assert got[f"{gate},{strong}"][name] == want


@pytest.mark.datasets
def test_a_work_folder_without_the_fold_networks_is_refused(two_records, tmp_path, capsys):
    _, _, work = two_records
    fold_checkpoint(work, 4).unlink()
    assert _sweep()([str(work), "0.1", "0.5"]) == 2
    assert "lacks the fold checkpoints" in capsys.readouterr().out
