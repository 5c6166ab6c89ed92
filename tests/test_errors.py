"""Bad input gets a clear 4xx problem document (API.md, "Conventions"); never a 500."""

from __future__ import annotations

from typing import Any

import pytest

PROBLEM = "application/problem+json"


async def assert_problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status == status, await response.text()
    assert response.content_type == PROBLEM
    body = await response.json()
    assert body["status"] == status
    assert body["type"] == "about:blank"
    assert body["title"] and body["detail"]
    text = str(body).lower()
    assert "traceback" not in text and "select" not in text and "insert" not in text
    return body


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
