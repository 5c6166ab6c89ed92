"""SQL for events: queries/events.sql."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import asyncpg

from ..db import Runner


class EventsRepository:
    def __init__(self, db: Runner) -> None:
        self.db = db

    async def create(self, owner_id: uuid.UUID, body: dict[str, Any]) -> asyncpg.Record:
        row = await self.db.one(
            "events.insert_event",
            user_id=owner_id,
            title=body["title"],
            description=body["description"],
            start_date=body["start_date"],
            end_date=body["end_date"],
        )
        assert row is not None
        return row

    async def get(self, event_id: uuid.UUID) -> asyncpg.Record | None:
        return await self.db.one("events.get_event_by_id", event_id=event_id)

    async def update(self, event_id: uuid.UUID, changes: dict[str, Any]) -> asyncpg.Record | None:
        return await self.db.one(
            "events.update_event",
            event_id=event_id,
            title=changes.get("title"),
            description=changes.get("description"),
            start_date=changes.get("start_date"),
            end_date=changes.get("end_date"),
        )

    async def delete(self, event_id: uuid.UUID) -> None:
        await self.db.execute("events.delete_event", event_id=event_id)

    async def list_by_owner(
        self, owner_id: uuid.UUID, after: tuple[datetime, uuid.UUID] | None, limit: int
    ) -> list[asyncpg.Record]:
        """One page of the owner's events by (start_date, id), after ``after`` if given."""
        after_start, after_id = after if after else (None, None)
        return await self.db.many(
            "events.list_events_by_owner",
            user_id=owner_id,
            after_start=after_start,
            after_id=after_id,
            max_rows=limit,
        )
