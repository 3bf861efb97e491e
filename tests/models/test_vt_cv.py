"""The CinC 2015 cross-validation folds (models/splits.py) and their wiring into training and
the 5-fold VT score (models/vt_cv.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from models.splits import TEST, TRAIN, cinc2015_folds, cinc2015_split, describe
from models.evaluate import alarm_decisions
from models.labels import VT
from models.vt_cv import main

ALARMS = [(f"v{i:03d}{'ls'[i % 2]}", i % 3 == 0) for i in range(100, 160)]


def test_folds_are_disjoint_cover_every_record_and_are_stratified():
    folds = cinc2015_folds(ALARMS, 5)
    names = [n for f in folds for n in f]
    assert sorted(names) == sorted(n for n, _ in ALARMS)            # every record once
    truth = dict(ALARMS)
    n_true = sum(truth.values())
    for f in folds:
        assert abs(sum(truth[n] for n in f) - n_true / 5) <= 1       # each class spread evenly
        assert abs(sum(not truth[n] for n in f) - (len(ALARMS) - n_true) / 5) <= 1
    assert cinc2015_folds(list(reversed(ALARMS)), 5) == folds        # name order, not input order


def test_a_fold_is_the_test_part_and_the_rest_is_trained_on():
    fold = cinc2015_folds(ALARMS, 5)[2]
    split = cinc2015_split(ALARMS, fold)
    assert {n for n, p in split.items() if p == TEST} == set(fold)
    assert {n for n, p in split.items() if p == TRAIN} == {n for n, _ in ALARMS} - set(fold)
    halves = cinc2015_split(ALARMS)                                  # the default split is unchanged
    assert sum(p == TEST for p in halves.values()) == len(ALARMS) // 2
    assert describe("ecg", fold)["cinc2015"][TEST] == sorted(fold)
    assert isinstance(describe("ecg")["cinc2015"], str)


def test_alarm_decisions_count_and_score_as_cinc_2015():
    truth = np.array([True, True, True, False, False])
    alarm = np.array([True, True, False, True, False])
    d = alarm_decisions(truth, alarm, np.random.default_rng(0))
    assert (d["tp"], d["fn"], d["fp"], d["tn"]) == (2, 1, 1, 1)
    assert d["score"] == pytest.approx(100 * 3 / (3 + 1 + 5), abs=0.05)
    assert d["ci95"][0] <= d["score"] <= d["ci95"][1]


def test_without_the_dataset_it_says_so_and_exits_2(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("VIGIL_DATASETS", str(tmp_path))
    assert main(["--work", str(tmp_path / "work")]) == 2
    assert "No CinC 2015 alarms" in capsys.readouterr().out
    assert not (tmp_path / "work").exists()


@pytest.mark.datasets
def test_training_data_leave_out_the_fold(tmp_path):
    """load_ecg, given a fold, trains on every CinC 2015 record but that fold's (real records)."""
    from models.config import ecg_config
    from models.data import ecg as ecg_data
    from models.data.paths import datasets_dir
    from models.datasets import load_ecg

    src = datasets_dir() / "cinc2015"
    if not (src / "alarms.csv").exists():
        pytest.skip(f"dataset cinc2015 not found under {datasets_dir()} (set VIGIL_DATASETS)")
    (tmp_path / "cinc2015").symlink_to(src)                          # this source only: fast
    alarms = ecg_data.cinc2015_alarms(src)
    fold = cinc2015_folds(alarms, 5)[0]
    train = load_ecg(ecg_config(), (TRAIN,), root=tmp_path, cinc2015_test=fold)
    assert {ex.name for ex in train} == {n for n, _ in alarms} - set(fold)
    test = load_ecg(ecg_config(), (TEST,), root=tmp_path, cinc2015_test=fold)
    assert {ex.name for ex in test} == set(fold)
    j = ecg_config().labels.index(VT)
    assert not any(ex.track.bags.any() for ex in train)                   # the shipped labels
    bagged = load_ecg(ecg_config(), (TRAIN,), root=tmp_path, cinc2015_test=fold, cinc2015_bags=True)
    assert {ex.name for ex in bagged if ex.track.bags[:, j].sum() == 100} == {n for n, t in alarms if t} - set(fold)


@pytest.mark.datasets
def test_a_checkpoint_that_is_not_the_folds_is_refused(tmp_path, capsys):
    """A work folder holding networks trained on the default split (here the shipped one) must not
    be scored as if they had held the fold out."""
    import shutil

    from models.checkpoint import resolve
    from models.data.paths import datasets_dir
    from models.vt_cv import fold_checkpoint

    if not (datasets_dir() / "cinc2015" / "alarms.csv").exists():
        pytest.skip(f"dataset cinc2015 not found under {datasets_dir()} (set VIGIL_DATASETS)")
    for k in range(5):
        shutil.copy(resolve("vigil-ecg"), fold_checkpoint(tmp_path, k))
    assert main(["--work", str(tmp_path)]) == 2
    assert "does not hold out fold 0's records" in capsys.readouterr().out


def test_each_folds_gate_level_is_chosen_on_the_other_folds():
    """nested_choice decides a fold's records at the level best on the *other* folds, so a level that
    only suits the fold itself is not picked for it; ties go to the higher level."""
    from models.vt_cv import nested_choice

    truth = np.array([True, True, False, False] * 4)
    fold_of = np.repeat([0, 1, 2, 3], 4)
    low = truth.copy()                                  # the low level: right in folds 0-2, wrong in 3
    low[12:] = ~truth[12:]
    high = ~truth                                       # the high level: right in fold 3 only
    high[12:] = truth[12:]
    alarm, chosen = nested_choice({0.02: low, 0.1: high}, truth, fold_of)
    assert chosen == [0.02] * 4                         # fold 3's own best (0.1) is not what the others say
    assert (alarm == low).all()
    _, tied = nested_choice({0.02: truth, 0.1: truth}, truth, fold_of)
    assert tied == [0.1] * 4


