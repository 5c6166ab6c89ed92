"""Tasks (API.md, "Roles on tasks", "Task"): the access matrix, the tree and inherited roles,
the duration rule (also under racing requests), rollups, cycles, deletion, completion,
collaborators and notifications. Real PostgreSQL and Redis; no timed assertions."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
import pytest

from server.http import encode_cursor

from .conftest import TaskTree
from .helpers import add_role, assert_problem, assert_uses_index, create_event, create_task

ACTORS = ("owner", "inherited", "maintainer", "collaborator", "outsider", "anonymous")


def row(*statuses: int) -> dict[str, int]:
    return dict(zip(ACTORS, statuses, strict=True))


# (method, path, body) -> {actor: status}, on the tree's leaf (conftest.TaskTree).
ROUTES: list[tuple[str, str, dict[str, Any] | None, dict[str, int]]] = [
    ("GET", "/tasks/{leaf}", None, row(200, 200, 200, 200, 404, 401)),
    ("PUT", "/tasks/{leaf}", {"title": "Renamed"}, row(200, 200, 200, 403, 404, 401)),
    ("PATCH", "/tasks/{leaf}/completion", {"completed": True}, row(200, 200, 200, 200, 404, 401)),
    ("DELETE", "/tasks/{leaf}", None, row(204, 204, 204, 403, 404, 401)),
    (
        "POST",
        "/tasks",
        {"event_id": "{event}", "parent_id": "{leaf}", "title": "Sub", "duration_minutes": 5},
        row(201, 201, 201, 403, 404, 401),
    ),
    (
        "POST",
        "/tasks",
        {"event_id": "{event}", "title": "Top", "duration_minutes": 5},
        row(201, 403, 403, 403, 404, 401),
    ),
    (
        "POST",
        "/tasks/{leaf}/collaborators",
        {"user_id": "{newcomer}", "role": "collaborator"},
        row(201, 201, 201, 403, 404, 401),
    ),
    ("GET", "/tasks/{leaf}/collaborators", None, row(200, 200, 200, 200, 404, 401)),
    ("DELETE", "/tasks/{leaf}/collaborators/{maintainer}", None, row(204, 204, 204, 403, 404, 401)),
    ("GET", "/tasks/{missing}", None, row(404, 404, 404, 404, 404, 401)),
    ("GET", "/tasks/not-a-uuid", None, row(404, 404, 404, 404, 404, 401)),
    ("PUT", "/tasks/{missing}", {"title": "x"}, row(404, 404, 404, 404, 404, 401)),
    ("GET", "/events/{event}", None, row(200, 200, 200, 200, 404, 401)),
    ("GET", "/events/{event}/tasks", None, row(200, 200, 200, 200, 404, 401)),
    ("PUT", "/events/{event}", {"title": "Moved"}, row(200, 403, 403, 403, 404, 401)),
    ("DELETE", "/events/{event}", None, row(204, 403, 403, 403, 404, 401)),
]

CASES = [
    pytest.param(method, path, body, actor, status, id=f"{method} {path} as {actor}")
    for method, path, body, table in ROUTES
    for actor, status in table.items()
]


def fill(value: Any, tree: TaskTree) -> Any:
    if not isinstance(value, str):
        return value
    names = {name: task["id"] for name, task in tree.tasks.items()}
    names |= {name: user["id"] for name, user in tree.users.items()}
    return value.format(event=tree.event_id, missing=uuid.uuid4(), **names)


@pytest.mark.parametrize(("method", "path", "body", "actor", "status"), CASES)
async def test_access(
    client: Any, task_tree: TaskTree, method: str, path: str, body: Any, actor: str, status: int
) -> None:
    json = {k: fill(v, task_tree) for k, v in body.items()} if body else None
    response = await client.request(
        method, fill(path, task_tree), json=json, headers=task_tree.headers(actor)
    )
    assert response.status == status, await response.text()


async def get(client: Any, path: str, user: dict[str, Any]) -> dict[str, Any]:
    response = await client.get(path, headers=user["headers"])
    assert response.status == 200, await response.text()
    return dict(await response.json())


async def visible(client: Any, tree: TaskTree, actor: str, limit: int = 50) -> dict[str, str]:
    """Title -> my_role of every task of the tree's event the actor sees, page after page."""
    seen: dict[str, str] = {}
    cursor = ""
    while True:
        page = await get(
            client,
            f"/events/{tree.event_id}/tasks?limit={limit}&cursor={cursor}",
            tree.users[actor],
        )
        seen |= {t["title"]: t["my_role"] for t in page["items"]}
        if page["next"] is None:
            return seen
        cursor = page["next"]


