"""Request and response helpers shared by every handler: JSON bodies, validation, pages."""

from __future__ import annotations

import base64
import binascii
import functools
import ipaddress
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import orjson
from aiohttp import hdrs, web
from marshmallow import Schema, ValidationError

from . import keys
from .errors import ApiError, ClientGone, Invalid, validation_error

MAX_JSON_DEPTH = 32
DEFAULT_LIMIT = 50
MAX_LIMIT = 200


def json_response(
    data: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=orjson.dumps(data), status=status, content_type="application/json", headers=headers
    )


def _depth_exceeds(value: Any, limit: int) -> bool:
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Sequence[Any] = list(item.values())
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


async def read_json_object(request: web.Request, max_bytes: int | None = None) -> dict[str, Any]:
    """The request body as a JSON object, or the API's 400/413/415 answer.

    A body without any Content-Type header is read as JSON, as the LiveDataStream app did;
    one that declares another type is 415. ``max_bytes`` raises the app's body limit
    (MAX_BODY_BYTES) for this request: a route whose field may hold more than that, once
    escaped as JSON, says how much it reads.
    """
    if hdrs.CONTENT_TYPE in request.headers:
        content_type = request.content_type
        if content_type != "application/json" and not (
            content_type.startswith("application/") and content_type.endswith("+json")
        ):
            raise ApiError(415, f"the body must be application/json, not {content_type}")
    body = request.get(keys.body_key)
    if body is None:  # the first attempt (errors.retry_middleware may run a handler again)
        reader = request
        if max_bytes is not None and max_bytes > request.client_max_size:
            reader = request.clone(client_max_size=max_bytes)
        try:
            body = await reader.read()  # 413 past client_max_size
        except ConnectionError:  # aiohttp's ClientConnectionResetError is one
            raise ClientGone("the client left in the middle of the body") from None
        request[keys.body_key] = body
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise ApiError(400, "the body is not valid JSON") from None
    if not isinstance(data, dict):
        raise ApiError(400, "the body must be a JSON object")
    if _depth_exceeds(data, MAX_JSON_DEPTH):
        raise ApiError(400, f"the body is nested deeper than {MAX_JSON_DEPTH} levels")
    return data


def flatten_errors(messages: Any, prefix: str = "") -> dict[str, list[str]]:
    """marshmallow's nested error dict as {"a.b": ["message", ...]}."""
    flat: dict[str, list[str]] = {}
    if isinstance(messages, dict):
        for key, value in messages.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            flat.update(flatten_errors(value, name))
    elif isinstance(messages, list) and all(isinstance(m, str) for m in messages):
        flat[prefix or "_body"] = list(messages)
    elif isinstance(messages, list):
        for i, value in enumerate(messages):
            flat.update(flatten_errors(value, f"{prefix}.{i}" if prefix else str(i)))
    else:
        flat[prefix or "_body"] = [str(messages)]
    return flat


def load(schema: Schema, data: Mapping[str, Any]) -> dict[str, Any]:
    try:
        result = schema.load(data)
    except ValidationError as exc:
        raise validation_error(flatten_errors(exc.messages)) from None
    assert isinstance(result, dict)
    return result


async def read_body(
    request: web.Request, schema: Schema, max_bytes: int | None = None
) -> dict[str, Any]:
    return load(schema, await read_json_object(request, max_bytes))


def page_limit(request: web.Request) -> int:
    raw = request.query.get("limit")
    if raw is None:
        return DEFAULT_LIMIT
    # Length first: int() refuses strings of more than 4,300 digits (ValueError).
    if len(raw) <= 6 and raw.isascii() and raw.isdigit() and 1 <= int(raw) <= MAX_LIMIT:
        return int(raw)
    raise validation_error({"limit": [f"must be an integer from 1 to {MAX_LIMIT}"]})


def encode_cursor(position: Mapping[str, Any]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(position)).decode().rstrip("=")


INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def bad_cursor() -> Invalid:
    return validation_error({"cursor": ["not a cursor this list handed out"]})


def _fits(value: Any, kind: type) -> bool:
    if type(value) is not kind:  # bool is not int here, nor float
        return False
    if isinstance(value, int):  # every integer position is a bigint column
        return INT64_MIN <= value <= INT64_MAX
    if isinstance(value, str):  # what PostgreSQL text cannot hold is never a position
        return "\x00" not in value
    return True


def decode_cursor(request: web.Request, keys: Mapping[str, type]) -> dict[str, Any] | None:
    """The position in ``?cursor=``, with exactly ``keys`` of those types (integers within
    int64), or 422 naming cursor. Strings are only typed here: a list whose positions are
    dates or ids parses them and answers ``bad_cursor()`` when they do not parse."""
    raw = request.query.get("cursor")
    if raw is None or raw == "":
        return None
    try:
        data = orjson.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
    except (binascii.Error, ValueError):
        data = None
    if (
        isinstance(data, dict)
        and set(data) == set(keys)
        and all(_fits(data[k], t) for k, t in keys.items())
    ):
        return data
    raise bad_cursor()


def page(items: list[Any], limit: int, next_position: Mapping[str, Any] | None) -> dict[str, Any]:
    return {"items": items, "next": encode_cursor(next_position) if next_position else None}


def page_of(
    rows: Sequence[Any],
    limit: int,
    item: Callable[[Any], Any],
    position: Callable[[Any], Mapping[str, Any]],
) -> dict[str, Any]:
    """A keyset page from ``limit + 1`` fetched rows: the extra row only says there is more,
    and the cursor is the position of the last row shown."""
    more = len(rows) > limit
    shown = rows[:limit]
    return page([item(r) for r in shown], limit, position(shown[-1]) if more else None)


def rendered_page_response(
    bodies: Sequence[str], position: Mapping[str, Any] | None
) -> web.Response:
    """A page (as ``page``) whose items are JSON objects rendered elsewhere (by the
    database), joined as they are; ``position`` is the last one's when more follow."""
    cursor = orjson.dumps(encode_cursor(position) if position else None).decode()
    text = '{"items":[' + ",".join(bodies) + '],"next":' + cursor + "}"
    return web.Response(body=text.encode(), content_type="application/json")


def path_uuid(request: web.Request, name: str) -> uuid.UUID:
    """A path id; one that is not a well-formed UUID is 404, like an unknown one."""
    raw = request.match_info[name]
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise ApiError(404, f"no resource at {request.path}") from None


Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@functools.lru_cache(maxsize=8)
def _networks(proxies: tuple[str, ...]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(p, strict=False) for p in proxies)


def _parse_address(text: str | None) -> Address | None:
    if not text:
        return None
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def client_address(request: web.Request) -> str:
    """Who is calling, for the abuse limits: the peer address, or, when the peer is one of
    TRUSTED_PROXIES, the address X-Forwarded-For names, read from the right: each trusted
    proxy appends the address it saw, so the first entry that is not a trusted proxy is the
    client (entries left of it are whatever the client wrote, never believed). An IPv6 client
    is its /64, since one subscriber usually holds a whole /64. Not an address (a unix socket):
    "local"."""
    peer = _parse_address(request.remote)
    if peer is None:
        return "local"
    trusted = _networks(request.app[keys.settings_key].trusted_proxies)
    if trusted:
        forwarded = [
            entry
            for header in request.headers.getall(hdrs.X_FORWARDED_FOR, ())
            for entry in header.split(",")
        ]
        while forwarded and any(peer in network for network in trusted):
            hop = _parse_address(forwarded.pop())
            if hop is None:  # a trusted proxy writes addresses: stop at the last one known
                break
            peer = hop
    if isinstance(peer, ipaddress.IPv6Address):
        return str(ipaddress.ip_network(f"{peer}/64", strict=False))
    return str(peer)
