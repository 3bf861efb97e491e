"""``vigil evaluate alarms``: false high-priority arrhythmia alarms with and without suppression,
and the true CinC 2015 VT alarms still detected, through the service's streaming path.

Every record is streamed as a session would be (:class:`AlarmRun`): the served checkpoint's
preprocessor and network in 4-s chunks (:class:`models.stream.SessionStream`), the service's
signal-quality detector on the raw input, and the very :class:`~service.alarms.Alarms` class of
the service, which also runs the QRS detector (``models/qrs.py``) for the rate conditions. Two
alarm engines watch each stream, one with the session setting ``suppression`` off and one with it
on (the default); nothing else differs. Thresholds are fixed beforehand: the checkpoint's fitted
detectors and the defaults of ``service/constants.py``; nothing is tuned on these records.

Records (``VIGIL_DATASETS``):

- NSTDB 118e00/e12/e24: MIT-BIH 118 (sinus rhythm with RBBB, isolated APCs and PVCs: no
  ventricular run, asystole or extreme rate) with electrode-motion noise at 0, 12 and 24 dB in
  2-min blocks. Every high-priority physiological alert there is false.
- CinC 2015 VT alarms (30 true, 30 false; the bedside alarm fired at 300 s): a record's alarm is
  detected when a published vt or vf alert's condition overlaps [290, 300] s. In false-alarm
  records such an alert is a false alarm. All high-priority alerts raised over the false-alarm
  records are counted too (unverified: those records are annotated at the alarm only). The
  model trained on the CinC 2015 training half (models/splits.py): the test half is reported
  apart.

``--lose-lead nan|flat`` plays every record with its first lead lost from ``LEAD_LOSS_FROM_S``
(200 s): set to NaN (an electrode off, sent as missing values) or held at 0 (a monitor's flat
lead-off output), the second lead intact. It measures what the alarms still see with one lead
(docs/qrs.md, "A lost lead"); the summary adds the records with an asystole alert.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from models.data import ecg as ecg_data
from models.data.paths import datasets_dir
from models.preprocess import UNIT_SCALE
from models.splits import NSTDB_TEST, TEST, cinc2015_split
from models.stream import SessionStream, step_samples
from service import constants as C
from service.alarms import settings as AS
from service.alarms.machine import AlertContext, Alarms
from service.quality import Quality

CHUNK_S = 10.0   # any chunking gives the same alerts (tests/service/test_alarm_states.py)
ALARM_WINDOW_S = (290.0, 300.0)
HIGH_ARRHYTHMIA = ("vt", "vf", "asystole", "bradycardia", "tachycardia")
VENTRICULAR = ("vt", "vf")
LEAD_LOSS = ("nan", "flat")   # how --lose-lead loses the first lead
LEAD_LOSS_FROM_S = 200.0      # ... from this time in every record, s


@dataclass
class Published:
    """The alerts a stream published (raised unsuppressed at some point) and those suppressed throughout."""

    published: dict[str, dict] = field(default_factory=dict)   # alert_id -> latest transition
    suppressed: dict[str, dict] = field(default_factory=dict)  # alert_id -> latest transition, never published

    def add(self, transitions: list[dict]) -> None:
        for a in transitions:
            aid = a["alert_id"]
            if not a["evidence"]["suppressed"] or aid in self.published:
                self.published[aid] = a
                self.suppressed.pop(aid, None)
            else:
                self.suppressed[aid] = a


class AlarmRun:
    """One recording streamed through the service's path with alarm engines of the given settings."""

    def __init__(self, network, fs: float, channels: list[str], name: str, variants: dict[str, dict]):
        cfg = network.config
        self.stream = SessionStream(network, fs, len(channels), "uV")
        self.quality = Quality(len(channels), math.ceil(C.FLAT_S * fs), cfg.abs_limit_uv / UNIT_SCALE["uV"])
        self.qstate = self.quality.init_state()
        meta = getattr(network, "meta", {}) or {}
        from models.detector import detectors_from_meta

        dets = detectors_from_meta(meta, cfg.labels) if "detectors" in meta else None
        ctx = AlertContext(name, None, "ecg", fs, tuple(channels), {"name": cfg.name, "version": cfg.version})
        self.alarms = {}
        for key, settings in variants.items():
            a = Alarms(ctx, cfg.labels, cfg.output_rate, detectors=dets, saturation=self.quality.limit)
            a.configure(AS.validate(settings, "ecg"))
            self.alarms[key] = a
        self.out = {key: Published() for key in variants}
        self.patch = cfg.patch_len

    def run(self, x: np.ndarray, fs: float) -> None:
        step = max(1, int(CHUNK_S * fs))
        for a in range(0, len(x), step):
            b = min(len(x), a + step)
            chunk = x[a:b]
            stretches, self.qstate = self.quality.update(chunk, a, None, self.qstate)
            o = self.stream.push(chunk)
            k = o.step
            samples = step_samples(self.stream.pre, self.patch, k)
            starts = np.maximum(step_samples(self.stream.pre, self.patch, k - 1) + 1, 0)
            starts[k == 0] = 0
            flush = b == len(x)
            if flush:
                samples, starts = np.minimum(samples, b - 1), np.minimum(starts, b - 1)
            for key, alarms in self.alarms.items():
                self.out[key].add(alarms.process(a, b, stretches, starts, samples, o.probs, o.attribution, chunk,
                                                 flush=flush, suppress_q=o.quality_network))


