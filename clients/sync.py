"""A synchronous wrapper around :class:`clients.sdk.Client` for simple scripts.

::

    from clients.sync import SyncClient

    with SyncClient("ws://127.0.0.1:8000/v1/stream", session_id="bed-3-20261129T0800", modality="ecg",
                    sample_rate=360.0, channels=["MLII", "V1"]) as c:
        for chunk in chunks:            # (t, c) numpy arrays
            c.send(chunk)
            for m in c.poll():          # whatever arrived meanwhile
                print(m)
    # leaving the block ends the session; c.received holds everything that arrived

The async client runs on its own event loop in a background thread; every method blocks until
that loop has done the work, so reconnection, resending and deduplication behave exactly as in the
async SDK.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from typing import Any, Iterator

import numpy as np

from clients.sdk import Client, Message, Ready


class SyncClient:
    """Blocking twin of :class:`clients.sdk.Client` (same arguments, except ``on_message``)."""

    def __init__(self, url: str, **kwargs: Any):
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="vigil-sync-client", daemon=True)
        self._thread.start()
        self._inbox: queue.Queue[Message] = queue.Queue()
        self.received: list[Message] = []

        async def make() -> Client:
            return Client(url, on_message=self._inbox.put, **kwargs)
        self.client: Client = self._call(make())

    def _call(self, coro, timeout: float | None = None):
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def __enter__(self) -> "SyncClient":
        self.connect()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None and not self.client.finished:
                self.end()
        finally:
            self.close()

    def connect(self) -> Ready:
        """Connect and say hello; returns the server's ``ready``."""
        return self._call(self.client.connect())

    def send(self, x: np.ndarray, *, leads_off: bool = False) -> None:
        """Send ``(t, c)`` samples; blocks while the unacknowledged buffer is full."""
        self._call(self.client.send(x, leads_off=leads_off))

    def end(self, timeout: float = 120.0) -> list[Message]:
        """End the session, wait for the server's close; returns every message received."""
        self._call(self.client.end(timeout))
        self.poll()
        return self.received

    def poll(self, timeout: float = 0.0) -> Iterator[Message]:
        """Messages that arrived since the last call (waits up to ``timeout`` s for the first)."""
        out = []
        try:
            out.append(self._inbox.get(timeout=timeout) if timeout else self._inbox.get_nowait())
            while True:
                out.append(self._inbox.get_nowait())
        except queue.Empty:
            pass
        self.received += out
        return iter(out)

    def close(self) -> None:
        """Drop the connection (the session stays resumable) and stop the background loop."""
        if self._loop.is_running():
            self._call(self.client.close())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
        self.poll()

    @property
    def stats(self):
        return self.client.stats
