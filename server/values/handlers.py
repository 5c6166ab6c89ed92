"""Handlers and schemas of the value feed (API.md, "The value feed")."""

from __future__ import annotations

from typing import Any

import asyncpg
from aiohttp import web
from marshmallow import Schema, fields

from .. import keys
from ..auth import require_caller
from ..errors import ApiError
from ..fields import Text, rfc3339
from ..http import decode_cursor, json_response, page_limit, page_of, read_body
from ..openapi import endpoint
from ..sse import serve_stream
from ..streams import MAX_ID
from ..wire import FEED_CHANNEL
from .repository import FeedSource, ValuesRepository
from .writer import WriterStopped


class AddValueSchema(Schema):
    value = Text(required=True, min_length=1, max_length=10_000)


class ValueSchema(Schema):
    id = fields.Integer(required=True)
    value = fields.String(required=True)
    created_at = fields.DateTime(required=True, format="iso")


class ValuePageSchema(Schema):
    items = fields.List(fields.Nested(ValueSchema), required=True)
    next = fields.String(allow_none=True, required=True)


class AddValueResponseSchema(Schema):
    message = fields.String(required=True)


_add_value_schema = AddValueSchema()


@endpoint(
    summary="Store a value; every /events/ stream gets it",
    tag="value feed",
    public=True,
    body=AddValueSchema,
    responses={200: AddValueResponseSchema},
)
async def add_value(request: web.Request) -> web.Response:
    """Store a value; answer once it is committed. Every /events/ stream then gets it."""
    if request.app[keys.settings_key].feed_require_token:
        await require_caller(request)
    body = await read_body(request, _add_value_schema)
    try:
        await request.app[keys.feed_writer_key].add(body["value"])
    except WriterStopped:
        # Whether it was committed is unknown; a retry may store it twice, which a feed of
        # readings tolerates better than a value silently lost.
        raise ApiError(
            503, "the server is stopping; send the value again", headers={"Retry-After": "1"}
        ) from None
    return json_response({"message": "Value added successfully"})


@endpoint(
    summary="The live value feed (SSE): `id: <value id>`, `data: <value>`",
    tag="value feed",
    public=True,
    stream="feed",
    responses={200: None},
    query={"last_event_id": "resume after this id (the Last-Event-ID header wins)"},
    description="Resume with Last-Event-ID: every value after it, then live ones. An "
    "unusable id gets `event: reset` with the newest id first.",
)
async def feed_events(request: web.Request) -> web.StreamResponse:
    """The live feed over SSE: `id: <value id>` and `data: <value>` per value."""
    return await serve_stream(request, FEED_CHANNEL, FeedSource(request.app[keys.db_key]))


@endpoint(
    summary="Stored values, newest first",
    tag="value feed",
    public=True,
    responses={200: ValuePageSchema},
    errors=(422,),
    query={"limit": "1..200, default 50", "cursor": "from the previous page's next"},
)
async def list_values(request: web.Request) -> web.Response:
    """Stored values, newest first, keyset-paginated on id."""
    limit = page_limit(request)
    cursor = decode_cursor(request, {"before": int})
    before = cursor["before"] if cursor else MAX_ID
    rows = await ValuesRepository(request.app[keys.db_key]).list_before(before, limit + 1)
    return json_response(page_of(rows, limit, value_json, lambda r: {"before": r["id"]}))


def value_json(row: asyncpg.Record) -> dict[str, Any]:
    return {"id": row["id"], "value": row["value"], "created_at": rfc3339(row["created_at"])}