async def test_a_role_holds_on_the_subtree_and_not_on_siblings(
    client: Any, task_tree: TaskTree
) -> None:
    everything = {"Root", "Mid", "Leaf", "Sibling"}
    owner = await visible(client, task_tree, "owner", limit=1)
    assert owner == dict.fromkeys(everything, "maintainer")
    assert await visible(client, task_tree, "collaborator") == {
        "Mid": "collaborator",
        "Leaf": "collaborator",
    }
    assert await visible(client, task_tree, "inherited") == {
        "Mid": "maintainer",
        "Leaf": "maintainer",
    }
    assert await visible(client, task_tree, "maintainer") == {"Leaf": "maintainer"}
    collaborator = task_tree.users["collaborator"]
    for name in ("root", "sibling"):
        response = await client.get(
            f"/tasks/{task_tree.tasks[name]['id']}", headers=collaborator["headers"]
        )
        await assert_problem(response, 404)
    # The highest role reaching a task wins: a collaborator of mid made maintainer of leaf.
    await add_role(
        client, task_tree.users["owner"], task_tree.tasks["leaf"]["id"], collaborator, "maintainer"
    )
    assert await visible(client, task_tree, "collaborator") == {
        "Mid": "collaborator",
        "Leaf": "maintainer",
    }


async def test_roles_follow_a_move_and_leave_with_their_removal(
    client: Any, task_tree: TaskTree
) -> None:
    owner, tasks = task_tree.users["owner"], task_tree.tasks
    leaf = tasks["leaf"]["id"]
    moved = await client.put(
        f"/tasks/{leaf}", json={"parent_id": tasks["sibling"]["id"]}, headers=owner["headers"]
    )
    assert moved.status == 200, await moved.text()
    assert (await moved.json())["parent_id"] == tasks["sibling"]["id"]
    assert await visible(client, task_tree, "collaborator") == {"Mid": "collaborator"}
    assert await visible(client, task_tree, "inherited") == {"Mid": "maintainer"}
    # Removing the role on mid removes everything it gave, and the event with it.
    inherited = task_tree.users["inherited"]
    removed = await client.delete(
        f"/tasks/{tasks['mid']['id']}/collaborators/{inherited['id']}", headers=owner["headers"]
    )
    assert removed.status == 204
    await assert_problem(
        await client.get(f"/events/{task_tree.event_id}", headers=inherited["headers"]), 404
    )


async def duration_problem(response: Any, parent_id: str, minutes_free: int) -> None:
    body = await assert_problem(response, 422)
    assert set(body["errors"]) == {"duration_minutes"}
    assert str(minutes_free) in body["errors"]["duration_minutes"][0]
    assert (body["parent_id"], body["minutes_free"]) == (parent_id, minutes_free)


async def test_the_duration_rule_on_create_update_move_and_shrink(
    client: Any, task_tree: TaskTree
) -> None:
    owner, t = task_tree.users["owner"], task_tree.tasks
    h = owner["headers"]
    # root 600 holds mid 300 + sibling 100: 200 free.
    body = {
        "event_id": task_tree.event_id,
        "parent_id": t["root"]["id"],
        "title": "Big",
        "duration_minutes": 201,
    }
    await duration_problem(await client.post("/tasks", json=body, headers=h), t["root"]["id"], 200)
    # update: the sibling may grow to 300 (200 free + its own 100), not 301.
    grow = await client.put(
        f"/tasks/{t['sibling']['id']}", json={"duration_minutes": 301}, headers=h
    )
    await duration_problem(grow, t["root"]["id"], 300)
    # re-parent: mid (300) cannot go under sibling (100).
    move = await client.put(
        f"/tasks/{t['mid']['id']}", json={"parent_id": t["sibling"]["id"]}, headers=h
    )
    await duration_problem(move, t["sibling"]["id"], 100)
    # shrink: root holds 400 in subtasks; the answer names root itself and the minimum.
    shrink = await client.put(
        f"/tasks/{t['root']['id']}", json={"duration_minutes": 399}, headers=h
    )
    await duration_problem(shrink, t["root"]["id"], 400)
    ok = await client.put(f"/tasks/{t['root']['id']}", json={"duration_minutes": 400}, headers=h)
    assert ok.status == 200 and (await ok.json())["minutes_free"] == 0
    # Nothing changed by the refusals.
    assert (await get(client, f"/tasks/{t['mid']['id']}", owner))["parent_id"] == t["root"]["id"]


