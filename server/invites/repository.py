"""SQL for invites: queries/invites.sql. Returns the dataclasses of models.py, never driver
rows."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from ..db import Runner
from .models import Invite, InviteAccess, InvitePosition

# The keyset position before every invite in a newest-first list: the driver writes
# datetime.max as infinity, and no uuid is above this one.
NEWEST = InvitePosition(datetime.max.replace(tzinfo=UTC), uuid.UUID(int=2**128 - 1))


class InvitesRepository:
    def __init__(self, db: Runner) -> None:
        self.db = db

    async def find_invitee(self, user_id: uuid.UUID | None, email: str | None) -> uuid.UUID | None:
        """The id of the user with this id, or this email in any case; None when none."""
        found: uuid.UUID | None = await self.db.value(
            "invites.find_invitee", user_id=user_id, email=email
        )
        return found

    async def has_live_pending(self, task_id: uuid.UUID, invitee_id: uuid.UUID) -> bool:
        """Whether the task has a pending, unexpired invite for the user."""
        return bool(
            await self.db.value(
                "invites.has_live_pending_invite", task_id=task_id, invitee_id=invitee_id
            )
        )

    async def create(
        self,
        task_id: uuid.UUID,
        inviter_id: uuid.UUID,
        invitee_id: uuid.UUID,
        role: str,
        expires_at: datetime | None,
    ) -> Invite:
        """A new pending invite; ``expires_at`` None: 7 days from now."""
        row = await self.db.one(
            "invites.insert_invite",
            task_id=task_id,
            inviter_id=inviter_id,
            invitee_id=invitee_id,
            role=role,
            expires_at=expires_at,
        )
        assert row is not None
        return Invite.from_row(row)

    async def lock_task(self, invite_id: uuid.UUID) -> uuid.UUID | None:
        """Hold the row of the invite's task until the transaction ends; its id, or None when
        there is no such invite."""
        task_id: uuid.UUID | None = await self.db.value(
            "invites.lock_invite_task", invite_id=invite_id
        )
        return task_id

    async def access(self, invite_id: uuid.UUID, caller_id: uuid.UUID) -> InviteAccess | None:
        """The invite as it reads now and the caller's role on its task; None when no such
        invite."""
        row = await self.db.one(
            "invites.get_invite_access", invite_id=invite_id, caller_id=caller_id
        )
        if row is None:
            return None
        return InviteAccess(Invite.from_row(row), row["caller_role"])

    async def answer(self, invite_id: uuid.UUID, status: str) -> Invite | None:
        """The invite with its new status; None when it is no longer pending or has
        expired."""
        row = await self.db.one("invites.answer_invite", invite_id=invite_id, status=status)
        return Invite.from_row(row) if row else None

    async def grant_role(self, task_id: uuid.UUID, user_id: uuid.UUID, role: str) -> None:
        """The role directly on the task: added, or a collaborator raised to maintainer."""
        await self.db.execute(
            "invites.grant_invited_role", task_id=task_id, user_id=user_id, role=role
        )

    async def received(
        self, user_id: uuid.UUID, status: str | None, before: InvitePosition | None, limit: int
    ) -> list[Invite]:
        return await self._page("invites.list_received_invites", user_id, status, before, limit)

    async def sent(
        self, user_id: uuid.UUID, status: str | None, before: InvitePosition | None, limit: int
    ) -> list[Invite]:
        return await self._page("invites.list_sent_invites", user_id, status, before, limit)

    async def _page(
        self,
        name: str,
        user_id: uuid.UUID,
        status: str | None,
        before: InvitePosition | None,
        limit: int,
    ) -> list[Invite]:
        """One page, newest first, before ``before`` (None: from the newest); ``status``
        None: every status, else only the invites that read as it."""
        position = before or NEWEST
        rows = await self.db.many(
            name,
            user_id=user_id,
            status=status,
            before_created=position.created_at,
            before_id=position.id,
            max_rows=limit,
        )
        return [Invite.from_row(r) for r in rows]
