"""The CinC 2015 VT alarm score by 5-fold cross-validation over records, the network retrained per fold.

``python -m models.vt_cv [--folds 5] [--steps 1333] [--jobs 2] [--work vigil-vt-cv] [--json FILE]
[--gate-levels 0.02,0.03,0.05,0.1]``

The shipped ECG network was trained on half of the CinC 2015 alarm records, and its ``vt`` output
is the beat classifier's gate (docs/beats.md), so ``vigil evaluate ecg`` scores the service's VT
alarms on the other half only. Here every record is scored by a network that never saw it:

1. The 60 records (30 true, 30 false VT alarms) are cut into ``--folds`` folds, stratified
   (:func:`models.splits.cinc2015_folds`: within each class, in name order, record ``i`` to fold
   ``i % k``).
2. For each fold, ``vigil train ecg`` is rerun with that fold's records held out (the other
   CinC 2015 records, and every other source's usual training split, trained on), seed 0, for
   ``--steps`` optimiser steps (default: the shipped checkpoint's 1333, so that the load of the
   machine does not change the run; the clock budget is lifted). Checkpoints go to ``--work``;
   one that exists is reused, so an interrupted run resumes. ``--jobs`` trainings run at once,
   one torch thread each (20–30 minutes each, three at a time, on this project's 2-core
   machine). ``--cinc2015-bags`` trains them with ``vigil train ecg --cinc2015-bags`` (an
   experiment, docs/beats.md: "Training the vt output on bags"). A checkpoint found in
   ``--work`` must hold out the fold's records and have been trained with the same steps, seed
   and ``--cinc2015-bags``; otherwise the run stops. A training child ends when the run is killed
   (:func:`exit_with_parent`).
3. Each fold's records are streamed through the service's rhythm source with that fold's network
   as the gate (:func:`models.evaluate.cinc2015_vt_alarm`, as in ``vigil evaluate ecg``): an
   alarm is *detected* when a VT run overlaps the 10 s before the alarm at 300 s.
4. The pooled decisions give the score (TP + TN) / (TP + TN + FP + 5 FN) with a bootstrap 95 %
   interval over records, beside the network's own ``vt`` output at each fold checkpoint's stored
   threshold.

5. With ``--gate-levels``, the records are scored again at each level of the network gate
   (:data:`models.beats.GATE_VT`; the network's outputs of step 3 are reused, not recomputed),
   and once more with each fold's level chosen on the other folds' records (:func:`nested_choice`):
   the score of a level chosen *inside* the cross-validation, which the score at the shipped level,
   chosen on these same folds, is not.

What stays fitted outside the folds: the beat classifier (MIT-BIH only, never CinC 2015) and the
rule constants of the VT runs (gate, confident network, second-lead guard), which were chosen on
the fixed training half (docs/beats.md says where the test half was seen), except the gate's level
``GATE_VT``, chosen on these folds (step 5 gives the figure for choosing it inside them). So the
records were seen by the rule's choice though not by the fold's network.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from pathlib import Path

import numpy as np

SERVICE = "service: beat-classifier VT run in the 10 s"   # the decision row of the service's VT alarms
SHIPPED_STEPS = 1333   # optimiser steps of the shipped vigil-ecg checkpoint (its model card)
BOOTSTRAP_SEED = 0
GATE_CHOSEN_IN_CV = "service, gate level chosen inside the CV"   # the decision row of --gate-levels


PARENT_POLL_S = 2.0   # how often a training child checks that the run that started it still exists


def exit_with_parent(poll_s: float = PARENT_POLL_S) -> None:
    """Initializer of the training children: a daemon thread ends the child once its parent is
    gone (reparented: ``os.getppid()`` changed). A run killed by a signal it cannot handle (``kill``,
    ``pkill -f models.vt_cv``) otherwise leaves its trainings running, for tens of minutes, on every
    core the next job needs; an interrupt from the terminal reaches the children itself."""
    import os
    import threading
    import time

    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_s)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def fold_checkpoint(work: Path, k: int) -> Path:
    """Where fold ``k``'s network is kept."""
    return work / f"vigil-ecg-fold{k}.pt"


def train_fold(work: str, k: int, test: tuple[str, ...], steps: int, seed: int, bags: bool = False) -> str:
    """Train the ECG network without fold ``k``'s CinC 2015 records (runs in a child process; its
    progress goes to ``fold<k>.log`` in ``work``)."""
    import torch
    from rich.console import Console

    from models.train import TrainSettings, train

    torch.set_num_threads(1)
    out = fold_checkpoint(Path(work), k)
    with open(Path(work) / f"fold{k}.log", "w") as log:
        console = Console(file=log, force_terminal=False, width=120)
        train(TrainSettings("ecg", minutes=1e6, steps=steps, seed=seed, cinc2015_test=test, cinc2015_bags=bags), out=out,
              console=console)
    return str(out)


