"""SQL for stories: queries/stories.sql. Returns the dataclasses of models.py, never driver
rows."""

from __future__ import annotations

import uuid
from collections.abc import Collection

from ..db import Runner
from .models import HistoryAccess, NewRevision, StoredRevision, Story, StoryAccess

FIRST = uuid.UUID(int=0)  # keyset position before every id


class StoriesRepository:
    def __init__(self, db: Runner) -> None:
        self.db = db

    async def access(
        self, story_id: uuid.UUID, caller_id: uuid.UUID, *, lock: bool = False
    ) -> StoryAccess | None:
        """The story with the caller's role on its task; None when no such story. ``lock``:
        the row is locked as it is read, in the same statement, until the transaction ends."""
        name = "stories.lock_story_access" if lock else "stories.get_story_access"
        row = await self.db.one(name, story_id=story_id, caller_id=caller_id)
        if row is None:
            return None
        return StoryAccess(Story.from_row(row), row["my_role"])

    async def history_access(
        self, story_id: uuid.UUID, caller_id: uuid.UUID
    ) -> HistoryAccess | None:
        """The story's id, revision and author with the caller's role; None when no such
        story. Its content is not read."""
        row = await self.db.one(
            "stories.get_story_history_access", story_id=story_id, caller_id=caller_id
        )
        if row is None:
            return None
        return HistoryAccess(row["id"], row["revision"], row["author_id"], row["my_role"])

    async def create(
        self, task_id: uuid.UUID, title: str, content: str, author_id: uuid.UUID
    ) -> Story:
        row = await self.db.one(
            "stories.insert_story",
            task_id=task_id,
            title=title,
            content=content,
            author_id=author_id,
        )
        assert row is not None
        return Story.from_row(row)

    async def update(
        self,
        story: Story,
        title: str,
        content: str,
        editor_id: uuid.UUID,
        stored: NewRevision,
    ) -> Story | None:
        """The story at its next revision, with ``content`` (the statement does not send it
        back); None when it is no longer at ``story.revision``."""
        row = await self.db.one(
            "stories.update_story",
            story_id=story.id,
            revision=story.revision,
            title=title,
            content=content,
            editor_id=editor_id,
            snapshot_revision=stored.snapshot_revision,
            chain_bytes=stored.chain_bytes,
            content_snapshot=stored.content_snapshot,
            delta=stored.delta,
        )
        return Story.from_row({**row, "content": content}) if row else None

    async def delete(self, story_id: uuid.UUID) -> None:
        await self.db.execute("stories.delete_story", story_id=story_id)

    async def list_for_task(
        self, task_id: uuid.UUID, after: uuid.UUID | None, limit: int
    ) -> list[Story]:
        rows = await self.db.many(
            "stories.list_task_stories", task_id=task_id, after_id=after or FIRST, max_rows=limit
        )
        return [Story.from_row(r) for r in rows]

    async def chain(
        self, story_id: uuid.UUID, first: int, last: int, cached: Collection[int] = ()
    ) -> list[StoredRevision]:
        """Revisions ``first..last``, preceded by those from the snapshot ``first`` is rebuilt
        from; empty when ``first`` does not exist. The snapshots numbered in ``cached`` come
        without their content (None)."""
        rows = await self.db.many(
            "stories.list_revision_chain",
            story_id=story_id,
            first_revision=first,
            last_revision=last,
            cached_snapshots=list(cached),
        )
        return [StoredRevision.from_row(r) for r in rows]
