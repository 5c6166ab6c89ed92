"""Users and authentication (API.md, "Authentication" and "User")."""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import fields
from typing import Any

import pytest

from server import keys
from server.errors import Unauthenticated
from server.users import service
from server.users.models import User

from .helpers import assert_problem, register


async def test_register_without_password_as_the_old_client_did(client: Any) -> None:
    response = await client.post("/users", json={"name": "Grace", "email": "grace@example.com"})
    assert response.status == 201
    user = await response.json()
    assert set(user) == {"id", "name", "email", "created_at", "updated_at", "token"}
    assert user["name"] == "Grace" and user["email"] == "grace@example.com"
    assert user["created_at"].endswith("Z")
    assert len(user["token"]) >= 43  # 256 bits, URL-safe base64
    me = await client.get(
        f"/users/{user['id']}", headers={"Authorization": f"Bearer {user['token']}"}
    )
    assert me.status == 200
    assert await me.json() == {k: v for k, v in user.items() if k != "token"}


async def test_email_is_unique_case_insensitively_and_kept_as_given(client: Any) -> None:
    first = await register(client, email="Mixed.Case@Example.com")
    assert first["email"] == "Mixed.Case@Example.com"
    response = await client.post("/users", json={"name": "B", "email": "mixed.case@example.COM"})
    await assert_problem(response, 409)


async def test_concurrent_registrations_with_one_email_give_one_201(client: Any) -> None:
    body = {"name": "Racer", "email": "race@example.com", "password": "long enough"}
    responses = await asyncio.gather(*(client.post("/users", json=body) for _ in range(10)))
    statuses = sorted(r.status for r in responses)
    assert statuses == [201] + [409] * 9


async def test_a_taken_email_is_refused_by_the_use_case_not_the_database(
    client: Any, caplog: Any
) -> None:
    # The middleware answers a users_email_key violation too, but logs it as something the
    # service should have caught: a taken email is an everyday 409, refused before that.
    ada = await register(client, email="taken@example.com")
    await register(client, email="other@example.com")
    body = {"name": "B", "email": "TAKEN@example.com"}
    with caplog.at_level(logging.WARNING, logger="server.errors"):
        responses = await asyncio.gather(*(client.post("/users", json=body) for _ in range(3)))
        for response in responses:
            await assert_problem(response, 409)
        update = await client.put(
            f"/users/{ada['id']}", json={"email": "Other@example.com"}, headers=ada["headers"]
        )
        await assert_problem(update, 409)
        same = await client.put(
            f"/users/{ada['id']}", json={"email": "Taken@Example.com"}, headers=ada["headers"]
        )
        assert same.status == 200  # one's own email in another case is no conflict
    assert not [r for r in caplog.records if "database refused" in r.getMessage()]


async def test_login_use_case_answers_a_user_without_its_password_hash(client: Any) -> None:
    # Called directly, as the service has no HTTP in it.
    user = await register(client, email="direct@example.com", password="a long password")
    db, passwords = client.app[keys.db_key], client.app[keys.passwords_key]
    limits = client.app[keys.limits_key]
    new = await service.do_login(
        db, passwords, limits, "Direct@example.com", "a long password", "192.0.2.1"
    )
    assert new.user.id == uuid.UUID(user["id"]) and new.token != user["token"]
    assert [f.name for f in fields(User)] == ["id", "name", "email", "created_at", "updated_at"]
    with pytest.raises(Unauthenticated):
        await service.do_login(
            db, passwords, limits, "direct@example.com", "not the password", "192.0.2.1"
        )


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"email": "a@example.com"}, "name"),
        ({"name": "", "email": "a@example.com"}, "name"),
        ({"name": "x" * 201, "email": "a@example.com"}, "name"),
        ({"name": "two\nlines", "email": "a@example.com"}, "name"),
        ({"name": "A"}, "email"),
        ({"name": "A", "email": "not-an-email"}, "email"),
        ({"name": "A", "email": "a@example.com", "password": "short"}, "password"),
        ({"name": "A", "email": "a@example.com", "password": "x" * 1025}, "password"),
        ({"name": "A\x00", "email": "a@example.com"}, "name"),
        ({"name": "A", "email": "a@example.com", "admin": True}, "admin"),
    ],
)
async def test_bad_registrations_are_422(client: Any, body: dict[str, Any], field: str) -> None:
    problem = await assert_problem(await client.post("/users", json=body), 422)
    assert field in problem["errors"]


async def test_login_with_password_gives_a_new_working_token(client: Any) -> None:
    user = await register(client, email="lin@example.com", password="correct horse")
    response = await client.post(
        "/auth/token", json={"email": "LIN@example.com", "password": "correct horse"}
    )
    assert response.status == 201
    body = await response.json()
    assert body["user"]["id"] == user["id"] and body["token"] != user["token"]
    me = await client.get(
        f"/users/{user['id']}", headers={"Authorization": f"Bearer {body['token']}"}
    )
    assert me.status == 200


async def test_login_failures_look_the_same_and_cost_the_same(client: Any) -> None:
    await register(client, email="known@example.com", password="the password")
    no_password = await register(client, email="nopass@example.com")
    passwords = client.app[keys.passwords_key]
    attempts = {
        "wrong password": {"email": "known@example.com", "password": "not the password"},
        "unknown email": {"email": "nobody@example.com", "password": "not the password"},
        "user without a password": {"email": no_password["email"], "password": "whatever12"},
    }
    answers = {}
    for label, body in attempts.items():
        before = passwords.verifications
        response = await client.post("/auth/token", json=body)
        assert response.status == 401, label
        assert response.headers["WWW-Authenticate"] == "Bearer"
        answers[label] = (await response.json())["detail"]
        # Every failure verifies one argon2 hash (a dummy one when there is none), so none
        # returns early and all take about as long: timing without a timed assertion.
        assert passwords.verifications == before + 1, label
    assert len(set(answers.values())) == 1