async def test_a_created_task_answers_as_its_get_does_for_each_creator(
    client: Any, task_tree: TaskTree
) -> None:
    # The POST's body comes from the INSERT itself (issue 10): it must be what a GET of the
    # new task then shows its creator, whoever created it and however deep.
    for creator, parent in (("owner", None), ("owner", "root"), ("inherited", "mid"),
                            ("maintainer", "leaf")):  # fmt: skip
        user = task_tree.users[creator]
        parent_id = task_tree.tasks[parent]["id"] if parent else None
        made = await create_task(client, user, task_tree.event_id, 5, parent_id, title="New")
        assert made == await get(client, f"/tasks/{made['id']}", user)
        assert (made["my_role"], made["allocated_minutes"], made["minutes_free"]) == (
            "maintainer", 0, 5,
        )  # fmt: skip
        assert (made["parent_id"], made["created_by"]) == (parent_id, user["id"])


async def test_ten_racing_subtask_creates_only_those_that_fit_succeed(
    client: Any, task_tree: TaskTree
) -> None:
    owner, leaf = task_tree.users["owner"], task_tree.tasks["leaf"]["id"]  # leaf: 60 minutes
    body = {
        "event_id": task_tree.event_id,
        "parent_id": leaf,
        "title": "Part",
        "duration_minutes": 7,
    }
    answers = await asyncio.gather(
        *(client.post("/tasks", json=body, headers=owner["headers"]) for _ in range(10))
    )
    statuses = sorted(r.status for r in answers)
    assert statuses == [201] * 8 + [422] * 2  # 8 x 7 = 56 of 60
    for r in answers:
        if r.status == 422:
            await duration_problem(r, leaf, 4)
    after = await get(client, f"/tasks/{leaf}", owner)
    assert (after["allocated_minutes"], after["minutes_free"]) == (56, 4)


async def test_a_racing_shrink_and_create_never_both_pass(client: Any, task_tree: TaskTree) -> None:
    owner, h = task_tree.users["owner"], task_tree.users["owner"]["headers"]
    for _ in range(5):
        parent = await create_task(client, owner, task_tree.event_id, 100, title="P")
        await create_task(client, owner, task_tree.event_id, 50, parent["id"])
        shrink, create = await asyncio.gather(
            client.put(f"/tasks/{parent['id']}", json={"duration_minutes": 60}, headers=h),
            client.post(
                "/tasks",
                json={
                    "event_id": task_tree.event_id,
                    "parent_id": parent["id"],
                    "title": "Late",
                    "duration_minutes": 40,
                },
                headers=h,
            ),
        )
        assert {shrink.status, create.status} in ({200, 422}, {201, 422})
        assert (shrink.status == 200) != (create.status == 201)  # exactly one wins
        if shrink.status == 422:
            await duration_problem(shrink, parent["id"], 90)
        else:
            await duration_problem(create, parent["id"], 10)
        now = await get(client, f"/tasks/{parent['id']}", owner)
        assert now["allocated_minutes"] <= now["duration_minutes"]


