"""Handlers for /sse/{user_id}, /sse/send-message and /notifications."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import orjson
from aiohttp import web

from .. import keys
from ..auth import caller, caller_gone, still_authenticated
from ..errors import ApiError, validation_error
from ..http import decode_cursor, json_response, page_limit, page_of, path_uuid, read_body
from ..openapi import endpoint
from ..policy import Action, enforce, user_decision
from ..sse import serve_stream
from ..streams import MAX_ID
from ..users.repository import UsersRepository
from ..wire import user_channel
from .repository import NotificationSource, NotificationsRepository, notification_json
from .schemas import (
    MarkReadSchema,
    NotificationPageSchema,
    NotificationSchema,
    NotifiedSchema,
    SendMessageSchema,
)
from .service import writing

_send = SendMessageSchema()
_mark = MarkReadSchema()


async def _self_only(request: web.Request, action: Action) -> uuid.UUID:
    """The path's user_id when it is the caller: 404 unknown, 403 another user."""
    user_id = path_uuid(request, "user_id")
    me = caller(request).id
    if user_id != me and await UsersRepository(request.app[keys.db_key]).get(user_id) is None:
        raise web.HTTPNotFound()
    enforce(user_decision(me, user_id, action), "user", action, request.path)
    return user_id


@endpoint(
    summary="Your notifications, live (SSE): `id: <seq>`, `event: <type>`, "
    "`data: <notification JSON>`",
    tag="notifications",
    stream="user",
    responses={200: None},
    errors=(403, 404),
    query={
        "last_event_id": "resume after this seq (the Last-Event-ID header wins)",
        "access_token": "the token, for EventSource clients that cannot send headers",
    },
    description="Replays from PostgreSQL after Last-Event-ID, then live; an unusable id "
    "gets `event: reset` first. Closed when the token is revoked or the user deleted.",
)
async def user_stream(request: web.Request) -> web.StreamResponse:
    user_id = await _self_only(request, Action.OPEN_STREAM)
    source = NotificationSource(request.app[keys.db_key], user_id)
    return await serve_stream(
        request, user_channel(user_id), source, token_hash=caller(request).token_hash
    )


@endpoint(
    summary="Send a message notification to users",
    tag="notifications",
    body=SendMessageSchema,
    responses={202: NotifiedSchema},
)
async def send_message(request: web.Request) -> web.Response:
    body = await read_body(request, _send)
    field = "user_id" if "user_id" in body else "user_ids"
    targets = [body["user_id"]] if "user_id" in body else list(dict.fromkeys(body["user_ids"]))
    me = caller(request).id
    data: dict[str, Any] = {"from": str(me), "message": body["message"], "data": body["data"]}
    if len(orjson.dumps(data)) > 64 * 1024:
        raise validation_error({"data": ["the message and its data must fit in 64 KiB"]})
    db = request.app[keys.db_key]
    try:
        async with writing(request.app) as work:
            await _refuse_unknown(NotificationsRepository(work.tx), field, targets)
            rows = await work.notify(targets, "message", data, actor_id=me)
    except asyncpg.ForeignKeyViolationError:
        # A target was deleted between the check and the insert: nothing was written (the
        # transaction rolled back, nothing published); answer as if it had been gone before.
        await _refuse_unknown(NotificationsRepository(db), field, targets)
        raise  # still all there: a foreign key this handler does not know of (a bug, 500)
    notified = sorted(str(r["user_id"]) for r in rows)
    return json_response({"notified": notified}, status=202)


async def _refuse_unknown(
    repo: NotificationsRepository, field: str, targets: list[uuid.UUID]
) -> None:
    """422 naming ``field`` when any of the targets is not a user."""
    known = await repo.existing_users(targets)
    unknown = [str(t) for t in targets if t not in known]
    if unknown:
        raise validation_error({field: [f"no such user: {u}" for u in unknown]})


@endpoint(
    summary="Your notifications, newest first, with the unread count",
    tag="notifications",
    responses={200: NotificationPageSchema},
    errors=(403, 404, 422),
    query={
        "unread": "true: only unread ones",
        "limit": "1..200, default 50",
        "cursor": "from the previous page's next",
    },
)
async def list_notifications(request: web.Request) -> web.Response:
    user_id = await _self_only(request, Action.READ_NOTIFICATIONS)
    unread = request.query.get("unread", "false").lower()
    if unread not in ("true", "false"):
        raise validation_error({"unread": ["must be true or false"]})
    limit = page_limit(request)
    cursor = decode_cursor(request, {"before": int})
    repo = NotificationsRepository(request.app[keys.db_key])
    rows = await repo.page(
        user_id, cursor["before"] if cursor else MAX_ID, limit + 1, unread_only=unread == "true"
    )
    body = page_of(rows, limit, notification_json, lambda r: {"before": r["seq"]})
    body["unread_count"] = await repo.unread_count(user_id)
    return json_response(body)


@endpoint(
    summary="Mark one of your notifications read or unread",
    tag="notifications",
    body=MarkReadSchema,
    responses={200: NotificationSchema},
    errors=(404,),
)
async def mark_notification(request: web.Request) -> web.Response:
    notification_id = path_uuid(request, "notification_id")
    repo = NotificationsRepository(request.app[keys.db_key])
    row = await repo.get(notification_id)
    if row is None or row["user_id"] != caller(request).id:
        raise web.HTTPNotFound()  # someone else's notifications are not there for you
    body = await read_body(request, _mark)
    updated = await repo.set_read(notification_id, body["read"])
    if updated is None:  # gone meanwhile: pruned, or deleted with its user (the caller)
        if not await still_authenticated(request):
            raise caller_gone()
        raise ApiError(404, f"no resource at {request.path}")
    return json_response(notification_json(updated))
