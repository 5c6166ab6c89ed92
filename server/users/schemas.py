"""Request and response schemas for users and tokens (API.md, "Authentication", "User")."""

from __future__ import annotations

from marshmallow import Schema, fields

from ..fields import EmailAddress, Text, UtcDateTime, example


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
