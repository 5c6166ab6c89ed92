"""What the feed repository hands to the layers above."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class Value:
    id: int  # gapless, in commit order: the SSE frame's `id:`
    value: str
    created_at: datetime

    @classmethod
    def from_row(cls, row: Any) -> Value:
        return cls(id=row["id"], value=row["value"], created_at=row["created_at"])
