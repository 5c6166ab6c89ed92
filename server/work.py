"""One unit of work: the change, its history and its notifications in one transaction, the
notifications published to Redis only after COMMIT (DESIGN.md, "Data flow of a write").

The handler opens it, the use cases write through it::

    async with writing_for(request) as work:
        task = await service.do_create_task(work, caller_id, fields)

``do_*`` functions write on ``work.tx`` and call ``work.notify(...)``; everything commits
together or not at all, a rolled-back transaction publishes nothing, and the actor is never
among the recipients. Call ``notify`` once per change (recipients are locked in id order
within one call, which keeps concurrent writers free of deadlocks).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import keys
from .broker import Publisher
from .db import Database, Runner
from .notifications.frames import notification_frame
from .notifications.models import Notification
from .notifications.repository import NotificationsRepository
from .wire import encode_news, user_channel

if TYPE_CHECKING:
    from aiohttp import web


@dataclass
class Work:
    tx: Runner
    outbox: list[Notification] = field(default_factory=list)
    atomic: bool = True  # False: one statement on its own (``writing_one``), no notifications

    async def notify(
        self,
        recipients: Iterable[uuid.UUID],
        type: str,
        data: dict[str, Any],
        *,
        actor_id: uuid.UUID | None,
    ) -> list[Notification]:
        """Write one notification per recipient (but the actor) in this transaction."""
        assert self.atomic, "a change that notifies needs writing(): one transaction"
        targets = {r for r in recipients if r != actor_id}
        written = await NotificationsRepository(self.tx).insert(targets, type, data)
        self.outbox.extend(written)
        return written

    async def notify_each(
        self,
        messages: Mapping[uuid.UUID, tuple[str, dict[str, Any]]],
        *,
        actor_id: uuid.UUID | None,
    ) -> list[Notification]:
        """As ``notify``, each recipient with its own (type, data): one call per change still."""
        assert self.atomic, "a change that notifies needs writing(): one transaction"
        targets = {r: m for r, m in messages.items() if r != actor_id}
        written = await NotificationsRepository(self.tx).insert_each(targets)
        self.outbox.extend(written)
        return written


def publish(publisher: Publisher, notifications: Iterable[Notification]) -> None:
    for n in notifications:
        publisher.publish(user_channel(n.user_id), encode_news(n.seq, n.seq, notification_frame(n)))


@asynccontextmanager
async def writing(db: Database, publisher: Publisher) -> AsyncIterator[Work]:
    """One transaction whose notifications are published once it has committed."""
    async with db.transaction() as tx:
        work = Work(tx)
        yield work
    publish(publisher, work.outbox)


def writing_for(request: web.Request) -> AbstractAsyncContextManager[Work]:
    return writing(request.app[keys.db_key], request.app[keys.publisher_key])


@asynccontextmanager
async def writing_one(db: Database) -> AsyncIterator[Work]:
    """A use case that writes ONE statement and notifies nobody (POST /events): the statement's
    own implicit transaction is the unit, which saves BEGIN and COMMIT, two round trips and a
    fifth of the request's CPU (docs/benchmarks.md). A use case with a second statement or a
    notification must use ``writing``."""
    yield Work(db, atomic=False)


def writing_one_for(request: web.Request) -> AbstractAsyncContextManager[Work]:
    return writing_one(request.app[keys.db_key])
