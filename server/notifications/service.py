"""The one notify API for the whole codebase.

    async with writing(request.app) as work:
        ...the change, through repositories on work.tx...
        await work.notify(recipients, "task_update", {...}, actor_id=caller.id)

Everything inside commits together or not at all; the notifications are published to Redis
(`user:<id>`) only after COMMIT, so a rolled-back transaction publishes nothing. The actor is
never among the recipients.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from aiohttp import web

from .. import keys
from ..broker import Publisher
from ..db import Runner
from ..wire import encode_news, user_channel
from .repository import NotificationsRepository, notification_frame


@dataclass
class Work:
    tx: Runner
    outbox: list[asyncpg.Record] = field(default_factory=list)

    async def notify(
        self,
        recipients: Iterable[uuid.UUID],
        type: str,
        data: dict[str, Any],
        *,
        actor_id: uuid.UUID | None,
    ) -> list[asyncpg.Record]:
        """Write one notification per recipient (but the actor) in this transaction."""
        targets = {r for r in recipients if r != actor_id}
        rows = await NotificationsRepository(self.tx).insert(targets, type, data)
        self.outbox.extend(rows)
        return rows


def publish(publisher: Publisher, rows: Iterable[asyncpg.Record]) -> None:
    for row in rows:
        seq = row["seq"]
        publisher.publish(
            user_channel(row["user_id"]), encode_news(seq, seq, notification_frame(row))
        )


@asynccontextmanager
async def writing(app: web.Application) -> AsyncIterator[Work]:
    """One transaction whose notifications are published once it has committed."""
    async with app[keys.db_key].transaction() as tx:
        work = Work(tx)
        yield work
    publish(app[keys.publisher_key], work.outbox)
