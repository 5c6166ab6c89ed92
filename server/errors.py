"""RFC 9457 problem documents, and the one middleware that turns every failure into one.

Handlers raise ``ApiError`` (or aiohttp's ``HTTPException``); they never build error bodies.
Nothing of an exception's text reaches a client except through ``ApiError``: a stack trace,
SQL text or a driver message never leaves the process.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Mapping
from http import HTTPStatus
from typing import Any, ClassVar

import asyncpg
import orjson
from aiohttp import web

from . import keys
from .db import is_unavailable

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
RETRY_AFTER_SECONDS = "5"


class DomainError(Exception):
    """What a use case refuses, in the domain's words; the error middleware alone turns it into
    an HTTP answer (ERRORS below). Services raise these, never HTTP exceptions."""

    status: ClassVar[int] = 500
    default_detail: ClassVar[str] = "the request cannot be served"

    def __init__(self, detail: str | None = None, **members: Any) -> None:
        super().__init__(detail or self.default_detail)
        self.detail = detail or self.default_detail
        self.members = members  # extra members of the problem document


class Unauthenticated(DomainError):
    status = 401
    default_detail = "the token is unknown or revoked"


class Forbidden(DomainError):
    status = 403


class NotFound(DomainError):
    """No such thing, or the caller may not know it exists: the same answer."""

    status = 404
    default_detail = "no such resource"


class Conflict(DomainError):
    status = 409


class PreconditionFailed(DomainError):
    status = 412


class Invalid(DomainError):
    """Well-formed input that fails a rule: ``errors`` names every bad field."""

    status = 422

    def __init__(
        self, errors: Mapping[str, list[str]], detail: str | None = None, **members: Any
    ) -> None:
        super().__init__(detail or f"invalid fields: {', '.join(sorted(errors))}", **members)
        self.errors = dict(errors)


class TooManyRequests(DomainError):
    """An abuse limit is reached (limits.py); ``retry_after``: seconds until it lets the
    attempt through again (the Retry-After header)."""

    status = 429
    default_detail = "too many attempts; try again later"

    def __init__(self, detail: str | None = None, *, retry_after: int, **members: Any) -> None:
        super().__init__(detail, **members)
        self.retry_after = retry_after


class Unavailable(DomainError):
    """Something the request needs is away for now; the client should retry."""

    status = 503
    default_detail = "try again shortly"


class ApiError(Exception):
    """An HTTP-level refusal from the handlers' layer (400, 413, 415 and the like)."""

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


CLIENT_GONE = 499  # the status counted for a request whose client left first (nginx's)


class ClientGone(Exception):
    """The client closed its connection before the request could be answered (in the middle
    of its body, say): nothing can be sent back, so it is no error of ours to log."""


def validation_error(errors: Mapping[str, list[str]], detail: str | None = None) -> Invalid:
    return Invalid(errors, detail)


