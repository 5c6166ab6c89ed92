"""What the comments repository hands to the layers above."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

MAX_BODY_CHARS = 10_000  # the database's comments_body_check agrees

CREATED, EDITED, DELETED = "created", "edited", "deleted"


@dataclass(frozen=True, slots=True)
class Comment:
    id: uuid.UUID
    story_id: uuid.UUID
    parent_id: uuid.UUID | None
    position: int  # its place in the story's thread: 1, 2, 3... in commit order
    author_id: uuid.UUID | None  # None once that user is deleted
    body: str  # kept when deleted, never shown then
    version: int  # of its history: 1 when created, one more on every edit and the deletion
    edited_at: datetime | None
    deleted_at: datetime | None
    created_at: datetime
    updated_at: datetime

    @property
    def deleted(self) -> bool:
        return self.deleted_at is not None

    @property
    def edited(self) -> bool:
        return self.edited_at is not None

    @classmethod
    def from_row(cls, row: Any) -> Comment:
        return cls(
            id=row["id"],
            story_id=row["story_id"],
            parent_id=row["parent_id"],
            position=row["position"],
            author_id=row["author_id"],
            body=row["body"],
            version=row["version"],
            edited_at=row["edited_at"],
            deleted_at=row["deleted_at"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
        )


@dataclass(frozen=True, slots=True)
class CommentAccess:
    """The facts an access decision on a comment needs, loaded in one query."""

    comment: Comment
    task_id: uuid.UUID  # the task of the comment's story
    role: str | None  # the caller's role reaching that task; None: none


@dataclass(frozen=True, slots=True)
class RenderedComment:
    """A comment as its API body (what ``schemas.comment_json`` gives for a Comment: a
    deleted one as its placeholder), rendered by queries/comments.sql list_story_comments so
    that a page is passed through, not decoded and encoded again value by value."""

    id: uuid.UUID
    position: int
    rendered: str  # one JSON object

    @classmethod
    def from_row(cls, row: Any) -> RenderedComment:
        return cls(row["id"], row["position"], row["rendered"])


@dataclass(frozen=True, slots=True)
class ThreadPage:
    """A page of a story's thread with what deciding access to it needs, read together."""

    task_id: uuid.UUID
    role: str | None  # the caller's role reaching the story's task; None: none (no comments)
    comments: list[RenderedComment]


@dataclass(frozen=True, slots=True)
class CommentVersion:
    """One entry of a comment's history: the body it had from then on (None for a deletion)."""

    version: int
    action: str  # created, edited or deleted
    body: str | None
    actor_id: uuid.UUID | None  # None once that user is deleted
    created_at: datetime

    @classmethod
    def from_row(cls, row: Any) -> CommentVersion:
        return cls(
            version=row["version"],
            action=row["action"],
            body=row["body"],
            actor_id=row["actor_id"],
            created_at=row["created_at"],
        )
