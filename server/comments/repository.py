"""SQL for comments: queries/comments.sql. Returns the dataclasses of models.py, never driver
rows."""

from __future__ import annotations

import uuid

from ..db import Runner
from .models import Comment, CommentAccess, CommentVersion, RenderedComment, ThreadPage


class CommentsRepository:
    def __init__(self, db: Runner) -> None:
        self.db = db

    async def access(self, comment_id: uuid.UUID, caller_id: uuid.UUID) -> CommentAccess | None:
        """The comment with its story's task and the caller's role there; None when no such
        comment."""
        row = await self.db.one(
            "comments.get_comment_access", comment_id=comment_id, caller_id=caller_id
        )
        if row is None:
            return None
        return CommentAccess(Comment.from_row(row), row["task_id"], row["my_role"])

    async def lock(self, comment_id: uuid.UUID) -> bool:
        """Hold the comment row until the transaction ends; False when no such comment."""
        return await self.db.value("comments.lock_comment", comment_id=comment_id) is not None

    async def story_of(self, comment_id: uuid.UUID) -> uuid.UUID | None:
        """The story a comment belongs to; None when no such comment."""
        row = await self.db.one("comments.get_comment_story", comment_id=comment_id)
        return row["story_id"] if row else None

    async def create(
        self, story_id: uuid.UUID, parent_id: uuid.UUID | None, author_id: uuid.UUID, body: str
    ) -> Comment | None:
        """The new comment, last in the story's thread; None when the story is gone."""
        row = await self.db.one(
            "comments.insert_comment",
            story_id=story_id,
            parent_id=parent_id,
            author_id=author_id,
            body=body,
        )
        return Comment.from_row(row) if row else None

    async def edit(self, comment: Comment, body: str, actor_id: uuid.UUID) -> Comment | None:
        """The comment at its next version with ``body``; None when it is no longer at
        ``comment.version`` or is deleted."""
        row = await self.db.one(
            "comments.edit_comment",
            comment_id=comment.id,
            version=comment.version,
            body=body,
            actor_id=actor_id,
        )
        return Comment.from_row(row) if row else None

    async def delete(self, comment: Comment, actor_id: uuid.UUID) -> Comment | None:
        """The comment marked deleted at its next version; None when it is no longer at
        ``comment.version`` or is deleted already."""
        row = await self.db.one(
            "comments.delete_comment",
            comment_id=comment.id,
            version=comment.version,
            actor_id=actor_id,
        )
        return Comment.from_row(row) if row else None

    async def thread(
        self, story_id: uuid.UUID, caller_id: uuid.UUID, after: int, limit: int
    ) -> ThreadPage | None:
        """Up to ``limit`` comments of the story after position ``after``, with the caller's
        role on its task, in one statement; None when no such story."""
        rows = await self.db.many(
            "comments.list_story_comments",
            story_id=story_id,
            caller_id=caller_id,
            after_position=after,
            max_rows=limit,
        )
        if not rows:
            return None
        comments = [RenderedComment.from_row(r) for r in rows if r["id"] is not None]
        return ThreadPage(rows[0]["task_id"], rows[0]["my_role"], comments)

    async def versions(self, comment_id: uuid.UUID, after: int, limit: int) -> list[CommentVersion]:
        rows = await self.db.many(
            "comments.list_comment_versions",
            comment_id=comment_id,
            after_version=after,
            max_rows=limit,
        )
        return [CommentVersion.from_row(r) for r in rows]
