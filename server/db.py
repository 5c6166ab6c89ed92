"""The repository layer's base: named statements run on an asyncpg pool or connection.

Repositories take a ``Runner``. ``Database`` (the pool) is a Runner, and so is what
``Database.transaction()`` yields, so one repository class serves both autocommit calls and
calls grouped into a transaction::

    async with db.transaction() as tx:
        await ValuesRepository(tx).insert_batch(["a", "b"])
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import orjson

from .sql import Queries

log = logging.getLogger(__name__)

APPLICATION_NAME = "collab-service"


class DatabaseUnavailable(Exception):
    """PostgreSQL could not be reached or stopped answering; the API answers 503."""


# Errors that mean "the database is not there right now", not "the query is wrong".
_UNAVAILABLE: tuple[type[BaseException], ...] = (
    DatabaseUnavailable,
    OSError,  # refused, reset, unreachable, and TimeoutError (a subclass)
    asyncpg.PostgresConnectionError,  # SQLSTATE class 08
    asyncpg.CannotConnectNowError,  # 57P03, starting up or shutting down
    asyncpg.AdminShutdownError,  # 57P01
    asyncpg.CrashShutdownError,  # 57P02
    asyncpg.TooManyConnectionsError,  # 53300
    asyncpg.InsufficientResourcesError,  # class 53
    asyncpg.ConnectionDoesNotExistError,
    asyncpg.InterfaceError,  # "connection is closed", pool closing
    asyncpg.exceptions._base.InternalClientError,  # asyncpg #1069 when the server stops mid-query
)


def is_unavailable(exc: BaseException) -> bool:
    return isinstance(exc, _UNAVAILABLE)


class Runner:
    """Runs named statements from queries/ on a pool or on one connection."""

    def __init__(self, target: asyncpg.Pool | asyncpg.Connection, queries: Queries) -> None:
        self._target = target
        self.queries = queries

    async def fetch(self, name: str, /, **params: Any) -> list[asyncpg.Record]:
        query = self.queries[name]
        return await self._target.fetch(query.sql, *query.args(params))

    async def fetchrow(self, name: str, /, **params: Any) -> asyncpg.Record | None:
        query = self.queries[name]
        return await self._target.fetchrow(query.sql, *query.args(params))

    async def fetchval(self, name: str, /, **params: Any) -> Any:
        query = self.queries[name]
        return await self._target.fetchval(query.sql, *query.args(params))

    async def execute(self, name: str, /, **params: Any) -> str:
        query = self.queries[name]
        return await self._target.execute(query.sql, *query.args(params))


class Database(Runner):
    """The process's pool, plus the one helper for "these calls in one transaction"."""

    def __init__(self, pool: asyncpg.Pool, queries: Queries) -> None:
        super().__init__(pool, queries)
        self.pool = pool

    @asynccontextmanager
    async def transaction(self, *, isolation: str = "read_committed") -> AsyncIterator[Runner]:
        async with self.pool.acquire() as conn, conn.transaction(isolation=isolation):
            yield Runner(conn, self.queries)


async def init_connection(conn: asyncpg.Connection) -> None:
    """jsonb in and out as Python values (orjson both ways)."""
    await conn.set_type_codec(
        "jsonb",
        encoder=lambda value: orjson.dumps(value).decode(),
        decoder=orjson.loads,
        schema="pg_catalog",
    )


async def keep_session(conn: asyncpg.Connection) -> None:
    """Release hook: asyncpg has already rolled back any open transaction. Its default reset
    (RESET ALL, UNLISTEN *, CLOSE ALL, advisory unlock) costs a round trip on every release;
    this service never changes session state on pooled connections, so that trip is skipped
    (it was a third of the time of an authenticated GET)."""


async def create_pool(
    dsn: str, *, min_size: int, max_size: int, command_timeout: float
) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(
        dsn,
        init=init_connection,
        reset=keep_session,
        min_size=min_size,
        max_size=max_size,
        command_timeout=command_timeout,
        timeout=5.0,  # connect timeout: an unreachable server answers 503 quickly
        server_settings={"application_name": APPLICATION_NAME},
    )
    assert pool is not None
    return pool


def redact_url(url: str) -> str:
    """A connection URL fit for a log line: the password replaced by ***."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    userinfo = netloc[0].split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{userinfo}:***@{netloc[1]}"))