async def test_rollups_follow_every_change(client: Any, task_tree: TaskTree) -> None:
    owner, t = task_tree.users["owner"], task_tree.tasks
    h = owner["headers"]

    async def rollup(name: str) -> tuple[int, int]:
        task = await get(client, f"/tasks/{t[name]['id']}", owner)
        return task["allocated_minutes"], task["minutes_free"]

    assert await rollup("root") == (400, 200)
    assert await rollup("mid") == (60, 240)
    assert await rollup("leaf") == (0, 60)
    extra = await create_task(client, owner, task_tree.event_id, 20, t["mid"]["id"])
    assert await rollup("mid") == (80, 220)
    await client.put(f"/tasks/{t['leaf']['id']}", json={"duration_minutes": 90}, headers=h)
    assert await rollup("mid") == (110, 190)
    moved = await client.put(
        f"/tasks/{extra['id']}", json={"parent_id": t["sibling"]["id"]}, headers=h
    )
    assert moved.status == 200
    assert await rollup("mid") == (90, 210)
    assert await rollup("sibling") == (20, 80)
    await client.patch(f"/tasks/{extra['id']}/completion", json={"completed": True}, headers=h)
    assert await rollup("sibling") == (20, 80)  # completion is not a duration change
    assert (await client.delete(f"/tasks/{extra['id']}", headers=h)).status == 204
    assert await rollup("sibling") == (0, 100)
    # The list carries the same rollups.
    listed = (await get(client, f"/events/{task_tree.event_id}/tasks", owner))["items"]
    mid = next(x for x in listed if x["title"] == "Mid")
    assert (mid["allocated_minutes"], mid["minutes_free"]) == (90, 210)


async def test_every_listed_task_is_its_get_body_for_every_reader(
    client: Any, task_tree: TaskTree, database_url: str
) -> None:
    # The pages are rendered by PostgreSQL, the single task by the service (issue 10): the two
    # must agree value for value and key for key, for the owner's statement and the member's,
    # with odd text, a completed task and timestamps with and without a fraction of a second.
    owner, t = task_tree.users["owner"], task_tree.tasks
    odd = 'Quote " backslash \\ tab\t new\nline \u00e9\u4e2d\U0001f600 \u2028 <@x> \x01'
    put = await client.put(
        f"/tasks/{t['leaf']['id']}", json={"description": odd}, headers=owner["headers"]
    )
    assert put.status == 200, await put.text()
    done = await client.patch(
        f"/tasks/{t['mid']['id']}/completion", json={"completed": True}, headers=owner["headers"]
    )
    assert done.status == 200, await done.text()
    conn = await asyncpg.connect(database_url)
    try:  # a whole second, a fraction with trailing zeros, one microsecond
        await conn.execute(
            "UPDATE tasks SET created_at = '2024-01-15 10:00:00+00', "
            "updated_at = '2024-01-15 10:00:00.12+00' WHERE id = $1",
            uuid.UUID(t["leaf"]["id"]),
        )
        await conn.execute(
            "UPDATE tasks SET completed_at = '2024-02-29 23:59:59.000001+00' WHERE id = $1",
            uuid.UUID(t["mid"]["id"]),
        )
    finally:
        await conn.close()
    for reader in ("owner", "inherited", "collaborator", "maintainer"):
        user = task_tree.users[reader]
        cursor, listed = "", []
        while True:
            response = await client.get(
                f"/events/{task_tree.event_id}/tasks?limit=1&cursor={cursor}",
                headers=user["headers"],
            )
            assert response.status == 200, await response.text()
            assert response.content_type == "application/json"
            page = await response.json()
            listed += page["items"]
            if page["next"] is None:
                break
            cursor = page["next"]
        assert listed, reader
        for item in listed:
            alone = await get(client, f"/tasks/{item['id']}", user)
            assert item == alone, reader
            assert list(item) == list(alone), reader  # the same keys in the same order
    leaf = await get(client, f"/tasks/{t['leaf']['id']}", owner)
    assert (leaf["description"], leaf["created_at"], leaf["updated_at"]) == (
        odd, "2024-01-15T10:00:00Z", "2024-01-15T10:00:00.120000Z",
    )  # fmt: skip
    mid = await get(client, f"/tasks/{t['mid']['id']}", owner)
    assert (mid["completed"], mid["completed_at"]) == (True, "2024-02-29T23:59:59.000001Z")


