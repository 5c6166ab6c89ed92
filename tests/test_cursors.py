"""List cursors are opaque: one the list did not hand out is 422 naming `cursor`, never a 500
(issue 8, item 7), on every route that takes one."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from .helpers import assert_problem, register


def cursor_of(position: Any) -> str:
    """A cursor encoded as the API encodes the ones it hands out (json, not orjson: orjson
    refuses integers beyond 64 bits, which is the point of some of these)."""
    text = json.dumps(position, separators=(",", ":"))
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


EVENT = {"title": "Team Meeting", "start_date": "2024-01-15T10:00:00Z",
         "end_date": "2024-01-15T11:00:00Z"}  # fmt: skip


@pytest.mark.parametrize(
    "position",
    [
        {"start": "x", "id": "y"},
        {"start": "2024-01-15T10:00:00+00:00", "id": "y"},
        {"start": "x", "id": "0b7e7dd2-6d6a-4c1e-9a44-6f7f1b1d7a10"},
        {"start": "2024-01-15T10:00:00", "id": "0b7e7dd2-6d6a-4c1e-9a44-6f7f1b1d7a10"},
        {"start": "0001-01-01T00:00:00+01:00", "id": "0b7e7dd2-6d6a-4c1e-9a44-6f7f1b1d7a10"},
        {"start": "2024-01-15T10:00:00+00:00\x00", "id": "0b7e7dd2-6d6a-4c1e-9a44-6f7f1b1d7a10"},
    ],
)
async def test_forged_event_cursor_is_422_naming_cursor(client: Any, position: Any) -> None:
    ada = await register(client)
    await client.post("/events", json=EVENT, headers=ada["headers"])
    response = await client.get(
        f"/users/{ada['id']}/events", params={"cursor": cursor_of(position)},
        headers=ada["headers"],
    )  # fmt: skip
    problem = await assert_problem(response, 422)
    assert "cursor" in problem["errors"]


@pytest.mark.parametrize("before", [2**63, -(2**63) - 1, 10**30, 2**64, -(10**30)])
async def test_integer_cursor_outside_int64_is_422_naming_cursor(client: Any, before: int) -> None:
    ada = await register(client)
    cursor = cursor_of({"before": before})
    for path in ("/values", f"/notifications/{ada['id']}"):
        response = await client.get(path, params={"cursor": cursor}, headers=ada["headers"])
        problem = await assert_problem(response, 422)
        assert "cursor" in problem["errors"], path


async def test_cursors_the_lists_hand_out_still_work(client: Any) -> None:
    ada = await register(client)
    for day in (15, 16, 17):
        body = {**EVENT, "start_date": f"2024-01-{day}T10:00:00Z",
                "end_date": f"2024-01-{day}T11:00:00Z"}  # fmt: skip
        assert (await client.post("/events", json=body, headers=ada["headers"])).status == 201
    path = f"/users/{ada['id']}/events"
    first = await (await client.get(path, params={"limit": "2"}, headers=ada["headers"])).json()
    assert first["next"]
    second = await client.get(
        path, params={"limit": "2", "cursor": first["next"]}, headers=ada["headers"]
    )
    assert second.status == 200
    assert [e["start_date"] for e in (await second.json())["items"]] == ["2024-01-17T10:00:00Z"]
