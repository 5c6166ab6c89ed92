"""HTTP for the value feed (API.md, "The value feed"): parse, call the use case, render."""

from __future__ import annotations

from aiohttp import web

from .. import keys
from ..auth import require_caller
from ..http import decode_cursor, json_response, page_limit, page_of, read_body
from ..openapi import PAGE_QUERY, endpoint
from ..sse import serve_stream
from ..streams import MAX_ID
from ..wire import FEED_CHANNEL
from . import service
from .schemas import AddValueResponseSchema, AddValueSchema, ValuePageSchema, value_json

_add_value = AddValueSchema()


@endpoint(
    summary="Store a value; every /events/ stream gets it",
    tag="value feed",
    public=True,
    body=AddValueSchema,
    responses={200: AddValueResponseSchema},
    errors=(401,),  # only when FEED_REQUIRE_TOKEN is set
)
async def add_value(request: web.Request) -> web.Response:
    """Store a value; answer once it is committed. Every /events/ stream then gets it."""
    if request.app[keys.settings_key].feed_require_token:
        await require_caller(request)
    body = await read_body(request, _add_value)
    await service.do_add_value(request.app[keys.feed_writer_key], body["value"])
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
    source = service.FeedSource(request.app[keys.db_key])
    return await serve_stream(request, FEED_CHANNEL, source)


@endpoint(
    summary="Stored values, newest first",
    tag="value feed",
    public=True,
    responses={200: ValuePageSchema},
    errors=(422,),
    query=PAGE_QUERY,
)
async def list_values(request: web.Request) -> web.Response:
    """Stored values, newest first, keyset-paginated on id."""
    limit = page_limit(request)
    cursor = decode_cursor(request, {"before": int})
    before = cursor["before"] if cursor else MAX_ID
    values = await service.list_values(request.app[keys.db_key], before, limit + 1)
    return json_response(page_of(values, limit, value_json, lambda v: {"before": v.id}))
