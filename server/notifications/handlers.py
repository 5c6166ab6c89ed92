"""HTTP for /sse/{user_id}, /sse/send-message and /notifications: parse, call the use case,
render."""

from __future__ import annotations

from aiohttp import web

from .. import keys
from ..auth import caller
from ..errors import Invalid
from ..http import decode_cursor, json_response, page_limit, page_of, path_uuid, read_body
from ..openapi import PAGE_QUERY, Query, endpoint
from ..policy import Action
from ..sse import serve_stream
from ..streams import MAX_ID
from ..wire import user_channel
from ..work import writing_for
from . import service
from .schemas import (
    MarkReadSchema,
    NotificationPageSchema,
    NotificationSchema,
    NotifiedSchema,
    SendMessageSchema,
    notification_json,
)

_send = SendMessageSchema()
_mark = MarkReadSchema()


@endpoint(
    summary="Your notifications, live (SSE): `id: <seq>`, `event: <type>`, "
    "`data: <notification JSON>`",
    tag="notifications",
    stream="user",
    stream_data="Notification",
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
    user_id = path_uuid(request, "user_id")
    db = request.app[keys.db_key]
    me = caller(request)
    await service.access_own(db, me.id, user_id, Action.OPEN_STREAM)
    source = service.NotificationSource(db, user_id)
    # At most SSE_MAX_STREAMS_PER_USER of the user's streams in this process; the oldest goes.
    return await serve_stream(
        request,
        user_channel(user_id),
        source,
        token_hash=me.token_hash,
        keep_at_most=request.app[keys.settings_key].sse_max_streams_per_user,
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
    async with writing_for(request) as work:
        sent = await service.do_send_message(
            work, caller(request).id, targets, field, body["message"], body["data"]
        )
    return json_response({"notified": sorted(str(n.user_id) for n in sent)}, status=202)


@endpoint(
    summary="Your notifications, newest first, with the unread count",
    tag="notifications",
    responses={200: NotificationPageSchema},
    errors=(403, 404, 422),
    query={
        "unread": Query("true: only unread ones", {"type": "boolean", "default": False}),
        **PAGE_QUERY,
    },
)
async def list_notifications(request: web.Request) -> web.Response:
    user_id = path_uuid(request, "user_id")
    unread = request.query.get("unread", "false").lower()
    if unread not in ("true", "false"):
        raise Invalid({"unread": ["must be true or false"]})
    limit = page_limit(request)
    cursor = decode_cursor(request, {"before": int})
    items, unread_count = await service.list_notifications(
        request.app[keys.db_key],
        caller(request).id,
        user_id,
        unread_only=unread == "true",
        before_seq=cursor["before"] if cursor else MAX_ID,
        limit=limit + 1,
    )
    body = page_of(items, limit, notification_json, lambda n: {"before": n.seq})
    body["unread_count"] = unread_count
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
    db = request.app[keys.db_key]
    notification = await service.access_notification(db, caller(request).id, notification_id)
    body = await read_body(request, _mark)
    async with writing_for(request) as work:
        marked = await service.do_mark_read(work, notification, body["read"])
    return json_response(notification_json(marked))