def training_of(meta: dict) -> dict:
    """The settings of a checkpoint's training that a fold's network must share with the run:
    steps, seed and ``cinc2015_bags`` (absent before that setting existed: off)."""
    settings = meta.get("training", {}).get("settings", {})
    return {"steps": settings.get("steps"), "seed": settings.get("seed"),
            "cinc2015_bags": bool(settings.get("cinc2015_bags", False))}


@contextmanager
def beat_rule_levels(**levels: float):
    """Score with constants of :mod:`models.beats` at other levels inside the block, e.g.
    ``beat_rule_levels(GATE_VT=0.1)`` (the network gate), ``STRONG_VT=0.5`` (the confident network)."""
    from models import beats

    shipped = {name: getattr(beats, name) for name in levels}
    try:
        for name, level in levels.items():
            setattr(beats, name, level)
        yield
    finally:
        for name, level in shipped.items():
            setattr(beats, name, level)


def nested_choice(runs: dict[float, np.ndarray], truth: np.ndarray,
                  fold_of: np.ndarray) -> tuple[np.ndarray, list[float]]:
    """Alarm decisions where each fold's gate level is chosen on the other folds' records.

    Parameters
    ----------
    runs : dict
        Gate level -> ``(n,)`` bool, each record's VT decision at that level.
    truth : np.ndarray
        ``(n,)`` bool, true alarms.
    fold_of : np.ndarray
        ``(n,)`` int, each record's fold.

    Returns
    -------
    alarm : np.ndarray
        ``(n,)`` bool: each record decided at the level that scores highest on the records of the
        other folds (ties: the higher level, which gates fewer beats).
    chosen : list of float
        The level chosen for each fold.
    """
    from models.evaluate import alarm_score

    alarm, chosen = np.zeros(len(truth), bool), []
    for k in range(int(fold_of.max()) + 1):
        rest = fold_of != k
        best = max(runs, key=lambda lv: (alarm_score(truth[rest], runs[lv][rest]), lv))
        alarm[~rest] = runs[best][~rest]
        chosen.append(best)
    return alarm, chosen


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m models.vt_cv", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--folds", type=int, default=5, help="cross-validation folds (default 5)")
    ap.add_argument("--steps", type=int, default=SHIPPED_STEPS, help="optimiser steps per fold's training")
    ap.add_argument("--seed", type=int, default=0, help="training seed")
    ap.add_argument("--jobs", type=int, default=2, help="trainings at once (one torch thread each)")
    ap.add_argument("--work", type=Path, default=Path("vigil-vt-cv"), help="fold checkpoints and logs")
    ap.add_argument("--json", type=Path, default=None, help="write the report here")
    ap.add_argument("--cinc2015-bags", action="store_true",
                    help="train the fold networks with vigil train ecg --cinc2015-bags (an experiment, "
                         "docs/beats.md); fold checkpoints trained otherwise in --work are refused")
    ap.add_argument("--gate-levels", default="",
                    help="comma-separated levels of the network gate to score as well, and to choose among "
                         "inside the cross-validation (e.g. 0.02,0.03,0.05,0.1)")
    args = ap.parse_args(argv)
    try:
        levels = sorted({float(v) for v in args.gate_levels.split(",") if v.strip()})
        valid = all(0 <= lv <= 1 for lv in levels)
    except ValueError:
        valid = False
    if not valid:
        print(f"Invalid --gate-levels {args.gate_levels!r}: probabilities in [0, 1], comma-separated")
        return 2

    import torch
    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table

    from models.checkpoint import load_model
    from models.data import ecg as ecg_data
    from models.data.paths import datasets_dir
    from models.detector import detectors_from_meta
    from models.evaluate import alarm_decisions, cinc2015_network_pass, cinc2015_vt_alarm, vt_run_before_alarm
    from models.labels import VT
    from models.splits import TEST, cinc2015_folds

    console = Console()
    c15 = datasets_dir() / "cinc2015"
    if not (c15 / "alarms.csv").exists():
        console.print(f"[red]No CinC 2015 alarms under {c15} (set VIGIL_DATASETS)")
        return 2
    if args.folds < 2:
        console.print(f"[red]Invalid --folds {args.folds}: at least 2")
        return 2
    alarms = ecg_data.cinc2015_alarms(c15)
    truth_of = dict(alarms)
    folds = cinc2015_folds(alarms, args.folds)
    args.work.mkdir(parents=True, exist_ok=True)

    todo = [k for k in range(args.folds) if not fold_checkpoint(args.work, k).exists()]
    if todo:
        console.print(f"training {len(todo)} fold network(s), {args.steps} steps each, {args.jobs} at once; "
                      f"logs: {args.work}/fold<k>.log")
        with Progress(console=console) as progress, ProcessPoolExecutor(
                max_workers=max(1, args.jobs), mp_context=multiprocessing.get_context("spawn"),
                initializer=exit_with_parent) as pool:
            task = progress.add_task("fold networks trained", total=len(todo))
            futures = {pool.submit(train_fold, str(args.work), k, folds[k], args.steps, args.seed, args.cinc2015_bags): k
                       for k in todo}
            for f in as_completed(futures):
                f.result()
                progress.log(f"fold {futures[f]} trained")
                progress.advance(task)

    torch.set_num_threads(1)
    rows, names, truth, runs, network_alarm, networks = [], [], [], [], [], []
    passes = {}   # with --gate-levels: each record's signal and network outputs, for every level
    with Progress(console=console) as progress:
        task = progress.add_task("records scored", total=len(alarms))
        for k, test in enumerate(folds):
            network = load_model(fold_checkpoint(args.work, k))
            split = network.meta.get("split", {}).get("cinc2015")
            held = set(split.get(TEST, ())) if isinstance(split, dict) else set()
            if held != set(test):   # a checkpoint left by another --folds, or not a fold's at all
                console.print(f"[red]{fold_checkpoint(args.work, k)} does not hold out fold {k}'s records; "
                              f"remove it or use another --work", soft_wrap=True)
                return 2
            trained, wanted = training_of(network.meta), {"steps": args.steps, "seed": args.seed,
                                                          "cinc2015_bags": args.cinc2015_bags}
            if trained != wanted:   # a checkpoint left by a run with other settings
                console.print(f"[red]{fold_checkpoint(args.work, k)} was trained with {trained}, not {wanted}; "
                              f"remove it or use another --work", soft_wrap=True)
                return 2
            networks.append(network)
            threshold = detectors_from_meta(network.meta, network.config.labels)[VT].threshold
            for name in test:
                passed = cinc2015_network_pass(network, c15 / name)
                if levels:
                    passes[name] = passed
                run, score = cinc2015_vt_alarm(network, c15 / name, passed)
                names.append(name)
                truth.append(truth_of[name])
                runs.append(run)
                network_alarm.append(score >= threshold)
                rows.append({"record": name, "fold": k, "true_alarm": truth_of[name], "service_vt_run": run,
                             "network_vt": round(score, 4), "network_threshold": threshold})
                progress.advance(task)
    truth_a = np.array(truth, bool)
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    decisions = {SERVICE: alarm_decisions(truth_a, np.array(runs, bool), rng),
                 "network: its fold's stored VT threshold": alarm_decisions(truth_a, np.array(network_alarm), rng)}
    gate_report = {}
    if levels:   # the same records and fold networks, the gate at each level
        by_level = {}
        with Progress(console=console) as progress:
            task = progress.add_task("records scored at each gate level", total=len(levels) * len(names))
            for lv in levels:
                with beat_rule_levels(GATE_VT=lv):
                    decided = []
                    for k, test in enumerate(folds):
                        for name in test:
                            decided.append(vt_run_before_alarm(*passes[name], networks[k]))
                            progress.advance(task)
                by_level[lv] = np.array(decided, bool)
        nested, chosen = nested_choice(by_level, truth_a, np.array([r["fold"] for r in rows]))
        for lv in levels:
            decisions[f"service, gate level {lv:g}"] = alarm_decisions(truth_a, by_level[lv], rng)
        decisions[GATE_CHOSEN_IN_CV] = alarm_decisions(truth_a, nested, rng)
        gate_report = {"gate_levels": levels, "gate_level_chosen_per_fold": chosen}
    table = Table(title=f"CinC 2015 VT alarms, {args.folds}-fold cross-validation over {len(names)} records "
                        "(network retrained per fold): score (TP+TN)/(TP+TN+FP+5FN)")
    for c in ("decision", "score", "bootstrap 95% CI", "TP", "FP", "TN", "FN"):
        table.add_column(c, justify="right" if c != "decision" else "left")
    for what, d in decisions.items():
        table.add_row(what, f"{d['score']:.1f}", f"[{d['ci95'][0]:.1f}, {d['ci95'][1]:.1f}]",
                      *(str(d[c]) for c in ("tp", "fp", "tn", "fn")))
    console.print(table)
    missed = [r["record"] for r in rows if r["true_alarm"] and not r["service_vt_run"]]
    false = [r["record"] for r in rows if not r["true_alarm"] and r["service_vt_run"]]
    console.print(f"service: missed true alarms {missed}; false alarms drawing VT {false}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "command": "python -m models.vt_cv " + " ".join(argv if argv is not None else sys.argv[1:]),
            "folds": [list(f) for f in folds], "steps": args.steps, "seed": args.seed,
            "cinc2015_bags": args.cinc2015_bags,
            "decisions": decisions, **gate_report, "records": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
