"""A TCP proxy for tests that cuts connections for real: both sockets are aborted (RST), mid-stream."""

from __future__ import annotations

import asyncio
import contextlib


class CuttingProxy:
    """Listens on 127.0.0.1:``port``, forwards to 127.0.0.1:``upstream``; :meth:`cut` drops every
    live connection; ``upstream`` may be changed (a restarted server on another port)."""

    def __init__(self, upstream: int):
        self.upstream = upstream
        self.port = 0
        self.connections = 0
        self.cuts = 0
        self._pairs: list[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = []
        self._server: asyncio.base_events.Server | None = None

    async def start(self) -> "CuttingProxy":
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/stream"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream)
        except OSError:  # upstream down (server restarting): refuse like a dead host would
            writer.transport.abort()
            return
        self.connections += 1
        pair = (writer, up_writer)
        self._pairs.append(pair)

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(Exception):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.transport.abort()

        await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))
        with contextlib.suppress(ValueError):
            self._pairs.remove(pair)

    @property
    def live(self) -> int:
        """Connections being forwarded now."""
        return len(self._pairs)

    def cut(self) -> int:
        """Abort every live connection on both sides; returns how many were cut."""
        pairs, self._pairs = self._pairs, []
        for a, b in pairs:
            a.transport.abort()
            b.transport.abort()
        self.cuts += len(pairs)
        return len(pairs)

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)
