"""Events (API.md, "Event"): CRUD, dates, the access matrix."""

from __future__ import annotations

from typing import Any

import pytest

from .helpers import assert_problem, register

MEETING = {
    "title": "Team Meeting",
    "description": "Weekly sync\n- agenda\n- notes",
    "start_date": "2024-01-15T10:00:00Z",
    "end_date": "2024-01-15T11:00:00Z",
}


async def create(client: Any, user: dict[str, Any], **changes: Any) -> dict[str, Any]:
    response = await client.post("/events", json={**MEETING, **changes}, headers=user["headers"])
    assert response.status == 201, await response.text()
    return dict(await response.json())


async def test_seed_example_body_with_naive_dates_and_user_id(client: Any) -> None:
    # The shape of the seed document's example: naive datetimes (read as UTC), user_id given.
    user = await register(client, "Seed User", email="seed@example.com")
    body = {
        "title": "Team Meeting",
        "description": "Weekly team sync",
        "start_date": "2024-01-15T10:00:00",
        "end_date": "2024-01-15T11:00:00",
        "user_id": user["id"],
    }
    response = await client.post("/events", json=body, headers=user["headers"])
    assert response.status == 201
    event = await response.json()
    assert set(event) == {"id", "title", "description", "start_date", "end_date", "user_id",
                          "created_at", "updated_at"}  # fmt: skip
    assert event["start_date"] == "2024-01-15T10:00:00Z"
    assert event["end_date"] == "2024-01-15T11:00:00Z"
    assert event["user_id"] == user["id"]


async def test_offsets_are_converted_to_utc(client: Any) -> None:
    user = await register(client)
    event = await create(
        client, user, start_date="2024-01-15T12:00:00+02:00", end_date="2024-01-15T13:30:00+02:00"
    )
    assert event["start_date"] == "2024-01-15T10:00:00Z"
    assert event["end_date"] == "2024-01-15T11:30:00Z"


async def test_crud_as_owner(client: Any) -> None:
    user = await register(client)
    event = await create(client, user)
    assert event["description"] == MEETING["description"]  # line breaks kept
    path = f"/events/{event['id']}"
    got = await client.get(path, headers=user["headers"])
    assert await got.json() == event
    updated = await client.put(path, json={"title": "Renamed"}, headers=user["headers"])
    assert updated.status == 200
    body = await updated.json()
    assert body["title"] == "Renamed" and body["description"] == MEETING["description"]
    assert body["start_date"] == event["start_date"]
    assert (await client.delete(path, headers=user["headers"])).status == 204
    await assert_problem(await client.get(path, headers=user["headers"]), 404)


async def test_end_before_start_is_422_in_create_and_in_update(client: Any) -> None:
    user = await register(client)
    response = await client.post(
        "/events", json={**MEETING, "end_date": "2024-01-15T09:00:00Z"}, headers=user["headers"]
    )
    assert "end_date" in (await assert_problem(response, 422))["errors"]
    event = await create(client, user)
    # Only one date changes: checked against the stored other one.
    response = await client.put(
        f"/events/{event['id']}", json={"start_date": "2024-01-16T00:00:00Z"},
        headers=user["headers"],
    )  # fmt: skip
    assert "end_date" in (await assert_problem(response, 422))["errors"]
    same = await client.put(
        f"/events/{event['id']}", json={"end_date": event["start_date"]}, headers=user["headers"]
    )
    assert same.status == 200  # end == start is allowed


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"title": ""}, "title"),
        ({"title": "x" * 201}, "title"),
        ({"title": "a\nb"}, "title"),
        ({"description": "x" * 10_001}, "description"),
        ({"start_date": "yesterday"}, "start_date"),
        ({"end_date": 12}, "end_date"),
        ({"user_id": "not-a-uuid"}, "user_id"),
        ({"colour": "red"}, "colour"),
    ],
)
async def test_bad_event_fields_are_422(client: Any, changes: dict[str, Any], field: str) -> None:
    user = await register(client)
    response = await client.post("/events", json={**MEETING, **changes}, headers=user["headers"])
    assert field in (await assert_problem(response, 422))["errors"]


async def test_every_bad_field_is_named_at_once(client: Any) -> None:
    user = await register(client)
    response = await client.post("/events", json={"title": ""}, headers=user["headers"])
    errors = (await assert_problem(response, 422))["errors"]
    assert {"title", "start_date", "end_date"} <= set(errors)


async def test_creating_for_someone_else_is_403(client: Any) -> None:
    ada = await register(client)
    bob = await register(client)
    response = await client.post("/events", json={**MEETING, "user_id": bob["id"]},
                                 headers=ada["headers"])  # fmt: skip
    await assert_problem(response, 403)


async def test_access_matrix_owner_other_anonymous(client: Any) -> None:
    owner = await register(client)
    other = await register(client)
    event = await create(client, owner)
    path = f"/events/{event['id']}"
    cases = [
        ("GET", path, None),
        ("PUT", path, {"title": "x"}),
        ("DELETE", path, None),
        ("GET", path + "/tasks", None),
    ]
    for method, route, body in cases:
        anonymous = await client.request(method, route, json=body)
        await assert_problem(anonymous, 401)
        # Another user may not even learn that the event exists.
        stranger = await client.request(method, route, json=body, headers=other["headers"])
        await assert_problem(stranger, 404)
    tasks = await client.get(path + "/tasks", headers=owner["headers"])
    assert tasks.status == 200 and await tasks.json() == {"items": [], "next": None}
    assert (await client.put(path, json={"title": "y"}, headers=owner["headers"])).status == 200
    assert (await client.delete(path, headers=owner["headers"])).status == 204
    await assert_problem(await client.post("/events", json=MEETING), 401)


async def test_unknown_and_malformed_event_ids_are_404(client: Any) -> None:
    user = await register(client)
    for path in ["/events/nope", "/events/00000000-0000-0000-0000-000000000000"]:
        await assert_problem(await client.get(path, headers=user["headers"]), 404)
        await assert_problem(await client.delete(path, headers=user["headers"]), 404)


async def test_my_events_are_listed_by_start_in_keyset_pages(client: Any) -> None:
    ada = await register(client)
    bob = await register(client)
    starts = ["2024-03-01T10:00:00Z", "2024-01-01T10:00:00Z", "2024-02-01T10:00:00Z"]
    for i, start in enumerate(starts):
        await create(client, ada, title=f"e{i}", start_date=start, end_date=start)
    await create(client, bob, title="bob's")
    path = f"/users/{ada['id']}/events"
    first = await (await client.get(path, params={"limit": "2"}, headers=ada["headers"])).json()
    assert [e["title"] for e in first["items"]] == ["e1", "e2"]
    rest = await (
        await client.get(
            path, params={"limit": "2", "cursor": first["next"]}, headers=ada["headers"]
        )
    ).json()
    assert [e["title"] for e in rest["items"]] == ["e0"]
    assert rest["next"] is None
    bad = await client.get(path, params={"cursor": "zzz"}, headers=ada["headers"])
    assert "cursor" in (await assert_problem(bad, 422))["errors"]
