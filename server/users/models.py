"""What the users repository hands to the layers above."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class User:
    id: uuid.UUID
    name: str
    email: str  # as given at registration; unique case-insensitively
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_row(cls, row: Any) -> User:
        return cls(
            id=row["id"],
            name=row["name"],
            email=row["email"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
        )


@dataclass(frozen=True, slots=True)
class Login:
    """A user as a login attempt sees it: the password hash to verify against (None: the user
    has no password yet). Only the service reads the hash; serializers get ``user``."""

    user: User
    password_hash: str | None

    @classmethod
    def from_row(cls, row: Any) -> Login:
        return cls(User.from_row(row), row["password_hash"])


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is calling: the user a request's token belongs to, and that token's digest."""

    id: uuid.UUID
    token_hash: bytes


@dataclass(frozen=True, slots=True)
class NewToken:
    """A token just issued (registration or login), and its user. The token in clear exists
    only here, to be answered once; the database keeps its digest."""

    token: str
    user: User
