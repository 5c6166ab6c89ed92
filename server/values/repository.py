"""SQL for the value feed: queries/values.sql."""

from __future__ import annotations

from datetime import datetime

import asyncpg

from ..db import Runner
from ..streams import Bounds
from ..wire import encode_event


class ValuesRepository:
    def __init__(self, db: Runner) -> None:
        self.db = db

    async def insert_batch(self, values: list[str]) -> list[tuple[int, datetime]]:
        """Insert values with gapless ids; result i belongs to values[i]."""
        rows = await self.db.many("values.insert_values", values=values)
        rows.sort(key=lambda r: r["id"])
        return [(r["id"], r["created_at"]) for r in rows]

    async def list_before(self, before_id: int, limit: int) -> list[asyncpg.Record]:
        return await self.db.many("values.list_values_before", before_id=before_id, max_rows=limit)

    async def frames_after(
        self, after_id: int, limit: int, max_bytes: int
    ) -> list[tuple[int, bytes]]:
        """The SSE frames of the values after ``after_id`` (a page bounded in rows and bytes)."""
        rows = await self.db.many(
            "values.list_values_after", after_id=after_id, max_rows=limit, max_bytes=max_bytes
        )
        return [(r["id"], encode_event(r["id"], r["value"])) for r in rows]

    async def prune(self, cutoff: datetime, batch_size: int) -> int:
        """Delete one batch of values older than cutoff; how many were deleted."""
        return await self.db.execute("values.prune_values", cutoff=cutoff, batch_size=batch_size)

    async def bounds(self) -> Bounds:
        row = await self.db.one("values.get_feed_bounds")
        assert row is not None
        return Bounds(oldest=row["oldest_id"], newest=row["newest_id"])


class FeedSource:
    """The feed's history for SSE replay."""

    kind = "feed"

    def __init__(self, db: Runner) -> None:
        self.repo = ValuesRepository(db)

    async def bounds(self) -> Bounds:
        return await self.repo.bounds()

    async def after(self, last_id: int, limit: int, max_bytes: int) -> list[tuple[int, bytes]]:
        return await self.repo.frames_after(last_id, limit, max_bytes)
