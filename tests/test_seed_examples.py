"""The requests existing users already send (/work/shared/SEED_EXAMPLES.md), replayed exactly as
their documents give them, each with the answer API.md promises.

The collaboration platform's examples predate tokens: as the file's notes say, the event and
stream requests carry the token that `POST /users/` returned, and `user-uuid-here` is that
user's id.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from .helpers import EventStream

JSON = {"Content-Type": "application/json"}


async def _create_john(client: Any) -> dict[str, Any]:
    # curl -X POST "http://localhost:8000/users/" -H "Content-Type: application/json" \
    #   -d '{"name": "John Doe", "email": "john@example.com"}'
    response = await client.post(
        "/users/", data=b'{"name": "John Doe", "email": "john@example.com"}', headers=JSON
    )
    assert response.status == 201, await response.text()
    user = await response.json()
    assert set(user) == {"id", "name", "email", "created_at", "updated_at", "token"}
    assert (user["name"], user["email"]) == ("John Doe", "john@example.com")
    assert user["created_at"].endswith("Z") and user["token"]
    return dict(user)


async def test_create_a_user(client: Any) -> None:
    await _create_john(client)


async def test_create_an_event(client: Any) -> None:
    john = await _create_john(client)
    body = (
        b'{\n    "title": "Team Meeting",\n    "description": "Weekly sync",\n'
        b'    "start_date": "2024-01-15T10:00:00",\n    "end_date": "2024-01-15T11:00:00",\n'
        b'    "user_id": "' + john["id"].encode() + b'"\n  }'
    )
    response = await client.post(
        "/events/", data=body, headers={**JSON, "Authorization": f"Bearer {john['token']}"}
    )
    assert response.status == 201, await response.text()
    event = await response.json()
    assert event["title"] == "Team Meeting" and event["description"] == "Weekly sync"
    assert event["start_date"] == "2024-01-15T10:00:00Z"  # read as UTC
    assert event["end_date"] == "2024-01-15T11:00:00Z"
    assert event["user_id"] == john["id"]
    # Without the token, as the example was written before tokens: 401, saying how.
    response = await client.post("/events/", data=body, headers=JSON)
    assert response.status == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"


async def test_subscribe_to_sse_events(client: Any) -> None:
    john = await _create_john(client)
    # curl -N "http://localhost:8000/sse/user-uuid-here", with the token as EventSource can
    for kwargs in (
        {"params": {"access_token": john["token"]}},
        {"headers": {"Authorization": f"Bearer {john['token']}"}},
    ):
        response = await client.get(f"/sse/{john['id']}", **kwargs)
        assert response.status == 200
        assert response.content_type == "text/event-stream"
        assert response.headers["Cache-Control"] == "no-cache"
        assert response.headers["X-Accel-Buffering"] == "no"
        assert (await EventStream(response).next()).retry is not None  # retry: first
        response.close()
    # A message to John arrives on the stream as `id: <seq>`, `event: message`.
    ada = await client.post("/users", json={"name": "Ada", "email": "ada@example.com"})
    ada_token = (await ada.json())["token"]
    response = await client.get(f"/sse/{john['id']}", params={"access_token": john["token"]})
    stream = EventStream(response)
    await stream.next()
    sent = await client.post(
        "/sse/send-message", json={"user_id": john["id"], "message": "hi"},
        headers={"Authorization": f"Bearer {ada_token}"},
    )  # fmt: skip
    assert sent.status == 202
    assert await sent.json() == {"notified": [john["id"]]}
    [event] = await stream.take(1)
    assert (event.id, event.event) == ("1", "message")
    assert orjson.loads(event.data)["data"]["message"] == "hi"
    response.close()
    # As written, without a token: 401.
    response = await client.get(f"/sse/{john['id']}")
    assert response.status == 401


async def test_health(client: Any) -> None:
    # curl "http://localhost:8000/health"
    response = await client.get("/health")
    assert response.status == 200
    assert await response.json() == {"status": "ok", "database": "ok", "redis": "ok"}


async def test_every_listed_route_answers_with_and_without_a_trailing_slash(client: Any) -> None:
    john = await _create_john(client)
    auth = {"Authorization": f"Bearer {john['token']}"}
    created = await client.post(
        "/events", json={"title": "T", "start_date": "2024-01-15T10:00:00",
                         "end_date": "2024-01-15T11:00:00"}, headers=auth,
    )  # fmt: skip
    event_id = (await created.json())["id"]
    paths = [
        ("GET", f"/users/{john['id']}", 200),
        ("GET", f"/users/{john['id']}/events", 200),
        ("GET", f"/events/{event_id}", 200),
        ("GET", f"/events/{event_id}/tasks", 200),
        ("GET", f"/notifications/{john['id']}", 200),
        ("POST", "/sse/send-message", 422),  # reached: an empty body names its fields
        ("PATCH", "/notifications/0b7e7dd2-6d6a-4c1e-9a44-6f7f1b1d7a10", 404),
    ]
    for method, path, status in paths:
        for variant in (path, path + "/"):
            response = await client.request(
                method, variant, json={}, headers=auth, allow_redirects=False
            )
            assert response.status == status, (method, variant, await response.text())
    for variant in (f"/sse/{john['id']}", f"/sse/{john['id']}/"):
        response = await client.get(variant, headers=auth, allow_redirects=False)
        assert response.status == 200, variant
        response.close()


async def test_add_value_as_the_live_data_stream_app_did(client: Any) -> None:
    # POST /add-value/   {"value": "your_value"}   ->  {"message": "Value added successfully"}
    response = await client.post("/add-value/", data=b'{"value": "your_value"}', headers=JSON)
    assert response.status == 200
    assert await response.json() == {"message": "Value added successfully"}


async def _raw_frame(response: Any) -> bytes:
    """The next frame as bytes, up to and including its blank line, comments skipped."""
    async with asyncio.timeout(5):
        lines: list[bytes] = []
        while True:
            line = await response.content.readline()
            assert line, "stream ended"
            if line.startswith((b":", b"retry:")) and not lines:
                continue
            if line == b"\n" and not lines:
                continue
            lines.append(line)
            if line == b"\n":
                return b"".join(lines)


async def test_the_events_stream_frames_values_as_the_app_did(client: Any) -> None:
    # GET /events/ : text/event-stream, "data: <value>\n\n" per value (with its id: line)
    response = await client.get("/events/")
    assert response.status == 200 and response.content_type == "text/event-stream"
    for value in ("your_value", "two\nlines"):
        posted = await client.post("/add-value/", json={"value": value})
        assert posted.status == 200
    assert await _raw_frame(response) == b"id: 1\ndata: your_value\n\n"
    assert await _raw_frame(response) == b"id: 2\ndata: two\ndata: lines\n\n"
    response.close()
    # The same values, from the start, for a client that resumes.
    response = await client.get("/events/", headers={"Last-Event-ID": "0"})
    assert await _raw_frame(response) == b"id: 1\ndata: your_value\n\n"
    response.close()
