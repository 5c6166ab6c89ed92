"""Request ids, the access log and request metrics."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time

from aiohttp import hdrs, web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.web_request import BaseRequest
from aiohttp.web_response import StreamResponse

from . import keys
from .errors import Handler
from .logs import redact

access_log = logging.getLogger("server.access")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def redact_query(query_string: str) -> str:
    """The query string as sent, with token values replaced by ***, fit for a log line."""
    return redact("?" + query_string)[1:] if query_string else ""


def known_method(method: str) -> str:
    """The method as logged and as a metric label: a standard one as sent, anything else as
    OTHER (a bounded label, and no secret on the public /metrics). aiohttp's Python
    parser takes any token as a method, and a client that pastes its token at the start of
    the request line makes that token the method. UNKNOWN is aiohttp's own, for a request
    its parser refused."""
    return method if method in hdrs.METH_ALL or method == "UNKNOWN" else "OTHER"


def route_label(request: web.Request) -> str:
    """The route pattern ("/tasks/{task_id}"), never the raw path: bounded label values."""
    route = request.match_info.route
    resource = route.resource
    if resource is None or request.match_info.http_exception is not None:
        return "<unmatched>"
    canonical = resource.canonical
    return canonical.rstrip("/") or "/"


@web.middleware
async def observe_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    supplied = request.headers.get("X-Request-ID", "")
    request_id = supplied if _REQUEST_ID.match(supplied) else os.urandom(16).hex()
    request[keys.request_id_key] = request_id
    started = time.perf_counter()
    metrics = request.app[keys.metrics_key]
    route = route_label(request)
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response  # X-Request-ID is added as the response is prepared (app.py)
    except asyncio.CancelledError:
        status = 499  # the client went away and the handler was cancelled (nginx's code)
        raise
    finally:
        # A stream lasts as long as its client stays: counted, but kept out of the latencies.
        streaming = request.get(keys.streaming_key, False)
        elapsed = None if streaming else time.perf_counter() - started
        metrics.observe_request(known_method(request.method), route, status, elapsed)


class AccessLogger(AbstractAccessLogger):
    """One line a request: method, path (tokens redacted), status, size, duration, request id."""

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        # As sent (raw), redacted here and again by every handler's RedactSecrets.
        query = redact_query(request.rel_url.raw_query_string)
        path = f"{request.path}?{query}" if query else request.path
        self.logger.info(
            '%s "%s %s" %d %d %.1fms request_id=%s',
            request.remote,
            known_method(request.method),
            path,
            response.status,
            response.body_length,
            time * 1000,
            request.get(keys.request_id_key, "-"),
        )
