"""Schemas for stories (API.md, "Story"): marshmallow in and out, and the serializers beside
the schemas they produce (tests/conftest.py checks every response body against the schema
that /openapi.json documents for it)."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, ValidationError, fields

from ..fields import StrictBoolean, Text, UtcDateTime, example, rfc3339
from .models import MAX_CONTENT_BYTES, Revision, RevisionChange, Story

MAX_REVISION = 2**31 - 1


class Content(Text):
    """A story's Markdown: any characters but NUL, line breaks kept exactly, at most
    MAX_CONTENT_BYTES bytes once encoded as UTF-8 (the database's stories_content_check)."""

    def __init__(self, **kwargs: Any) -> None:
        metadata = {
            "description": f"Markdown, at most {MAX_CONTENT_BYTES} bytes of UTF-8",
            **kwargs.pop("metadata", {}),
        }
        super().__init__(min_length=0, max_length=MAX_CONTENT_BYTES, metadata=metadata, **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        text = super()._deserialize(value, attr, data, **kwargs)
        try:
            size = len(text.encode("utf-8"))
        except UnicodeEncodeError:
            raise ValidationError("must be valid Unicode (no lone surrogates)") from None
        if size > MAX_CONTENT_BYTES:
            raise ValidationError(f"must be at most {MAX_CONTENT_BYTES} bytes of UTF-8, got {size}")
        return text


class RevisionNumber(fields.Integer):
    """A JSON integer 1..2**31-1: not a float, a string or a boolean."""

    def __init__(self, **kwargs: Any) -> None:
        metadata = {"minimum": 1, "maximum": MAX_REVISION, **kwargs.pop("metadata", {})}
        super().__init__(strict=True, metadata=metadata, **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValidationError("must be an integer")
        if not 1 <= value <= MAX_REVISION:
            raise ValidationError(f"must be from 1 to {MAX_REVISION}")
        return value


def _title(**kwargs: Any) -> Text:
    return Text(max_length=200, single_line=True, **kwargs)


class StorySchema(Schema):
    id = fields.UUID(required=True)
    task_id = fields.UUID(required=True)
    title = fields.String(required=True)
    content = fields.String(required=True)
    revision = fields.Integer(
        required=True, metadata={"description": "1, then one more on every change; the ETag"}
    )
    author_id = fields.UUID(
        required=True, allow_none=True, metadata={"description": "null once the user is deleted"}
    )
    created_at = UtcDateTime(required=True)
    updated_at = UtcDateTime(required=True)


class EditedStorySchema(StorySchema):
    merged = fields.Boolean(
        required=True, metadata={"description": "true when a stale edit was merged"}
    )


class StoryPageSchema(Schema):
    items = fields.List(fields.Nested(StorySchema), required=True)
    next = fields.String(required=True, allow_none=True)


class ConflictSchema(Schema):
    base = fields.String(required=True)
    ours = fields.String(required=True, metadata={"description": "the submitted content"})
    theirs = fields.String(required=True, metadata={"description": "the current content"})


class StoryProblemSchema(Schema):
    """A 409 or 412 of a story write: the revision the story is at, and for a merge that
    conflicts, each conflicting region in its three versions."""

    type = fields.String(required=True)
    title = fields.String(required=True)
    status = fields.Integer(required=True)
    detail = fields.String(required=True)
    errors = fields.Dict(keys=fields.String(), values=fields.List(fields.String()))
    current_revision = fields.Integer(metadata={"description": "the story's revision now"})
    conflicts = fields.List(
        fields.Nested(ConflictSchema), metadata={"description": "merge: true only, in base order"}
    )


class CreateStorySchema(Schema):
    task_id = fields.UUID(required=True, metadata=example("5f0c8a9e-3b1d-4c52-9d7e-2a4b6c8d0e1f"))
    title = _title(required=True, metadata=example("Keynote"))
    content = Content(load_default="", metadata=example("# Keynote\n\nOpening words.\n"))


class UpdateStorySchema(Schema):
    title = _title(metadata=example("Keynote (final)"))
    content = Content(metadata=example("# Keynote\n\nOpening words, shorter.\n"))


class EditContentSchema(Schema):
    content = Content(required=True, metadata=example("# Keynote\n\nOpening words.\n"))
    base_revision = RevisionNumber(
        metadata={**example(1), "description": "the revision the edit started from"}
    )
    merge = StrictBoolean(
        load_default=False,
        metadata={**example(True), "description": "merge a stale edit instead of a 409"},
    )


class RevisionSchema(Schema):
    revision = fields.Integer(required=True)
    title = fields.String(required=True)
    content = fields.String(required=True)
    author_id = fields.UUID(required=True, allow_none=True)
    created_at = UtcDateTime(required=True)


class RevisionChangeSchema(Schema):
    revision = fields.Integer(required=True)
    title = fields.String(required=True)
    author_id = fields.UUID(required=True, allow_none=True)
    created_at = UtcDateTime(required=True)
    diff = fields.String(
        required=True, metadata={"description": "unified diff from the revision before"}
    )


class RevisionPageSchema(Schema):
    items = fields.List(fields.Nested(RevisionChangeSchema), required=True)
    next = fields.String(required=True, allow_none=True)


class DiffSchema(Schema):
    from_ = fields.Integer(required=True, data_key="from")
    to = fields.Integer(required=True)
    diff = fields.String(required=True, metadata={"description": "unified diff; empty if equal"})


def story_json(story: Story) -> dict[str, Any]:
    """A Story as StorySchema documents it."""
    return {
        "id": str(story.id),
        "task_id": str(story.task_id),
        "title": story.title,
        "content": story.content,
        "revision": story.revision,
        "author_id": str(story.author_id) if story.author_id else None,
        "created_at": rfc3339(story.created_at),
        "updated_at": rfc3339(story.updated_at),
    }


def story_position(story: Story) -> dict[str, str]:
    return {"id": str(story.id)}


def revision_json(revision: Revision) -> dict[str, Any]:
    return {
        "revision": revision.revision,
        "title": revision.title,
        "content": revision.content,
        "author_id": str(revision.author_id) if revision.author_id else None,
        "created_at": rfc3339(revision.created_at),
    }


def revision_change_json(change: RevisionChange) -> dict[str, Any]:
    return {
        "revision": change.revision,
        "title": change.title,
        "author_id": str(change.author_id) if change.author_id else None,
        "created_at": rfc3339(change.created_at),
        "diff": change.diff,
    }


def revision_position(change: RevisionChange) -> dict[str, int]:
    return {"after": change.revision}
