"""What the notifications repository hands to the layers above."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

# Every notification type API.md names; the database's notifications_type_check agrees.
TYPES = ("invite", "system", "story_update", "comment", "task_update", "message", "mention")


@dataclass(frozen=True, slots=True)
class Notification:
    id: uuid.UUID
    user_id: uuid.UUID
    seq: int  # 1, 2, 3... per user, no gaps, in commit order
    type: str
    data: dict[str, Any]
    read_at: datetime | None
    created_at: datetime

    @classmethod
    def from_row(cls, row: Any) -> Notification:
        return cls(
            id=row["id"],
            user_id=row["user_id"],
            seq=row["seq"],
            type=row["type"],
            data=row["data"],
            read_at=row["read_at"],
            created_at=row["created_at"],
        )
