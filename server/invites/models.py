"""What the invites repository hands to the layers above."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

# The roles an invite offers are the tasks' (re-exported: schemas import only their models).
from ..tasks.models import ROLES as ROLES

PENDING, ACCEPTED, REJECTED, REVOKED, EXPIRED = (
    "pending", "accepted", "rejected", "revoked", "expired",
)  # fmt: skip
# What an invite reads as. The database stores the first four (invites_status_check); a
# pending invite past its expires_at reads as expired (computed by queries/invites.sql).
STATUSES = (PENDING, ACCEPTED, REJECTED, REVOKED, EXPIRED)
# What PATCH /invites/{id} may set: the invitee accepts or rejects, the inviter or a
# maintainer revokes.
ANSWERS = (ACCEPTED, REJECTED, REVOKED)


@dataclass(frozen=True, slots=True)
class Invite:
    id: uuid.UUID
    task_id: uuid.UUID
    inviter_id: uuid.UUID | None  # None once the inviter deleted its account
    invitee_id: uuid.UUID
    role: str
    status: str  # one of STATUSES, as it reads now
    expires_at: datetime
    created_at: datetime
    responded_at: datetime | None  # when it was accepted, rejected or revoked

    @classmethod
    def from_row(cls, row: Any) -> Invite:
        return cls(
            id=row["id"],
            task_id=row["task_id"],
            inviter_id=row["inviter_id"],
            invitee_id=row["invitee_id"],
            role=row["role"],
            status=row["status"],
            expires_at=row["expires_at"],
            created_at=row["created_at"],
            responded_at=row["responded_at"],
        )


@dataclass(frozen=True, slots=True)
class InviteAccess:
    """The facts a decision on an invite needs, loaded in one query."""

    invite: Invite
    caller_role: str | None  # the caller's role on the invite's task; None: none reaches it


@dataclass(frozen=True, slots=True)
class InvitePosition:
    """Where a page of invites (newest first: created_at, then id, descending) continues."""

    created_at: datetime
    id: uuid.UUID