async def test_an_empty_task_page_is_200_for_those_who_see_the_event_and_404_for_others(
    client: Any, task_tree: TaskTree
) -> None:
    # The owner's page and its access check are one statement, a member's rows prove its
    # role (issue 10): an empty page must still tell "nothing more" from "not yours".
    beyond = encode_cursor({"id": str(uuid.UUID(int=2**128 - 1))})
    url = f"/events/{task_tree.event_id}/tasks?cursor={beyond}"
    for reader in ("owner", "inherited", "collaborator", "maintainer"):
        response = await client.get(url, headers=task_tree.users[reader]["headers"])
        assert response.status == 200, (reader, await response.text())
        assert await response.json() == {"items": [], "next": None}
    for reader in ("outsider", "newcomer"):
        response = await client.get(url, headers=task_tree.users[reader]["headers"])
        await assert_problem(response, 404)
    owner = task_tree.users["owner"]
    empty = await create_event(client, owner, title="Nothing planned")
    assert await get(client, f"/events/{empty['id']}/tasks", owner) == {"items": [], "next": None}
    response = await client.get(
        f"/events/{empty['id']}/tasks", headers=task_tree.users["collaborator"]["headers"]
    )
    await assert_problem(response, 404)
    response = await client.get(f"/events/{uuid.uuid4()}/tasks", headers=owner["headers"])
    await assert_problem(response, 404)


async def test_cycles_are_refused(client: Any, task_tree: TaskTree) -> None:
    owner, t = task_tree.users["owner"], task_tree.tasks
    for target in ("leaf", "mid", "root"):
        response = await client.put(
            f"/tasks/{t['root']['id']}",
            json={"parent_id": t[target]["id"]},
            headers=owner["headers"],
        )
        body = await assert_problem(response, 422)
        assert "parent_id" in body["errors"]


async def test_a_parent_in_another_event_is_refused(client: Any, task_tree: TaskTree) -> None:
    owner, t = task_tree.users["owner"], task_tree.tasks
    other = await client.post(
        "/events",
        json={
            "title": "Other",
            "start_date": "2024-01-15T10:00:00Z",
            "end_date": "2024-01-15T11:00:00Z",
        },
        headers=owner["headers"],
    )
    other_id = (await other.json())["id"]
    body = {"event_id": other_id, "parent_id": t["root"]["id"], "title": "X", "duration_minutes": 1}
    response = await client.post("/tasks", json=body, headers=owner["headers"])
    assert "parent_id" in (await assert_problem(response, 422))["errors"]
    elsewhere = await create_task(client, owner, other_id, 500)
    response = await client.put(
        f"/tasks/{t['leaf']['id']}", json={"parent_id": elsewhere["id"]}, headers=owner["headers"]
    )
    assert "parent_id" in (await assert_problem(response, 422))["errors"]


async def test_moving_to_the_top_level_is_for_the_owner(client: Any, task_tree: TaskTree) -> None:
    t = task_tree.tasks
    inherited = task_tree.users["inherited"]
    path = f"/tasks/{t['leaf']['id']}"
    await assert_problem(
        await client.put(path, json={"parent_id": None}, headers=inherited["headers"]), 403
    )
    moved = await client.put(path, json={"parent_id": None}, headers=task_tree.headers("owner"))
    assert moved.status == 200 and (await moved.json())["parent_id"] is None


async def test_deleting_a_task_removes_its_subtree(
    client: Any, task_tree: TaskTree, database_url: str
) -> None:
    owner, t = task_tree.users["owner"], task_tree.tasks
    response = await client.delete(f"/tasks/{t['mid']['id']}", headers=owner["headers"])
    assert response.status == 204
    for name in ("mid", "leaf"):
        await assert_problem(
            await client.get(f"/tasks/{t[name]['id']}", headers=owner["headers"]), 404
        )
    assert await visible(client, task_tree, "owner") == {
        "Root": "maintainer",
        "Sibling": "maintainer",
    }
    # The roles on the subtree went with it: those members no longer see the event.
    for actor in ("inherited", "maintainer", "collaborator"):
        await assert_problem(
            await client.get(f"/events/{task_tree.event_id}", headers=task_tree.headers(actor)), 404
        )
    conn = await asyncpg.connect(database_url)
    try:
        assert await conn.fetchval("SELECT count(*) FROM task_members") == 2  # root, sibling
    finally:
        await conn.close()


async def test_completion_sets_and_clears_completed_at(client: Any, task_tree: TaskTree) -> None:
    collaborator, leaf = task_tree.users["collaborator"], task_tree.tasks["leaf"]["id"]
    path = f"/tasks/{leaf}/completion"
    done = await client.patch(path, json={"completed": True}, headers=collaborator["headers"])
    body = await done.json()
    assert body["completed"] is True and body["completed_at"] is not None
    again = await (
        await client.patch(path, json={"completed": True}, headers=collaborator["headers"])
    ).json()
    assert again["completed_at"] == body["completed_at"]
    reopened = await (
        await client.patch(path, json={"completed": False}, headers=collaborator["headers"])
    ).json()
    assert reopened["completed"] is False and reopened["completed_at"] is None
    await assert_problem(
        await client.patch(path, json={"completed": "yes"}, headers=collaborator["headers"]), 422
    )