async def test_routes_need_a_valid_bearer_token(client: Any) -> None:
    user = await register(client)
    path = f"/users/{user['id']}"
    for headers in [
        {},
        {"Authorization": "Bearer"},
        {"Authorization": "Basic abc"},
        {"Authorization": "Bearer not-a-real-token"},
        {"Authorization": "Bearer " + "x" * 5000},
    ]:
        response = await client.get(path, headers=headers)
        await assert_problem(response, 401)
        assert response.headers["WWW-Authenticate"] == "Bearer"
    # The access_token query parameter is for SSE routes only.
    response = await client.get(path, params={"access_token": user["token"]})
    await assert_problem(response, 401)


async def test_revoked_token_stops_working_at_once(client: Any) -> None:
    user = await register(client)
    response = await client.delete("/auth/token", headers=user["headers"])
    assert response.status == 204
    again = await client.get(f"/users/{user['id']}", headers=user["headers"])
    await assert_problem(again, 401)


async def test_users_are_visible_to_every_user_but_changed_only_by_themselves(
    client: Any,
) -> None:
    ada = await register(client, "Ada")
    bob = await register(client, "Bob")
    assert (await client.get(f"/users/{ada['id']}", headers=bob["headers"])).status == 200
    for method, path, body in [
        ("PUT", f"/users/{ada['id']}", {"name": "Mallory"}),
        ("DELETE", f"/users/{ada['id']}", None),
        ("GET", f"/users/{ada['id']}/events", None),
    ]:
        response = await client.request(method, path, json=body, headers=bob["headers"])
        await assert_problem(response, 403)
    assert (await (await client.get(f"/users/{ada['id']}", headers=ada["headers"])).json())[
        "name"
    ] == "Ada"


@pytest.mark.parametrize(
    "path",
    ["/users/not-a-uuid", "/users/00000000-0000-0000-0000-000000000000", "/users/123"],
)
async def test_unknown_or_malformed_user_ids_are_404(client: Any, path: str) -> None:
    user = await register(client)
    for method in ("GET", "PUT", "DELETE"):
        body = {"name": "x"} if method == "PUT" else None
        response = await client.request(method, path, json=body, headers=user["headers"])
        await assert_problem(response, 404)
    response = await client.get(path + "/events", headers=user["headers"])
    await assert_problem(response, 404)


async def test_update_is_partial_and_checks_email_conflicts(client: Any) -> None:
    ada = await register(client, "Ada", email="ada@example.com")
    await register(client, "Bob", email="bob@example.com")
    path = f"/users/{ada['id']}"
    response = await client.put(path, json={"name": "Ada L."}, headers=ada["headers"])
    assert response.status == 200
    body = await response.json()
    assert body["name"] == "Ada L." and body["email"] == "ada@example.com"
    assert body["updated_at"] >= ada["updated_at"]
    conflict = await client.put(path, json={"email": "BOB@example.com"}, headers=ada["headers"])
    await assert_problem(conflict, 409)
    unknown = await client.put(path, json={"role": "admin"}, headers=ada["headers"])
    assert "role" in (await assert_problem(unknown, 422))["errors"]
    empty = await client.put(path, json={"name": ""}, headers=ada["headers"])
    await assert_problem(empty, 422)


async def test_new_password_revokes_every_other_token(client: Any) -> None:
    ada = await register(client, email="pw@example.com")
    path = f"/users/{ada['id']}"
    response = await client.put(path, json={"password": "first password"}, headers=ada["headers"])
    assert response.status == 200
    login = await client.post(
        "/auth/token", json={"email": "pw@example.com", "password": "first password"}
    )
    other = {"Authorization": f"Bearer {(await login.json())['token']}"}
    assert (await client.get(path, headers=other)).status == 200
    response = await client.put(path, json={"password": "second password"}, headers=ada["headers"])
    assert response.status == 200
    await assert_problem(await client.get(path, headers=other), 401)  # the other token is gone
    assert (await client.get(path, headers=ada["headers"])).status == 200  # this one stays
    old = await client.post(
        "/auth/token", json={"email": "pw@example.com", "password": "first password"}
    )
    await assert_problem(old, 401)


async def test_deleting_a_user_removes_tokens_and_owned_events(client: Any) -> None:
    ada = await register(client)
    bob = await register(client)
    event = await client.post(
        "/events",
        json={"title": "Ada's", "start_date": "2030-01-01T10:00:00Z",
              "end_date": "2030-01-01T11:00:00Z"},
        headers=ada["headers"],
    )  # fmt: skip
    event_id = (await event.json())["id"]
    response = await client.delete(f"/users/{ada['id']}", headers=ada["headers"])
    assert response.status == 204
    await assert_problem(await client.get(f"/users/{ada['id']}", headers=bob["headers"]), 404)
    await assert_problem(await client.get(f"/users/{bob['id']}", headers=ada["headers"]), 401)
    # The email is free again, and the event went with its owner.
    again = await register(client, email=ada["email"])
    await assert_problem(await client.get(f"/events/{event_id}", headers=again["headers"]), 404)


@pytest.mark.parametrize(
    "body",
    [
        {"email": "a\u0000b@example.com", "password": "whatever12"},
        {"email": "a@example.com", "password": "nul\u0000inside"},
        {"email": "a@example.com"},
        {"email": 12, "password": "x"},
    ],
)
async def test_malformed_logins_are_422_not_500(client: Any, body: dict[str, Any]) -> None:
    # Found by schemathesis: a NUL in the login email reached PostgreSQL and answered 500.
    await assert_problem(await client.post("/auth/token", json=body), 422)
