"""Prometheus metrics, every one named ``vigil_*`` (the Grafana dashboards query these).

With ``vigil serve --workers N`` the supervisor sets ``PROMETHEUS_MULTIPROC_DIR`` before it starts
the workers, so each one keeps its values in files there and a scrape of any worker reports the
sum over all of them (prometheus_client's multiprocess mode; gauges sum over live workers).
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess

from service import constants as C

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

_LATENCY = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

SESSIONS = Gauge("vigil_sessions", "Sessions held by this replica (all its workers), by status", ["status"],
                 multiprocess_mode="livesum")
FRAMES = Counter("vigil_frames_total", "Sample frames received", ["format"])
SAMPLES = Counter("vigil_samples_total", "Samples received (per channel row)", ["modality"])
PREDICTIONS = Counter("vigil_predictions_total", "Prediction steps computed", ["modality"])
BATCH_SIZE = Histogram("vigil_inference_batch_size", "Sessions per batched model call",
                       buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512))
INFERENCE = Histogram("vigil_inference_seconds", "Duration of one batched model call", buckets=_LATENCY)
TICK = Histogram("vigil_tick_seconds", "Duration of one engine tick (preprocess + model + alarms)",
                 buckets=_LATENCY)
FRAME_TO_PREDICTION = Histogram("vigil_frame_to_prediction_seconds",
                                "From receiving a frame to sending the predictions it completed",
                                buckets=_LATENCY)
ALERTS = Counter("vigil_alerts_total", "Alert transitions published", ["kind", "priority"])
ERRORS = Counter("vigil_errors_total", "Protocol errors sent to clients", ["code"])
SNAPSHOT = Histogram("vigil_snapshot_seconds", "Writing a tick's session snapshots to Redis", buckets=_LATENCY)
PENDING = Gauge("vigil_pending_samples", "Received samples not yet processed", multiprocess_mode="livesum")
BUS_PUBLISH = Histogram("vigil_bus_publish_seconds",
                        "Publishing a batch of alert transitions to Redis (XADD to the stream + PUBLISH live)",
                        buckets=_LATENCY)
BUS_PUBLISH_ERRORS = Counter("vigil_bus_publish_errors_total",
                             "Alert transitions Redis failed to take, by operation (xadd: the stream, publish: "
                             "the live channel)", ["operation"])
for _op in ("xadd", "publish"):  # export both series at 0, so a rule can tell "no failures" from "no data"
    BUS_PUBLISH_ERRORS.labels(_op)
for _code in C.CLOSE_CODES:  # every error code at 0 (in multiprocess mode a family without samples is not exported)
    ERRORS.labels(_code)


def exposition() -> bytes:
    """The text exposition of this process's metrics, or of every worker's in multiprocess mode."""
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)
    return generate_latest()
