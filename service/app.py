"""The FastAPI app: built from settings in its lifespan (models, Redis, store, engine)."""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager
from typing import Any

import torch
from fastapi import FastAPI, Request

from service import constants as C
from service.api import rest, stream
from service.auth import warn_mode
from service.bus import Bus
from service.config import Settings
from service.engine import Engine
from service.registry import load_all
from service.routing import Forwarded, Owners
from service.store import Store

log = logging.getLogger(__name__)


def create_app(**overrides: Any) -> FastAPI:
    """The app; ``overrides`` take precedence over ``VIGIL_*`` settings (the CLI passes host, port, data_dir)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        settings = Settings(**overrides)
        if settings.torch_threads:
            torch.set_num_threads(settings.torch_threads)  # more threads than free cores thrash
        models = await asyncio.to_thread(load_all, settings.ecg_model, settings.eeg_model)
        bus = await Bus.connect(settings.redis_url, settings.data_dir)
        store = await Store.connect(settings.database_url, settings.data_dir, settings.database_schema)
        owners = Owners(bus.redis, settings.replica_id, settings.advertised) if settings.advertise_url else None
        engine = Engine(settings, models, bus, store, owners)
        await engine.start()
        app.state.settings, app.state.bus, app.state.store, app.state.engine = settings, bus, store, engine
        app.state.owners = owners
        warn_mode(settings.tokens, settings.host)
        log.info("vigil ready on %s:%d as %s (models: %s)", settings.host, settings.port, settings.replica_id,
                 ", ".join(f"{m.name} {m.version}" for m in models.values()))
        try:
            yield
        finally:
            await engine.stop()
            if owners is not None:
                await owners.close()
            await store.close()
            await bus.close()

    app = FastAPI(title="Vigil", version="1", lifespan=lifespan,
                  description="Streaming ECG/EEG inference with clinical alerts (DESIGN §2-§4).")
    app.include_router(stream.router)
    app.include_router(rest.router)
    app.add_middleware(ReplicaHeader)
    app.add_exception_handler(Forwarded, _forwarded)
    return app


async def _forwarded(request: Request, exc: Forwarded):
    return exc.response


class ReplicaHeader:
    """ASGI middleware: every HTTP response and WebSocket handshake names the replica (worker) that
    answered (X-Vigil-Replica)."""

    START = {"http": "http.response.start", "websocket": "websocket.accept"}

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        start = self.START.get(scope["type"])
        settings = getattr(scope["app"].state, "settings", None) if start else None
        if settings is None:
            return await self.app(scope, receive, send)
        header = (C.REPLICA_HEADER.lower().encode(), settings.replica_id.encode())

        async def send_named(message):
            if message["type"] == start:
                message = {**message, "headers": [*message.get("headers", []), header]}
            await send(message)

        await self.app(scope, receive, send_named)
