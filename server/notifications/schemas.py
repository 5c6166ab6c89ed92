"""Schemas for notifications and messages (API.md, "Notification", "Real-time streams")."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from ..fields import JsonObject, StrictBoolean, Text, UtcDateTime, rfc3339
from .models import TYPES, Notification


class NotificationSchema(Schema):
    id = fields.UUID(required=True)
    seq = fields.Integer(required=True, metadata={"description": "1, 2, 3... per user, no gaps"})
    user_id = fields.UUID(required=True)
    type = fields.String(required=True, validate=validate.OneOf(TYPES))
    data = fields.Dict(required=True)
    read = fields.Boolean(required=True)
    read_at = UtcDateTime(required=True, allow_none=True)
    created_at = UtcDateTime(required=True)


class NotificationPageSchema(Schema):
    items = fields.List(fields.Nested(NotificationSchema), required=True)
    next = fields.String(required=True, allow_none=True)
    unread_count = fields.Integer(required=True)


class MarkReadSchema(Schema):
    read = StrictBoolean(required=True, metadata={"example": True})


class SendMessageSchema(Schema):
    user_id = fields.UUID()
    user_ids = fields.List(
        fields.UUID(),
        validate=validate.Length(min=1, max=100),
        metadata={"example": ["0b7e7dd2-6d6a-4c1e-9a44-6f7f1b1d7a10"]},
    )
    message = Text(required=True, max_length=10_000, metadata={"example": "Lunch at noon?"})
    data = JsonObject(load_default=dict, metadata={"example": {"room": "4.02"}})

    @validates_schema
    def one_target(self, data: dict[str, Any], **kwargs: Any) -> None:
        if ("user_id" in data) == ("user_ids" in data):
            raise ValidationError("give exactly one of user_id and user_ids", "user_ids")


class NotifiedSchema(Schema):
    notified = fields.List(fields.UUID(), required=True)


def notification_json(n: Notification) -> dict[str, Any]:
    """A Notification as NotificationSchema documents it."""
    return {
        "id": str(n.id),
        "seq": n.seq,
        "user_id": str(n.user_id),
        "type": n.type,
        "data": n.data,
        "read": n.read_at is not None,
        "read_at": rfc3339(n.read_at) if n.read_at else None,
        "created_at": rfc3339(n.created_at),
    }
