"""RFC 9457 problem documents, and the one middleware that turns every failure into one.

Handlers raise ``ApiError`` (or aiohttp's ``HTTPException``); they never build error bodies.
Nothing of an exception's text reaches a client except through ``ApiError``: a stack trace,
SQL text or a driver message never leaves the process.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from http import HTTPStatus
from typing import Any

import asyncpg
import orjson
from aiohttp import web

from . import keys
from .db import is_unavailable

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
RETRY_AFTER_SECONDS = "5"


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        detail: str,
        *,
        errors: Mapping[str, list[str]] | None = None,
        headers: Mapping[str, str] | None = None,
        **members: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.errors = errors
        self.headers = dict(headers or {})
        self.members = members


def validation_error(errors: Mapping[str, list[str]], detail: str | None = None) -> ApiError:
    names = ", ".join(sorted(errors))
    return ApiError(422, detail or f"invalid fields: {names}", errors=errors)


def problem_response(
    status: int,
    detail: str,
    *,
    errors: Mapping[str, list[str]] | None = None,
    headers: Mapping[str, str] | None = None,
    **members: Any,
) -> web.Response:
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
    }
    if errors:
        body["errors"] = dict(errors)
    body.update(members)
    response = web.Response(
        body=orjson.dumps(body), status=status, content_type=PROBLEM_JSON, headers=headers
    )
    return response


def _from_http_exception(request: web.Request, exc: web.HTTPException) -> web.StreamResponse:
    if exc.status < 400:
        raise exc  # redirects and the like pass through untouched
    kept = {"allow", "www-authenticate", "retry-after"}
    headers = {k: v for k, v in exc.headers.items() if k.lower() in kept}
    detail = (
        {
            404: f"no resource at {request.path}",
            405: f"{request.method} is not allowed on {request.path}",
        }.get(exc.status)
        or exc.text
        or exc.reason
    )
    return problem_response(exc.status, detail, headers=headers)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return problem_response(
            exc.status, exc.detail, errors=exc.errors, headers=exc.headers, **exc.members
        )
    except web.HTTPException as exc:
        return _from_http_exception(request, exc)
    except asyncpg.DataError as exc:
        # SQLSTATE class 22: a value PostgreSQL cannot take that validation let through. The
        # schemas should have said no first; answer as they would have, and log it to fix.
        log.warning(
            "database refused a value: %s %s -> 422 (%s) request_id=%s",
            request.method,
            request.path,
            type(exc).__name__,
            request.get(keys.request_id_key),
        )
        return problem_response(422, "a value in the request cannot be stored")
    except Exception as exc:
        if is_unavailable(exc):
            log.warning(
                "database unavailable: %s %s -> 503 (%s) request_id=%s",
                request.method,
                request.path,
                type(exc).__name__,
                request.get(keys.request_id_key),
            )
            return problem_response(
                503,
                "the database is unreachable; try again shortly",
                headers={"Retry-After": RETRY_AFTER_SECONDS},
            )
        log.exception(
            "unhandled error: %s %s request_id=%s",
            request.method,
            request.path,
            request.get(keys.request_id_key),
        )
        request_id = request.get(keys.request_id_key)
        return problem_response(
            500, f"internal error; quote request id {request_id} when reporting it"
        )
