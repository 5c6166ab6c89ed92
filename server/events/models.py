"""What the events repository hands to the layers above."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class Event:
    id: uuid.UUID
    user_id: uuid.UUID  # the owner
    title: str
    description: str
    start_date: datetime
    end_date: datetime
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_row(cls, row: Any) -> Event:
        return cls(
            id=row["id"],
            user_id=row["user_id"],
            title=row["title"],
            description=row["description"],
            start_date=row["start_date"],
            end_date=row["end_date"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
        )


@dataclass(frozen=True, slots=True)
class EventAccess:
    """The facts an access decision on an event needs, loaded in one query."""

    event: Event
    caller_is_member: bool  # a member of any of the event's tasks


@dataclass(frozen=True, slots=True)
class EventPosition:
    """Where a page of a user's events (ordered by start_date, then id) continues."""

    start_date: datetime
    id: uuid.UUID
