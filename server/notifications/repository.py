"""SQL for notifications: queries/notifications.sql. Returns Notification dataclasses."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from ..db import Runner
from ..streams import Bounds
from .models import TYPES, Notification


class NotificationsRepository:
    def __init__(self, db: Runner) -> None:
        self.db = db

    async def insert(
        self, recipients: Iterable[uuid.UUID], type: str, data: dict[str, Any]
    ) -> list[Notification]:
        """One notification per recipient that is still a user, each with that user's next
        seq; a recipient deleted meanwhile gets none (its rows would go with it anyway)."""
        if type not in TYPES:
            raise ValueError(f"unknown notification type {type!r}")
        user_ids = sorted(set(recipients))
        if not user_ids:
            return []
        rows = await self.db.many(
            "notifications.insert_notifications", user_ids=user_ids, type=type, data=data
        )
        return [Notification.from_row(r) for r in rows]

    async def insert_each(
        self, messages: Mapping[uuid.UUID, tuple[str, dict[str, Any]]]
    ) -> list[Notification]:
        """As ``insert``, each recipient with its own (type, data)."""
        for type, _ in messages.values():
            if type not in TYPES:
                raise ValueError(f"unknown notification type {type!r}")
        user_ids = sorted(messages)
        if not user_ids:
            return []
        rows = await self.db.many(
            "notifications.insert_notifications_each",
            user_ids=user_ids,
            types=[messages[u][0] for u in user_ids],
            datas=[messages[u][1] for u in user_ids],
        )
        return [Notification.from_row(r) for r in rows]

    async def after(
        self, user_id: uuid.UUID, after_seq: int, limit: int, max_bytes: int
    ) -> list[Notification]:
        """One user's notifications after a seq (a page bounded in rows and bytes)."""
        rows = await self.db.many(
            "notifications.list_notifications_after",
            user_id=user_id,
            after_seq=after_seq,
            max_rows=limit,
            max_bytes=max_bytes,
        )
        return [Notification.from_row(r) for r in rows]

    async def after_many(
        self, positions: dict[uuid.UUID, int], limit: int, max_bytes: int
    ) -> dict[uuid.UUID, list[Notification]]:
        """For each user, the notifications after its seq (at most ``limit`` and about
        ``max_bytes`` each), in one query."""
        users = list(positions)
        rows = await self.db.many(
            "notifications.list_notifications_after_many",
            user_ids=users,
            after_seqs=[positions[u] for u in users],
            max_rows=limit,
            max_bytes=max_bytes,
        )
        found: dict[uuid.UUID, list[Notification]] = {}
        for r in rows:
            found.setdefault(r["user_id"], []).append(Notification.from_row(r))
        return found

    async def users_behind(self, positions: dict[uuid.UUID, int]) -> set[uuid.UUID]:
        """The users whose newest committed notification is after the seq given for them."""
        users = list(positions)
        found = await self.db.value(
            "notifications.find_users_behind",
            user_ids=users,
            after_seqs=[positions[u] for u in users],
        )
        return set(found or ())

    async def bounds(self, user_id: uuid.UUID) -> Bounds:
        row = await self.db.one("notifications.get_notification_bounds", user_id=user_id)
        assert row is not None
        return Bounds(oldest=row["oldest_seq"], newest=row["newest_seq"])

    async def page(
        self, user_id: uuid.UUID, before_seq: int, limit: int, unread_only: bool
    ) -> list[Notification]:
        name = (
            "notifications.list_unread_notifications"
            if unread_only
            else "notifications.list_notifications"
        )
        rows = await self.db.many(name, user_id=user_id, before_seq=before_seq, max_rows=limit)
        return [Notification.from_row(r) for r in rows]

    async def unread_count(self, user_id: uuid.UUID) -> int:
        return int(await self.db.value("notifications.count_unread_notifications", user_id=user_id))

    async def get(self, notification_id: uuid.UUID) -> Notification | None:
        row = await self.db.one(
            "notifications.get_notification_by_id", notification_id=notification_id
        )
        return Notification.from_row(row) if row else None

    async def set_read(self, notification_id: uuid.UUID, is_read: bool) -> Notification | None:
        row = await self.db.one(
            "notifications.set_notification_read", notification_id=notification_id, is_read=is_read
        )
        return Notification.from_row(row) if row else None

    async def prune(self, cutoff: datetime, batch_size: int) -> int:
        return await self.db.execute(
            "notifications.prune_notifications", cutoff=cutoff, batch_size=batch_size
        )
