"""Schemas for invites (API.md, "Invite"): marshmallow in and out, and the serializers beside
the schemas they produce (tests/conftest.py checks every response body against the schema
that /openapi.json documents for it)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from ..fields import EmailAddress, UtcDateTime, example, rfc3339, to_utc
from .models import ANSWERS, ROLES, STATUSES, Invite, InvitePosition


class InviteSchema(Schema):
    id = fields.UUID(required=True)
    task_id = fields.UUID(required=True)
    inviter_id = fields.UUID(
        required=True, allow_none=True, metadata={"description": "null once the inviter left"}
    )
    invitee_id = fields.UUID(required=True)
    role = fields.String(required=True, validate=validate.OneOf(ROLES))
    status = fields.String(
        required=True,
        validate=validate.OneOf(STATUSES),
        metadata={"description": "a pending invite past expires_at reads as expired"},
    )
    expires_at = UtcDateTime(required=True)
    created_at = UtcDateTime(required=True)
    responded_at = UtcDateTime(
        required=True,
        allow_none=True,
        metadata={"description": "when it was accepted, rejected or revoked"},
    )


class InvitePageSchema(Schema):
    items = fields.List(fields.Nested(InviteSchema), required=True)
    next = fields.String(required=True, allow_none=True)


class CreateInviteSchema(Schema):
    task_id = fields.UUID(required=True, metadata=example("5f0c8a9e-3b1d-4c52-9d7e-2a4b6c8d0e1f"))
    user_id = fields.UUID(
        metadata={"description": "who is invited: give this or email", **example(
            "0b7e7dd2-6d6a-4c1e-9a44-6f7f1b1d7a10"
        )}
    )  # fmt: skip
    email = EmailAddress(
        metadata={"description": "who is invited (an existing user): give this or user_id"}
    )
    role = fields.String(
        required=True, validate=validate.OneOf(ROLES), metadata=example("collaborator")
    )
    expires_at = UtcDateTime(
        allow_none=True,
        load_default=None,
        metadata={"description": "in the future, at most 30 days ahead; default: 7 days"},
    )

    @validates_schema
    def one_invitee(self, data: dict[str, Any], **kwargs: Any) -> None:
        if ("user_id" in data) == ("email" in data):
            message = "give exactly one of user_id and email"
            raise ValidationError({"user_id": [message], "email": [message]})


class AnswerInviteSchema(Schema):
    status = fields.String(
        required=True,
        validate=validate.OneOf(ANSWERS),
        metadata={
            "description": "accepted or rejected (the invitee), revoked (the inviter or a "
            "maintainer of the task)",
            **example("accepted"),
        },
    )


def invite_json(invite: Invite) -> dict[str, Any]:
    """An Invite as InviteSchema documents it."""
    return {
        "id": str(invite.id),
        "task_id": str(invite.task_id),
        "inviter_id": str(invite.inviter_id) if invite.inviter_id else None,
        "invitee_id": str(invite.invitee_id),
        "role": invite.role,
        "status": invite.status,
        "expires_at": rfc3339(invite.expires_at),
        "created_at": rfc3339(invite.created_at),
        "responded_at": rfc3339(invite.responded_at) if invite.responded_at else None,
    }


def invite_position(invite: Invite) -> dict[str, str]:
    """The cursor position after ``invite`` in a newest-first list."""
    return {"created": invite.created_at.isoformat(), "id": str(invite.id)}


def parse_invite_position(position: dict[str, str]) -> InvitePosition:
    """``invite_position`` read back; ValueError when it is not one."""
    created = datetime.fromisoformat(position["created"])
    if created.tzinfo is None:  # every position handed out carries its offset
        raise ValueError("no offset")
    return InvitePosition(to_utc(created), uuid.UUID(position["id"]))
