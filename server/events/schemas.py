"""Schemas for events (API.md, "Event"): marshmallow in and out, and the serializers beside
the schemas they produce (tests/conftest.py checks every response body against the schema
that /openapi.json documents for it)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from marshmallow import Schema, ValidationError, fields, validates_schema

from ..fields import Text, UtcDateTime, example, rfc3339, to_utc
from .models import Event, EventPosition


class EventSchema(Schema):
    id = fields.UUID(required=True)
    title = fields.String(required=True)
    description = fields.String(required=True)
    start_date = UtcDateTime(required=True)
    end_date = UtcDateTime(required=True)
    user_id = fields.UUID(required=True, metadata={"description": "the owner"})
    created_at = UtcDateTime(required=True)
    updated_at = UtcDateTime(required=True)


class EventPageSchema(Schema):
    items = fields.List(fields.Nested(EventSchema), required=True)
    next = fields.String(required=True, allow_none=True)


def check_dates(start: Any, end: Any) -> None:
    if start is not None and end is not None and end < start:
        raise ValidationError("must not be before start_date", "end_date")


class CreateEventSchema(Schema):
    title = Text(required=True, max_length=200, single_line=True, metadata=example("Team Meeting"))
    description = Text(
        min_length=0, max_length=10_000, load_default="", metadata=example("Weekly sync")
    )
    start_date = UtcDateTime(required=True, metadata=example("2024-01-15T10:00:00Z"))
    end_date = UtcDateTime(required=True, metadata=example("2024-01-15T11:00:00Z"))
    user_id = fields.UUID(metadata={"description": "may be left out; if given, must be you"})

    @validates_schema
    def dates_in_order(self, data: dict[str, Any], **kwargs: Any) -> None:
        check_dates(data.get("start_date"), data.get("end_date"))


class UpdateEventSchema(Schema):
    title = Text(max_length=200, single_line=True, metadata=example("Team Meeting (moved)"))
    description = Text(min_length=0, max_length=10_000, metadata=example("Weekly sync, room 2"))
    start_date = UtcDateTime(metadata=example("2024-01-16T10:00:00Z"))
    end_date = UtcDateTime(metadata=example("2024-01-16T11:00:00Z"))

    @validates_schema
    def dates_in_order(self, data: dict[str, Any], **kwargs: Any) -> None:
        check_dates(data.get("start_date"), data.get("end_date"))


def event_json(event: Event) -> dict[str, Any]:
    """An Event as EventSchema documents it."""
    return {
        "id": str(event.id),
        "title": event.title,
        "description": event.description,
        "start_date": rfc3339(event.start_date),
        "end_date": rfc3339(event.end_date),
        "user_id": str(event.user_id),
        "created_at": rfc3339(event.created_at),
        "updated_at": rfc3339(event.updated_at),
    }


def event_position(event: Event) -> dict[str, str]:
    """The cursor position after ``event`` in a list ordered by (start_date, id)."""
    return {"start": event.start_date.isoformat(), "id": str(event.id)}


def parse_event_position(position: dict[str, str]) -> EventPosition:
    """``event_position`` read back; ValueError when it is not one."""
    start = datetime.fromisoformat(position["start"])
    if start.tzinfo is None:  # every position handed out carries its offset
        raise ValueError("no offset")
    return EventPosition(to_utc(start), uuid.UUID(position["id"]))