async def test_collaborators_with_where_each_role_comes_from(
    client: Any, task_tree: TaskTree
) -> None:
    owner, t, u = task_tree.users["owner"], task_tree.tasks, task_tree.users
    listed = await get(client, f"/tasks/{t['leaf']['id']}/collaborators", owner)
    roles = {c["name"]: (c["role"], c["task_id"]) for c in listed["items"]}
    assert roles == {
        "Owner": ("maintainer", t["leaf"]["id"]),  # the creator of each task is a maintainer
        "Inherited": ("maintainer", t["mid"]["id"]),
        "Maintainer": ("maintainer", t["leaf"]["id"]),
        "Collaborator": ("collaborator", t["mid"]["id"]),
    }
    path = f"/tasks/{t['leaf']['id']}/collaborators"
    twice = await client.post(
        path,
        json={"user_id": u["maintainer"]["id"], "role": "collaborator"},
        headers=owner["headers"],
    )
    await assert_problem(twice, 409)
    unknown = await client.post(
        path, json={"user_id": str(uuid.uuid4()), "role": "collaborator"}, headers=owner["headers"]
    )
    assert "user_id" in (await assert_problem(unknown, 422))["errors"]
    bad_role = await client.post(
        path, json={"user_id": u["newcomer"]["id"], "role": "owner"}, headers=owner["headers"]
    )
    assert "role" in (await assert_problem(bad_role, 422))["errors"]
    # An inherited role is removed where it is held, not here.
    inherited = await client.delete(f"{path}/{u['collaborator']['id']}", headers=owner["headers"])
    await assert_problem(inherited, 404)
    # A collaborator drops its own role.
    mine = await client.delete(
        f"/tasks/{t['mid']['id']}/collaborators/{u['collaborator']['id']}",
        headers=u["collaborator"]["headers"],
    )
    assert mine.status == 204
    # The owner keeps the tree whatever is removed.
    gone = await client.delete(
        f"/tasks/{t['root']['id']}/collaborators/{owner['id']}", headers=owner["headers"]
    )
    assert gone.status == 204
    assert len(await visible(client, task_tree, "owner")) == 4


async def notifications(client: Any, user: dict[str, Any]) -> list[dict[str, Any]]:
    return list((await get(client, f"/notifications/{user['id']}", user))["items"])


async def test_notifications_reach_every_member_but_never_the_actor(
    client: Any, task_tree: TaskTree
) -> None:
    u, t = task_tree.users, task_tree.tasks
    before = {name: len(await notifications(client, user)) for name, user in u.items()}
    sub = await create_task(client, u["maintainer"], task_tree.event_id, 10, t["leaf"]["id"])
    for name in ("owner", "inherited", "collaborator"):
        latest = (await notifications(client, u[name]))[0]
        assert latest["type"] == "task_update"
        assert latest["data"] == {
            "task_id": sub["id"],
            "event_id": task_tree.event_id,
            "action": "created",
            "actor_id": u["maintainer"]["id"],
        }
    for name in ("maintainer", "outsider", "newcomer"):  # the actor, and non-members
        assert len(await notifications(client, u[name])) == before[name]
    # completed, reopened, updated, deleted: each once to the others.
    h = u["maintainer"]["headers"]
    await client.patch(f"/tasks/{sub['id']}/completion", json={"completed": True}, headers=h)
    await client.patch(f"/tasks/{sub['id']}/completion", json={"completed": False}, headers=h)
    await client.put(f"/tasks/{sub['id']}", json={"title": "Renamed"}, headers=h)
    await client.delete(f"/tasks/{sub['id']}", headers=h)
    actions = [n["data"]["action"] for n in await notifications(client, u["collaborator"])][:5]
    assert actions == ["deleted", "updated", "reopened", "completed", "created"]
    assert len(await notifications(client, u["maintainer"])) == before["maintainer"]
    # Collaborator added or removed: system, to that user only (never to itself).
    await add_role(client, u["inherited"], t["leaf"]["id"], u["newcomer"], "collaborator")
    added = (await notifications(client, u["newcomer"]))[0]
    assert (added["type"], added["data"]) == (
        "system",
        {
            "task_id": t["leaf"]["id"],
            "role": "collaborator",
            "action": "added",
            "actor_id": u["inherited"]["id"],
        },
    )
    leave = await client.delete(
        f"/tasks/{t['leaf']['id']}/collaborators/{u['newcomer']['id']}",
        headers=u["newcomer"]["headers"],
    )
    assert leave.status == 204
    assert len(await notifications(client, u["newcomer"])) == before["newcomer"] + 1