# The one table from failure to answer. Domain errors carry their status (above); what the
# database refuses is answered by the constraint's name, so its words become the API's. A
# constraint missing here is a bug that validation or a service should have caught first:
# a logged 500 naming it.
#   constraint name                       status  field         message
CONSTRAINTS: dict[str, tuple[int, str | None, str]] = {
    "users_email_key":                     (409, "email",       "a user with this email already exists"),  # noqa: E501
    "users_name_check":                    (422, "name",        "must be 1 to 200 characters"),
    "users_email_check":                   (422, "email",       "must be 3 to 320 characters"),
    "auth_tokens_user_id_fkey":            (401, None,          "the token is unknown or revoked"),
    "events_user_id_fkey":                 (401, None,          "the token is unknown or revoked"),
    "events_title_check":                  (422, "title",       "must be 1 to 200 characters"),
    "events_description_check":            (422, "description", "must be at most 10000 characters"),
    "events_dates_check":                  (422, "end_date",    "must not be before start_date"),
    "feed_values_value_check":             (422, "value",       "must be 1 to 10000 characters"),
    "tasks_event_id_fkey":                 (422, "event_id",    "no such event"),
    "tasks_parent_fkey":                   (422, "parent_id",   "must be a task of the same event"),
    "tasks_parent_id_check":               (422, "parent_id",   "must not be the task itself"),
    "tasks_created_by_fkey":               (401, None,          "the token is unknown or revoked"),
    "tasks_title_check":                   (422, "title",       "must be 1 to 200 characters"),
    "tasks_description_check":             (422, "description", "must be at most 10000 characters"),
    "tasks_duration_minutes_check":        (422, "duration_minutes", "must be from 1 to 525600"),
    "task_members_pkey":                   (409, None,          "the user is already a direct member of this task"),  # noqa: E501
    "task_members_task_id_fkey":           (422, "task_id",     "no such task"),
    "task_members_user_id_fkey":           (422, "user_id",     "no such user"),
    "task_members_role_check":             (422, "role",        "must be maintainer or collaborator"),  # noqa: E501
    "stories_task_id_fkey":                (404, None,          "no such task"),
    "stories_author_id_fkey":              (401, None,          "the token is unknown or revoked"),
    "stories_title_check":                 (422, "title",       "must be 1 to 200 characters"),
    "stories_content_check":               (422, "content",     "must be at most 524288 bytes of UTF-8"),  # noqa: E501
    "story_revisions_author_id_fkey":      (401, None,          "the token is unknown or revoked"),
    "story_revisions_pkey":                (409, None,          "the story changed meanwhile; try again"),  # noqa: E501
    "invites_task_id_fkey":                (422, "task_id",     "no such task"),
    "invites_inviter_id_fkey":             (401, None,          "the token is unknown or revoked"),
    "invites_invitee_id_fkey":             (422, None,          "the invited user no longer exists"),  # noqa: E501
    "invites_invitee_id_check":            (409, None,          "you cannot invite yourself"),
    "invites_role_check":                  (422, "role",        "must be maintainer or collaborator"),  # noqa: E501
    "invites_status_check":                (422, "status",      "must be accepted, rejected or revoked"),  # noqa: E501
    "invites_expires_at_check":            (422, "expires_at",  "must be in the future"),
    "comment_counters_story_id_fkey":      (404, None,          "no such story"),
    "comments_story_id_fkey":              (404, None,          "no such story"),
    "comments_parent_fkey":                (422, "parent_id",   "must be a comment of the same story"),  # noqa: E501
    "comments_author_id_fkey":             (401, None,          "the token is unknown or revoked"),
    "comments_body_check":                 (422, "body",        "must be 1 to 10000 characters"),
    "comment_versions_actor_id_fkey":      (401, None,          "the token is unknown or revoked"),
    "comment_versions_pkey":               (409, None,          "the comment changed meanwhile; try again"),  # noqa: E501
}  # fmt: skip
# SQLSTATE classes without a constraint to name: a value PostgreSQL cannot hold (22) or too
# large for an index (54) is 422; the database away (08, 53, 57P01-03) is 503 (db.py decides
# "away": is_unavailable); anything else is a bug: a logged 500.
SQLSTATE_422 = {
    "22": "a value in the request cannot be stored",
    "54": "a value in the request is too large to be stored",
}


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


# PostgreSQL aborted the transaction to break a deadlock (40P01) or a serialization conflict
# (40001): nothing of it was written, and running the request again is PostgreSQL's own advice.
# Writers lock in different orders in rare cases (DELETE /users cascades through rows that
# story, invite and task writes lock before they key-share the user row).
RETRIED_SQLSTATES = frozenset({"40P01", "40001"})
RETRY_ATTEMPTS = 3  # attempts in all: the first and at most two runs again


