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
        refused = refused_by_database(exc)
        if refused is not None:
            # The schemas should have said no first; answer as they would have, and log it
            # (the SQLSTATE, never the driver's text) so the validation gets fixed.
            log.warning(
                "database refused the request: %s %s -> %d (%s %s) request_id=%s",
                request.method,
                request.path,
                refused.status,
                type(exc).__name__,
                getattr(exc, "sqlstate", None),
                request.get(keys.request_id_key),
            )
            return problem_response(refused.status, refused.detail, errors=refused.errors)
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


# SQLSTATE classes of errors caused by what a request carried, which validation let through:
# 22 data exception (a value the column cannot hold), 23 integrity constraint violation
# (e.g. a row it refers to was deleted meanwhile), 54 program limit exceeded (a value too
# large for an index). Anything else from PostgreSQL is a bug in the service: 500.
_REFUSED = {
    "22": "a value in the request cannot be stored",
    "23": "the request conflicts with the stored data (something it refers to may have just "
    "been deleted)",
    "54": "a value in the request is too large to be stored",
}


def refused_by_database(exc: BaseException) -> ApiError | None:
    """The 422 (with ``errors``) for a database error that validation should have caught."""
    if not isinstance(exc, asyncpg.PostgresError):
        return None
    detail = _REFUSED.get((exc.sqlstate or "")[:2])
    if detail is None:
        return None
    field = getattr(exc, "column_name", None) or "_body"
    return validation_error({field: [detail]}, detail)
