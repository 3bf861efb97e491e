"""Evaluation of :mod:`models.qrs`: ``python -m models.qrs_eval [--json out.json] [--records 100 ...]``.

- MIT-BIH Arrhythmia (``$VIGIL_DATASETS/mitdb``, lead MLII): beat-by-beat sensitivity and
  positive predictivity against the reference QRS annotations (the WFDB beat symbols of
  :data:`models.data.labels.BEAT_SYMBOLS`), one-to-one matching within 150 ms, the first 10 s
  of each record skipped and ventricular flutter/fibrillation segments (``[`` to ``]``
  annotations: 207) left out, as ANSI/AAMI EC57 and ``bxb`` do; per record and in aggregate
  (gross: summed counts).
- Rate conditions on MIT-BIH: asystole / bradycardia / tachycardia episodes computed from the
  reference beats (:func:`reference_conditions`) against those the monitor raised (any overlap;
  episodes overlapping ventricular flutter segments, where no beats are annotated, left out).
- CinC 2015 (``$VIGIL_DATASETS/cinc2015``, first ECG lead, signal up to the alarm at 300 s):
  which rate conditions (asystole, bradycardia, tachycardia) are active at some time in the
  last 16 s before the alarm, counted per alarm type and truth.
- Both: ``asystole_two_leads`` and ``bradycardia_two_leads``, the service's asystole and
  bradycardia in a two-lead session (no QRS on either lead, :mod:`models.asystole_leads`; < 40 bpm
  not contradicted by the second lead, :mod:`models.brady_leads`; the second lead's own detector,
  V1 on MIT-BIH).

Every record is streamed through :class:`models.qrs.RhythmMonitor` in one call (chunking does
not change the result: tested in ``tests/models/test_qrs.py``), with samples beyond the ECG
model's saturation limit (``abs_limit_uv``) missing, as the service's rhythm source reads them.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from models.data import ecg as ecg_data
from models.data.paths import datasets_dir
from models.asystole_leads import AsystoleLeads
from models.brady_leads import BradycardiaLeads
from models.config import ecg_config
from models.flatline import saturated_as_missing
from models.qrs import ASYSTOLE_S, BRADY_BEATS, EVENT_KINDS, TACHY_BEATS, RhythmMonitor, rate_condition_holds

MATCH_S = 0.15          # match window, s
SKIP_S = 10.0           # left out at the start of each record, s
ALARM_WINDOW_S = 16.0   # CinC 2015: conditions confirmed in the last 16 s before the alarm
TWO_LEADS = "asystole_two_leads"   # the service's asystole with two leads (models/asystole_leads.py)
BRADY_TWO_LEADS = "bradycardia_two_leads"   # ... and bradycardia (models/brady_leads.py)
KINDS = (*EVENT_KINDS, TWO_LEADS, BRADY_TWO_LEADS)
REFERENCE_KIND = {TWO_LEADS: "asystole", BRADY_TWO_LEADS: "bradycardia"}
SATURATION_UV = ecg_config().abs_limit_uv   # |x| above this is missing (service.alarms.sources.RhythmSource)


def match_beats(det: np.ndarray, ref: np.ndarray, tol: int) -> int:
    """Number of one-to-one matches (greedy in time) between detections and references.

    Parameters
    ----------
    det, ref : np.ndarray
        ``(n,)`` and ``(m,)`` sorted sample indices.
    tol : int
        Largest ``|det - ref|`` of a match, samples.
    """
    tp, j = 0, 0
    for r in ref:
        while j < len(det) and det[j] < r - tol:
            j += 1
        if j < len(det) and det[j] <= r + tol:
            tp += 1
            j += 1
    return tp


def vf_segments(path: Path) -> list[tuple[int, int]]:
    """Ventricular flutter/fibrillation segments ``[start, end]`` from ``[`` / ``]`` annotations."""
    ann = ecg_data.read_annotations(path)
    out, start = [], None
    for sym, t in zip(ann.symbol, ann.sample):
        if sym == "[":
            start = int(t)
        elif sym == "]" and start is not None:
            out.append((start, int(t)))
            start = None
    if start is not None:
        out.append((start, ecg_data.record_length(path)))
    return out


def _outside(samples: np.ndarray, spans: list[tuple[int, int]]) -> np.ndarray:
    keep = np.ones(len(samples), bool)
    for a, b in spans:
        keep &= (samples < a) | (samples > b)
    return samples[keep]


def reference_conditions(beats: np.ndarray, fs: float) -> list[tuple[str, int, int | None]]:
    """Condition transitions ``(kind, onset, end)`` computed offline from a beat list, as
    DESIGN §3 words them (asystole: RR >= 4 s, from the beat before to the beat after;
    bradycardia / tachycardia: mean rate of the last 5 / 17 beats, ending as
    :func:`models.qrs.rate_condition_holds` says); ``end`` None = started."""
    out, onset = [], {}
    beats = np.asarray(beats, dtype=np.int64)
    for i in range(1, len(beats)):
        if beats[i] - beats[i - 1] >= ASYSTOLE_S * fs:
            out += [("asystole", int(beats[i - 1]), None), ("asystole", int(beats[i - 1]), int(beats[i]))]
        for kind, n in (("bradycardia", BRADY_BEATS), ("tachycardia", TACHY_BEATS)):
            if i + 1 < n:
                continue
            bpm = 60.0 * fs * (n - 1) / (beats[i] - beats[i + 1 - n])
            holds = rate_condition_holds(kind, bpm, kind in onset)
            if holds and kind not in onset:
                onset[kind] = int(beats[i + 1 - n])
                out.append((kind, onset[kind], None))
            elif not holds and kind in onset:
                out.append((kind, onset.pop(kind), int(beats[i])))
    return out


def episodes(events, kind: str, stop: int) -> list[tuple[int, int]]:
    """``[(onset, end)]`` of one kind from transitions (objects or tuples); open ones end at stop."""
    spans, open_at = [], None
    for ev in events:
        k, a, b = (ev.kind, ev.onset_sample, ev.end_sample) if hasattr(ev, "kind") else ev
        if k != kind:
            continue
        if b is None:
            open_at = a
        else:
            spans.append((a, b))
            open_at = None
    if open_at is not None:
        spans.append((open_at, stop))
    return spans


def _overlaps(a: tuple[int, int], spans: list[tuple[int, int]]) -> bool:
    return any(s < a[1] and a[0] < e for s, e in spans)


def detect(x: np.ndarray, fs: float) -> tuple[np.ndarray, list]:
    """All beats and events of one lead ``(t,)`` at ``fs`` Hz, streamed in one call."""
    mon = RhythmMonitor(fs)
    upd, _ = mon.process(x, 0, mon.initial_state())
    return upd.beats, upd.events


def two_lead_conditions(x: np.ndarray, fs: float, beats: np.ndarray, events: list
                        ) -> list[tuple[str, int, int | None]]:
    """The service's two-lead asystole and bradycardia (:data:`TWO_LEADS`, :data:`BRADY_TWO_LEADS`)
    transitions of ``x`` ``(t, 2)``, given the first lead's ``beats`` and ``events``: the second
    lead's detector, :class:`models.asystole_leads.AsystoleLeads` and
    :class:`models.brady_leads.BradycardiaLeads`."""
    beats2, _ = detect(x[:, 1], fs)
    asystole, brady = AsystoleLeads(fs), BradycardiaLeads(fs)
    out = []
    for kind, got in ((TWO_LEADS, asystole.update(asystole.initial_state(), events, beats2, 0, flush=True)),
                      (BRADY_TWO_LEADS, brady.update(brady.initial_state(), events, beats, beats2, 0, flush=True))):
        onset = None
        for typ, sample, _ in got:
            out.append((kind, sample, None) if typ == "begin" else (kind, onset, sample))
            onset = sample
    return out


def mitdb_record(path: Path) -> dict:
    """Se / +P of one MIT-BIH record (lead MLII): counts and ratios."""
    rec = ecg_data.read_wfdb(path)
    fs = rec.sample_rate
    mlii = rec.channels.index("MLII")
    x = saturated_as_missing(rec.signal[:, [mlii, 1 - mlii]].astype(np.float64), SATURATION_UV)
    beats, events = detect(x[:, 0], fs)
    events = [*events, *two_lead_conditions(x, fs, beats, events)]
    ref, _ = ecg_data.mitdb_beats(path)
    n = rec.signal.shape[0]
    vf = vf_segments(path)
    # reference conditions on the beat runs between VF segments (no beats are annotated in VF);
    # episodes that overlap a VF segment are left out on both sides
    cuts = [0, *[b for _, b in vf], n]
    ref_events = [e for a, b in zip(cuts[:-1], cuts[1:])
                  for e in reference_conditions(ref[(ref >= a) & (ref < b)], fs)]
    cond = {}
    for kind in KINDS:   # episodes from the reference beats vs from the detector (any overlap)
        r_ep = [e for e in episodes(ref_events, REFERENCE_KIND.get(kind, kind), n)
                if not _overlaps(e, vf)]
        d_ep = [e for e in episodes(events, kind, n) if not _overlaps(e, vf)]
        cond[kind] = {"ref": len(r_ep), "det": len(d_ep),
                      "ref_found": sum(_overlaps(e, d_ep) for e in r_ep),
                      "det_true": sum(_overlaps(e, r_ep) for e in d_ep)}
    skip = int(SKIP_S * fs)
    vf = vf_segments(path)
    ref, det = _outside(ref[ref >= skip], vf), _outside(beats[beats >= skip], vf)
    tp = match_beats(det, ref, int(round(MATCH_S * fs)))
    return {"record": path.name, "ref": len(ref), "det": len(det), "tp": tp,
            "fn": len(ref) - tp, "fp": len(det) - tp,
            "se": tp / len(ref) if len(ref) else float("nan"),
            "ppv": tp / len(det) if len(det) else float("nan"), "conditions": cond}


def cinc2015_record(path: Path, alarm_s: float = ecg_data.CINC2015_ALARM_S) -> dict[str, bool]:
    """Which conditions are active at some time in the 16 s before the alarm (first ECG lead)."""
    rec = ecg_data.read_cinc2015_ecg(path)
    fs = rec.sample_rate
    stop = int(round(alarm_s * fs))
    x = saturated_as_missing(rec.signal[:stop].astype(np.float64), SATURATION_UV)
    beats, events = detect(x[:, 0], fs)
    if x.shape[1] > 1:
        events = [*events, *two_lead_conditions(x, fs, beats, events)]
    lo = stop - int(round(ALARM_WINDOW_S * fs))
    # decided (started) before the alarm and overlapping the window
    return {kind: _overlaps((lo, stop), episodes(events, kind, stop)) for kind in KINDS}


def cinc2015_alarm_types(root: Path) -> dict[str, str]:
    """Alarm type of each CinC 2015 record (from its header comment, e.g. ``Asystole``)."""
    types = {}
    for hea in sorted(root.glob("*.hea")):
        lines = [ln[1:].strip() for ln in hea.read_text().splitlines() if ln.startswith("#")]
        types[hea.stem] = lines[0] if lines else "?"
    return types


def evaluate_qrs(root: Path | None = None, records: list[str] | None = None,
                 cinc: bool = True) -> dict:
    """Run both evaluations.

    Parameters
    ----------
    root : Path, optional
        Datasets folder (default :func:`models.data.paths.datasets_dir`).
    records : list of str, optional
        MIT-BIH records (default every record in ``mitdb``).
    cinc : bool
        Also run CinC 2015 (when the folder exists).

    Returns
    -------
    dict
        ``mitdb``: per-record rows and ``aggregate``; ``cinc2015``: per-record conditions and
        ``counts[alarm_type][truth][kind]`` (records with the condition confirmed) with
        ``n[alarm_type][truth]`` records.
    """
    root = Path(root) if root is not None else datasets_dir()
    out: dict = {}
    mit = root / "mitdb"
    if mit.is_dir():
        names = records or sorted(p.stem for p in mit.glob("*.hea"))
        rows = [mitdb_record(mit / n) for n in names]
        tot = {k: sum(r[k] for r in rows) for k in ("ref", "det", "tp", "fn", "fp")}
        tot.update(record="all", se=tot["tp"] / max(tot["ref"], 1), ppv=tot["tp"] / max(tot["det"], 1))
        cond = {k: {f: sum(r["conditions"][k][f] for r in rows) for f in ("ref", "det", "ref_found", "det_true")}
                for k in KINDS}
        out["mitdb"] = {"rows": rows, "aggregate": tot, "conditions": cond}
    cdir = root / "cinc2015"
    if cinc and cdir.is_dir():
        types = cinc2015_alarm_types(cdir)
        rows, counts, n = [], {}, {}
        for name, truth in ecg_data.cinc2015_alarms(cdir):
            conds = cinc2015_record(cdir / name)
            kind, key = types.get(name, "?"), "true" if truth else "false"
            rows.append({"record": name, "alarm": kind, "truth": truth, **conds})
            n.setdefault(kind, {"true": 0, "false": 0})[key] += 1
            c = counts.setdefault(kind, {t: dict.fromkeys(KINDS, 0) for t in ("true", "false")})
            for k in KINDS:
                c[key][k] += int(conds[k])
        out["cinc2015"] = {"rows": rows, "counts": counts, "n": n}
    return out


def print_report(report: dict, worst: int = 8) -> None:
    """Rich tables: aggregate and worst MIT-BIH records; CinC 2015 confirmation counts."""
    from rich.console import Console
    from rich.table import Table

    con = Console()
    if "mitdb" in report:
        rows = report["mitdb"]["rows"]
        t = Table(title=f"QRS detection, MIT-BIH MLII (match {MATCH_S * 1e3:.0f} ms, first {SKIP_S:.0f} s skipped)",
                  title_justify="left")
        for c in ("record", "ref", "det", "TP", "FN", "FP", "Se %", "+P %"):
            t.add_column(c, justify="right")
        key = lambda r: min(r["se"], r["ppv"])  # noqa: E731
        for r in sorted(rows, key=key)[:worst] + [report["mitdb"]["aggregate"]]:
            t.add_row(str(r["record"]), str(r["ref"]), str(r["det"]), str(r["tp"]), str(r["fn"]),
                      str(r["fp"]), f"{100 * r['se']:.2f}", f"{100 * r['ppv']:.2f}")
        con.print(t)
        t = Table(title="Rate conditions on MIT-BIH: episodes from the reference beats vs detected (any overlap)",
                  title_justify="left")
        for col in ("condition", "reference", "found", "detected", "true", "records (ref/det)"):
            t.add_column(col, justify="right")
        for kind, c in report["mitdb"]["conditions"].items():
            recs = ", ".join(f"{r['record']} ({r['conditions'][kind]['ref']}/{r['conditions'][kind]['det']})"
                             for r in rows if r["conditions"][kind]["ref"] or r["conditions"][kind]["det"])
            t.add_row(kind, str(c["ref"]), str(c["ref_found"]), str(c["det"]), str(c["det_true"]), recs)
        con.print(t)
    if "cinc2015" in report:
        c = report["cinc2015"]
        t = Table(title=f"CinC 2015: conditions confirmed in the last {ALARM_WINDOW_S:.0f} s before the alarm "
                        "(records)", title_justify="left")
        for col in ("alarm type", "truth", "records", *KINDS):
            t.add_column(col, justify="right")
        for kind, by_truth in c["counts"].items():
            for truth in ("true", "false"):
                t.add_row(kind, truth, str(c["n"][kind][truth]), *(str(by_truth[truth][k]) for k in KINDS))
        con.print(t)
        fired = [f"{r['record']} ({'true' if r['truth'] else 'false'} {r['alarm']}): "
                 + ", ".join(k for k in KINDS if r[k]) for r in c["rows"] if any(r[k] for k in KINDS)]
        con.print("records with a confirmed condition: " + ("; ".join(fired) or "none"))
        missing = {"Asystole", "Bradycardia", "Tachycardia"} - set(c["n"])
        if missing:
            con.print(f"no {', '.join(sorted(missing))} alarm records in this copy of CinC 2015: the counts "
                      "above are conditions found on the records of the other alarm types")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m models.qrs_eval", description=__doc__.splitlines()[0])
    ap.add_argument("--records", nargs="*", help="MIT-BIH records (default all)")
    ap.add_argument("--no-cinc", action="store_true", help="skip CinC 2015")
    ap.add_argument("--json", default="runs/qrs_eval.json", help="JSON report path")
    ap.add_argument("--root", default=None, help="datasets folder (default $VIGIL_DATASETS or ../shared/data)")
    args = ap.parse_args(argv)
    report = evaluate_qrs(root=args.root, records=args.records, cinc=not args.no_cinc)
    if not report:
        raise SystemExit(f"No mitdb or cinc2015 under {datasets_dir()} (set VIGIL_DATASETS)")
    print_report(report)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(report, indent=1))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