@web.middleware
async def retry_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Run a request again when PostgreSQL aborted it for a deadlock or a serialization
    conflict, for at most RETRY_ATTEMPTS attempts in all; then 503 with Retry-After. Safe
    because a handler writes in one transaction (work.py) and publishes only after COMMIT;
    never once an SSE response has started."""
    for attempt in range(1, RETRY_ATTEMPTS + 1):
        try:
            return await handler(request)
        except asyncpg.PostgresError as exc:
            if exc.sqlstate not in RETRIED_SQLSTATES or keys.streaming_key in request:
                raise
            log.warning(
                "%s %s: transaction aborted (%s), attempt %d of %d request_id=%s",
                request.method,
                request.path,
                exc.sqlstate,
                attempt,
                RETRY_ATTEMPTS,
                request.get(keys.request_id_key),
            )
            await asyncio.sleep(random.uniform(0.005, 0.05) * attempt)
    return problem_response(
        503,
        "the database aborted this request for conflicting writes several times; try again",
        headers={"Retry-After": "1"},
    )


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except DomainError as exc:
        return _domain_answer(exc)
    except ApiError as exc:
        return problem_response(
            exc.status, exc.detail, errors=exc.errors, headers=exc.headers, **exc.members
        )
    except web.HTTPException as exc:
        return _from_http_exception(request, exc)
    except ClientGone as exc:
        log.info(
            "%s %s: %s request_id=%s",
            request.method,
            request.path,
            exc,
            request.get(keys.request_id_key),
        )
        # No body: aiohttp finds the connection closed as it writes, and drops the answer.
        return web.Response(status=CLIENT_GONE)
    except Exception as exc:
        request_id = request.get(keys.request_id_key)
        where = f"{request.method} {request.path}"
        if is_unavailable(exc):
            log.warning(
                "database unavailable: %s -> 503 (%s) request_id=%s",
                where,
                type(exc).__name__,
                request_id,
            )
            return problem_response(
                503,
                "the database is unreachable; try again shortly",
                headers={"Retry-After": RETRY_AFTER_SECONDS},
            )
        answer = database_answer(exc)
        if answer is not None:
            # Validation or a service should have said no first: answer as it would have,
            # and log it (the SQLSTATE and constraint, never the driver's text) to be fixed.
            log.warning(
                "database refused the request: %s -> %d (%s %s %s) request_id=%s",
                where,
                answer.status,
                type(exc).__name__,
                getattr(exc, "sqlstate", None),
                getattr(exc, "constraint_name", None) or "-",
                request_id,
            )
            return _domain_answer(answer)
        constraint = getattr(exc, "constraint_name", None)
        log.exception(
            "unhandled error: %s request_id=%s%s",
            where,
            request_id,
            f" (constraint {constraint} is not in errors.CONSTRAINTS)" if constraint else "",
        )
        return problem_response(
            500, f"internal error; quote request id {request_id} when reporting it"
        )


def _domain_answer(exc: DomainError) -> web.Response:
    headers: dict[str, str] = {}
    if exc.status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    elif isinstance(exc, TooManyRequests):
        headers["Retry-After"] = str(exc.retry_after)
    elif exc.status == 503:
        headers["Retry-After"] = "1" if isinstance(exc, Unavailable) else RETRY_AFTER_SECONDS
    errors = exc.errors if isinstance(exc, Invalid) else None
    return problem_response(exc.status, exc.detail, errors=errors, headers=headers, **exc.members)


# 404: what the request names was deleted by a request that committed first.
_BY_STATUS: dict[int, type[DomainError]] = {401: Unauthenticated, 404: NotFound, 409: Conflict}


def database_answer(exc: BaseException) -> DomainError | None:
    """The answer, from the tables above, to an error PostgreSQL raised; None for a bug."""
    if not isinstance(exc, asyncpg.PostgresError):
        return None
    constraint = getattr(exc, "constraint_name", None)
    if constraint is not None:
        if constraint not in CONSTRAINTS:
            return None
        status, field, message = CONSTRAINTS[constraint]
        if status == 422:
            return Invalid({field or "_body": [message]})
        return _BY_STATUS[status](message)
    detail = SQLSTATE_422.get((exc.sqlstate or "")[:2])
    if detail is None:
        return None
    field = getattr(exc, "column_name", None) or "_body"
    return Invalid({field: [detail]}, detail)