def test_invalid_gate_levels_are_refused(tmp_path, capsys):
    assert main(["--work", str(tmp_path / "w"), "--gate-levels", "0.02,x"]) == 2
    assert main(["--work", str(tmp_path / "w"), "--gate-levels", "1.5"]) == 2
    assert "Invalid --gate-levels" in capsys.readouterr().out
    assert not (tmp_path / "w").exists()


@pytest.mark.datasets
def test_a_fold_checkpoint_trained_otherwise_is_refused(tmp_path, capsys):
    """Fold networks left in --work by a run with other settings (here: without --cinc2015-bags)
    must not be scored as this run's."""
    import torch

    from models.checkpoint import resolve
    from models.data import ecg as ecg_data
    from models.data.paths import datasets_dir
    from models.vt_cv import SHIPPED_STEPS, fold_checkpoint, training_of

    src = datasets_dir() / "cinc2015"
    if not (src / "alarms.csv").exists():
        pytest.skip(f"dataset cinc2015 not found under {datasets_dir()} (set VIGIL_DATASETS)")
    folds = cinc2015_folds(ecg_data.cinc2015_alarms(src), 5)
    ckpt = torch.load(resolve("vigil-ecg"), map_location="cpu", weights_only=True)
    for k, fold in enumerate(folds):                  # the fold's split, 1333 steps, seed 0, no bags
        ckpt["meta"]["split"] = describe("ecg", fold)
        ckpt["meta"]["training"]["settings"].update(steps=SHIPPED_STEPS, seed=0)
        torch.save(ckpt, fold_checkpoint(tmp_path, k))
    assert training_of(ckpt["meta"]) == {"steps": SHIPPED_STEPS, "seed": 0, "cinc2015_bags": False}
    assert main(["--work", str(tmp_path), "--cinc2015-bags"]) == 2
    out = capsys.readouterr().out
    assert "vigil-ecg-fold0.pt was trained with" in out and "'cinc2015_bags': True" in out


CHILD_OF_A_KILLED_RUN = """
import functools, multiprocessing, os, time
from concurrent.futures import ProcessPoolExecutor
from models.vt_cv import exit_with_parent

if __name__ == "__main__":
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"),
                             initializer=functools.partial(exit_with_parent, 0.2)) as pool:
        print(pool.submit(os.getpid).result(), flush=True)
        pool.submit(time.sleep, 120).result()
"""


def _running(pid: int) -> bool:
    """The process exists and is not a zombie (Linux /proc)."""
    try:
        state = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="reads /proc")
def test_a_training_child_ends_when_the_run_that_started_it_is_killed(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(CHILD_OF_A_KILLED_RUN)
    run = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True,
                           cwd=Path(__file__).resolve().parents[2])
    try:
        child = int(run.stdout.readline())
        time.sleep(0.5)
        assert _running(child)                      # the child is busy with its long task
        run.send_signal(signal.SIGKILL)             # a signal the run cannot handle: no clean-up
        run.wait(10)
        deadline = time.monotonic() + 10
        while _running(child) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _running(child)
    finally:
        run.kill()


@pytest.mark.datasets
def test_gate_levels_reuse_each_records_network_outputs(two_cinc2015_alarms, tmp_path, monkeypatch):
    """--gate-levels scores every level from the one network pass per record of the main scoring
    (the network is not rerun per level), and each level's decisions are the rhythm source's at
    that level. Two real records (a true alarm the service finds, a false one it lets pass) make
    the whole data set; the shipped network, relabelled with each fold's split, is every fold's."""
    import json

    import torch

    from models import evaluate
    from models.checkpoint import load_model, resolve
    from models.data import ecg as ecg_data
    from models.vt_cv import SHIPPED_STEPS, beat_rule_levels, fold_checkpoint

    data = two_cinc2015_alarms
    records = dict(ecg_data.cinc2015_alarms(data))
    work = tmp_path / "work"
    work.mkdir()
    ckpt = torch.load(resolve("vigil-ecg"), map_location="cpu", weights_only=True)
    for k, fold in enumerate(cinc2015_folds(ecg_data.cinc2015_alarms(data), 5)):
        ckpt["meta"]["split"] = describe("ecg", fold)
        ckpt["meta"]["training"]["settings"].update(steps=SHIPPED_STEPS, seed=0)
        torch.save(ckpt, fold_checkpoint(work, k))
    passes = []
    real_pass = evaluate.run_offline
    monkeypatch.setattr(evaluate, "run_offline", lambda *a, **kw: passes.append(1) or real_pass(*a, **kw))
    report = tmp_path / "cv.json"
    levels = (0.02, 0.9)
    assert main(["--work", str(work), "--gate-levels", ",".join(map(str, levels)), "--json", str(report)]) == 0
    assert len(passes) == len(records)                    # once per record, for the main row and both levels
    decisions = json.loads(report.read_text())["decisions"]
    network = load_model(resolve("vigil-ecg"))
    for level in levels:
        with beat_rule_levels(GATE_VT=level):
            found = {n: evaluate.vt_run_before_alarm(*evaluate.cinc2015_network_pass(network, data / n), network)
                     for n in records}
        d = decisions[f"service, gate level {level:g}"]
        assert (d["tp"], d["fn"], d["fp"], d["tn"]) == (int(found["v197l"]), int(not found["v197l"]),
                                                        int(found["v140s"]), int(not found["v140s"]))
