"""Use cases of invites (API.md, "Invite"). No HTTP here: handlers parse and render, these
decide and write, and raise the domain errors of errors.py.

Every write that depends on an invite's state first takes the row lock of the invite's task
(the lock tasks take for subtask creates and collaborator changes), then reads, then writes:
creates, answers and revokes on one task take turns, so a check (no pending invite yet, the
role not yet held, still pending) reads what the previous holder committed. The answer itself
is also conditional in SQL (``invites.answer_invite``: only while pending and unexpired), so
of two racing answers exactly one changes the invite even without the lock. Notifications are
written last, in the same transaction, and published after COMMIT (work.py).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from ..db import Runner
from ..errors import Conflict, Invalid, NotFound
from ..policy import ROLE_RANK, Action, InviteFacts, enforce, invite_decision
from ..tasks.repository import TasksRepository
from ..tasks.service import access_task
from ..users.service import access_user
from ..work import Work
from .models import ACCEPTED, EXPIRED, PENDING, REVOKED, Invite, InviteAccess, InvitePosition
from .repository import InvitesRepository

INVITE = "invite"  # the notification type
LONGEST = timedelta(days=30)  # expires_at at most this far ahead; the default is 7 days (SQL)


def check_expiry(expires_at: datetime | None, now: datetime) -> None:
    """A given expiry lies in the future and at most 30 days ahead of ``now``."""
    if expires_at is None:
        return
    if expires_at <= now:
        raise Invalid({"expires_at": ["must be in the future"]})
    if expires_at > now + LONGEST:
        raise Invalid({"expires_at": ["must be at most 30 days from now"]})


def not_pending(status: str) -> Conflict:
    if status == EXPIRED:
        return Conflict("the invite has expired: ask for a new one")
    return Conflict(f"the invite was already {status}")


def _notice(invite: Invite, action: str, actor_id: uuid.UUID) -> dict[str, Any]:
    return {
        "invite_id": str(invite.id),
        "task_id": str(invite.task_id),
        "role": invite.role,
        "action": action,
        "actor_id": str(actor_id),
    }


async def do_create_invite(
    work: Work, caller_id: uuid.UUID, fields: dict[str, Any], *, now: datetime | None = None
) -> Invite:
    """A pending invite of a user (by ``user_id`` or ``email``) to ``role`` on a task, by a
    maintainer of it (NotFound for who cannot see the task, Forbidden for a collaborator).
    Invalid when no user has that id or email (nobody is created); Conflict when the user
    already holds the role or a higher one there (inherited, or as the event's owner,
    included) or has a pending invite to the task that has not expired."""
    check_expiry(fields.get("expires_at"), now or datetime.now(UTC))
    task = (await access_task(work.tx, caller_id, fields["task_id"], Action.INVITE, lock=True)).task
    invites = InvitesRepository(work.tx)
    user_id, email = fields.get("user_id"), fields.get("email")
    invitee_id = await invites.find_invitee(user_id, email)
    if invitee_id is None:
        if user_id is not None:
            raise Invalid({"user_id": ["no such user"]})
        raise Invalid({"email": ["no user has this email: only existing users can be invited"]})
    role = fields["role"]
    standing = await TasksRepository(work.tx).access(task.id, invitee_id)
    held = standing.task.my_role if standing else None
    if held is not None and ROLE_RANK[held] >= ROLE_RANK[role]:
        raise Conflict(f"the user is already a {held} of this task (directly or inherited)")
    if await invites.has_live_pending(task.id, invitee_id):
        raise Conflict("the user already has a pending invite to this task")
    invite = await invites.create(task.id, caller_id, invitee_id, role, fields.get("expires_at"))
    await work.notify(
        [invitee_id], INVITE, _notice(invite, "created", caller_id), actor_id=caller_id
    )
    return invite


async def access_invite(
    db: Runner, caller_id: uuid.UUID, invite_id: uuid.UUID, action: Action, *, lock: bool = False
) -> InviteAccess:
    """The invite (as it reads now) if the caller may do ``action`` to it: NotFound when it
    does not exist or the caller is neither its invitee, its inviter nor a maintainer of its
    task; Forbidden when the caller is one of those but may not do that. ``lock`` holds the
    task's row until the transaction ends, taken before the facts are read, so they are
    current."""
    invites = InvitesRepository(db)
    if lock and await invites.lock_task(invite_id) is None:
        raise NotFound("no such invite")
    found = await invites.access(invite_id, caller_id)
    if found is None:
        raise NotFound("no such invite")
    invite = found.invite
    facts = InviteFacts(invite.invitee_id, invite.inviter_id, found.caller_role)
    enforce(invite_decision(caller_id, facts, action), "invite", action)
    return found


async def do_answer_invite(
    work: Work, caller_id: uuid.UUID, invite_id: uuid.UUID, status: str
) -> Invite:
    """Accept or reject (the invitee), or revoke (the inviter, or a maintainer of the task) a
    pending invite; Conflict when it is no longer pending, expired included. Accepting grants
    its role directly on the task (raising a collaborator to maintainer, never lowering a
    maintainer). Accepted and rejected notify the inviter, revoked the invitee; never the
    actor."""
    action = Action.REVOKE_INVITE if status == REVOKED else Action.ANSWER_INVITE
    invite = (await access_invite(work.tx, caller_id, invite_id, action, lock=True)).invite
    if invite.status != PENDING:
        raise not_pending(invite.status)
    invites = InvitesRepository(work.tx)
    answered = await invites.answer(invite.id, status)
    if answered is None:  # expired since it was read (or answered, by a writer without the lock)
        current = await invites.access(invite.id, caller_id)
        raise not_pending(current.invite.status if current else EXPIRED)
    if status == ACCEPTED:
        await invites.grant_role(answered.task_id, answered.invitee_id, answered.role)
    told = answered.invitee_id if status == REVOKED else answered.inviter_id
    await work.notify(
        [told] if told else [], INVITE, _notice(answered, status, caller_id), actor_id=caller_id
    )
    return answered


async def list_received_invites(
    db: Runner,
    caller_id: uuid.UUID,
    user_id: uuid.UUID,
    status: str | None,
    before: InvitePosition | None,
    limit: int,
) -> list[Invite]:
    """``limit`` of the user's received invites, newest first (only the user itself)."""
    await access_user(db, caller_id, user_id, Action.LIST_RECEIVED_INVITES)
    return await InvitesRepository(db).received(user_id, status, before, limit)


async def list_sent_invites(
    db: Runner,
    caller_id: uuid.UUID,
    user_id: uuid.UUID,
    status: str | None,
    before: InvitePosition | None,
    limit: int,
) -> list[Invite]:
    """``limit`` of the invites the user sent, newest first (only the user itself)."""
    await access_user(db, caller_id, user_id, Action.LIST_SENT_INVITES)
    return await InvitesRepository(db).sent(user_id, status, before, limit)
