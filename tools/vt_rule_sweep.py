"""Replay the CinC 2015 VT decisions of ``python -m models.vt_cv``'s fold networks at other levels of
the beat rule's two network constants (docs/beats.md, "Training the vt output on bags").

Usage::

    python tools/vt_rule_sweep.py WORK GATE_VT_LEVELS STRONG_VT_LEVELS [--json FILE]
    python tools/vt_rule_sweep.py vigil-vt-cv-bags 0.05,0.1,0.2,0.3 0.3,0.4,0.5,0.6

``WORK`` holds the fold checkpoints ``vigil-ecg-fold<k>.pt`` of ``models.vt_cv`` (5 folds).
Every record is scored, as in ``models.vt_cv``, by its fold's network through the service's rhythm
source (:func:`models.evaluate.rhythm_episodes`), once per pair of levels of
:data:`models.beats.GATE_VT` and :data:`models.beats.STRONG_VT`; the network runs once per
record. The levels are chosen by looking at these same records, so the best row is an in-sample
figure (an upper bound for the rule on these networks), not a cross-validated one.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # the checkout's models, installed or not

import numpy as np
from rich.console import Console
from rich.progress import track
from rich.table import Table

from models.checkpoint import load_model
from models.data import ecg as ecg_data
from models.data.paths import datasets_dir
from models.evaluate import alarm_decisions, cinc2015_network_pass, vt_run_before_alarm
from models.splits import cinc2015_folds
from models.vt_cv import beat_rule_levels, fold_checkpoint


def levels(text: str) -> list[float]:
    """``"0.1,0.2"`` -> ``[0.1, 0.2]``."""
    return [float(v) for v in text.split(",") if v.strip()]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python tools/vt_rule_sweep.py", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("work", type=Path, help="models.vt_cv's --work folder (fold checkpoints)")
    ap.add_argument("gate_levels", type=levels, help="GATE_VT levels, comma-separated")
    ap.add_argument("strong_levels", type=levels, help="STRONG_VT levels, comma-separated")
    ap.add_argument("--json", type=Path, default=None, help="write every record's decisions here")
    args = ap.parse_args(argv)
    console = Console()
    root = datasets_dir() / "cinc2015"
    alarms = ecg_data.cinc2015_alarms(root)
    folds = cinc2015_folds(alarms)
    if not all(fold_checkpoint(args.work, k).exists() for k in range(len(folds))):
        console.print(f"[red]{args.work} lacks the fold checkpoints of python -m models.vt_cv", soft_wrap=True)
        return 2
    pairs = list(itertools.product(args.gate_levels, args.strong_levels))
    runs: dict[tuple[float, float], dict[str, bool]] = {p: {} for p in pairs}
    records = [(k, name) for k, fold in enumerate(folds) for name in fold]
    net, net_fold = None, None
    for k, name in track(records, description="records", console=console):
        if k != net_fold:
            net, net_fold = load_model(fold_checkpoint(args.work, k)), k
        passed = cinc2015_network_pass(net, root / name)                # once per record, for every pair
        for gate, strong in pairs:
            with beat_rule_levels(GATE_VT=gate, STRONG_VT=strong):
                runs[gate, strong][name] = vt_run_before_alarm(*passed, net)
    truth = dict(alarms)
    table = Table("GATE_VT", "STRONG_VT", "score", "95% CI", "TP", "FP", "TN", "FN", "missed", "false alarms",
                  title="CinC 2015 VT alarms, fold networks (in-sample choice of levels)")
    for (gate, strong), got in runs.items():
        d = alarm_decisions(np.array([truth[n] for n in got]), np.array(list(got.values())), np.random.default_rng(0))
        table.add_row(f"{gate:g}", f"{strong:g}", f"{d['score']:.1f}", "[{:.1f}, {:.1f}]".format(*d["ci95"]),
                      *(str(d[c]) for c in ("tp", "fp", "tn", "fn")),
                      " ".join(n for n, r in got.items() if truth[n] and not r),
                      " ".join(n for n, r in got.items() if r and not truth[n]))
    console.print(table)
    if args.json:
        args.json.write_text(json.dumps({f"{g},{s}": got for (g, s), got in runs.items()}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
