"""SQL for events: queries/events.sql. Returns Event dataclasses, never driver rows."""

from __future__ import annotations

import uuid
from typing import Any

from ..db import Runner
from .models import Event, EventAccess, EventPosition


class EventsRepository:
    def __init__(self, db: Runner) -> None:
        self.db = db

    async def create(self, owner_id: uuid.UUID, fields: dict[str, Any]) -> Event:
        row = await self.db.one(
            "events.insert_event",
            user_id=owner_id,
            title=fields["title"],
            description=fields["description"],
            start_date=fields["start_date"],
            end_date=fields["end_date"],
        )
        assert row is not None
        return Event.from_row(row)

    async def access(
        self, event_id: uuid.UUID, caller_id: uuid.UUID, *, lock: bool = False
    ) -> EventAccess | None:
        """The event and whether the caller is a member of any of its tasks; None when no
        such event.
        ``lock``: hold the event row until the transaction ends (for a change that depends
        on what was read)."""
        name = "events.get_event_access_for_update" if lock else "events.get_event_access"
        row = await self.db.one(name, event_id=event_id, caller_id=caller_id)
        if row is None:
            return None
        return EventAccess(Event.from_row(row), row["caller_is_member"])

    async def update(self, event_id: uuid.UUID, changes: dict[str, Any]) -> Event | None:
        row = await self.db.one(
            "events.update_event",
            event_id=event_id,
            title=changes.get("title"),
            description=changes.get("description"),
            start_date=changes.get("start_date"),
            end_date=changes.get("end_date"),
        )
        return Event.from_row(row) if row else None

    async def delete(self, event_id: uuid.UUID) -> bool:
        return await self.db.execute("events.delete_event", event_id=event_id) > 0

    async def list_by_owner(
        self, owner_id: uuid.UUID, after: EventPosition | None, limit: int
    ) -> list[Event]:
        """One page of the owner's events by (start_date, id), after ``after`` if given."""
        rows = await self.db.many(
            "events.list_events_by_owner",
            user_id=owner_id,
            after_start=after.start_date if after else None,
            after_id=after.id if after else None,
            max_rows=limit,
        )
        return [Event.from_row(r) for r in rows]
