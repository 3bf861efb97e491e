"""The history store: sessions, alert transitions, predictions, alert strips and the alarm audit.

Alert strips are written in parts as their samples arrive (``strips`` holds one row per alert,
``strip_parts`` the raw samples), so a strip survives a crash and equals what was streamed; the
audit (``alarm_audit``) records who acknowledged, paused, resumed or changed a session's alarms,
when, and how long.

Two backends run the same SQL (``$n`` placeholders; SQLite reads them as ``?n``): SQLite through
aiosqlite under the data dir (default) and PostgreSQL through asyncpg
(``VIGIL_DATABASE_URL=postgresql://…``, optionally in ``VIGIL_DATABASE_SCHEMA``).

Several processes may share one SQLite file (``vigil serve --workers N``): WAL lets readers run
beside the one writer, every write transaction takes the write lock up front (``BEGIN IMMEDIATE``)
and waits up to ``SQLITE_BUSY_TIMEOUT_MS`` for it instead of failing with "database is locked".
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any, Sequence

import orjson

Row = Sequence[Any]
SQLITE_BUSY_TIMEOUT_MS = 30_000  # how long a writer waits for another process's transaction

_DDL = (
    """CREATE TABLE IF NOT EXISTS sessions (
        session_id TEXT PRIMARY KEY, patient_id TEXT, modality TEXT NOT NULL,
        sample_rate DOUBLE PRECISION NOT NULL, channels TEXT NOT NULL, units TEXT NOT NULL,
        started_at TEXT NOT NULL, ended_at TEXT, status TEXT NOT NULL,
        samples_received BIGINT NOT NULL DEFAULT 0)""",
    """CREATE TABLE IF NOT EXISTS alerts (
        alert_id TEXT NOT NULL, seq INTEGER NOT NULL, session_id TEXT NOT NULL,
        onset_sample BIGINT NOT NULL, body TEXT NOT NULL, PRIMARY KEY (alert_id, seq))""",
    "CREATE INDEX IF NOT EXISTS alerts_by_session ON alerts (session_id)",
    """CREATE TABLE IF NOT EXISTS predictions (
        session_id TEXT NOT NULL, sample BIGINT NOT NULL, probs TEXT NOT NULL, numerics TEXT,
        PRIMARY KEY (session_id, sample))""",
    """CREATE TABLE IF NOT EXISTS strips (
        alert_id TEXT PRIMARY KEY, session_id TEXT NOT NULL, first_sample BIGINT NOT NULL,
        sample_rate DOUBLE PRECISION NOT NULL, channels TEXT NOT NULL, units TEXT NOT NULL,
        n_channels INTEGER NOT NULL, data {blob} NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS strip_parts (
        alert_id TEXT NOT NULL, first_sample BIGINT NOT NULL, n_samples INTEGER NOT NULL,
        data {blob} NOT NULL, PRIMARY KEY (alert_id, first_sample))""",
    """CREATE TABLE IF NOT EXISTS alarm_audit (
        session_id TEXT NOT NULL, alert_id TEXT, action TEXT NOT NULL, actor TEXT, at TEXT NOT NULL,
        body TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS alarm_audit_by_session ON alarm_audit (session_id)",
)
_SESSION_COLS = "session_id, patient_id, modality, sample_rate, channels, units, started_at, ended_at, status, samples_received"
_UPSERT_SESSION = f"""INSERT INTO sessions ({_SESSION_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
    ON CONFLICT (session_id) DO UPDATE SET status = excluded.status, ended_at = excluded.ended_at,
    samples_received = excluded.samples_received"""
_UPDATE_SESSION = "UPDATE sessions SET status = $2, samples_received = $3, ended_at = $4 WHERE session_id = $1"
_INSERT_ALERT = """INSERT INTO alerts (alert_id, seq, session_id, onset_sample, body) VALUES ($1, $2, $3, $4, $5)
    ON CONFLICT (alert_id, seq) DO UPDATE SET body = excluded.body"""
_INSERT_PREDICTION = """INSERT INTO predictions (session_id, sample, probs, numerics) VALUES ($1, $2, $3, $4)
    ON CONFLICT (session_id, sample) DO NOTHING"""
_INSERT_STRIP = """INSERT INTO strips (alert_id, session_id, first_sample, sample_rate, channels, units, n_channels, data)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (alert_id) DO NOTHING"""
_INSERT_STRIP_PART = """INSERT INTO strip_parts (alert_id, first_sample, n_samples, data) VALUES ($1, $2, $3, $4)
    ON CONFLICT (alert_id, first_sample) DO UPDATE SET n_samples = excluded.n_samples, data = excluded.data
    WHERE excluded.n_samples > strip_parts.n_samples"""
_INSERT_AUDIT = "INSERT INTO alarm_audit (session_id, alert_id, action, actor, at, body) VALUES ($1, $2, $3, $4, $5, $6)"
_LATEST = "seq = (SELECT MAX(b.seq) FROM alerts b WHERE b.alert_id = a.alert_id)"


class Store:
    """History queries and writes over one backend."""

    def __init__(self, backend: "_Backend"):
        self._db = backend

    @classmethod
    async def connect(cls, url: str | None, data_dir: Path, schema: str | None = None) -> "Store":
        if url and url.startswith(("postgresql://", "postgres://")):
            backend: _Backend = await _Postgres.open(url, schema)
        else:
            data_dir.mkdir(parents=True, exist_ok=True)
            backend = await _SQLite.open(data_dir / "history.sqlite3")
        await backend.script([s.format(blob=backend.blob) for s in _DDL])
        return cls(backend)

    async def close(self) -> None:
        await self._db.close()

    async def ping(self) -> bool:
        return bool(await self._db.fetch("SELECT 1", ()))

    # ------------------------------------------------------------------ writes

    async def put_session(self, s: dict[str, Any]) -> None:
        await self._db.write([(_UPSERT_SESSION, [(
            s["session_id"], s["patient_id"], s["modality"], s["sample_rate"], orjson.dumps(s["channels"]).decode(),
            s["units"], s["started_at"], s["ended_at"], s["status"], s["samples_received"])])])

    async def write(self, *, predictions: list[Row] = (), alerts: list[dict] = (), strips: list[Row] = (),
                    sessions: list[Row] = ()) -> None:
        """One transaction: predictions (sid, sample, probs json, numerics json), alert transitions
        (suppressed ones included), strip parts (alert_id, sid, window_start, first_sample, rate,
        channels json, units, n_channels, n_samples, float32 bytes), and session updates (sid,
        status, samples_received, ended_at)."""
        batches = [(_INSERT_PREDICTION, list(predictions)),
                   (_INSERT_ALERT, [(a["alert_id"], a["seq"], a["session_id"], a["onset_sample"],
                                     orjson.dumps(a).decode()) for a in alerts]),
                   (_INSERT_STRIP, [(aid, sid, start, rate, ch, units, c, b"")
                                    for aid, sid, start, _, rate, ch, units, c, _, _ in strips]),
                   (_INSERT_STRIP_PART, [(aid, first, n, data) for aid, _, _, first, _, _, _, _, n, data in strips]),
                   (_UPDATE_SESSION, list(sessions))]
        await self._db.write([b for b in batches if b[1]])

    async def audit(self, entries: list[tuple[str, str | None, str, str | None, str, dict]]) -> None:
        """Audit rows (session_id, alert_id or None, action, actor, at ISO time, details)."""
        await self._db.write([(_INSERT_AUDIT, [(sid, aid, action, actor, at, orjson.dumps(body).decode())
                                               for sid, aid, action, actor, at, body in entries])])

    # ------------------------------------------------------------------ reads

    async def sessions(self) -> list[dict]:
        rows = await self._db.fetch(f"SELECT {_SESSION_COLS} FROM sessions ORDER BY started_at, session_id", ())
        return [_session(r) for r in rows]

    async def session(self, session_id: str) -> dict | None:
        rows = await self._db.fetch(f"SELECT {_SESSION_COLS} FROM sessions WHERE session_id = $1", (session_id,))
        return _session(rows[0]) if rows else None

    async def session_alerts(self, session_id: str, suppressed: bool = False) -> list[dict]:
        """The latest transition of each alert of a session; suppressed ones only when asked."""
        rows = await self._db.fetch(f"SELECT body FROM alerts a WHERE session_id = $1 AND {_LATEST} "
                                    "ORDER BY onset_sample, alert_id", (session_id,))
        alerts = [orjson.loads(r[0]) for r in rows]
        return alerts if suppressed else [a for a in alerts if not a["evidence"].get("suppressed")]

    async def alert_transitions(self, alert_id: str) -> list[dict]:
        """Every stored transition of an alert, in order (suppressed ones included)."""
        rows = await self._db.fetch("SELECT body FROM alerts WHERE alert_id = $1 ORDER BY seq", (alert_id,))
        return [orjson.loads(r[0]) for r in rows]

    async def audit_log(self, session_id: str) -> list[dict]:
        """The alarm audit of a session, oldest first."""
        rows = await self._db.fetch("SELECT alert_id, action, actor, at, body FROM alarm_audit WHERE session_id = $1 "
                                    "ORDER BY at", (session_id,))
        return [{"session_id": session_id, "alert_id": aid, "action": action, "by": actor, "at": at,
                 "details": orjson.loads(body)} for aid, action, actor, at, body in rows]

    async def alert(self, alert_id: str) -> dict | None:
        rows = await self._db.fetch(f"SELECT body FROM alerts a WHERE alert_id = $1 AND {_LATEST}", (alert_id,))
        return orjson.loads(rows[0][0]) if rows else None

    async def predictions(self, session_id: str, from_sample: int, to_sample: int, after: int,
                          limit: int) -> list[dict]:
        rows = await self._db.fetch(
            "SELECT sample, probs, numerics FROM predictions WHERE session_id = $1 AND sample >= $2 "
            "AND sample < $3 AND sample > $4 ORDER BY sample LIMIT $5",
            (session_id, from_sample, to_sample, after, limit))
        out = []
        for sample, probs, numerics in rows:
            p = {"sample": sample, "probs": orjson.loads(probs)}
            if numerics:
                p["numerics"] = orjson.loads(numerics)
            out.append(p)
        return out

    async def strip(self, alert_id: str) -> tuple[int, float, list[str], str, int, bytes] | None:
        """(first_sample, sample_rate, channels, units, n_channels, float32 bytes) of an alert's strip:
        its parts joined in sample order (parts rewritten after a resume may overlap: each sample once)."""
        rows = await self._db.fetch("SELECT first_sample, sample_rate, channels, units, n_channels, data "
                                    "FROM strips WHERE alert_id = $1", (alert_id,))
        if not rows:
            return None
        first, rate, channels, units, c, data = rows[0]
        parts = await self._db.fetch("SELECT first_sample, n_samples, data FROM strip_parts WHERE alert_id = $1 "
                                     "ORDER BY first_sample", (alert_id,))
        if not parts:  # a strip written whole (before strips came in parts)
            return first, rate, orjson.loads(channels), units, c, bytes(data)
        out, end, width = [], None, 4 * c
        for a, n, d in parts:
            d = bytes(d)
            if end is None:
                first, end = a, a
            if a + n <= end:
                continue
            if a > end:  # samples never written (lost with a crash before they were stored): NaN
                out.append(b"\x00\x00\xc0\x7f" * (c * (a - end)))
                end = a
            out.append(d[(end - a) * width:])
            end = a + n
        return first, rate, orjson.loads(channels), units, c, b"".join(out)


def _session(r: Row) -> dict[str, Any]:
    keys = _SESSION_COLS.split(", ")
    d = dict(zip(keys, r))
    d["channels"] = orjson.loads(d["channels"])
    return d


class _Backend:
    blob: str

    async def script(self, statements: list[str]) -> None: ...
    async def write(self, batches: list[tuple[str, list[Row]]]) -> None: ...
    async def fetch(self, sql: str, args: Row) -> list[Row]: ...
    async def close(self) -> None: ...


class _SQLite(_Backend):
    blob = "BLOB"
    _PARAM = re.compile(r"\$(\d+)")

    def __init__(self, conn):
        self._conn = conn
        self._lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: Path) -> "_SQLite":
        import aiosqlite

        conn = await aiosqlite.connect(path, isolation_level=None, timeout=SQLITE_BUSY_TIMEOUT_MS / 1000)
        await conn.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")  # first: WAL itself needs the lock
        await conn.execute("PRAGMA journal_mode=WAL")
        await conn.execute("PRAGMA synchronous=NORMAL")
        return cls(conn)

    def _sql(self, sql: str) -> str:
        return self._PARAM.sub(r"?\1", sql)

    async def script(self, statements: list[str]) -> None:
        async with self._lock:
            await self._conn.execute("BEGIN IMMEDIATE")
            try:
                for s in statements:
                    await self._conn.execute(s)
            except BaseException:
                await self._conn.execute("ROLLBACK")
                raise
            await self._conn.execute("COMMIT")

    async def write(self, batches: list[tuple[str, list[Row]]]) -> None:
        async with self._lock:
            # The write lock now, waiting under busy_timeout; a deferred BEGIN would take it at the
            # first INSERT, where another process's commit can make it fail without waiting.
            await self._conn.execute("BEGIN IMMEDIATE")
            try:
                for sql, rows in batches:
                    await self._conn.executemany(self._sql(sql), rows)
            except BaseException:
                await self._conn.execute("ROLLBACK")
                raise
            await self._conn.execute("COMMIT")

    async def fetch(self, sql: str, args: Row) -> list[Row]:
        async with self._conn.execute(self._sql(sql), tuple(args)) as cur:
            return list(await cur.fetchall())

    async def close(self) -> None:
        await self._conn.close()


class _Postgres(_Backend):
    blob = "BYTEA"

    def __init__(self, pool):
        self._pool = pool

    @classmethod
    async def open(cls, url: str, schema: str | None) -> "_Postgres":
        import asyncpg

        settings = {}
        if schema:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,62}", schema):
                raise ValueError(f"Invalid database_schema: expected an SQL identifier, got {schema!r}")
            conn = await asyncpg.connect(url)
            await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
            await conn.close()
            settings["search_path"] = schema
        return cls(await asyncpg.create_pool(url, min_size=1, max_size=8, server_settings=settings))

    async def script(self, statements: list[str]) -> None:
        async with self._pool.acquire() as con:
            for s in statements:
                await con.execute(s)

    async def write(self, batches: list[tuple[str, list[Row]]]) -> None:
        async with self._pool.acquire() as con, con.transaction():
            for sql, rows in batches:
                await con.executemany(sql, rows)

    async def fetch(self, sql: str, args: Row) -> list[Row]:
        async with self._pool.acquire() as con:
            return [tuple(r) for r in await con.fetch(sql, *args)]

    async def close(self) -> None:
        await self._pool.close()
