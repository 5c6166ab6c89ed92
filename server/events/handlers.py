"""HTTP for events (API.md, "Event"): parse, call the use case, render."""

from __future__ import annotations

from aiohttp import web

from .. import keys
from ..auth import caller
from ..http import (
    bad_cursor,
    decode_cursor,
    json_response,
    page_limit,
    page_of,
    path_uuid,
    read_body,
)
from ..openapi import PAGE_QUERY, endpoint
from ..policy import Action
from ..work import writing_for, writing_one_for
from . import service
from .models import EventPosition
from .schemas import (
    CreateEventSchema,
    EventPageSchema,
    EventSchema,
    UpdateEventSchema,
    event_json,
    event_position,
    parse_event_position,
)

_create = CreateEventSchema()
_update = UpdateEventSchema()


@endpoint(
    summary="Create an event you own",
    tag="events",
    body=CreateEventSchema,
    responses={201: EventSchema},
    errors=(403,),
)
async def create_event(request: web.Request) -> web.Response:
    fields = await read_body(request, _create)
    async with writing_one_for(request) as work:  # one INSERT, nobody to notify
        event = await service.do_create_event(work, caller(request).id, fields)
    return json_response(event_json(event), status=201)


@endpoint(
    summary="An event (its owner, or a member of any of its tasks)",
    tag="events",
    responses={200: EventSchema},
    errors=(404,),
)
async def get_event(request: web.Request) -> web.Response:
    event_id = path_uuid(request, "event_id")
    db = request.app[keys.db_key]
    event = await service.access_event(db, caller(request).id, event_id, Action.READ)
    return json_response(event_json(event))


@endpoint(
    summary="Change an event (owner); fields left out keep their value",
    tag="events",
    body=UpdateEventSchema,
    responses={200: EventSchema},
    errors=(403, 404),
)
async def update_event(request: web.Request) -> web.Response:
    event_id = path_uuid(request, "event_id")
    changes = await read_body(request, _update)
    async with writing_for(request) as work:
        event = await service.do_update_event(work, caller(request).id, event_id, changes)
    return json_response(event_json(event))


@endpoint(
    summary="Delete an event with all its tasks, stories, comments and invites (owner)",
    tag="events",
    responses={204: None},
    errors=(403, 404),
)
async def delete_event(request: web.Request) -> web.Response:
    event_id = path_uuid(request, "event_id")
    async with writing_for(request) as work:
        await service.do_delete_event(work, caller(request).id, event_id)
    return web.Response(status=204)


@endpoint(
    summary="The events you own, by start date",
    tag="events",
    responses={200: EventPageSchema},
    errors=(403, 404, 422),
    query=PAGE_QUERY,
)
async def list_user_events(request: web.Request) -> web.Response:
    user_id = path_uuid(request, "user_id")
    limit = page_limit(request)
    after = _after(request)
    db = request.app[keys.db_key]
    events = await service.list_own_events(db, caller(request).id, user_id, after, limit + 1)
    return json_response(page_of(events, limit, event_json, event_position))


def _after(request: web.Request) -> EventPosition | None:
    cursor = decode_cursor(request, {"start": str, "id": str})
    if cursor is None:
        return None
    try:
        return parse_event_position(cursor)
    except ValueError:
        raise bad_cursor() from None
