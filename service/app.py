"""The FastAPI app: built from settings in its lifespan (models, Redis, store, engine)."""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager
from typing import Any

import torch
from fastapi import FastAPI

from service.api import rest, stream
from service.auth import warn_mode
from service.bus import Bus
from service.config import Settings
from service.engine import Engine
from service.registry import load_all
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
        engine = Engine(settings, models, bus, store)
        await engine.start()
        app.state.settings, app.state.bus, app.state.store, app.state.engine = settings, bus, store, engine
        warn_mode(settings.tokens, settings.host)
        log.info("vigil ready on %s:%d (models: %s)", settings.host, settings.port,
                 ", ".join(f"{m.name} {m.version}" for m in models.values()))
        try:
            yield
        finally:
            await engine.stop()
            await store.close()
            await bus.close()

    app = FastAPI(title="Vigil", version="1", lifespan=lifespan,
                  description="Streaming ECG/EEG inference with clinical alerts (DESIGN §2-§4).")
    app.include_router(stream.router)
    app.include_router(rest.router)
    return app
