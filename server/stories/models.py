"""What the stories repository hands to the layers above."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

MAX_CONTENT_BYTES = 512 * 1024  # UTF-8; the database's stories_content_check agrees
# A revision is stored in full once this many have passed since the last full one (or once
# the deltas since it outweigh the content): see migrations/0006_create_stories.sql.
SNAPSHOT_EVERY = 100


@dataclass(frozen=True, slots=True)
class Story:
    id: uuid.UUID
    task_id: uuid.UUID
    title: str
    content: str
    revision: int
    author_id: uuid.UUID | None  # who created it; None once that user is deleted
    created_at: datetime
    updated_at: datetime
    snapshot_revision: int  # where the current revision's chain of deltas starts
    chain_bytes: int  # bytes of the deltas stored since that snapshot

    @classmethod
    def from_row(cls, row: Any) -> Story:
        return cls(
            id=row["id"],
            task_id=row["task_id"],
            title=row["title"],
            content=row["content"],
            revision=row["revision"],
            author_id=row["author_id"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
            snapshot_revision=row["snapshot_revision"],
            chain_bytes=row["chain_bytes"],
        )


@dataclass(frozen=True, slots=True)
class StoryAccess:
    """The facts an access decision on a story needs, loaded in one query."""

    story: Story
    role: str | None  # the caller's role reaching the story's task; None: none


@dataclass(frozen=True, slots=True)
class HistoryAccess:
    """What an access decision on a story's history needs, without its title or content."""

    id: uuid.UUID
    revision: int  # the current one
    author_id: uuid.UUID | None
    role: str | None  # the caller's role reaching the story's task; None: none


@dataclass(frozen=True, slots=True)
class StoredRevision:
    """One row of a story's history: its content in full (``content``, a snapshot) or as line
    changes against the revision before (``delta``)."""

    revision: int
    title: str
    author_id: uuid.UUID | None  # who made this revision
    created_at: datetime
    snapshot_revision: int
    content: str | None
    delta: list[Any] | None

    @classmethod
    def from_row(cls, row: Any) -> StoredRevision:
        return cls(
            revision=row["revision"],
            title=row["title"],
            author_id=row["author_id"],
            created_at=row["created_at"],
            snapshot_revision=row["snapshot_revision"],
            content=row["content"],
            delta=row["delta"],
        )


@dataclass(frozen=True, slots=True)
class Revision:
    """A revision rebuilt: its exact title and content."""

    revision: int
    title: str
    content: str
    author_id: uuid.UUID | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class RevisionChange:
    """A revision in the history list: the unified diff of its content from the one before."""

    revision: int
    title: str
    author_id: uuid.UUID | None
    created_at: datetime
    diff: str


@dataclass(frozen=True, slots=True)
class NewRevision:
    """How the next revision is stored: a snapshot (``content_snapshot``) or ``delta``."""

    snapshot_revision: int
    chain_bytes: int
    content_snapshot: str | None
    delta: list[Any] | None
