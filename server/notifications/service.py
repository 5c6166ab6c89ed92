"""Use cases of notifications and per-user streams (API.md, "Notification", "Real-time
streams"). No HTTP here. Writing notifications for other domains' changes is Work.notify
(work.py), in the transaction of the change."""

from __future__ import annotations

import uuid
from typing import Any

import orjson

from ..db import Runner
from ..errors import Invalid, NotFound
from ..policy import Action
from ..streams import Bounds
from ..users.repository import UsersRepository
from ..users.service import access_user
from ..work import Work
from .frames import notification_frame
from .models import Notification
from .repository import NotificationsRepository

MESSAGE_MAX_BYTES = 64 * 1024


async def access_own(db: Runner, caller_id: uuid.UUID, user_id: uuid.UUID, action: Action) -> None:
    """Only the user reads its notifications or opens its stream: NotFound for no such user,
    Forbidden for another one."""
    await access_user(db, caller_id, user_id, action)


async def do_send_message(
    work: Work,
    caller_id: uuid.UUID,
    targets: list[uuid.UUID],
    field: str,
    message: str,
    data: dict[str, Any],
) -> list[Notification]:
    """A message notification to each target but the sender; unknown targets are Invalid
    under ``field`` and nobody is notified. The targets stay locked until COMMIT, so one
    deleted meanwhile is either unknown here or deleted after its notification."""
    body: dict[str, Any] = {"from": str(caller_id), "message": message, "data": data}
    if len(orjson.dumps(body)) > MESSAGE_MAX_BYTES:
        raise Invalid({"data": ["the message and its data must fit in 64 KiB"]})
    known = await UsersRepository(work.tx).lock_existing(targets)
    unknown = [str(t) for t in targets if t not in known]
    if unknown:
        raise Invalid({field: [f"no such user: {u}" for u in unknown]})
    return await work.notify(targets, "message", body, actor_id=caller_id)


async def list_notifications(
    db: Runner,
    caller_id: uuid.UUID,
    user_id: uuid.UUID,
    *,
    unread_only: bool,
    before_seq: int,
    limit: int,
) -> tuple[list[Notification], int]:
    """A page of the user's notifications, newest first, and its unread count."""
    await access_own(db, caller_id, user_id, Action.READ_NOTIFICATIONS)
    repo = NotificationsRepository(db)
    items = await repo.page(user_id, before_seq, limit, unread_only)
    return items, await repo.unread_count(user_id)


async def access_notification(
    db: Runner, caller_id: uuid.UUID, notification_id: uuid.UUID
) -> Notification:
    """The caller's own notification; anyone else's is NotFound, as if it did not exist."""
    found = await NotificationsRepository(db).get(notification_id)
    if found is None or found.user_id != caller_id:
        raise NotFound("no such notification")
    return found


async def do_mark_read(work: Work, notification: Notification, read: bool) -> Notification:
    """Mark a notification (checked by access_notification) read or unread."""
    updated = await NotificationsRepository(work.tx).set_read(notification.id, read)
    if updated is None:  # pruned meanwhile, or deleted with its user (the caller)
        raise NotFound("no such notification")
    return updated


class NotificationSource:
    """One user's notification history, for the SSE registry's replay."""

    kind = "user"

    def __init__(self, db: Runner, user_id: uuid.UUID) -> None:
        self.repo = NotificationsRepository(db)
        self.user_id = user_id

    async def bounds(self) -> Bounds:
        return await self.repo.bounds(self.user_id)

    async def after(self, last_id: int, limit: int, max_bytes: int) -> list[tuple[int, bytes]]:
        found = await self.repo.after(self.user_id, last_id, limit, max_bytes)
        return [(n.seq, notification_frame(n)) for n in found]