async def test_deleting_a_user_removes_its_memberships(
    client: Any, task_tree: TaskTree, database_url: str
) -> None:
    collaborator = task_tree.users["collaborator"]
    response = await client.delete(f"/users/{collaborator['id']}", headers=collaborator["headers"])
    assert response.status == 204
    listed = await get(
        client, f"/tasks/{task_tree.tasks['leaf']['id']}/collaborators", task_tree.users["owner"]
    )
    assert "Collaborator" not in {c["name"] for c in listed["items"]}
    conn = await asyncpg.connect(database_url)
    try:
        count = await conn.fetchval(
            "SELECT count(*) FROM task_members WHERE user_id = $1", uuid.UUID(collaborator["id"])
        )
        assert count == 0
    finally:
        await conn.close()


@pytest.mark.parametrize(
    "body",
    [
        {"title": "T", "duration_minutes": 0},
        {"title": "T", "duration_minutes": 525_601},
        {"title": "T", "duration_minutes": "5"},
        {"title": "T", "duration_minutes": True},
        {"title": "T", "duration_minutes": 1.5},
        {"title": "T", "duration_minutes": 10**30},
        {"title": "two\nlines", "duration_minutes": 5},
        {"title": "nul\x00", "duration_minutes": 5},
        {"title": "T", "duration_minutes": 5, "colour": "red"},
        {"title": "T", "duration_minutes": 5, "parent_id": "nope"},
        {"duration_minutes": 5},
    ],
)
async def test_bad_task_bodies_are_422(client: Any, task_tree: TaskTree, body: Any) -> None:
    response = await client.post(
        "/tasks", json={"event_id": task_tree.event_id, **body}, headers=task_tree.headers("owner")
    )
    await assert_problem(response, 422)


async def test_a_task_in_an_unseen_event_is_404(client: Any, task_tree: TaskTree) -> None:
    response = await client.post(
        "/tasks",
        json={"event_id": str(uuid.uuid4()), "title": "T", "duration_minutes": 5},
        headers=task_tree.headers("owner"),
    )
    await assert_problem(response, 404)


async def test_the_tree_queries_use_their_indexes_on_a_large_tree(database_url: str) -> None:
    # 200 events x 341 tasks (68,200 in all).
    await assert_tree_plans(database_url, events_count=200)


async def test_the_tree_queries_use_their_indexes_on_a_small_tree(database_url: str) -> None:
    # 3 events x 341 tasks (1,023 in all): the size at which the planner, left to
    # its estimates, hash-joined every step of a walk over a seq scan of tasks (issue 10).
    await assert_tree_plans(database_url, events_count=3)


