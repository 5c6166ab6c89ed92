"""SQL for the value feed: queries/feed.sql. Returns Values and plain values, never driver
rows."""

from __future__ import annotations

from datetime import datetime

from ..db import Runner
from ..streams import Bounds
from .models import Value


class ValuesRepository:
    def __init__(self, db: Runner) -> None:
        self.db = db

    async def insert_batch(self, values: list[str]) -> list[tuple[int, datetime]]:
        """Insert values with gapless ids; result i, (id, created_at), belongs to values[i]."""
        rows = await self.db.many("feed.insert_values", values=values)
        rows.sort(key=lambda r: r["id"])
        return [(r["id"], r["created_at"]) for r in rows]

    async def before(self, before_id: int, limit: int) -> list[Value]:
        """One page of values with ids below ``before_id``, newest first."""
        rows = await self.db.many("feed.list_values_before", before_id=before_id, max_rows=limit)
        return [Value.from_row(r) for r in rows]

    async def after(self, after_id: int, limit: int, max_bytes: int) -> list[tuple[int, str]]:
        """(id, value) of the values after ``after_id``, oldest first: a page bounded in rows
        and in bytes (queries/feed.sql)."""
        rows = await self.db.many(
            "feed.list_values_after", after_id=after_id, max_rows=limit, max_bytes=max_bytes
        )
        return [(r["id"], r["value"]) for r in rows]

    async def prune(self, cutoff: datetime, batch_size: int) -> int:
        """Delete one batch of values older than cutoff; how many were deleted."""
        return await self.db.execute("feed.prune_values", cutoff=cutoff, batch_size=batch_size)

    async def bounds(self) -> Bounds:
        row = await self.db.one("feed.get_feed_bounds")
        assert row is not None
        return Bounds(oldest=row["oldest_id"], newest=row["newest_id"])