def _overlaps(a: dict, lo: int, hi: int, n: int) -> bool:
    end = a["end_sample"] if a["end_sample"] is not None else n
    return a["onset_sample"] < hi and end > lo


def _records(root: Path, data: str):
    """(group, name, recording, truth) for every record of the evaluation."""
    if data == "excerpts":
        from models.data.excerpts import excerpt_path

        for name in ("nstdb_118e24_noise", "mitdb_203_vt"):
            yield ("nstdb" if name.startswith("nstdb") else "excerpt"), name, ecg_data.read_wfdb(excerpt_path(name)), None
        return
    for name in NSTDB_TEST:
        path = root / "nstdb" / name
        if path.with_suffix(".hea").exists():
            yield "nstdb", name, ecg_data.read_wfdb(path), None
    c15 = root / "cinc2015"
    if (c15 / "alarms.csv").exists():
        alarms = ecg_data.cinc2015_alarms(c15)
        split = cinc2015_split(alarms)
        for name, truth in alarms:
            yield f"cinc2015-{split[name]}", name, ecg_data.read_cinc2015_ecg(c15 / name), truth


def _check_lose_lead(how: str) -> None:
    if how not in LEAD_LOSS:
        raise ValueError(f"Invalid lose_lead: expected one of {', '.join(LEAD_LOSS)}, got {how!r}")


def lose_first_lead(x: np.ndarray, fs: float, how: str) -> np.ndarray:
    """``x`` (n, c) with lead 1 lost from :data:`LEAD_LOSS_FROM_S`: NaN (``"nan"``) or 0 (``"flat"``)."""
    _check_lose_lead(how)
    x = np.array(x, np.float32)
    x[int(LEAD_LOSS_FROM_S * fs):, 0] = np.nan if how == "nan" else 0.0
    return x


def evaluate_alarms(network, data: str = "datasets", root: Path | None = None, log=None,
                    lose_lead: str | None = None) -> dict:
    """The alarms report: tables and a flat summary (see module docstring); ``lose_lead``: play
    every record with its first lead lost (:func:`lose_first_lead`)."""
    if lose_lead is not None:
        _check_lose_lead(lose_lead)
    log = log or (lambda s: None)
    root = Path(root) if root is not None else datasets_dir()
    variants = {"off": {"suppression": False}, "on": {"suppression": True}}
    per_record = []
    for group, name, rec, truth in _records(root, data):
        fs = rec.sample_rate
        run = AlarmRun(network, fs, list(rec.channels), name, variants)
        x = rec.signal.astype(np.float32) if lose_lead is None else lose_first_lead(rec.signal, fs, lose_lead)
        run.run(x, fs)
        n, hours = len(rec.signal), len(rec.signal) / fs / 3600
        row = {"group": group, "record": name, "truth": truth, "hours": hours}
        for key, pub in run.out.items():
            high = [a for a in pub.published.values() if a["kind"] in HIGH_ARRHYTHMIA]
            row[key] = {"high": len(high), "by_kind": {k: sum(a["kind"] == k for a in high) for k in HIGH_ARRHYTHMIA},
                        "af": sum(a["kind"] == "af" for a in pub.published.values()),
                        "suppressed": len([a for a in pub.suppressed.values() if a["kind"] in HIGH_ARRHYTHMIA]),
                        "reasons": _reasons(pub)}
            if truth is not None:
                lo, hi = int(ALARM_WINDOW_S[0] * fs), int(ALARM_WINDOW_S[1] * fs)
                row[key]["vt_at_alarm"] = any(a["kind"] in VENTRICULAR and _overlaps(a, lo, hi, n) for a in high)
        per_record.append(row)
        log(f"{name}: off {row['off']['high']} / on {row['on']['high']} high-priority alerts")
    report = _report(per_record, data)
    asystole = {}
    for label, sel in (("NSTDB", lambda r: r["group"] == "nstdb"),
                       ("CinC 2015 true VT alarms", lambda r: r["truth"] is True),
                       ("CinC 2015 false VT alarms", lambda r: r["truth"] is False)):
        rows = [r for r in per_record if sel(r)]
        if rows:
            asystole[label] = [len(rows), sum(r["on"]["by_kind"]["asystole"] > 0 for r in rows)]
    report["tables"].append({"title": "Records with an asystole alert (suppression on)",
                             "columns": ["records", "of", "with asystole"],
                             "rows": [[k, n, a] for k, (n, a) in asystole.items()]})
    report["summary"].update(lose_lead=lose_lead, asystole_records_on={k: a for k, (_, a) in asystole.items()})
    return report


