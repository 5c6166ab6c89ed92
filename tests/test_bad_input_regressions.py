"""Inputs that once reached PostgreSQL or Python's datetime and answered 500 (issue 8, items 8
and 10): each now answers 422 naming the field, and nothing is written."""

from __future__ import annotations

from typing import Any

import pytest

from .helpers import assert_problem, register

EVENT = {"title": "Team Meeting", "start_date": "2024-01-15T10:00:00Z",
         "end_date": "2024-01-15T11:00:00Z"}  # fmt: skip


@pytest.mark.parametrize("moment", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:00:00-05:00"])
@pytest.mark.parametrize("field", ["start_date", "end_date"])
async def test_event_dates_outside_the_utc_range_are_422(
    client: Any, moment: str, field: str
) -> None:
    ada = await register(client)
    response = await client.post("/events", json={**EVENT, field: moment}, headers=ada["headers"])
    problem = await assert_problem(response, 422)
    assert field in problem["errors"]
    created = await client.post("/events", json=EVENT, headers=ada["headers"])
    event = await created.json()
    response = await client.put(
        f"/events/{event['id']}", json={field: moment}, headers=ada["headers"]
    )
    problem = await assert_problem(response, 422)
    assert field in problem["errors"]
    listed = await (await client.get(f"/users/{ada['id']}/events", headers=ada["headers"])).json()
    assert [e["start_date"] for e in listed["items"]] == ["2024-01-15T10:00:00Z"]


async def test_extreme_dates_that_fit_are_kept_exactly(client: Any) -> None:
    ada = await register(client)
    body = {**EVENT, "start_date": "0001-01-01T00:00:01Z", "end_date": "9999-12-31T23:59:59Z"}
    response = await client.post("/events", json=body, headers=ada["headers"])
    assert response.status == 201, await response.text()
    event = await response.json()
    assert (event["start_date"], event["end_date"]) == (body["start_date"], body["end_date"])
    got = await (await client.get(f"/events/{event['id']}", headers=ada["headers"])).json()
    assert (got["start_date"], got["end_date"]) == (body["start_date"], body["end_date"])


@pytest.mark.parametrize(
    ("field", "moment"),
    [("start_date", "0001-01-01T00:00:00Z"), ("end_date", "9999-12-31T23:59:59.999999Z")],
)
async def test_the_instants_the_driver_stores_as_infinity_are_422(
    client: Any, field: str, moment: str
) -> None:
    # asyncpg writes datetime.min and datetime.max as -infinity and infinity, which read back
    # as naive datetimes: refused, rather than stored as something else.
    ada = await register(client)
    response = await client.post("/events", json={**EVENT, field: moment}, headers=ada["headers"])
    problem = await assert_problem(response, 422)
    assert field in problem["errors"]


@pytest.mark.parametrize(
    "data",
    [
        {"note": "nul \x00 here"},
        {"nul\x00key": 1},
        {"deep": {"list": [1, "two", {"three": "\x00"}]}},
        {"deep": [[["\x00"]]]},
    ],
)
async def test_nul_anywhere_in_message_data_is_422_naming_data(
    client: Any, data: dict[str, Any]
) -> None:
    ada = await register(client)
    bob = await register(client)
    response = await client.post(
        "/sse/send-message", json={"user_id": bob["id"], "message": "hi", "data": data},
        headers=ada["headers"],
    )  # fmt: skip
    problem = await assert_problem(response, 422)
    assert "data" in problem["errors"]
    notes = await (await client.get(f"/notifications/{bob['id']}", headers=bob["headers"])).json()
    assert notes["items"] == []


@pytest.mark.parametrize("limit", ["9" * 5000, "0" * 4000 + "5", "١٢"])
async def test_a_limit_of_thousands_of_digits_is_422_not_500(client: Any, limit: str) -> None:
    # int() refuses strings past 4,300 digits (ValueError): once a 500 on every list route.
    ada = await register(client)
    response = await client.get(
        f"/users/{ada['id']}/events", params={"limit": limit}, headers=ada["headers"]
    )
    problem = await assert_problem(response, 422)
    assert "limit" in problem["errors"]
