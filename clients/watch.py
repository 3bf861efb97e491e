"""`vigil watch`: read alerts from the Redis stream with a consumer group (DESIGN §3), at least once.

The watcher joins consumer group ``group`` on ``vigil:alerts`` (created at the stream's end the
first time, so alerts published while the watcher is down are delivered when it comes back). On
start it first re-reads its own pending entries (delivered before a crash, never acknowledged),
then claims entries other consumers left pending longer than ``claim_idle_ms`` (XAUTOCLAIM, again
every few seconds), then reads new ones. Every entry is handled (shown when it passes the filters)
and only then acknowledged with XACK: an alert is shown once, or again after a crash before its
XACK, never lost. Entries the filters reject are acknowledged too, so watchers with different
filters need different groups.
"""

from __future__ import annotations

import asyncio
import fnmatch
import socket
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

import orjson
from rich.console import Console

from service import constants as C

PRIORITY_RANK = {C.LOW: 0, C.MEDIUM: 1, C.HIGH: 2}
CLAIM_EVERY_S = 5.0


@dataclass(frozen=True)
class AlertFilter:
    """Which alerts to show: session id globs, kinds, lowest priority (None: no restriction)."""

    sessions: tuple[str, ...] = ()
    kinds: tuple[str, ...] = ()
    min_priority: str | None = None

    def __call__(self, a: dict) -> bool:
        if self.sessions and not any(fnmatch.fnmatchcase(a.get("session_id", ""), g) for g in self.sessions):
            return False
        if self.kinds and a.get("kind") not in self.kinds:
            return False
        if self.min_priority and PRIORITY_RANK.get(a.get("priority"), -1) < PRIORITY_RANK[self.min_priority]:
            return False
        return True


def default_consumer() -> str:
    """Stable across restarts on one host, so a restarted watcher re-reads its own pending entries."""
    return f"watch-{socket.gethostname()}"


@dataclass
class Watcher:
    """One consumer of the alerts stream; :meth:`run` handles entries until told to stop."""

    redis_url: str
    group: str = "vigil-watch"
    consumer: str = field(default_factory=default_consumer)
    accept: AlertFilter = field(default_factory=AlertFilter)
    claim_idle_ms: int = 60_000
    block_ms: int = 1000
    start_id: str = "$"  # where a new group starts: "$" (new alerts only) or "0" (the whole stream)
    shown: int = 0
    acked: int = 0

    async def run(self, handle: Callable[[dict], Awaitable[Any] | Any], *, count: int | None = None,
                  idle_timeout: float | None = None) -> int:
        """Handle entries; stop after ``count`` shown alerts or ``idle_timeout`` s without any entry.

        Returns the number of alerts shown.
        """
        import redis.asyncio as aioredis
        from redis.exceptions import ResponseError

        r = aioredis.from_url(self.redis_url)
        try:
            try:
                await r.xgroup_create(C.ALERTS_STREAM, self.group, id=self.start_id, mkstream=True)
            except ResponseError as e:
                if "BUSYGROUP" not in str(e):
                    raise
            last_entry, last_claim = time.monotonic(), -CLAIM_EVERY_S
            backlog = True  # our own pending entries first (read with id 0)
            while count is None or self.shown < count:
                entries: list[tuple[bytes, dict | None]] = []
                if backlog:
                    res = await r.xreadgroup(self.group, self.consumer, {C.ALERTS_STREAM: "0"}, count=100)
                    entries = res[0][1] if res else []
                    backlog = bool(entries)
                elif time.monotonic() - last_claim >= CLAIM_EVERY_S:
                    last_claim = time.monotonic()
                    entries = await self._claim(r)
                if not entries and not backlog:
                    block = self.block_ms if idle_timeout is None else max(1, min(self.block_ms, int(
                        1000 * (idle_timeout - (time.monotonic() - last_entry)))))
                    res = await r.xreadgroup(self.group, self.consumer, {C.ALERTS_STREAM: ">"}, count=100,
                                             block=block)
                    entries = res[0][1] if res else []
                if entries:
                    last_entry = time.monotonic()
                elif idle_timeout is not None and time.monotonic() - last_entry >= idle_timeout:
                    break
                for entry_id, fields in entries:
                    if count is not None and self.shown >= count:
                        break
                    await self._handle(r, entry_id, fields, handle)
        finally:
            await r.aclose()
        return self.shown

    async def _claim(self, r) -> list:
        """Entries idle for ``claim_idle_ms`` in other consumers' pending lists, now ours (XAUTOCLAIM)."""
        out, start = [], "0-0"
        while True:
            res = await r.xautoclaim(C.ALERTS_STREAM, self.group, self.consumer, self.claim_idle_ms,
                                     start_id=start, count=100)
            start, claimed = res[0], res[1]
            out += claimed
            if start in (b"0-0", "0-0") or not claimed:
                return out

    async def _handle(self, r, entry_id, fields, handle) -> None:
        raw = (fields or {}).get(C.ALERT_FIELD.encode()) or (fields or {}).get(C.ALERT_FIELD)
        if raw is not None:  # None: the entry was trimmed from the stream while pending
            alert = orjson.loads(raw)
            if self.accept(alert):
                result = handle(alert)
                if asyncio.iscoroutine(result):
                    await result
                self.shown += 1
        await r.xack(C.ALERTS_STREAM, self.group, entry_id)
        self.acked += 1


def table_printer(console: Console) -> Callable[[dict], None]:
    """Print alerts as aligned table rows (a header first)."""
    from clients.replay import PRIORITY_STYLE

    header = False

    def show(a: dict) -> None:
        nonlocal header
        if not header:
            console.print(f"[bold]{'raised':20} {'priority':8} {'session':34} {'kind':18} {'state':8} "
                          f"{'onset':20} {'conf':>5}  alert_id[/]")
            header = True
        style = PRIORITY_STYLE.get(a.get("priority"), "")
        ack = "+ack" if a.get("acknowledged") else ""
        console.print(f"{(a.get('raised_at') or '')[:19]:20} [{style}]{a.get('priority', ''):8}[/] "
                      f"{a.get('session_id', ''):34} {a.get('kind', ''):18} {a.get('state', '') + ack:8} "
                      f"{(a.get('onset_time') or str(a.get('onset_sample')))[:20]:20} "
                      f"{a.get('confidence') or 0:5.2f}  {a.get('alert_id')}", highlight=False)
    return show


def json_printer(a: dict) -> None:
    """Print one alert as a JSON line."""
    sys.stdout.write(orjson.dumps(a).decode() + "\n")
    sys.stdout.flush()
