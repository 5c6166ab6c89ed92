"""Handlers for /events (API.md, "Event")."""

from __future__ import annotations

from typing import Any

import asyncpg
from aiohttp import web
from marshmallow import ValidationError

from .. import keys
from ..auth import caller, caller_gone, still_authenticated
from ..errors import ApiError, validation_error
from ..http import json_response, page, page_limit, path_uuid, read_body, rfc3339
from ..openapi import endpoint
from ..policy import Action, EventFacts, enforce, event_decision
from .repository import EventsRepository
from .schemas import (
    CreateEventSchema,
    EventSchema,
    TaskPageSchema,
    UpdateEventSchema,
    check_dates,
)

_create = CreateEventSchema()
_update = UpdateEventSchema()


def event_json(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "title": row["title"],
        "description": row["description"],
        "start_date": rfc3339(row["start_date"]),
        "end_date": rfc3339(row["end_date"]),
        "user_id": str(row["user_id"]),
        "created_at": rfc3339(row["created_at"]),
        "updated_at": rfc3339(row["updated_at"]),
    }


async def _authorized_event(request: web.Request, action: Action) -> asyncpg.Record:
    event_id = path_uuid(request, "event_id")
    row = await EventsRepository(request.app[keys.db_key]).get(event_id)
    if row is None:
        raise web.HTTPNotFound()
    # Task membership joins these facts when tasks exist; until then only owners see events.
    facts = EventFacts(owner_id=row["user_id"])
    enforce(event_decision(caller(request).id, facts, action), "event", action, request.path)
    return row


@endpoint(
    summary="Create an event you own",
    tag="events",
    body=CreateEventSchema,
    responses={201: EventSchema},
    errors=(403,),
)
async def create_event(request: web.Request) -> web.Response:
    body = await read_body(request, _create)
    me = caller(request).id
    if body.get("user_id") not in (None, me):
        raise ApiError(403, "user_id, if given, must be your own id: events are yours")
    try:
        row = await EventsRepository(request.app[keys.db_key]).create(me, body)
    except asyncpg.ForeignKeyViolationError:  # the caller was deleted meanwhile
        raise caller_gone() from None
    return json_response(event_json(row), status=201)


@endpoint(
    summary="An event (its owner, or a member of any of its tasks)",
    tag="events",
    responses={200: EventSchema},
    errors=(404,),
)
async def get_event(request: web.Request) -> web.Response:
    return json_response(event_json(await _authorized_event(request, Action.READ)))


@endpoint(
    summary="Change an event (owner); fields left out keep their value",
    tag="events",
    body=UpdateEventSchema,
    responses={200: EventSchema},
    errors=(403, 404),
)
async def update_event(request: web.Request) -> web.Response:
    row = await _authorized_event(request, Action.UPDATE)
    changes = await read_body(request, _update)
    try:
        check_dates(
            changes.get("start_date", row["start_date"]), changes.get("end_date", row["end_date"])
        )
    except ValidationError as exc:
        raise validation_error({"end_date": list(exc.messages)}) from None
    try:
        updated = await EventsRepository(request.app[keys.db_key]).update(row["id"], changes)
    except asyncpg.CheckViolationError:  # a concurrent change moved the other date
        raise validation_error({"end_date": ["must not be before start_date"]}) from None
    if updated is None:  # deleted meanwhile, by its owner or with its owner
        if not await still_authenticated(request):
            raise caller_gone()
        raise web.HTTPNotFound()
    return json_response(event_json(updated))


@endpoint(
    summary="Delete an event with all its tasks, stories, comments and invites (owner)",
    tag="events",
    responses={204: None},
    errors=(403, 404),
)
async def delete_event(request: web.Request) -> web.Response:
    row = await _authorized_event(request, Action.DELETE)
    await EventsRepository(request.app[keys.db_key]).delete(row["id"])
    return web.Response(status=204)


@endpoint(
    summary="The tasks of an event that you can see, each with parent_id",
    tag="events",
    responses={200: TaskPageSchema},
    errors=(404, 422),
    query={"limit": "1..200, default 50", "cursor": "from the previous page's next"},
)
async def list_event_tasks(request: web.Request) -> web.Response:
    await _authorized_event(request, Action.LIST_TASKS)
    limit = page_limit(request)
    return json_response(page([], limit, None))  # tasks arrive with the tasks issue
