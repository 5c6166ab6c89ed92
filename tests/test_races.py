"""Requests racing DELETE /users or a password change (issue 8, items 9 and 11).

Each round fires the requests together with asyncio.gather; the outcome each request may have
is the one API.md gives for a user who is already gone (or a password already changed), never
a 500, and never a token that outlives the change it raced.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from .helpers import register

PASSWORD = "the first long password"
EVENT = {"title": "Racing", "start_date": "2024-01-15T10:00:00Z",
         "end_date": "2024-01-15T11:00:00Z"}  # fmt: skip
ROUNDS = 4


async def _later(kind: str, send: Callable[[], Awaitable[Any]], delay: float) -> tuple[str, int]:
    await asyncio.sleep(delay)
    response = await send()
    await response.read()
    return kind, int(response.status)


async def _race_a_deletion(client: Any) -> list[tuple[str, int]]:
    """One round: ada is deleted while she logs in, creates events, renames herself and sends
    messages, and while bob sends her messages."""
    ada = await register(client, password=PASSWORD)
    bob = await register(client)
    ada_path = f"/users/{ada['id']}"
    login = {"email": ada["email"], "password": PASSWORD}
    to_ada = {"user_id": ada["id"], "message": "hi"}
    to_bob = {"user_ids": [bob["id"]], "message": "hi"}

    def post(path: str, body: Any, user: dict[str, Any] | None) -> Callable[[], Any]:
        return lambda: client.post(path, json=body, headers=user["headers"] if user else None)

    requests = [
        # A login verifies its password (argon2, tens of ms) before it stores the token: the
        # delete lands in between.
        *(_later("login", post("/auth/token", login, None), 0) for _ in range(3)),
        *(_later("event", post("/events", EVENT, ada), 0.002 * i) for i in range(10)),
        *(_later("message to", post("/sse/send-message", to_ada, bob), 0.002 * i)
          for i in range(10)),
        *(_later("message from", post("/sse/send-message", to_bob, ada), 0.002 * i)
          for i in range(5)),
        *(_later("rename", lambda: client.put(ada_path, json={"name": "Ada B"},
                                              headers=ada["headers"]), 0.002 * i)
          for i in range(5)),
        _later("delete", lambda: client.delete(ada_path, headers=ada["headers"]), 0.01),
    ]  # fmt: skip
    outcomes = await asyncio.gather(*requests)
    # Once it is over, ada is gone for good: nothing she raced left anything behind.
    assert (await client.get(ada_path, headers=bob["headers"])).status == 404
    assert (await client.post("/auth/token", json=login)).status == 401
    return list(outcomes)


async def test_writes_racing_the_deletion_of_their_user_never_answer_500(client: Any) -> None:
    allowed = {
        "login": {201, 401},  # 401: as for an unknown email
        "event": {201, 401},  # 401: the caller's token went with the user
        "message to": {202, 422},  # 422 naming user_id: an unknown user
        "message from": {202, 401},
        "rename": {200, 401},
        "delete": {204},
    }
    for _ in range(ROUNDS):
        for kind, status in await _race_a_deletion(client):
            assert status in allowed[kind], (kind, status)


async def _race_a_password_change(client: Any, new_password: str) -> None:
    ada = await register(client, password=PASSWORD)
    old_login = {"email": ada["email"], "password": PASSWORD}

    async def login(delay: float) -> tuple[int, str | None]:
        await asyncio.sleep(delay)
        response = await client.post("/auth/token", json=old_login)
        return response.status, (await response.json()).get("token")

    async def change() -> int:
        await asyncio.sleep(0.02)
        response = await client.put(
            f"/users/{ada['id']}", json={"password": new_password}, headers=ada["headers"]
        )
        await response.read()
        return int(response.status)

    *logins, changed = await asyncio.gather(*(login(0.01 * i) for i in range(6)), change())
    assert changed == 200
    for status, token in logins:
        assert status in (201, 401)
        if status == 201:
            me = await client.get(
                f"/users/{ada['id']}", headers={"Authorization": f"Bearer {token}"}
            )
            assert me.status == 401, "a token from the old password survived the change"
    # The new password works, the old one does not.
    assert (await client.post("/auth/token", json=old_login)).status == 401
    new_login = {"email": ada["email"], "password": new_password}
    assert (await client.post("/auth/token", json=new_login)).status == 201


async def test_a_login_with_the_old_password_never_outlives_the_change(client: Any) -> None:
    for round_ in range(ROUNDS):
        await _race_a_password_change(client, f"the new long password {round_}")


async def test_a_notification_to_a_user_deleted_meanwhile_is_skipped_not_a_500(
    client: Any,
) -> None:
    # send-message locks its targets when it checks them, so they cannot go before COMMIT;
    # any other notify (a task's members, say) may name a user deleted a moment ago: that
    # user gets nothing, and the write goes through instead of meeting the foreign key.
    from server import keys
    from server.work import writing

    ada = await register(client)
    bob = await register(client)
    assert (await client.delete(f"/users/{bob['id']}", headers=bob["headers"])).status == 204
    app = client.app
    async with writing(app[keys.db_key], app[keys.publisher_key]) as work:
        sent = await work.notify(
            [uuid.UUID(ada["id"]), uuid.UUID(bob["id"])], "system", {}, actor_id=None
        )
    assert [str(n.user_id) for n in sent] == [ada["id"]]


async def test_a_write_aborted_by_a_deadlock_is_run_again_not_a_500(
    client: Any, task_tree: Any
) -> None:
    """DELETE /users cascades through story rows after locking the user row, while a story
    edit locks the story row and then key-shares its author's user row (review finding: 500s
    from DeadlockDetectedError). Forced here: a connection of the test locks the author's row,
    lets the edit take the story row and wait, then waits for the story row itself."""
    from server import keys

    owner, maintainer = task_tree.users["owner"], task_tree.users["maintainer"]
    created = await client.post(
        "/stories",
        json={"task_id": task_tree.tasks["leaf"]["id"], "title": "Race", "content": "one\n"},
        headers=maintainer["headers"],
    )
    story = await created.json()
    pool = client.app[keys.db_key]._target
    async with pool.acquire() as conn:
        # This side waits long before looking for deadlocks: the request's side finds it.
        await conn.execute("SET deadlock_timeout = '10s'")
        async with conn.transaction():
            await conn.execute(
                "SELECT 1 FROM users WHERE id = $1 FOR UPDATE", uuid.UUID(maintainer["id"])
            )
            edit = asyncio.create_task(
                client.patch(
                    f"/stories/{story['id']}/content",
                    json={"content": "two\n", "base_revision": 1},
                    headers=owner["headers"],
                )
            )
            for _ in range(100):  # until the edit holds the story row and waits on the user
                waiting = await conn.fetchval(
                    "SELECT count(*) FROM pg_locks WHERE NOT granted AND pid <> pg_backend_pid()"
                )
                if waiting:
                    break
                await asyncio.sleep(0.05)
            assert waiting, "the edit never waited on the author's row"
            await conn.execute(
                "SELECT 1 FROM stories WHERE id = $1 FOR UPDATE", uuid.UUID(story["id"])
            )
        response = await edit
    assert response.status == 200, await response.text()
    assert (await response.json())["revision"] == 2
