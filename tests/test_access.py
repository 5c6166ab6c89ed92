"""Who may do what, one table per domain (API.md's "who" columns): route x actor -> status.

Actors: ``owner`` (the user the path names, or who owns the event; for a notification, its
recipient), ``other`` (another signed-in user, who may see users but not their events or
notifications), ``anonymous`` (no token). Task roles (maintainer, collaborator) join with the
tasks domain, in its own table.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import pytest

from .helpers import register, send


@dataclass
class World:
    owner: dict[str, Any]
    other: dict[str, Any]
    event_id: str
    notification_id: str


@pytest.fixture
async def world(client: Any) -> World:
    owner = await register(client, "Owner")
    other = await register(client, "Other")
    event = await client.post(
        "/events",
        json={
            "title": "Sync",
            "start_date": "2024-01-15T10:00:00Z",
            "end_date": "2024-01-15T11:00:00Z",
        },
        headers=owner["headers"],
    )
    assert event.status == 201
    assert (await send(client, other, [owner["id"]], "hello")).status == 202
    listed = await client.get(f"/notifications/{owner['id']}", headers=owner["headers"])
    notification_id = (await listed.json())["items"][0]["id"]
    return World(owner, other, (await event.json())["id"], notification_id)


def headers_of(world: World, actor: str) -> dict[str, str]:
    return {} if actor == "anonymous" else dict(getattr(world, actor)["headers"])


# (method, path, body) -> {actor: status}; {user} is the owner's id, {event} its event.
ROUTES: list[tuple[str, str, dict[str, Any] | None, dict[str, int]]] = [
    # users
    ("GET", "/users/{user}", None, {"owner": 200, "other": 200, "anonymous": 401}),
    ("PUT", "/users/{user}", {"name": "Renamed"}, {"owner": 200, "other": 403, "anonymous": 401}),
    ("GET", "/users/{user}/events", None, {"owner": 200, "other": 403, "anonymous": 401}),
    ("DELETE", "/users/{user}", None, {"owner": 204, "other": 403, "anonymous": 401}),
    ("GET", "/users/{missing}", None, {"owner": 404, "other": 404, "anonymous": 401}),
    ("DELETE", "/auth/token", None, {"owner": 204, "other": 204, "anonymous": 401}),
    # events
    ("POST", "/events", {"title": "Mine", "start_date": "2024-01-15T10:00:00Z",
                         "end_date": "2024-01-15T11:00:00Z"},
     {"owner": 201, "other": 201, "anonymous": 401}),
    ("GET", "/events/{event}", None, {"owner": 200, "other": 404, "anonymous": 401}),
    ("PUT", "/events/{event}", {"title": "Moved"}, {"owner": 200, "other": 404, "anonymous": 401}),
    ("GET", "/events/{event}/tasks", None, {"owner": 200, "other": 404, "anonymous": 401}),
    ("DELETE", "/events/{event}", None, {"owner": 204, "other": 404, "anonymous": 401}),
    ("GET", "/events/{missing}", None, {"owner": 404, "other": 404, "anonymous": 401}),
    # notifications and streams
    ("GET", "/notifications/{user}", None, {"owner": 200, "other": 403, "anonymous": 401}),
    ("PATCH", "/notifications/{notification}", {"read": True},
     {"owner": 200, "other": 404, "anonymous": 401}),
    ("POST", "/sse/send-message", {"user_id": "{user}", "message": "hi"},
     {"owner": 202, "other": 202, "anonymous": 401}),
    ("GET", "/sse/{user}", None, {"owner": 200, "other": 403, "anonymous": 401}),
    # the value feed is open to everyone
    ("POST", "/add-value/", {"value": "21.5"}, {"owner": 200, "other": 200, "anonymous": 200}),
    ("GET", "/values", None, {"owner": 200, "other": 200, "anonymous": 200}),
    ("GET", "/events/", None, {"owner": 200, "other": 200, "anonymous": 200}),
]  # fmt: skip

CASES = [
    pytest.param(method, path, body, actor, status, id=f"{method} {path} as {actor}")
    for method, path, body, table in ROUTES
    for actor, status in table.items()
]


def fill(text: str, world: World) -> str:
    return text.format(
        user=world.owner["id"],
        event=world.event_id,
        notification=world.notification_id,
        missing=uuid.uuid4(),
    )


@pytest.mark.parametrize(("method", "path", "body", "actor", "status"), CASES)
async def test_access(
    client: Any, world: World, method: str, path: str, body: Any, actor: str, status: int
) -> None:
    url = fill(path, world)
    json = (
        {k: fill(v, world) if isinstance(v, str) else v for k, v in body.items()} if body else None
    )
    response = await client.request(method, url, json=json, headers=headers_of(world, actor))
    if response.content_type == "text/event-stream":
        response.close()  # a stream: its status is what this checks
    assert response.status == status, await response.text() if status != 200 else ""
