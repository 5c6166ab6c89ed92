"""Schemas for comments (API.md, "Comment"): marshmallow in and out, and the serializers
beside the schemas they produce (tests/conftest.py checks every response body against the
schema that /openapi.json documents for it)."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields

from ..fields import Text, UtcDateTime, example, rfc3339
from .models import MAX_BODY_CHARS, Comment, CommentVersion


def _body(**kwargs: Any) -> Text:
    """A comment's text: 1..10,000 characters, any but NUL, line breaks kept exactly."""
    return Text(max_length=MAX_BODY_CHARS, **kwargs)


class CommentSchema(Schema):
    id = fields.UUID(required=True)
    story_id = fields.UUID(required=True)
    parent_id = fields.UUID(
        required=True, allow_none=True, metadata={"description": "null: a top-level comment"}
    )
    author_id = fields.UUID(
        required=True, allow_none=True, metadata={"description": "null once the user is deleted"}
    )
    body = fields.String(
        required=True, allow_none=True, metadata={"description": "null once deleted"}
    )
    edited = fields.Boolean(required=True, metadata={"description": "edited at least once"})
    deleted = fields.Boolean(
        required=True, metadata={"description": "a placeholder: it keeps its place and replies"}
    )
    created_at = UtcDateTime(required=True)
    updated_at = UtcDateTime(required=True)


class CommentPageSchema(Schema):
    items = fields.List(fields.Nested(CommentSchema), required=True)
    next = fields.String(required=True, allow_none=True)


class CommentVersionSchema(Schema):
    version = fields.Integer(required=True, metadata={"description": "1, 2, 3..."})
    body = fields.String(
        required=True,
        allow_none=True,
        metadata={"description": "the body from this version on; null for deleted, and for "
                  "every version once the comment is deleted"},
    )  # fmt: skip
    action = fields.String(required=True, metadata={"enum": ["created", "edited", "deleted"]})
    actor_id = fields.UUID(
        required=True, allow_none=True, metadata={"description": "null once the user is deleted"}
    )
    created_at = UtcDateTime(required=True)


class CommentHistorySchema(Schema):
    items = fields.List(fields.Nested(CommentVersionSchema), required=True)
    next = fields.String(required=True, allow_none=True)


class CreateCommentSchema(Schema):
    story_id = fields.UUID(required=True, metadata=example("0b7e3f5a-9c41-4d2e-8f6a-1c3d5e7f9a2b"))
    body = _body(
        required=True, metadata=example("Agreed, <@5f0c8a9e-3b1d-4c52-9d7e-2a4b6c8d0e1f>.")
    )
    parent_id = fields.UUID(
        load_default=None,
        allow_none=True,
        metadata={**example("7d2c4e6f-8a0b-4c1d-9e3f-5a7b9c1d3e5f"),
                  "description": "the comment this replies to, in the same story"},
    )  # fmt: skip


class UpdateCommentSchema(Schema):
    body = _body(metadata=example("Agreed, with one change."))


def comment_json(comment: Comment) -> dict[str, Any]:
    """A Comment as CommentSchema documents it: a deleted one as its placeholder."""
    return {
        "id": str(comment.id),
        "story_id": str(comment.story_id),
        "parent_id": str(comment.parent_id) if comment.parent_id else None,
        "author_id": str(comment.author_id) if comment.author_id else None,
        "body": None if comment.deleted else comment.body,
        "edited": comment.edited,
        "deleted": comment.deleted,
        "created_at": rfc3339(comment.created_at),
        "updated_at": rfc3339(comment.updated_at),
    }


def version_json(version: CommentVersion) -> dict[str, Any]:
    return {
        "version": version.version,
        "body": version.body,
        "action": version.action,
        "actor_id": str(version.actor_id) if version.actor_id else None,
        "created_at": rfc3339(version.created_at),
    }


def version_position(version: CommentVersion) -> dict[str, int]:
    return {"after": version.version}
