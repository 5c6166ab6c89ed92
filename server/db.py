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


# What "the database is not there right now" looks like, as opposed to "the query is wrong":
# SQLSTATE class 08 (connection exception), class 53 (insufficient resources: too many
# connections, out of memory or disk) and 57P01..57P03 (admin or crash shutdown, cannot
# connect now).
_UNAVAILABLE_SQLSTATES = ("08", "53", "57P01", "57P02", "57P03")
# asyncpg's InterfaceError is mostly a misuse of the driver (a bug, 500); these few mean the
# connection or the pool is gone.
_GONE_MESSAGES = ("connection is closed", "connection was closed", "pool is closing",
                  "pool is closed")  # fmt: skip


def _raised_in_asyncpg(exc: BaseException) -> bool:
    """True when ``exc`` came up through asyncpg: a socket error while connecting to or
    talking with PostgreSQL, not one of some other part of the process."""
    tb = exc.__traceback__
    while tb is not None:
        module = tb.tb_frame.f_globals.get("__name__", "")
        if module == "asyncpg" or module.startswith("asyncpg."):
            return True
        tb = tb.tb_next
    return False


def is_unavailable(exc: BaseException) -> bool:
    """True when ``exc`` means PostgreSQL is unreachable or stopped answering (the API answers
    503 with Retry-After); False for every other failure, bugs included, which stay 500."""
    if isinstance(exc, DatabaseUnavailable):
        return True
    if isinstance(exc, asyncpg.PostgresError):  # ConnectionDoesNotExistError is 08003
        return (exc.sqlstate or "").startswith(_UNAVAILABLE_SQLSTATES)
    if isinstance(exc, asyncpg.exceptions._base.InternalClientError):
        return True  # asyncpg #1069: the server went away in the middle of a query
    if isinstance(exc, asyncpg.InterfaceError):
        return any(message in str(exc) for message in _GONE_MESSAGES)
    if isinstance(exc, OSError):  # refused, reset, unreachable, DNS, and TimeoutError
        return _raised_in_asyncpg(exc)
    return False


class Runner:
    """Runs named statements from queries/ on a pool or on one connection, each as its name's
    kind says (sql.py): the only place that knows asyncpg's fetch calls."""

    def __init__(self, target: asyncpg.Pool | asyncpg.Connection, queries: Queries) -> None:
        self._target = target
        self.queries = queries

    def _query(self, name: str, kind: str, params: dict[str, Any]) -> tuple[str, tuple[Any, ...]]:
        query = self.queries[name]
        if query.kind != kind:
            raise TypeError(f"{name} is :{query.kind}, not :{kind}")
        return query.sql, query.args(params)

    async def run(self, name: str, /, **params: Any) -> Any:
        """Run a statement and return what its kind says it returns."""
        return await getattr(self, _BY_KIND[self.queries[name].kind])(name, **params)

    async def one(self, name: str, /, **params: Any) -> asyncpg.Record | None:
        sql, args = self._query(name, "one", params)
        return await self._target.fetchrow(sql, *args)

    async def many(self, name: str, /, **params: Any) -> list[asyncpg.Record]:
        sql, args = self._query(name, "many", params)
        return await self._target.fetch(sql, *args)

    async def value(self, name: str, /, **params: Any) -> Any:
        sql, args = self._query(name, "value", params)
        return await self._target.fetchval(sql, *args)

    async def execute(self, name: str, /, **params: Any) -> int:
        """How many rows the statement changed."""
        sql, args = self._query(name, "exec", params)
        status = await self._target.execute(sql, *args)
        last = status.rsplit(" ", 1)[-1]
        return int(last) if last.isdigit() else 0


_BY_KIND = {"one": "one", "many": "many", "value": "value", "exec": "execute"}


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