async def assert_tree_plans(database_url: str, events_count: int) -> None:
    """Every tree statement reads its indexes and never scans tasks or task_members whole,
    on a forest of ``events_count`` events of 341 tasks 5 levels deep, each owned by one of
    200 users, after ANALYZE."""
    conn = await asyncpg.connect(database_url)
    try:
        users = [
            r["id"]
            for r in await conn.fetch(
                "INSERT INTO users (name, email) SELECT 'u' || i, 'u' || i || '@example.com' "
                "FROM generate_series(1, 200) AS i RETURNING id"
            )
        ]
        events = [
            r["id"]
            for r in await conn.fetch(
                "INSERT INTO events (user_id, title, start_date, end_date) "
                "SELECT u, 'e', now(), now() FROM unnest($1::uuid[]) AS u RETURNING id",
                users[:events_count],
            )
        ]
        # Each event 5 levels: 1 + 4 + 16 + 64 + 256 = 341 tasks.
        level = await conn.fetch(
            "INSERT INTO tasks (event_id, title, duration_minutes) "
            "SELECT e, 'root', 525600 FROM unnest($1::uuid[]) AS e "
            "RETURNING id, event_id",
            events,
        )
        tasks = list(level)
        for _ in range(4):
            level = await conn.fetch(
                "INSERT INTO tasks (event_id, parent_id, title, duration_minutes) "
                "SELECT p.event_id, p.id, 't', 1 "
                "FROM unnest($1::uuid[], $2::uuid[]) AS p (id, event_id), "
                "generate_series(1, 4) RETURNING id, event_id",
                [r["id"] for r in level],
                [r["event_id"] for r in level],
            )
            tasks += level
        # As POST /tasks leaves them: the creator (here the event's owner) a maintainer of
        # every task; and every 7th task shared with a user.
        await conn.execute(
            "INSERT INTO task_members (task_id, user_id, role) "
            "SELECT t.id, e.user_id, 'maintainer' FROM tasks t JOIN events e ON e.id = t.event_id"
        )
        await conn.execute(
            "INSERT INTO task_members (task_id, user_id, role) "
            "SELECT t, u, 'collaborator' FROM unnest($1::uuid[]) WITH ORDINALITY AS x (t, n) "
            "JOIN unnest($2::uuid[]) WITH ORDINALITY AS y (u, m) ON y.m = x.n % 200 + 1 "
            "WHERE x.n % 7 = 0 ON CONFLICT DO NOTHING",
            [r["id"] for r in tasks],
            users,
        )
        await conn.execute("ANALYZE")
        deep, member = tasks[-1]["id"], users[-1]  # not the owner of event
        event = events[1]
        owner = await conn.fetchval("SELECT user_id FROM events WHERE id = $1", event)
        mid = await conn.fetchval(
            "SELECT task_id FROM task_members m JOIN tasks t ON t.id = m.task_id "
            "WHERE m.user_id = $1 AND t.event_id = $2 LIMIT 1",
            member,
            event,
        )
        first = uuid.UUID(int=0)
        for name, params, index in [
            ("tasks.get_task_access", {"task_id": deep, "caller_id": member}, "tasks_pkey"),
            ("tasks.lock_task_access", {"task_id": deep, "caller_id": member}, "tasks_pkey"),
            (
                "tasks.lock_task_access",
                {"task_id": deep, "caller_id": member},
                "task_members_user_id_idx",
            ),
            (
                "tasks.get_task_access",
                {"task_id": deep, "caller_id": member},
                "tasks_parent_id_idx",
            ),
            (
                "tasks.list_event_tasks_if_owner",
                {"event_id": event, "caller_id": owner, "after_id": first, "max_rows": 51},
                "tasks_event_id_id_key",
            ),
            (
                "tasks.list_event_tasks_as_member",
                {"event_id": event, "caller_id": member, "after_id": first, "max_rows": 51},
                "task_members_user_id_idx",
            ),
            (
                "tasks.list_event_tasks_as_member",
                {"event_id": event, "caller_id": member, "after_id": first, "max_rows": 51},
                "tasks_parent_id_idx",
            ),
            (
                "tasks.list_task_collaborators",
                {"task_id": deep, "after_user_id": first, "max_rows": 51},
                "task_members_pkey",
            ),
            ("tasks.list_task_member_ids", {"task_id": deep}, "task_members_pkey"),
            (
                "tasks.insert_task",  # EXPLAIN without ANALYZE: nothing is inserted
                {
                    "event_id": event,
                    "parent_id": deep,
                    "title": "t",
                    "description": "",
                    "duration_minutes": 1,
                    "created_by": member,
                },
                "task_members_pkey",
            ),
            (
                "tasks.task_is_in_subtree",
                {"task_id": mid or deep, "candidate_id": deep},
                "tasks_pkey",
            ),
            ("tasks.lock_task", {"task_id": deep}, "tasks_pkey"),
            (
                "events.get_event_access",
                {"event_id": event, "caller_id": member},
                "task_members_user_id_idx",
            ),
        ]:
            await assert_uses_index(conn, name, params, index, "tasks")
            await assert_uses_index(conn, name, params, index, "task_members")
    finally:
        await conn.close()
