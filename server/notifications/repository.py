"""SQL for notifications: queries/notifications.sql."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import asyncpg
import orjson

from ..db import Runner
from ..http import rfc3339
from ..streams import Bounds
from ..wire import encode_event

TYPES = ("invite", "system", "story_update", "comment", "task_update", "message")


def notification_json(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "seq": row["seq"],
        "user_id": str(row["user_id"]),
        "type": row["type"],
        "data": row["data"],
        "read": row["read_at"] is not None,
        "read_at": rfc3339(row["read_at"]) if row["read_at"] else None,
        "created_at": rfc3339(row["created_at"]),
    }


def notification_frame(row: asyncpg.Record) -> bytes:
    """The SSE frame of a notification: `id: <seq>`, `event: <type>`, `data: <JSON>`."""
    return encode_event(row["seq"], orjson.dumps(notification_json(row)).decode(), row["type"])


class NotificationsRepository:
    def __init__(self, db: Runner) -> None:
        self.db = db

    async def insert(
        self, recipients: Iterable[uuid.UUID], type: str, data: dict[str, Any]
    ) -> list[asyncpg.Record]:
        """One notification per recipient, each with that user's next seq."""
        if type not in TYPES:
            raise ValueError(f"unknown notification type {type!r}")
        user_ids = sorted(set(recipients))
        if not user_ids:
            return []
        return await self.db.many(
            "notifications.insert_notifications", user_ids=user_ids, type=type, data=data
        )

    async def frames_after(
        self, user_id: uuid.UUID, after_seq: int, limit: int, max_bytes: int
    ) -> list[tuple[int, bytes]]:
        """One user's SSE frames after a seq (a page bounded in rows and bytes)."""
        rows = await self.db.many(
            "notifications.list_notifications_after",
            user_id=user_id,
            after_seq=after_seq,
            max_rows=limit,
            max_bytes=max_bytes,
        )
        return [(r["seq"], notification_frame(r)) for r in rows]

    async def frames_after_many(
        self, positions: dict[uuid.UUID, int], limit: int
    ) -> dict[uuid.UUID, list[tuple[int, bytes]]]:
        """For each user, the SSE frames after its seq (at most ``limit`` each), one query."""
        users = list(positions)
        rows = await self.db.many(
            "notifications.list_notifications_after_many",
            user_ids=users,
            after_seqs=[positions[u] for u in users],
            max_rows=limit,
        )
        found: dict[uuid.UUID, list[tuple[int, bytes]]] = {}
        for r in rows:
            found.setdefault(r["user_id"], []).append((r["seq"], notification_frame(r)))
        return found

    async def bounds(self, user_id: uuid.UUID) -> Bounds:
        row = await self.db.one("notifications.get_notification_bounds", user_id=user_id)
        assert row is not None
        return Bounds(oldest=row["oldest_seq"], newest=row["newest_seq"])

    async def page(
        self, user_id: uuid.UUID, before_seq: int, limit: int, unread_only: bool
    ) -> list[asyncpg.Record]:
        name = (
            "notifications.list_unread_notifications"
            if unread_only
            else "notifications.list_notifications"
        )
        return await self.db.many(name, user_id=user_id, before_seq=before_seq, max_rows=limit)

    async def unread_count(self, user_id: uuid.UUID) -> int:
        return int(await self.db.value("notifications.count_unread_notifications", user_id=user_id))

    async def get(self, notification_id: uuid.UUID) -> asyncpg.Record | None:
        return await self.db.one(
            "notifications.get_notification_by_id", notification_id=notification_id
        )

    async def set_read(self, notification_id: uuid.UUID, is_read: bool) -> asyncpg.Record | None:
        return await self.db.one(
            "notifications.set_notification_read", notification_id=notification_id, is_read=is_read
        )

    async def existing_users(self, user_ids: list[uuid.UUID]) -> set[uuid.UUID]:
        found = await self.db.value("notifications.find_existing_users", user_ids=user_ids)
        return set(found or ())

    async def prune(self, cutoff: datetime, batch_size: int) -> int:
        return await self.db.execute(
            "notifications.prune_notifications", cutoff=cutoff, batch_size=batch_size
        )


class NotificationSource:
    """One user's notification history for SSE replay."""

    kind = "user"

    def __init__(self, db: Runner, user_id: uuid.UUID) -> None:
        self.repo = NotificationsRepository(db)
        self.user_id = user_id

    async def bounds(self) -> Bounds:
        return await self.repo.bounds(self.user_id)

    async def after(self, last_id: int, limit: int, max_bytes: int) -> list[tuple[int, bytes]]:
        return await self.repo.frames_after(self.user_id, last_id, limit, max_bytes)
