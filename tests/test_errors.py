"""Bad input gets a clear 4xx problem document (API.md, "Conventions"); never a 500."""

from __future__ import annotations

from typing import Any

import pytest

from .helpers import assert_problem


async def test_malformed_json_is_400(client: Any) -> None:
    response = await client.post(
        "/add-value/", data=b'{"value": "x"', headers={"Content-Type": "application/json"}
    )
    await assert_problem(response, 400)


@pytest.mark.parametrize("body", [b"[]", b'"text"', b"42", b"null"])
async def test_json_that_is_not_an_object_is_400(client: Any, body: bytes) -> None:
    response = await client.post(
        "/add-value/", data=body, headers={"Content-Type": "application/json"}
    )
    await assert_problem(response, 400)


async def test_json_nested_deeper_than_32_levels_is_400(client: Any) -> None:
    deep = '{"value": "x", "extra": ' + "[" * 40 + "]" * 40 + "}"
    response = await client.post(
        "/add-value/", data=deep.encode(), headers={"Content-Type": "application/json"}
    )
    body = await assert_problem(response, 400)
    assert "32" in body["detail"]


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded"])
async def test_wrong_content_type_is_415(client: Any, content_type: str) -> None:
    response = await client.post(
        "/add-value/", data=b'{"value": "x"}', headers={"Content-Type": content_type}
    )
    await assert_problem(response, 415)


async def test_body_without_content_type_is_read_as_json(client: Any) -> None:
    # curl -d and some older clients send no Content-Type: read as JSON, like LiveDataStream.
    response = await client.post(
        "/add-value/", data=b'{"value": "x"}', skip_auto_headers=["Content-Type"]
    )
    assert response.status == 200, await response.text()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"value": ""}, "value"),
        ({"value": "x" * 10_001}, "value"),
        ({"value": "nul \x00 inside"}, "value"),
        ({"value": 42}, "value"),
        ({"value": None}, "value"),
        ({}, "value"),
        ({"value": "ok", "extra": 1}, "extra"),
    ],
)
async def test_invalid_values_are_422_naming_the_field(
    client: Any, body: dict[str, Any], field: str
) -> None:
    response = await client.post("/add-value/", json=body)
    problem = await assert_problem(response, 422)
    assert field in problem["errors"]
    assert all(isinstance(m, str) for m in problem["errors"][field])
    values = await (await client.get("/values")).json()
    assert values["items"] == []  # nothing half-written


async def test_longest_allowed_value_is_stored(client: Any) -> None:
    response = await client.post("/add-value/", json={"value": "y" * 10_000})
    assert response.status == 200


async def test_two_mebibyte_body_is_413(client: Any) -> None:
    payload = b'{"value": "' + b"z" * (2 * 1024 * 1024) + b'"}'
    response = await client.post(
        "/add-value/", data=payload, headers={"Content-Type": "application/json"}
    )
    await assert_problem(response, 413)


async def test_unknown_path_is_404_and_wrong_method_is_405(client: Any) -> None:
    await assert_problem(await client.get("/no/such/thing"), 404)
    response = await client.delete("/add-value/")
    await assert_problem(response, 405)
    assert "POST" in response.headers["Allow"]


@pytest.mark.parametrize("limit", ["0", "201", "-1", "abc", "1.5", ""])
async def test_bad_limit_is_422_naming_limit(client: Any, limit: str) -> None:
    problem = await assert_problem(await client.get("/values", params={"limit": limit}), 422)
    assert "limit" in problem["errors"]


@pytest.mark.parametrize("cursor", ["garbage", "eyJ4IjoxfQ", "e30", "!!!"])
async def test_bad_cursor_is_422_naming_cursor(client: Any, cursor: str) -> None:
    problem = await assert_problem(await client.get("/values", params={"cursor": cursor}), 422)
    assert "cursor" in problem["errors"]


async def test_every_response_carries_a_request_id(client: Any) -> None:
    response = await client.get("/values", headers={"X-Request-ID": "abc-123"})
    assert response.headers["X-Request-ID"] == "abc-123"
    response = await client.get("/nope")
    assert len(response.headers["X-Request-ID"]) == 32


def _failing_app(exc_factory: Any) -> Any:
    from aiohttp import web

    from server import keys
    from server.errors import error_middleware
    from server.metrics import Metrics
    from server.middleware import observe_middleware

    async def failing(request: web.Request) -> web.Response:
        raise await exc_factory()

    app = web.Application(middlewares=[observe_middleware, error_middleware])
    app[keys.metrics_key] = Metrics()
    app.router.add_get("/failing", failing)
    return app


