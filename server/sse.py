"""The HTTP side of the SSE routes, shared by ``GET /events/`` and ``GET /sse/{user_id}``:
which id a client resumes from, and how a stream that cannot be served now is refused.

A refusal is a ``200`` with a ``retry:`` delay (with jitter), a comment saying why, and the
end: every EventSource then comes back by itself with its Last-Event-ID, whereas any other
status makes a browser give up for good (API.md, "Real-time streams").
"""

from __future__ import annotations

import random

from aiohttp import web

from . import keys
from .db import is_unavailable
from .errors import Handler
from .openapi import endpoint_of
from .settings import Settings
from .streams import MAX_ID, UNUSABLE_ID, Refused, Source

_ID_DIGITS = len(str(MAX_ID))


def last_event_id(request: web.Request) -> int | None:
    """The id to resume after: the Last-Event-ID header, else ``?last_event_id=``; None when
    neither is given (live only), UNUSABLE_ID when it is not an id (the stream resets)."""
    given = request.headers.get("Last-Event-ID")
    if given is None:
        given = request.query.get("last_event_id")
    if given is None:
        return None
    # ASCII digits only (str.isdigit also takes other scripts' digits), at most int64's 19:
    # thousands of digits are no id, and int() of them is slow or refused.
    if given.isascii() and given.isdigit() and len(given) <= _ID_DIGITS and int(given) <= MAX_ID:
        return int(given)
    return UNUSABLE_ID


def refusal(settings: Settings, why: str) -> web.Response:
    delay = settings.sse_retry_ms + random.randrange(settings.sse_retry_ms + 1)
    return web.Response(
        body=f"retry: {delay}\n: {why}; reconnect in {delay} ms\n\n".encode(),
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        },
    )


def refuse(request: web.Request, stream: str, reason: str, why: str) -> web.Response:
    """Count the refusal (``sse_connections_rejected_total{stream, reason}``) and answer it."""
    request.app[keys.metrics_key].rejected.labels(stream, reason).inc()
    return refusal(request.app[keys.settings_key], why)


async def serve_stream(
    request: web.Request,
    channel: str,
    source: Source,
    token_hash: bytes | None = None,
    keep_at_most: int | None = None,
) -> web.StreamResponse:
    """``keep_at_most``: open streams of ``channel`` in this process; the oldest goes past it."""
    registry = request.app[keys.streams_key]
    try:
        return await registry.serve(
            request, channel, source, last_event_id(request), token_hash, keep_at_most
        )
    except Refused as refused:
        return refuse(request, source.kind, refused.reason, refused.why)


@web.middleware
async def refusal_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """On the SSE routes, PostgreSQL unreachable before the stream starts (checking the token,
    the path's user) is a refusal with a retry, not a 503 that an EventSource never retries."""
    info = endpoint_of(request.match_info.handler)
    if info is None or not info.stream:
        return await handler(request)
    try:
        return await handler(request)
    except Exception as exc:
        if not is_unavailable(exc) or keys.streaming_key in request:
            raise
        return refuse(request, info.stream, "database", "the database is unreachable")
