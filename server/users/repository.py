"""SQL for users and tokens: queries/users.sql. Returns User, Login and Caller dataclasses or
plain values, never driver rows."""

from __future__ import annotations

import uuid

from ..db import Runner
from .models import Caller, Login, User


class UsersRepository:
    def __init__(self, db: Runner) -> None:
        self.db = db

    async def create(self, name: str, email: str, password_hash: str | None) -> User | None:
        """The new user; None when the email is taken (in any case), by a user committed
        before or by a registration racing this one."""
        row = await self.db.one(
            "users.insert_user", name=name, email=email, password_hash=password_hash
        )
        return User.from_row(row) if row else None

    async def get(self, user_id: uuid.UUID) -> User | None:
        row = await self.db.one("users.get_user_by_id", user_id=user_id)
        return User.from_row(row) if row else None

    async def login(self, email: str) -> Login | None:
        """The user with this email (any case) and its password hash."""
        row = await self.db.one("users.get_login_by_email", email=email)
        return Login.from_row(row) if row else None

    async def email_taken(self, email: str, *, other_than: uuid.UUID) -> bool:
        """Whether a user other than ``other_than`` has this email, in any case."""
        return bool(
            await self.db.value("users.email_taken_by_other", email=email, user_id=other_than)
        )

    async def update(
        self,
        user_id: uuid.UUID,
        *,
        name: str | None,
        email: str | None,
        password_hash: str | None,
    ) -> User | None:
        """A partial update (None keeps a column); None when the user is gone."""
        row = await self.db.one(
            "users.update_user",
            user_id=user_id,
            name=name,
            email=email,
            set_password=password_hash is not None,
            password_hash=password_hash,
        )
        return User.from_row(row) if row else None

    async def delete(self, user_id: uuid.UUID) -> list[bytes]:
        """Delete the user; returns the digests of the tokens that went with it."""
        rows = await self.db.many("users.list_token_hashes", user_id=user_id)
        await self.db.execute("users.delete_user", user_id=user_id)
        return [r["token_hash"] for r in rows]

    async def caller_by_token(self, token_hash: bytes) -> Caller | None:
        """The caller a token digest belongs to; None for a token unknown or revoked (a
        deleted user's tokens went with it)."""
        row = await self.db.one("users.get_user_by_token", token_hash=token_hash)
        return Caller(row["id"], token_hash) if row else None

    async def add_token(self, user_id: uuid.UUID, token_hash: bytes) -> None:
        await self.db.execute("users.insert_token", user_id=user_id, token_hash=token_hash)

    async def add_login_token(
        self, user_id: uuid.UUID, token_hash: bytes, verified_hash: str
    ) -> bool:
        """Store a login's token if the password hash is still ``verified_hash``; False when
        the password changed or the user was deleted since it was read."""
        row = await self.db.one(
            "users.insert_login_token",
            user_id=user_id,
            token_hash=token_hash,
            password_hash=verified_hash,
        )
        return row is not None

    async def revoke_token(self, token_hash: bytes) -> None:
        await self.db.execute("users.delete_token", token_hash=token_hash)

    async def revoke_other_tokens(self, user_id: uuid.UUID, keep: bytes) -> list[bytes]:
        """Revoke every token of the user but ``keep``; returns the digests revoked."""
        rows = await self.db.many(
            "users.delete_other_tokens", user_id=user_id, keep_token_hash=keep
        )
        return [r["token_hash"] for r in rows]

    async def lock_existing(self, user_ids: list[uuid.UUID]) -> set[uuid.UUID]:
        """Which of these ids are users, none of which can be deleted before this transaction
        ends."""
        rows = await self.db.many("users.lock_existing_users", user_ids=user_ids)
        return {r["id"] for r in rows}

    async def valid_token_hashes(self, token_hashes: list[bytes]) -> set[bytes]:
        """Which of these token digests still exist (not revoked, their user not deleted)."""
        found = await self.db.value("users.find_valid_token_hashes", token_hashes=token_hashes)
        return set(found or ())
