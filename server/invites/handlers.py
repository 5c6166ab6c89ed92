"""HTTP for invites (API.md, "Invite"): parse, call the use case, render."""

from __future__ import annotations

from aiohttp import web

from .. import keys
from ..auth import caller
from ..errors import Invalid
from ..http import (
    bad_cursor,
    decode_cursor,
    json_response,
    page_limit,
    page_of,
    path_uuid,
    read_body,
)
from ..openapi import PAGE_QUERY, Query, endpoint
from ..work import writing_for
from . import service
from .models import STATUSES, InvitePosition
from .schemas import (
    AnswerInviteSchema,
    CreateInviteSchema,
    InvitePageSchema,
    InviteSchema,
    invite_json,
    invite_position,
    parse_invite_position,
)

_create = CreateInviteSchema()
_answer = AnswerInviteSchema()

LIST_QUERY = {
    "status": Query(
        "only invites that read as this: " + ", ".join(STATUSES),
        {"type": "string", "enum": list(STATUSES)},
    ),
    **PAGE_QUERY,
}


@endpoint(
    summary="Invite a user (by user_id or email) to a role on a task (a maintainer of it)",
    tag="invites",
    body=CreateInviteSchema,
    responses={201: InviteSchema},
    errors=(403, 404, 409),
    description="409 when the user already holds that role or a higher one on the task "
    "(inherited roles and the event's owner included) or has a pending invite to it that has "
    "not expired; 422 for an email no user has (nobody is created), or an expires_at in the "
    "past or more than 30 days ahead.",
)
async def create_invite(request: web.Request) -> web.Response:
    fields = await read_body(request, _create)
    async with writing_for(request) as work:
        invite = await service.do_create_invite(work, caller(request).id, fields)
    return json_response(invite_json(invite), status=201)


@endpoint(
    summary="The invites you received, newest first",
    tag="invites",
    responses={200: InvitePageSchema},
    errors=(403, 404, 422),
    query=LIST_QUERY,
)
async def list_received_invites(request: web.Request) -> web.Response:
    user_id = path_uuid(request, "user_id")
    status, limit, before = _status(request), page_limit(request), _before(request)
    db = request.app[keys.db_key]
    found = await service.list_received_invites(
        db, caller(request).id, user_id, status, before, limit + 1
    )
    return json_response(page_of(found, limit, invite_json, invite_position))


@endpoint(
    summary="The invites you sent, newest first",
    tag="invites",
    responses={200: InvitePageSchema},
    errors=(403, 404, 422),
    query=LIST_QUERY,
)
async def list_sent_invites(request: web.Request) -> web.Response:
    user_id = path_uuid(request, "user_id")
    status, limit, before = _status(request), page_limit(request), _before(request)
    db = request.app[keys.db_key]
    found = await service.list_sent_invites(
        db, caller(request).id, user_id, status, before, limit + 1
    )
    return json_response(page_of(found, limit, invite_json, invite_position))


@endpoint(
    summary="Accept or reject an invite (its invitee), or revoke it (its inviter, or a "
    "maintainer of the task)",
    tag="invites",
    body=AnswerInviteSchema,
    responses={200: InviteSchema},
    errors=(403, 404, 409),
    description="409 when the invite is no longer pending (expired included). Accepting "
    "grants the role on the task at once, raising a collaborator to maintainer, never the "
    "other way.",
)
async def answer_invite(request: web.Request) -> web.Response:
    invite_id = path_uuid(request, "invite_id")
    body = await read_body(request, _answer)
    async with writing_for(request) as work:
        invite = await service.do_answer_invite(work, caller(request).id, invite_id, body["status"])
    return json_response(invite_json(invite))


def _status(request: web.Request) -> str | None:
    status = request.query.get("status")
    if status is None:
        return None
    if status not in STATUSES:
        raise Invalid({"status": [f"must be one of {', '.join(STATUSES)}"]})
    return status


def _before(request: web.Request) -> InvitePosition | None:
    cursor = decode_cursor(request, {"created": str, "id": str})
    if cursor is None:
        return None
    try:
        return parse_invite_position(cursor)
    except ValueError:
        raise bad_cursor() from None
