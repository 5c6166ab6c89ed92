"""OpenAPI 3.1 from the same marshmallow schemas that validate requests, and Swagger UI.

Handlers declare themselves with ``@endpoint(...)``: summary, body and response schemas, the
errors they answer, and whether they are public. The auth middleware reads the same
declaration, so "public in the docs" and "public in fact" cannot disagree.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import hdrs, web
from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from marshmallow import INCLUDE, Schema, fields

from .headers import CSP, DOCS_POLICY
from .http import DEFAULT_LIMIT, MAX_LIMIT, json_response

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Query:
    """A query parameter: its description and the JSON Schema of its value, as the handler
    checks it (a value outside it is answered 422 naming the parameter)."""

    description: str
    schema: Mapping[str, Any] = field(default_factory=lambda: {"type": "string"})
    required: bool = False


LIMIT = Query(
    f"1..{MAX_LIMIT}, default {DEFAULT_LIMIT}",
    {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT},
)
CURSOR = Query("from the previous page's next (opaque)")
PAGE_QUERY: Mapping[str, Query] = {"limit": LIMIT, "cursor": CURSOR}
# A path id is a UUID, a revision a positive integer; anything else is 404 (API.md).
PATH_PARAMETERS: Mapping[str, Mapping[str, Any]] = {
    "revision": {"type": "integer", "minimum": 1},
}
UUID_PATH = {"type": "string", "format": "uuid"}


@dataclass(frozen=True)
class Endpoint:
    summary: str
    tag: str
    public: bool = False
    body: type[Schema] | None = None
    # status -> schema of the body (None: no body), e.g. {201: UserSchema, 204: None}
    responses: Mapping[int, type[Schema] | None] = field(default_factory=dict)
    errors: tuple[int, ...] = ()
    query: Mapping[str, str | Query] = field(default_factory=dict)  # name -> its description
    # A text/event-stream: its kind ("feed", "user") labels its metrics; takes ?access_token=
    # when not public.
    stream: str | None = None
    # The name of the component schema of the JSON each stream event's `data` carries (None:
    # the data is plain text, as the feed's values are).
    stream_data: str | None = None
    description: str = ""


def endpoint(**kwargs: Any) -> Callable[[F], F]:
    spec = Endpoint(**kwargs)

    def mark(handler: F) -> F:
        handler.__endpoint__ = spec  # type: ignore[attr-defined]
        return handler

    return mark


def endpoint_of(handler: Any) -> Endpoint | None:
    return getattr(handler, "__endpoint__", None)


class ProblemSchema(Schema):
    type = fields.String(required=True, metadata={"example": "about:blank"})
    title = fields.String(required=True)
    status = fields.Integer(required=True)
    detail = fields.String(required=True)
    errors = fields.Dict(
        keys=fields.String(),
        values=fields.List(fields.String()),
        metadata={"description": "validation failures only: every bad field, nested as a.b"},
    )


_ERROR_TEXT = {
    400: "the body is not valid JSON, not an object, or nested deeper than 32 levels",
    401: "no token, or an unknown, revoked or malformed one",
    403: "the caller can see the resource but may not do this to it",
    404: "no such resource, or the caller may not see it",
    409: "conflict with the current state",
    412: "If-Match does not match the current revision",
    413: "the body is larger than the configured limit",
    415: "the body is not application/json",
    422: "well-formed JSON that fails validation; `errors` names every bad field",
    429: "too many attempts from this client address or for this email; retry after "
    "Retry-After seconds",
    503: "PostgreSQL is unreachable; retry after Retry-After seconds",
}


def request_example(schema: type[Schema]) -> dict[str, Any]:
    """A whole request body for /docs from each field's ``example`` metadata (fields without
    one are left out of the example)."""
    body = {
        name: field.metadata["example"]
        for name, field in schema().fields.items()
        if "example" in field.metadata
    }
    return body


def _schema_name(schema: type[Schema] | Schema) -> str:
    cls = schema if isinstance(schema, type) else type(schema)
    return cls.__name__.removesuffix("Schema")


def build_spec(app: web.Application, title: str, version: str) -> dict[str, Any]:
    spec = APISpec(
        title=title,
        version=version,
        openapi_version="3.1.0",
        plugins=[MarshmallowPlugin(schema_name_resolver=_schema_name)],
        info={"description": "Real-time collaboration service. Errors are RFC 9457 problems."},
    )
    spec.components.security_scheme(
        "bearer", {"type": "http", "scheme": "bearer", "description": "an API token"}
    )
    spec.components.security_scheme(
        "access_token",
        {"type": "apiKey", "in": "query", "name": "access_token",
         "description": "SSE routes only, for EventSource clients that cannot send headers"},
    )  # fmt: skip
    spec.components.schema("Problem", schema=ProblemSchema)
    paths: dict[str, dict[str, Any]] = {}
    aliases = app.get(ALIASES_KEY, set())
    for route in app.router.routes():
        info = endpoint_of(route.handler)
        resource = route.resource
        if info is None or resource is None or id(route) in aliases:
            continue
        path = resource.canonical
        operation = _operation(info, path)
        paths.setdefault(path, {})[route.method.lower()] = operation
    for path, operations in sorted(paths.items()):
        spec.path(path=path, operations=operations)
    return spec.to_dict()


def _operation(info: Endpoint, path: str) -> dict[str, Any]:
    operation: dict[str, Any] = {"summary": info.summary, "tags": [info.tag]}
    if info.description:
        operation["description"] = info.description
    parameters = [
        {"name": name, "in": "path", "required": True,
         "schema": dict(PATH_PARAMETERS.get(name, UUID_PATH))}
        for name in re.findall(r"\{(\w+)\}", path)
    ]  # fmt: skip
    for name, query in info.query.items():
        query = Query(query) if isinstance(query, str) else query
        parameters.append(
            {"name": name, "in": "query", "required": query.required,
             "description": query.description, "schema": dict(query.schema)}
        )  # fmt: skip
    if parameters:
        operation["parameters"] = parameters
    if info.body is not None:
        media: dict[str, Any] = {"schema": info.body}
        body_example = request_example(info.body)
        if body_example:
            media["example"] = body_example
        operation["requestBody"] = {"required": True, "content": {"application/json": media}}
    responses: dict[str, Any] = {}
    for status, schema in info.responses.items():
        response: dict[str, Any] = {"description": HTTPStatus(status).phrase}
        if info.stream and status == 200:
            response["content"] = {"text/event-stream": {"schema": _event_schema(info)}}
        elif schema is not None:  # an error with members of its own is still a problem
            media_type = "application/problem+json" if status >= 400 else "application/json"
            response["content"] = {media_type: {"schema": schema}}
        responses[str(status)] = response
    errors = set(info.errors) | {503}
    if info.body is not None:
        errors |= {400, 413, 415, 422}
    if not info.public:
        errors.add(401)
    for status in sorted(errors):
        if str(status) in responses:
            continue  # the route documents its own body for it (GET /health's 503)
        responses[str(status)] = {
            "description": _ERROR_TEXT.get(status, HTTPStatus(status).phrase),
            "content": {"application/problem+json": {"schema": "Problem"}},
        }
    operation["responses"] = responses
    if info.public:
        operation["security"] = []
    elif info.stream:
        operation["security"] = [{"bearer": []}, {"access_token": []}]
    else:
        operation["security"] = [{"bearer": []}]
    return operation


def _event_schema(info: Endpoint) -> dict[str, Any]:
    """One event of a stream (OpenAPI 3.1 has `schema` of text/event-stream describe each
    event): its `id` is the cursor to resume from; `event: reset` carries the newest id when
    the requested one is unusable; otherwise the data is a value, or the JSON of
    ``stream_data``."""
    reset = {
        "type": "object",
        "properties": {"last_event_id": {"type": "integer", "minimum": 0}},
        "required": ["last_event_id"],
        "additionalProperties": False,
    }
    data: dict[str, Any] = {"type": "string"}
    if info.stream_data is not None:
        payload = {"oneOf": [{"$ref": f"#/components/schemas/{info.stream_data}"}, reset]}
        data.update(contentMediaType="application/json", contentSchema=payload)
    return {
        "type": "object",
        "properties": {
            "id": {"type": "string", "pattern": "^[0-9]+$"},
            "event": {"type": "string"},
            "data": data,
            "retry": {"type": "integer", "minimum": 0},
        },
        "required": ["data"],
    }


SPEC_KEY = web.AppKey("openapi_spec", dict)
# ids of the routes registered only as trailing-slash twins of documented ones
ALIASES_KEY = web.AppKey("route_aliases", set)


class OpenApiDocumentSchema(Schema):
    """The OpenAPI document itself (its members are OpenAPI's, not this API's)."""

    class Meta:
        unknown = INCLUDE

    openapi = fields.String(required=True, metadata={"example": "3.1.0"})
    info = fields.Dict(required=True)
    paths = fields.Dict(required=True)


@endpoint(
    summary="This API as an OpenAPI 3.1 document",
    tag="operations",
    public=True,
    responses={200: OpenApiDocumentSchema},
)
async def openapi_json(request: web.Request) -> web.Response:
    return json_response(request.app[SPEC_KEY])


async def build_spec_on_startup(app: web.Application) -> None:
    app[SPEC_KEY] = build_spec(app, "collab-service", "0.1.0")


def swagger_static_dir() -> Path:
    from swagger_ui.utils import SWAGGER_UI_PY_ROOT

    return Path(SWAGGER_UI_PY_ROOT) / "static"


_DOCS_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>collab-service API</title>
<link rel="stylesheet" href="/docs/static/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="/docs/static/swagger-ui-bundle.js"></script>
<script src="/docs/init.js"></script>
</body></html>
"""
DOCS_INIT = Path(__file__).resolve().parent / "static" / "docs.js"


@endpoint(
    summary="Swagger UI for this API, served from the service itself",
    tag="operations",
    public=True,
    responses={200: None},
)
async def docs(request: web.Request) -> web.Response:
    return web.Response(text=_DOCS_PAGE, content_type="text/html", headers={CSP: DOCS_POLICY})


async def docs_init(request: web.Request) -> web.FileResponse:
    """Swagger UI's set-up (static/docs.js): public, like Swagger UI's own files, and not an
    API route (absent from /openapi.json)."""
    return web.FileResponse(DOCS_INIT, headers={hdrs.CONTENT_TYPE: "text/javascript"})
