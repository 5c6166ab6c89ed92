"""SQL for users and tokens: queries/users.sql."""

from __future__ import annotations

import uuid

import asyncpg

from ..db import Runner
from ..errors import ApiError


def email_taken() -> ApiError:
    return ApiError(409, "a user with this email already exists", errors=None)


class UsersRepository:
    def __init__(self, db: Runner) -> None:
        self.db = db

    async def create(self, name: str, email: str, password_hash: str | None) -> asyncpg.Record:
        try:
            row = await self.db.one(
                "users.insert_user", name=name, email=email, password_hash=password_hash
            )
        except asyncpg.UniqueViolationError:
            raise email_taken() from None
        assert row is not None
        return row

    async def get(self, user_id: uuid.UUID) -> asyncpg.Record | None:
        return await self.db.one("users.get_user_by_id", user_id=user_id)

    async def login_row(self, email: str) -> asyncpg.Record | None:
        return await self.db.one("users.get_login_by_email", email=email)

    async def update(
        self,
        user_id: uuid.UUID,
        *,
        name: str | None,
        email: str | None,
        password_hash: str | None,
    ) -> asyncpg.Record | None:
        try:
            return await self.db.one(
                "users.update_user",
                user_id=user_id,
                name=name,
                email=email,
                set_password=password_hash is not None,
                password_hash=password_hash,
            )
        except asyncpg.UniqueViolationError:
            raise email_taken() from None

    async def delete(self, user_id: uuid.UUID) -> list[bytes]:
        """Delete the user; returns the digests of the tokens that went with it."""
        rows = await self.db.many("users.list_token_hashes", user_id=user_id)
        await self.db.execute("users.delete_user", user_id=user_id)
        return [r["token_hash"] for r in rows]

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
        rows = await self.db.many(
            "users.delete_other_tokens", user_id=user_id, keep_token_hash=keep
        )
        return [r["token_hash"] for r in rows]

    async def lock_existing(self, user_ids: list[uuid.UUID]) -> set[uuid.UUID]:
        """Which of these ids are users, none of which can be deleted before this transaction
        ends."""
        rows = await self.db.many("users.lock_existing_users", user_ids=user_ids)
        return {r["id"] for r in rows}