async def _refused_connection() -> BaseException:
    """The OSError asyncpg raises when nothing listens where PostgreSQL should."""
    import socket

    import asyncpg

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    try:
        await asyncpg.connect(f"postgresql://postgres@127.0.0.1:{port}/postgres", timeout=5)
    except OSError as exc:
        return exc
    raise AssertionError("connected to a port nobody listens on")


def _made(exc: BaseException) -> Any:
    async def make() -> BaseException:
        return exc

    return make


def _named(kind: Any, constraint: str) -> BaseException:
    exc = kind("x")
    exc.constraint_name = constraint
    return exc  # type: ignore[no-any-return]


def _database_errors() -> list[Any]:
    import asyncpg
    from asyncpg.exceptions._base import InternalClientError

    e = asyncpg.exceptions
    return [
        # PostgreSQL unreachable or going away: 503.
        pytest.param(_refused_connection, 503, id="connection-refused-by-asyncpg"),
        pytest.param(_made(e.ConnectionDoesNotExistError("gone")), 503, id="08003"),
        pytest.param(_made(e.ConnectionFailureError("x")), 503, id="08006"),
        pytest.param(_made(e.TooManyConnectionsError("x")), 503, id="53300"),
        pytest.param(_made(e.OutOfMemoryError("x")), 503, id="53200"),
        pytest.param(_made(e.AdminShutdownError("x")), 503, id="57P01"),
        pytest.param(_made(e.CannotConnectNowError("x")), 503, id="57P03"),
        pytest.param(_made(InternalClientError("unknown protocol state")), 503, id="1069"),
        pytest.param(_made(asyncpg.InterfaceError("connection is closed")), 503, id="closed"),
        pytest.param(_made(asyncpg.InterfaceError("pool is closing")), 503, id="pool-closing"),
        # What validation missed: 4xx with errors, by the constraint's name (errors.CONSTRAINTS).
        pytest.param(_made(_named(e.CheckViolationError, "events_dates_check")), 422, id="check"),
        pytest.param(
            _made(_named(e.ForeignKeyViolationError, "events_user_id_fkey")),
            401,
            id="fkey-caller-gone",
        ),
        pytest.param(_made(_named(e.UniqueViolationError, "users_email_key")), 409, id="unique"),
        pytest.param(_made(e.UntranslatableCharacterError("x")), 422, id="22P05"),
        pytest.param(_made(e.NumericValueOutOfRangeError("x")), 422, id="22003"),
        pytest.param(_made(e.ProgramLimitExceededError("x")), 422, id="54000"),
        # Bugs: a logged 500, never a 503 that hides them.
        pytest.param(_made(OSError(28, "No space left on device")), 500, id="oserror-elsewhere"),
        pytest.param(_made(ConnectionResetError(104, "reset")), 500, id="reset-elsewhere"),
        pytest.param(_made(TimeoutError()), 500, id="timeout-elsewhere"),
        pytest.param(
            _made(
                asyncpg.InterfaceError("cannot perform operation: another operation is in progress")
            ),
            500,
            id="driver-misuse",
        ),
        pytest.param(_made(e.UndefinedTableError("x")), 500, id="42P01"),
        # A constraint the table does not know is a bug too: logged with its name.
        pytest.param(_made(_named(e.ForeignKeyViolationError, "mystery_fkey")), 500, id="23503"),
        pytest.param(_made(e.CheckViolationError("x")), 500, id="23514-unnamed"),
        pytest.param(_made(e.PostgresSyntaxError("x")), 500, id="42601"),
    ]


@pytest.mark.parametrize(("exc_factory", "status"), _database_errors())
async def test_database_errors_are_503_only_for_an_unreachable_database(
    aiohttp_client: Any, caplog: Any, exc_factory: Any, status: int
) -> None:
    import logging

    client = await aiohttp_client(_failing_app(exc_factory))
    with caplog.at_level(logging.WARNING, logger="server.errors"):
        response = await client.get("/failing", headers={"X-Request-ID": "req-db"})
    body = await assert_problem(response, status)
    if status == 503:
        assert response.headers["Retry-After"]
    elif status == 500:
        assert "req-db" in body["detail"]
        assert any(r.levelno == logging.ERROR and r.exc_info for r in caplog.records)
    elif status == 422:
        assert body["errors"] and all(isinstance(m, list) for m in body["errors"].values())


async def test_an_unmapped_constraint_is_a_500_whose_log_names_it(
    aiohttp_client: Any, caplog: Any
) -> None:
    import logging

    import asyncpg

    failure = _named(asyncpg.exceptions.UniqueViolationError, "tasks_mystery_key")
    client = await aiohttp_client(_failing_app(_made(failure)))
    with caplog.at_level(logging.WARNING, logger="server.errors"):
        await assert_problem(await client.get("/failing"), 500)
    assert any("tasks_mystery_key" in r.getMessage() for r in caplog.records)
