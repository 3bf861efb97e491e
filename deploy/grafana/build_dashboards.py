"""Generate Vigil's Grafana dashboards (plain dicts -> JSON) into deploy/grafana/dashboards/.

    python deploy/grafana/build_dashboards.py          # rewrite the JSON files
    python deploy/grafana/build_dashboards.py --check  # exit 1 when the checked-in JSON is stale

operations.json reads Prometheus (metrics of service/metrics.py only); clinical.json reads the
PostgreSQL history (tables of service/store.py: sessions, alerts; an alert transition's fields are
in alerts.body, JSON text). Datasource uids match deploy/grafana/provisioning/datasources/.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent / "dashboards"
PROM = {"type": "prometheus", "uid": "vigil-prometheus"}
PG = {"type": "grafana-postgresql-datasource", "uid": "vigil-postgres"}
SEL = 'job="vigil", instance=~"$instance"'  # every operations query is scoped by the instance variable


def q(quantile: float, metric: str, by: str = "") -> str:
    """PromQL: a quantile of a histogram over the rate window, optionally kept per label."""
    keep = f"le, {by}" if by else "le"
    return f"histogram_quantile({quantile}, sum by ({keep}) (rate({metric}_bucket{{{SEL}}}[$__rate_interval])))"


def timeseries(title: str, description: str, unit: str, targets: list[tuple[str, str]], *,
               stack: bool = False, decimals: int | None = None) -> dict:
    defaults: dict = {"unit": unit, "min": 0,
                      "custom": {"drawStyle": "line", "lineWidth": 1, "fillOpacity": 20 if stack else 0,
                                 "showPoints": "never", "stacking": {"mode": "normal" if stack else "none"}}}
    if decimals is not None:
        defaults["decimals"] = decimals
    return {"type": "timeseries", "title": title, "description": description, "datasource": PROM,
            "fieldConfig": {"defaults": defaults, "overrides": []},
            "options": {"legend": {"displayMode": "table", "placement": "bottom", "calcs": ["lastNotNull", "max"]},
                        "tooltip": {"mode": "multi", "sort": "desc"}},
            "targets": [{"refId": chr(65 + i), "datasource": PROM, "expr": expr, "legendFormat": legend,
                         "range": True} for i, (expr, legend) in enumerate(targets)]}


def sql_table(title: str, description: str, unit: str, sql: str) -> dict:
    return {"type": "table", "title": title, "description": description, "datasource": PG,
            "fieldConfig": {"defaults": {"unit": unit, "custom": {"align": "auto"}}, "overrides": []},
            "options": {"showHeader": True, "cellHeight": "sm"},
            "targets": [{"refId": "A", "datasource": PG, "format": "table", "rawQuery": True,
                         "editorMode": "code", "rawSql": " ".join(sql.split())}]}


def layout(panels: list[dict], width: int = 12, height: int = 8) -> list[dict]:
    per_row = 24 // width
    for i, p in enumerate(panels):
        p["id"] = i + 1
        p.setdefault("gridPos", {"h": height, "w": width, "x": (i % per_row) * width, "y": (i // per_row) * height})
    return panels


def dashboard(uid: str, title: str, description: str, panels: list[dict], templating: list[dict],
              refresh: str) -> dict:
    return {"uid": uid, "title": title, "description": description, "tags": ["vigil"], "timezone": "utc",
            "editable": True, "graphTooltip": 1, "schemaVersion": 39, "version": 1, "refresh": refresh,
            "time": {"from": "now-1h", "to": "now"}, "timepicker": {},
            "annotations": {"list": []}, "links": [], "templating": {"list": templating}, "panels": panels}


# ---------------------------------------------------------------------------------- operations

def operations() -> dict:
    instance = {"name": "instance", "label": "replica", "type": "query", "datasource": PROM,
                "query": {"query": 'label_values(up{job="vigil"}, instance)', "refId": "instance"},
                "includeAll": True, "multi": True, "allValue": ".*", "refresh": 2,
                "current": {"text": "All", "value": "$__all"}, "sort": 1}
    panels = [
        timeseries("Replicas up", "1 when Prometheus scraped the replica's /metrics, 0 when the scrape failed "
                   "(alert VigilTargetDown).", "none", [(f'up{{{SEL}}}', "{{instance}}")], decimals=0),
        timeseries("Sessions by status", "Sessions held by the replicas (vigil_sessions): streaming = a monitor "
                   "is connected; detached = waiting to be resumed (state in Redis); ended = finished, "
                   "not yet freed.", "none", [(f"sum by (status) (vigil_sessions{{{SEL}}})", "{{status}}")],
                   stack=True, decimals=0),
        timeseries("Frames received per second", "WebSocket sample frames received, by format (binary or JSON "
                   "text), summed over the selected replicas.", "cps",
                   [(f"sum by (format) (rate(vigil_frames_total{{{SEL}}}[$__rate_interval]))", "{{format}}")]),
        timeseries("Samples received per second", "Sample rows (one per time point, all channels) received, by "
                   "modality.", "cps",
                   [(f"sum by (modality) (rate(vigil_samples_total{{{SEL}}}[$__rate_interval]))", "{{modality}}")]),
        timeseries("Prediction steps per second", "Model output steps computed, by modality (ECG 10 Hz and EEG "
                   "8 Hz per session).", "cps",
                   [(f"sum by (modality) (rate(vigil_predictions_total{{{SEL}}}[$__rate_interval]))",
                     "{{modality}}")]),
        timeseries("Inference batch size", "Sessions stepped per batched model call (vigil_inference_batch_size): "
                   "p50, p99 and mean.", "none",
                   [(q(0.5, "vigil_inference_batch_size"), "p50"), (q(0.99, "vigil_inference_batch_size"), "p99"),
                    (f"sum(rate(vigil_inference_batch_size_sum{{{SEL}}}[$__rate_interval])) / "
                     f"sum(rate(vigil_inference_batch_size_count{{{SEL}}}[$__rate_interval]))", "mean")]),
        timeseries("Inference latency", "Duration of one batched model call (vigil_inference_seconds), p50 and "
                   "p99 over all replicas.", "s",
                   [(q(0.5, "vigil_inference_seconds"), "p50"), (q(0.99, "vigil_inference_seconds"), "p99")]),
        timeseries("Engine tick latency", "Duration of one engine tick: preprocessing, model and alarms "
                   "(vigil_tick_seconds), p50 and p99.", "s",
                   [(q(0.5, "vigil_tick_seconds"), "p50"), (q(0.99, "vigil_tick_seconds"), "p99")]),
        timeseries("Frame → prediction latency", "From receiving a frame to sending the predictions it completed "
                   "(vigil_frame_to_prediction_seconds), p50 and p99 per replica; alert "
                   "VigilFrameToPredictionLatencyHigh fires when p99 > 0.5 s.", "s",
                   [(q(0.5, "vigil_frame_to_prediction_seconds", "instance"), "p50 {{instance}}"),
                    (q(0.99, "vigil_frame_to_prediction_seconds", "instance"), "p99 {{instance}}")]),
        timeseries("Alerts per minute by kind and priority", "Alert transitions published to Redis "
                   "(raise, acknowledge, clear), per minute, by kind and priority.", "cpm",
                   [(f"sum by (kind, priority) (rate(vigil_alerts_total{{{SEL}}}[$__rate_interval])) * 60",
                     "{{kind}} ({{priority}})")], stack=True),
        timeseries("Protocol errors per minute by code", "Errors sent to clients (vigil_errors_total), per "
                   "minute, by code: shutting_down and taken_over are expected during deploys and "
                   "reconnects; overloaded means a replica is dropping clients.", "cpm",
                   [(f"sum by (code) (rate(vigil_errors_total{{{SEL}}}[$__rate_interval])) * 60", "{{code}}")],
                   stack=True),
        timeseries("Snapshot write latency (Redis)", "Writing one tick's session snapshots to Redis "
                   "(vigil_snapshot_seconds), p50 and p99: the Redis round trip every ack waits for.", "s",
                   [(q(0.5, "vigil_snapshot_seconds"), "p50"), (q(0.99, "vigil_snapshot_seconds"), "p99")]),
        timeseries("Redis publish latency", "Publishing one tick's alert transitions to Redis: XADD to the "
                   "vigil:alerts stream and PUBLISH on vigil:alerts:live in one round trip "
                   "(vigil_bus_publish_seconds), p50 and p99; REST acknowledgements included.", "s",
                   [(q(0.5, "vigil_bus_publish_seconds"), "p50"), (q(0.99, "vigil_bus_publish_seconds"), "p99")]),
        timeseries("Redis publish failures per minute", "Alert transitions Redis did not take "
                   "(vigil_bus_publish_errors_total), per minute, by operation: xadd = the at-least-once stream, "
                   "publish = the live channel; alert VigilRedisPublishFailing fires on any.", "cpm",
                   [(f"sum by (operation) (rate(vigil_bus_publish_errors_total{{{SEL}}}[$__rate_interval])) * 60",
                     "{{operation}}")], stack=True),
        timeseries("Pending samples", "Received samples not yet processed, per replica "
                   "(vigil_pending_samples): a backlog that keeps growing means the replica is behind.",
                   "short", [(f"sum by (instance) (vigil_pending_samples{{{SEL}}})", "{{instance}}")]),
    ]
    return dashboard("vigil-operations", "Vigil / Operations",
                     "Throughput, latency, alerts and errors of the vigil serve replicas (Prometheus).",
                     layout(panels), [instance], "10s")


# ---------------------------------------------------------------------------------- clinical

# The latest transition of each alert (as GET /v1/sessions/{id}/alerts returns it), fields from the
# JSON body. Times are ISO 8601 UTC strings in the body (onset_time, end_time).
LATEST = """WITH latest AS (
    SELECT a.alert_id, a.session_id, a.seq, a.body::jsonb AS b FROM alerts a
    WHERE a.seq = (SELECT MAX(x.seq) FROM alerts x WHERE x.alert_id = a.alert_id))"""


def clinical() -> dict:
    session = {"name": "session", "label": "session", "type": "query", "datasource": PG,
               "query": "SELECT session_id FROM sessions ORDER BY started_at DESC LIMIT 500",
               "refresh": 2, "includeAll": False, "multi": False}
    panels = [
        sql_table("Active alarms by session", "Alarms whose latest transition is active (not suppressed), one row "
                  "per alarm, highest priority first; 'active for' counts from the condition's onset.", "s",
                  f"""{LATEST}
                  SELECT l.session_id, s.patient_id, l.b->>'kind' AS kind, l.b->>'priority' AS priority,
                         l.b->>'category' AS category, (l.b->>'acknowledged')::boolean AS acknowledged,
                         (l.b->>'onset_time')::timestamptz AS onset,
                         EXTRACT(EPOCH FROM now() - (l.b->>'onset_time')::timestamptz) AS "active for",
                         l.alert_id
                  FROM latest l JOIN sessions s ON s.session_id = l.session_id
                  WHERE l.b->>'state' = 'active'
                    AND NOT COALESCE((l.b->'evidence'->>'suppressed')::boolean, false)
                  ORDER BY CASE l.b->>'priority' WHEN 'high' THEN 0 WHEN 'medium' THEN 1 ELSE 2 END,
                           onset, l.alert_id"""),
        sql_table("Alarm timeline: $session", "Every alarm of the selected session in onset order: onset and end of "
                  "the condition (end empty while it lasts), duration, state and acknowledgement.", "s",
                  f"""{LATEST}
                  SELECT (l.b->>'onset_time')::timestamptz AS onset, (l.b->>'end_time')::timestamptz AS "end",
                         EXTRACT(EPOCH FROM COALESCE((l.b->>'end_time')::timestamptz, now())
                                            - (l.b->>'onset_time')::timestamptz) AS duration,
                         l.b->>'kind' AS kind, l.b->>'priority' AS priority, l.b->>'state' AS state,
                         (l.b->>'acknowledged')::boolean AS acknowledged, l.b->>'supersedes' AS supersedes,
                         l.alert_id
                  FROM latest l WHERE l.session_id = '$session'
                  ORDER BY (l.b->>'onset_sample')::bigint, l.alert_id"""),
        sql_table("Time to acknowledgement", "Per alarm, newest first: when it was raised and acknowledged "
                  "(wall clock of the replica, alert fields raised_at and acknowledged_at), by whom, the time to "
                  "acknowledgement in seconds, and for alarms still active and unacknowledged how long they have "
                  "waited. Alarms raised before raised_at was recorded fall back to the signal time of the raise.",
                  "s",
                  f"""{LATEST},
                  stamps AS (
                    SELECT x.alert_id, MIN(x.body::jsonb->>'raised_at') AS raised_at,
                           MIN(x.body::jsonb->>'acknowledged_at') AS acknowledged_at,
                           MIN(x.body::jsonb->>'acknowledged_by') AS acknowledged_by
                    FROM alerts x GROUP BY x.alert_id),
                  acks AS (
                    SELECT l.*, st.acknowledged_by, st.acknowledged_at::timestamptz AS acked,
                           COALESCE(st.raised_at::timestamptz,
                                    (l.b->>'onset_time')::timestamptz + make_interval(secs =>
                                      ((l.b->>'raised_sample')::bigint - (l.b->>'onset_sample')::bigint)
                                      / s.sample_rate)) AS raised
                    FROM latest l JOIN stamps st ON st.alert_id = l.alert_id
                    JOIN sessions s ON s.session_id = l.session_id
                    WHERE NOT COALESCE((l.b->'evidence'->>'suppressed')::boolean, false))
                  SELECT session_id, b->>'kind' AS kind, b->>'priority' AS priority, raised,
                         acked AS "acknowledged at", acknowledged_by AS "acknowledged by",
                         EXTRACT(EPOCH FROM acked - raised) AS "time to acknowledgement",
                         CASE WHEN b->>'state' = 'active' AND NOT (b->>'acknowledged')::boolean
                              THEN EXTRACT(EPOCH FROM now() - raised) END AS "awaiting acknowledgement",
                         alert_id
                  FROM acks ORDER BY raised DESC, alert_id LIMIT 500"""),
        sql_table("Suppressed conditions by kind", "Conditions the alarm engine detected but suppressed (kept in "
                  "history, not published), against all conditions of that kind, with the latest suppressed "
                  "onset.", "short",
                  f"""{LATEST}
                  SELECT l.b->>'kind' AS kind,
                         COUNT(*) FILTER (WHERE COALESCE((l.b->'evidence'->>'suppressed')::boolean, false))
                           AS suppressed,
                         COUNT(*) AS conditions,
                         MAX((l.b->>'onset_time')::timestamptz)
                           FILTER (WHERE COALESCE((l.b->'evidence'->>'suppressed')::boolean, false))
                           AS "latest suppressed onset"
                  FROM latest l GROUP BY l.b->>'kind' ORDER BY suppressed DESC, kind"""),
    ]
    panels[0]["gridPos"] = {"h": 9, "w": 24, "x": 0, "y": 0}
    panels[1]["gridPos"] = {"h": 9, "w": 24, "x": 0, "y": 9}
    panels[2]["gridPos"] = {"h": 9, "w": 16, "x": 0, "y": 18}
    panels[3]["gridPos"] = {"h": 9, "w": 8, "x": 16, "y": 18}
    return dashboard("vigil-clinical", "Vigil / Clinical alarms",
                     "Alarms from the PostgreSQL session history: active alarms, per-session timeline, "
                     "time to acknowledgement and suppression.", layout(panels), [session], "30s")


DASHBOARDS = {"operations.json": operations, "clinical.json": clinical}


def render() -> dict[str, str]:
    return {name: json.dumps(build(), indent=2, ensure_ascii=False) + "\n" for name, build in DASHBOARDS.items()}


def main(argv: list[str]) -> int:
    stale = []
    for name, text in render().items():
        path = OUT / name
        if "--check" in argv:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    if stale:
        print(f"stale dashboards (run deploy/grafana/build_dashboards.py): {', '.join(stale)}")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
