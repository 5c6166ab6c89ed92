"""Schemas for users and tokens (API.md, "Authentication", "User"): marshmallow in and out,
and the serializers beside the schemas they produce (tests/conftest.py checks every response
body against the schema that /openapi.json documents for it). No password hash is ever
rendered: the serializers take a User, which has none."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields

from ..fields import EmailAddress, Text, UtcDateTime, example, rfc3339
from .models import NewToken, User


class UserSchema(Schema):
    id = fields.UUID(required=True)
    name = fields.String(required=True)
    email = fields.String(required=True)
    created_at = UtcDateTime(required=True)
    updated_at = UtcDateTime(required=True)


class NewUserSchema(UserSchema):
    token = fields.String(required=True, metadata={"description": "an API token for this user"})


class CreateUserSchema(Schema):
    name = Text(required=True, max_length=200, single_line=True, metadata=example("Ada Lovelace"))
    email = EmailAddress(required=True, metadata=example("ada@example.com"))
    password = Text(min_length=8, max_length=1024, metadata=example("a long passphrase"))


class UpdateUserSchema(Schema):
    name = Text(max_length=200, single_line=True, metadata=example("Ada King"))
    email = EmailAddress(metadata=example("ada.king@example.com"))
    password = Text(min_length=8, max_length=1024, metadata=example("a new long passphrase"))


class LoginSchema(Schema):
    # Not validated as an email: a malformed one simply matches no user (the same 401).
    email = Text(required=True, max_length=320, metadata=example("ada@example.com"))
    password = Text(required=True, max_length=1024, metadata=example("a long passphrase"))


class TokenSchema(Schema):
    token = fields.String(required=True)
    user = fields.Nested(UserSchema, required=True)


def user_json(user: User) -> dict[str, Any]:
    """A User as UserSchema documents it."""
    return {
        "id": str(user.id),
        "name": user.name,
        "email": user.email,
        "created_at": rfc3339(user.created_at),
        "updated_at": rfc3339(user.updated_at),
    }


def new_user_json(new: NewToken) -> dict[str, Any]:
    """A registration's answer as NewUserSchema documents it: the user and its first token."""
    return {**user_json(new.user), "token": new.token}


def token_json(new: NewToken) -> dict[str, Any]:
    """A login's answer as TokenSchema documents it."""
    return {"token": new.token, "user": user_json(new.user)}