def _reasons(pub: Published) -> dict[str, int]:
    out: dict[str, int] = {}
    for a in list(pub.suppressed.values()) + list(pub.published.values()):
        for s in [a["evidence"].get("suppression")]:
            if s and a["kind"] in HIGH_ARRHYTHMIA:
                out[s["reason"]] = out.get(s["reason"], 0) + 1
    return out


def _report(rows: list[dict], data: str) -> dict:
    tables, summary = [], {"data": data, "thresholds": "fixed beforehand: the checkpoint's fitted detectors and the "
                                                      "defaults of service/constants.py (SUPPRESS_NOISE_P "
                                                      f"{C.SUPPRESS_NOISE_P}, SUPPRESS_WINDOW_S {C.SUPPRESS_WINDOW_S})"}
    # false high-priority alarms: NSTDB (all false) and the CinC 2015 false-alarm records at the alarm
    fa_rows = []
    for r in rows:
        if r["group"] == "nstdb":
            fa_rows.append([r["record"], "whole record", round(r["hours"], 3), r["off"]["high"], r["on"]["high"],
                            _kinds(r["off"]["by_kind"]), _kinds(r["on"]["by_kind"])])
    nst = [r for r in rows if r["group"] == "nstdb"]
    if nst:
        h = sum(r["hours"] for r in nst)
        off, on = sum(r["off"]["high"] for r in nst), sum(r["on"]["high"] for r in nst)
        fa_rows.append(["NSTDB total", "whole records", round(h, 3), off, on, f"{off / h:.1f} / h", f"{on / h:.1f} / h"])
        summary["nstdb"] = {"hours": h, "false_high_off": off, "false_high_on": on, "per_hour_off": off / h,
                            "per_hour_on": on / h, "reduction": _reduction(off, on)}
    c15 = [r for r in rows if r["group"].startswith("cinc2015")]
    for part, sel in (("test half", [r for r in c15 if r["group"] == f"cinc2015-{TEST}"]), ("all", c15)):
        false = [r for r in sel if r["truth"] is False]
        true = [r for r in sel if r["truth"] is True]
        if not false and not true:
            continue
        key = "cinc2015_test" if part == "test half" else "cinc2015_all"
        fa_off = sum(r["off"]["vt_at_alarm"] for r in false)
        fa_on = sum(r["on"]["vt_at_alarm"] for r in false)
        h = sum(r["hours"] for r in false)
        all_off, all_on = sum(r["off"]["high"] for r in false), sum(r["on"]["high"] for r in false)
        det_off = sum(r["off"]["vt_at_alarm"] for r in true)
        det_on = sum(r["on"]["vt_at_alarm"] for r in true)
        fa_rows.append([f"CinC 2015 false VT alarms ({part}, {len(false)})", "vt/vf alert at the alarm",
                        round(h, 3), fa_off, fa_on, "", ""])
        fa_rows.append([f"CinC 2015 false-alarm records ({part}, {len(false)})", "whole records (unverified)",
                        round(h, 3), all_off, all_on, f"{all_off / h:.1f} / h" if h else "",
                        f"{all_on / h:.1f} / h" if h else ""])
        summary[key] = {"false_records": len(false), "true_records": len(true), "hours_false": h,
                        "false_vt_at_alarm_off": fa_off, "false_vt_at_alarm_on": fa_on,
                        "false_high_whole_off": all_off, "false_high_whole_on": all_on,
                        "true_vt_detected_off": det_off, "true_vt_detected_on": det_on,
                        "true_vt_fraction_off": det_off / len(true) if true else None,
                        "true_vt_fraction_on": det_on / len(true) if true else None}
    tables.append({"title": "False high-priority arrhythmia alarms (vt, vf, asystole, bradycardia, tachycardia): "
                            "suppression off vs on",
                   "columns": ["records", "counted", "hours", "off", "on", "off by kind / rate", "on by kind / rate"],
                   "rows": fa_rows})
    det_rows = []
    for key, part in (("cinc2015_test", "test half"), ("cinc2015_all", "all")):
        s = summary.get(key)
        if s and s["true_records"]:
            det_rows.append([part, s["true_records"], s["true_vt_detected_off"], s["true_vt_detected_on"],
                             round(s["true_vt_fraction_off"], 3), round(s["true_vt_fraction_on"], 3)])
    if det_rows:
        tables.append({"title": "True CinC 2015 VT alarms detected (a published vt/vf alert overlapping [290, 300] s)",
                       "columns": ["records", "true alarms", "detected (off)", "detected (on)", "fraction (off)",
                                   "fraction (on)"], "rows": det_rows})
    total_off = sum(r["off"]["high"] for r in nst) + sum(summary.get("cinc2015_all", {}).get(k, 0)
                                                           for k in ("false_high_whole_off",))
    total_on = sum(r["on"]["high"] for r in nst) + sum(summary.get("cinc2015_all", {}).get(k, 0)
                                                         for k in ("false_high_whole_on",))
    hours = sum(r["hours"] for r in nst) + summary.get("cinc2015_all", {}).get("hours_false", 0.0)
    summary["false_high"] = {"off": total_off, "on": total_on, "hours": hours,
                             "per_hour_off": total_off / hours if hours else None,
                             "per_hour_on": total_on / hours if hours else None,
                             "reduction": _reduction(total_off, total_on)}
    reasons: dict[str, int] = {}
    for r in rows:
        for k, v in r["on"]["reasons"].items():
            reasons[k] = reasons.get(k, 0) + v
    summary["suppression_reasons_on"] = reasons
    tables.append({"title": "Per record (published high-priority alerts; vt/vf at the alarm for CinC 2015)",
                   "columns": ["group", "record", "truth", "minutes", "off", "on", "vt at alarm off", "vt at alarm on",
                               "af off", "af on"],
                   "rows": [[r["group"], r["record"], r["truth"], round(r["hours"] * 60, 1), r["off"]["high"],
                             r["on"]["high"], r["off"].get("vt_at_alarm"), r["on"].get("vt_at_alarm"),
                             r["off"]["af"], r["on"]["af"]] for r in rows]})
    return {"tables": tables, "summary": summary, "records": rows}


