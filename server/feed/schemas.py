"""Schemas for the value feed (API.md, "The value feed"): marshmallow in and out, and the
serializer beside the schema it produces."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields

from ..fields import Text, UtcDateTime, rfc3339
from .models import Value


class AddValueSchema(Schema):
    value = Text(required=True, min_length=1, max_length=10_000, metadata={"example": "21.5"})


class AddValueResponseSchema(Schema):
    message = fields.String(required=True)


class ValueSchema(Schema):
    id = fields.Integer(required=True, metadata={"description": "the feed's `id:`"})
    value = fields.String(required=True)
    created_at = UtcDateTime(required=True)


class ValuePageSchema(Schema):
    items = fields.List(fields.Nested(ValueSchema), required=True)
    next = fields.String(required=True, allow_none=True)


def value_json(value: Value) -> dict[str, Any]:
    """A Value as ValueSchema documents it."""
    return {"id": value.id, "value": value.value, "created_at": rfc3339(value.created_at)}
