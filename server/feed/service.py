"""Use cases of the value feed (API.md, "The value feed"). No HTTP here: handlers parse and
render, these decide and write, and raise the domain errors of errors.py.

A value is written through the group-commit writer (writer.py), not a Work: the writer is the
feed's one transaction per batch, and publishes the batch once it has committed.
"""

from __future__ import annotations

from datetime import datetime

from ..db import Runner
from ..errors import Unavailable
from ..streams import Bounds
from .frames import value_frame
from .models import Value
from .repository import ValuesRepository
from .writer import FeedWriter, WriterStopped


async def do_add_value(writer: FeedWriter, value: str) -> tuple[int, datetime]:
    """Store a value; (id, created_at) once it is committed. Unavailable (retry) when the
    writer has stopped: whether the value was committed is then unknown, and a retry may store
    it twice, which a feed of readings tolerates better than a value silently lost."""
    try:
        return await writer.add(value)
    except WriterStopped:
        raise Unavailable("the server is stopping; send the value again") from None


async def list_values(db: Runner, before: int, limit: int) -> list[Value]:
    """``limit`` stored values with ids below ``before``, newest first."""
    return await ValuesRepository(db).before(before, limit)


class FeedSource:
    """The feed's history, for the SSE registry's replay."""

    kind = "feed"

    def __init__(self, db: Runner) -> None:
        self.repo = ValuesRepository(db)

    async def bounds(self) -> Bounds:
        return await self.repo.bounds()

    async def after(self, last_id: int, limit: int, max_bytes: int) -> list[tuple[int, bytes]]:
        found = await self.repo.after(last_id, limit, max_bytes)
        return [(value_id, value_frame(value_id, value)) for value_id, value in found]