def _kinds(by_kind: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in by_kind.items() if v) or "none"


def _reduction(off: int, on: int) -> float | None:
    return None if off == 0 else round(1.0 - on / off, 4)


def main(model: str | None = None, json_out: str | None = None, data: str = "datasets", console=None,
         root: Path | None = None, lose_lead: str | None = None) -> dict:
    """Evaluate the served ECG checkpoint's alarms; print the tables, optionally write JSON."""
    from rich.console import Console

    from models.checkpoint import load_model, resolve
    from models.evaluate import _json_default, print_report

    console = console or Console()
    path = resolve(model or "vigil-ecg")
    network = load_model(path)
    if network.config.modality != "ecg":
        raise ValueError(f"Invalid model: {path} is an {network.config.modality} model; the alarm evaluation "
                         "streams ECG records")
    with console.status(f"evaluating the alarms of {path.name} on {data}"):
        report = evaluate_alarms(network, data, root=root, log=lambda s: console.log(s), lose_lead=lose_lead)
    report.update({"modality": "alarms", "model": str(path), "data": data,
                   "command": f"vigil evaluate alarms --data {data}"
                   + (f" --lose-lead {lose_lead}" if lose_lead else "")})
    print_report(report, console)
    if json_out:
        Path(json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(json_out).write_text(json.dumps(report, indent=1, default=_json_default))
    return report
