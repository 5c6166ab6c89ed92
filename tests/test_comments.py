"""Comments (API.md, "Comment", "Who is notified"): the access matrix, threads whose deleted
middles keep their replies and places, the history of creations, edits and deletions (none
lost under racing edits), 409 on editing a deleted comment, keyset pages of a thread that
grows meanwhile, mentions and notifications, bad input, cascades, and the indexes the
statements use. Real PostgreSQL and Redis; no timed assertions."""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import datetime
from typing import Any

import asyncpg
import pytest

from .conftest import TaskTree
from .helpers import (
    add_role,
    assert_problem,
    assert_uses_index,
    get,
    new_story,
    notifications_of,
    register,
    row,
    user_stream,
)

MEMBERS = row(200, 200, 200, 200, 404, 401)
NOBODY = row(404, 404, 404, 404, 404, 401)

# (method, path, body) -> {actor: status}. On a story of the tree's leaf: {mine} is a comment
# by the collaborator, {theirs} one by the maintainer, {owners} one by the event's owner,
# {gone} a deleted comment by the collaborator; {other} is a story of the sibling task.
ROUTES: list[tuple[str, str, dict[str, Any] | None, dict[str, int]]] = [
    ("POST", "/comments", {"story_id": "{story}", "body": "new"},
     row(201, 201, 201, 201, 404, 401)),
    ("POST", "/comments", {"story_id": "{story}", "body": "re", "parent_id": "{theirs}"},
     row(201, 201, 201, 201, 404, 401)),
    ("POST", "/comments", {"story_id": "{other}", "body": "new"},
     row(201, 404, 404, 404, 404, 401)),
    ("GET", "/comments/{mine}", None, MEMBERS),
    ("GET", "/comments/{gone}", None, MEMBERS),
    ("PUT", "/comments/{mine}", {"body": "edited"}, row(403, 403, 403, 200, 404, 401)),
    ("PUT", "/comments/{owners}", {"body": "edited"}, row(200, 403, 403, 403, 404, 401)),
    ("PUT", "/comments/{gone}", {"body": "edited"}, row(403, 403, 403, 409, 404, 401)),
    ("DELETE", "/comments/{mine}", None, row(204, 204, 204, 204, 404, 401)),
    ("DELETE", "/comments/{theirs}", None, row(204, 204, 204, 403, 404, 401)),
    ("DELETE", "/comments/{gone}", None, row(204, 204, 204, 204, 404, 401)),
    ("GET", "/comments/{mine}/history", None, MEMBERS),
    ("GET", "/stories/{story}/comments", None, MEMBERS),
    ("GET", "/stories/{other}/comments", None, row(200, 404, 404, 404, 404, 401)),
    ("GET", "/stories/{missing}/comments", None, NOBODY),
    ("GET", "/comments/{missing}", None, NOBODY),
    ("GET", "/comments/not-a-uuid", None, NOBODY),
    ("PUT", "/comments/{missing}", {"body": "x"}, NOBODY),
    ("DELETE", "/comments/{missing}", None, NOBODY),
    ("GET", "/comments/{missing}/history", None, NOBODY),
]  # fmt: skip


async def comment(
    client: Any, user: dict[str, Any], story_id: str, body: str, parent_id: str | None = None
) -> dict[str, Any]:
    payload: dict[str, Any] = {"story_id": story_id, "body": body}
    if parent_id is not None:
        payload["parent_id"] = parent_id
    response = await client.post("/comments", json=payload, headers=user["headers"])
    assert response.status == 201, await response.text()
    return dict(await response.json())


async def put(client: Any, user: dict[str, Any], comment_id: str, body: str) -> dict[str, Any]:
    response = await client.put(
        f"/comments/{comment_id}", json={"body": body}, headers=user["headers"]
    )
    assert response.status == 200, await response.text()
    return dict(await response.json())


async def delete(client: Any, user: dict[str, Any], comment_id: str) -> None:
    response = await client.delete(f"/comments/{comment_id}", headers=user["headers"])
    assert response.status == 204, await response.text()


async def every_page(client: Any, path: str, user: dict[str, Any], limit: int) -> list[Any]:
    """Every item of a list, ``limit`` at a time, following ``next``."""
    items: list[Any] = []
    cursor = ""
    while True:
        page = await get(client, f"{path}?limit={limit}&cursor={cursor}", user)
        items += page["items"]
        if page["next"] is None:
            return items
        cursor = page["next"]


@pytest.mark.parametrize(
    ("method", "path", "body", "table"),
    [pytest.param(*route, id=f"{route[0]} {route[1]} {i}") for i, route in enumerate(ROUTES)],
)
async def test_access(
    client: Any,
    task_tree: TaskTree,
    method: str,
    path: str,
    body: Any,
    table: dict[str, int],
) -> None:
    users, tasks = task_tree.users, task_tree.tasks
    story = await new_story(client, users["owner"], tasks["leaf"]["id"])
    other = await new_story(client, users["owner"], tasks["sibling"]["id"])
    for actor, status in table.items():
        ids = {
            "story": story["id"],
            "other": other["id"],
            "missing": str(uuid.uuid4()),
            "mine": (await comment(client, users["collaborator"], story["id"], "mine"))["id"],
            "theirs": (await comment(client, users["maintainer"], story["id"], "theirs"))["id"],
            "owners": (await comment(client, users["owner"], story["id"], "owner's"))["id"],
            "gone": (await comment(client, users["collaborator"], story["id"], "gone"))["id"],
        }
        await delete(client, users["collaborator"], ids["gone"])
        json = {k: v.format(**ids) for k, v in body.items()} if body else None
        response = await client.request(
            method, path.format(**ids), json=json, headers=task_tree.headers(actor)
        )
        assert response.status == status, (actor, await response.text())


async def test_a_thread_keeps_the_places_and_replies_of_its_deleted_comments(
    client: Any, task_tree: TaskTree
) -> None:
    users, leaf = task_tree.users, task_tree.tasks["leaf"]["id"]
    owner, collaborator = users["owner"], users["collaborator"]
    story = await new_story(client, owner, leaf)
    a = await comment(client, owner, story["id"], "A")
    a1 = await comment(client, collaborator, story["id"], "A1", a["id"])
    a1a = await comment(client, owner, story["id"], "A1a", a1["id"])
    b = await comment(client, collaborator, story["id"], "B")
    a2 = await comment(client, users["maintainer"], story["id"], "A2", a["id"])
    await delete(client, collaborator, a1["id"])  # its author
    await delete(client, users["inherited"], b["id"])  # a maintainer
    # A reply to a placeholder is still a reply in the thread.
    a1b = await comment(client, users["inherited"], story["id"], "A1b", a1["id"])
    thread = await every_page(client, f"/stories/{story['id']}/comments", collaborator, 2)
    assert [(c["id"], c["parent_id"], c["body"], c["deleted"]) for c in thread] == [
        (a["id"], None, "A", False),
        (a1["id"], a["id"], None, True),
        (a1a["id"], a1["id"], "A1a", False),
        (b["id"], None, None, True),
        (a2["id"], a["id"], "A2", False),
        (a1b["id"], a1["id"], "A1b", False),
    ]
    placeholder = await get(client, f"/comments/{a1['id']}", owner)
    assert placeholder == thread[1]
    assert placeholder["author_id"] == collaborator["id"] and placeholder["edited"] is False
    assert placeholder["updated_at"] >= placeholder["created_at"]
    # Each comment once, oldest first, and created_at agrees.
    assert [c["created_at"] for c in thread] == sorted(c["created_at"] for c in thread)


async def test_every_listed_comment_is_its_get_body(
    client: Any, task_tree: TaskTree, database_url: str
) -> None:
    # A thread's pages are rendered by PostgreSQL, a single comment by the service (issue
    # 11): the two must agree value for value and key for key, for a plain, an edited, a
    # deleted and an orphaned (author deleted) comment, odd text, and timestamps with and
    # without a fraction of a second.
    users, leaf = task_tree.users, task_tree.tasks["leaf"]["id"]
    owner, collaborator = users["owner"], users["collaborator"]
    story = await new_story(client, owner, leaf)
    odd = 'Quote " backslash \\ tab\t new\nline \u00e9\u4e2d\U0001f600 \u2028 <b>x</b> \x01'
    plain = await comment(client, owner, story["id"], odd)
    edited = await comment(client, collaborator, story["id"], "first", plain["id"])
    await put(client, collaborator, edited["id"], "second")
    gone = await comment(client, collaborator, story["id"], "to be deleted")
    await delete(client, collaborator, gone["id"])
    orphan = await comment(client, users["maintainer"], story["id"], "by someone leaving")
    maintainer = users["maintainer"]
    left = await client.delete(f"/users/{maintainer['id']}", headers=maintainer["headers"])
    assert left.status == 204, await left.text()
    conn = await asyncpg.connect(database_url)
    try:  # a whole second, a fraction with trailing zeros, one microsecond
        await conn.execute(
            "UPDATE comments SET created_at = '2024-01-15 10:00:00+00', "
            "updated_at = '2024-01-15 10:00:00.12+00' WHERE id = $1",
            uuid.UUID(plain["id"]),
        )
        await conn.execute(
            "UPDATE comments SET updated_at = '2024-02-29 23:59:59.000001+00' WHERE id = $1",
            uuid.UUID(edited["id"]),
        )
    finally:
        await conn.close()
    thread = await every_page(client, f"/stories/{story['id']}/comments", owner, 1)
    assert [c["id"] for c in thread] == [plain["id"], edited["id"], gone["id"], orphan["id"]]
    for item in thread:
        alone = await get(client, f"/comments/{item['id']}", owner)
        assert item == alone
        assert list(item) == list(alone)  # the same keys in the same order
    first, second, third, fourth = thread
    assert (first["body"], first["created_at"], first["updated_at"]) == (
        odd, "2024-01-15T10:00:00Z", "2024-01-15T10:00:00.120000Z",
    )  # fmt: skip
    assert (second["body"], second["edited"], second["updated_at"]) == (
        "second", True, "2024-02-29T23:59:59.000001Z",
    )  # fmt: skip
    assert (third["body"], third["deleted"]) == (None, True)
    assert (fourth["author_id"], fourth["body"]) == (None, "by someone leaving")


async def test_the_history_keeps_creation_every_edit_and_the_deletion(
    client: Any, task_tree: TaskTree
) -> None:
    users, leaf = task_tree.users, task_tree.tasks["leaf"]["id"]
    author, maintainer = users["collaborator"], users["maintainer"]
    story = await new_story(client, users["owner"], leaf)
    made = await comment(client, author, story["id"], "one\r\nline two ✓")
    assert (made["edited"], made["deleted"], made["body"]) == (False, False, "one\r\nline two ✓")
    history = f"/comments/{made['id']}/history"
    (first,) = (await get(client, history, author))["items"]
    assert first == {
        "version": 1,
        "body": "one\r\nline two ✓",
        "action": "created",
        "actor_id": author["id"],
        "created_at": made["created_at"],
    }
    edited = await put(client, author, made["id"], "two")
    assert (edited["body"], edited["edited"]) == ("two", True)
    assert edited["updated_at"] >= made["updated_at"]
    await put(client, author, made["id"], "three  ")
    unchanged = await put(client, author, made["id"], "three  ")  # no version for it
    assert (
        unchanged["updated_at"]
        == (await get(client, f"/comments/{made['id']}", author))["updated_at"]
    )
    same = await client.put(f"/comments/{made['id']}", json={}, headers=author["headers"])
    assert same.status == 200 and (await same.json())["body"] == "three  "
    versions = await every_page(client, history, users["owner"], 2)
    assert [(v["version"], v["action"], v["body"], v["actor_id"]) for v in versions] == [
        (1, "created", "one\r\nline two ✓", author["id"]),
        (2, "edited", "two", author["id"]),
        (3, "edited", "three  ", author["id"]),
    ]
    # Deleted by a maintainer: the deletion is the last version; no body is shown any more.
    await delete(client, maintainer, made["id"])
    versions = await every_page(client, history, author, 50)
    assert [(v["version"], v["action"], v["body"], v["actor_id"]) for v in versions] == [
        (1, "created", None, author["id"]),
        (2, "edited", None, author["id"]),
        (3, "edited", None, author["id"]),
        (4, "deleted", None, maintainer["id"]),
    ]
    # Deleting again changes nothing.
    await delete(client, author, made["id"])
    assert len((await get(client, history, author))["items"]) == 4


async def test_editing_a_deleted_comment_is_409_and_changes_nothing(
    client: Any, task_tree: TaskTree
) -> None:
    users, leaf = task_tree.users, task_tree.tasks["leaf"]["id"]
    author = users["collaborator"]
    story = await new_story(client, users["owner"], leaf)
    made = await comment(client, author, story["id"], "soon gone")
    await delete(client, author, made["id"])
    for body in ({"body": "back"}, {}):
        response = await client.put(f"/comments/{made['id']}", json=body, headers=author["headers"])
        problem = await assert_problem(response, 409)
        assert "deleted" in problem["detail"]
    got = await get(client, f"/comments/{made['id']}", author)
    assert (got["body"], got["deleted"], got["edited"]) == (None, True, False)
    assert len((await get(client, f"/comments/{made['id']}/history", author))["items"]) == 2


async def test_pages_of_a_growing_thread_have_no_duplicates_and_no_gaps(
    client: Any, task_tree: TaskTree
) -> None:
    users, leaf = task_tree.users, task_tree.tasks["leaf"]["id"]
    owner = users["owner"]
    story = await new_story(client, owner, leaf)
    before = [(await comment(client, owner, story["id"], f"before {i}"))["id"] for i in range(25)]
    path = f"/stories/{story['id']}/comments"
    writers = [users["collaborator"], users["maintainer"], users["inherited"]]

    async def write() -> None:
        for n in range(10):
            await asyncio.gather(
                *(
                    comment(client, w, story["id"], f"during {n} by {i}")
                    for i, w in enumerate(writers)
                )
            )

    async def read() -> list[str]:
        seen: list[str] = []
        cursor = ""
        while True:
            page = await get(client, f"{path}?limit=4&cursor={cursor}", users["collaborator"])
            seen += [c["id"] for c in page["items"]]
            if page["next"] is None:
                return seen
            cursor = page["next"]
            await asyncio.sleep(0)

    _, seen = await asyncio.gather(write(), read())
    final = [c["id"] for c in await every_page(client, path, owner, 200)]
    assert len(final) == len(set(final)) == 25 + 10 * len(writers)
    assert len(seen) == len(set(seen))  # no duplicates
    assert final[:25] == before
    # No gaps: what the pages showed is the thread as it ends, up to where they stopped
    # (positions commit in order, so nothing can appear behind a cursor).
    assert seen == final[: len(seen)]
    assert len(seen) >= 25


async def test_mentions_notify_new_members_only_and_replace_the_comment_notification(
    client: Any, task_tree: TaskTree
) -> None:
    users, leaf = task_tree.users, task_tree.tasks["leaf"]["id"]
    actor, maintainer, inherited = users["collaborator"], users["maintainer"], users["inherited"]
    story = await new_story(client, users["owner"], leaf)

    async def latest(name: str) -> list[dict[str, Any]]:
        return await notifications_of(client, users[name], "comment", "mention")

    text = (
        f"<@{maintainer['id']}> <@{maintainer['id'].upper()}> <@{users['outsider']['id']}> "
        f"<@{actor['id']}> <@{users['newcomer']['id']}> <@not-an-id>"
    )
    made = await comment(client, actor, story["id"], text)
    mention = {
        "story_id": story["id"],
        "task_id": leaf,
        "comment_id": made["id"],
        "actor_id": actor["id"],
    }

    def notice(action: str) -> dict[str, Any]:
        return {
            "comment_id": made["id"],
            "story_id": story["id"],
            "task_id": leaf,
            "action": action,
            "actor_id": actor["id"],
        }

    assert [(n["type"], n["data"]) for n in await latest("maintainer")] == [("mention", mention)]
    for name in ("owner", "inherited"):
        assert [(n["type"], n["data"]) for n in await latest(name)] == [
            ("comment", notice("created"))
        ]
    for name in ("collaborator", "outsider", "newcomer"):  # the actor, and non-members
        assert await latest(name) == []
    # An edit keeping the old mentions and adding one: only the new one is a mention.
    await add_role(client, users["owner"], leaf, users["newcomer"], "collaborator")
    await put(client, actor, made["id"], text + f" <@{inherited['id']}>")
    assert [(n["type"], n["data"]) for n in (await latest("maintainer"))[1:]] == [
        ("comment", notice("edited"))
    ]
    assert [n["type"] for n in await latest("inherited")] == ["comment", "mention"]
    assert (await latest("inherited"))[-1]["data"] == mention
    # The newcomer, a member now, was mentioned before: not new, so not a mention.
    assert [n["type"] for n in await latest("newcomer")] == ["comment"]
    # A deletion mentions nobody.
    await delete(client, actor, made["id"])
    for name in ("owner", "inherited", "maintainer", "newcomer"):
        last = (await latest(name))[-1]
        assert (last["type"], last["data"]) == ("comment", notice("deleted"))
    assert await latest("collaborator") == []


async def test_a_member_hears_of_a_comment_live_after_it_commits(
    client: Any, task_tree: TaskTree
) -> None:
    users, leaf = task_tree.users, task_tree.tasks["leaf"]["id"]
    story = await new_story(client, users["owner"], leaf)
    stream = await user_stream(client, users["maintainer"])
    try:
        made = await comment(client, users["collaborator"], story["id"], "hello")
        (event,) = await stream.take(1)
    finally:
        stream.response.close()
    assert event.event == "comment"
    assert '"action":"created"' in event.data and made["id"] in event.data


async def test_racing_edits_each_keep_their_entry_in_the_history(
    client: Any, task_tree: TaskTree
) -> None:
    users, leaf = task_tree.users, task_tree.tasks["leaf"]["id"]
    author = users["collaborator"]
    story = await new_story(client, users["owner"], leaf)
    made = await comment(client, author, story["id"], "original")
    bodies = [f"edit {i}" for i in range(20)]
    responses = await asyncio.gather(
        *(
            client.put(f"/comments/{made['id']}", json={"body": b}, headers=author["headers"])
            for b in bodies
        )
    )
    assert [r.status for r in responses] == [200] * 20
    versions = await every_page(client, f"/comments/{made['id']}/history", author, 200)
    assert [v["version"] for v in versions] == list(range(1, 22))
    assert versions[0]["body"] == "original"
    assert sorted(v["body"] for v in versions[1:]) == sorted(bodies)  # none lost
    final = await get(client, f"/comments/{made['id']}", author)
    assert final["body"] == versions[-1]["body"]


async def test_racing_changes_are_timed_in_the_order_of_the_history(
    client: Any, task_tree: TaskTree
) -> None:
    """Review finding: an edit or a deletion was timed at the start of its transaction, taken
    before it waited for the comment's lock, so a change that waited longest came later in
    the history with an earlier time, and the comment's updated_at could go back in time."""
    users, leaf = task_tree.users, task_tree.tasks["leaf"]["id"]
    author = users["collaborator"]
    story = await new_story(client, users["owner"], leaf)
    for _ in range(3):
        made = await comment(client, author, story["id"], "original")
        path = f"/comments/{made['id']}"
        changes = [
            client.put(path, json={"body": f"edit {i}"}, headers=author["headers"])
            for i in range(20)
        ]
        changes.insert(15, client.delete(path, headers=users["maintainer"]["headers"]))
        statuses = [r.status for r in await asyncio.gather(*changes)]
        assert set(statuses) <= {200, 204, 409}, statuses
        versions = await every_page(client, f"{path}/history", author, 200)
        assert versions[-1]["action"] == "deleted"
        times = [datetime.fromisoformat(v["created_at"]) for v in versions]
        assert times == sorted(times)  # oldest first, by version and by time alike
        final = await get(client, path, author)
        assert datetime.fromisoformat(final["updated_at"]) == times[-1]


async def test_racing_comments_are_timed_in_the_order_of_the_thread(
    client: Any, task_tree: TaskTree
) -> None:
    """Review finding: a comment was timed at the start of its transaction, before it waited
    for its story's position counter, so the thread (oldest first) could show a comment
    created later before one created earlier."""
    users, leaf = task_tree.users, task_tree.tasks["leaf"]["id"]
    writers = [users[name] for name in ("owner", "inherited", "maintainer", "collaborator")]
    story = await new_story(client, users["owner"], leaf)
    for n in range(3):
        await asyncio.gather(
            *(comment(client, writers[i % 4], story["id"], f"{n}.{i}") for i in range(20))
        )
    thread = await every_page(client, f"/stories/{story['id']}/comments", users["owner"], 200)
    assert len(thread) == 60
    times = [datetime.fromisoformat(c["created_at"]) for c in thread]
    assert times == sorted(times)  # oldest first, by place and by time alike
    for made in thread[:3]:
        (first,) = (await get(client, f"/comments/{made['id']}/history", users["owner"]))["items"]
        assert first["created_at"] == made["created_at"] == made["updated_at"]


async def test_a_comment_aborted_by_a_deadlock_is_written_and_notified_once(
    client: Any, task_tree: TaskTree, caplog: Any
) -> None:
    """errors.retry_middleware runs a request aborted by a deadlock again: the aborted attempt
    had written its comment and some notifications, which must all roll back, and news of
    them is published only after the COMMIT of the attempt that succeeds. Forced here: a
    connection of the test holds the notification counter of the last member the comment
    notifies, lets the comment take its story's position counter and wait, then waits for
    that counter itself."""
    from server import keys

    users, leaf = task_tree.users, task_tree.tasks["leaf"]["id"]
    owner = users["owner"]
    story = await new_story(client, owner, leaf)
    await comment(client, owner, story["id"], "the story's counter row exists now")
    names = ("inherited", "maintainer", "collaborator")
    before = {n: len(await notifications_of(client, users[n], "comment", "mention")) for n in names}
    last = max(uuid.UUID(users[n]["id"]) for n in names)
    stream = await user_stream(client, users["maintainer"])
    body = {"story_id": story["id"], "body": f"hello <@{users['maintainer']['id']}>"}
    pool = client.app[keys.db_key]._target
    with caplog.at_level(logging.WARNING, logger="server.errors"):
        async with pool.acquire() as conn:
            await conn.execute("SET deadlock_timeout = '10s'")  # the request's side finds it
            async with conn.transaction():
                await conn.execute(
                    "SELECT 1 FROM notification_counters WHERE user_id = $1 FOR UPDATE", last
                )
                sent = asyncio.create_task(
                    client.post("/comments", json=body, headers=owner["headers"])
                )
                for _ in range(200):  # until the comment holds its counter and waits
                    waiting = await conn.fetchval(
                        "SELECT count(*) FROM pg_locks"
                        " WHERE NOT granted AND pid <> pg_backend_pid()"
                    )
                    if waiting:
                        break
                    await asyncio.sleep(0.05)
                assert waiting, "the comment never waited on the notification counter"
                await conn.execute(
                    "SELECT 1 FROM comment_counters WHERE story_id = $1 FOR UPDATE",
                    uuid.UUID(story["id"]),
                )
        response = await sent
    assert response.status == 201, await response.text()
    assert any("40P01" in r.getMessage() for r in caplog.records)  # it was run again
    made = await response.json()
    thread = (await get(client, f"/stories/{story['id']}/comments", owner))["items"]
    assert [c["id"] for c in thread][1:] == [made["id"]]
    for name in names:
        got = await notifications_of(client, users[name], "comment", "mention")
        assert len(got) == before[name] + 1, name
        every = await get(client, f"/notifications/{users[name]['id']}?limit=200", users[name])
        seqs = sorted(n["seq"] for n in every["items"])
        assert seqs == list(range(1, len(seqs) + 1)), name  # no gap left by the aborted try
    try:
        (event,) = await stream.take(1)
        assert event.event == "mention" and made["id"] in event.data
        with pytest.raises(TimeoutError):
            await stream.take(1, timeout=1)  # published once
    finally:
        stream.response.close()


async def test_a_comment_racing_the_deletion_of_its_story_is_201_or_404(
    client: Any, task_tree: TaskTree
) -> None:
    users, leaf = task_tree.users, task_tree.tasks["leaf"]["id"]
    owner = users["owner"]
    story = await new_story(client, owner, leaf)
    body = {"story_id": story["id"], "body": "racing"}
    responses = await asyncio.gather(
        *(client.post("/comments", json=body, headers=owner["headers"]) for _ in range(10)),
        client.delete(f"/stories/{story['id']}", headers=owner["headers"]),
        *(client.post("/comments", json=body, headers=owner["headers"]) for _ in range(10)),
    )
    assert responses[10].status == 204
    assert {r.status for r in responses[:10] + responses[11:]} <= {201, 404}


async def test_bad_input_is_a_clear_4xx(client: Any, task_tree: TaskTree) -> None:
    users, tasks = task_tree.users, task_tree.tasks
    owner = users["owner"]
    h = owner["headers"]
    story = await new_story(client, owner, tasks["leaf"]["id"])
    other = await new_story(client, owner, tasks["sibling"]["id"])
    elsewhere = await comment(client, owner, other["id"], "in another story")
    made = await comment(client, owner, story["id"], "x")
    sid = story["id"]

    async def errors(response: Any, status: int = 422) -> set[str]:
        return set((await assert_problem(response, status)).get("errors", {}))

    for body, field in [
        ({"story_id": sid, "body": ""}, "body"),
        ({"story_id": sid, "body": "x" * 10_001}, "body"),
        ({"story_id": sid, "body": "nul \x00"}, "body"),
        ({"story_id": sid, "body": 5}, "body"),
        ({"story_id": sid, "body": None}, "body"),
        ({"story_id": sid}, "body"),
        ({"body": "x"}, "story_id"),
        ({"story_id": "nope", "body": "x"}, "story_id"),
        ({"story_id": sid, "body": "x", "parent_id": "nope"}, "parent_id"),
        ({"story_id": sid, "body": "x", "parent_id": elsewhere["id"]}, "parent_id"),
        ({"story_id": sid, "body": "x", "parent_id": str(uuid.uuid4())}, "parent_id"),
        ({"story_id": sid, "body": "x", "author_id": owner["id"]}, "author_id"),
    ]:
        assert await errors(await client.post("/comments", json=body, headers=h)) == {field}
    unknown = {"story_id": str(uuid.uuid4()), "body": "x"}
    await assert_problem(await client.post("/comments", json=unknown, headers=h), 404)
    top = await comment(client, owner, sid, "top", parent_id=None)
    assert top["parent_id"] is None
    # 10,000 characters fit, whatever they are: as control characters escaped in JSON they
    # take 60 KB, well within the 1 MiB body limit.
    for text in ("😀" * 10_000, "\x01" * 10_000, "\r\n" * 5_000):
        assert (await comment(client, owner, sid, text))["body"] == text
    path = f"/comments/{made['id']}"
    for body, field in [
        ({"body": ""}, "body"),
        ({"body": "x" * 10_001}, "body"),
        ({"body": "x", "story_id": sid}, "story_id"),
        ({"parent_id": None}, "parent_id"),
    ]:
        assert await errors(await client.put(path, json=body, headers=h)) == {field}
    headers = {**h, "Content-Type": "application/json"}
    huge = b'{"story_id": "' + sid.encode() + b'", "body": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    await assert_problem(await client.post("/comments", data=huge, headers=headers), 413)
    await assert_problem(await client.put(path, data=huge, headers=headers), 413)
    await assert_problem(await client.post("/comments", data=b"{", headers=headers), 400)
    await assert_problem(await client.post("/comments", data=b"[]", headers=headers), 400)
    await assert_problem(await client.put(path, data=b'{"body": "\\ud800"}', headers=headers), 400)
    text_plain = {**h, "Content-Type": "text/plain"}
    await assert_problem(await client.post("/comments", data=b"{}", headers=text_plain), 415)
    for query, field in [
        ("limit=0", "limit"),
        ("limit=201", "limit"),
        ("cursor=x", "cursor"),
        ("cursor=eyJhZnRlciI6LTF9", "cursor"),  # {"after": -1}
        ("cursor=eyJpZCI6MX0", "cursor"),  # {"id": 1}
    ]:
        for listed in (f"/stories/{sid}/comments", f"{path}/history"):
            assert await errors(await client.get(f"{listed}?{query}", headers=h)) == {field}
    far = "cursor=eyJhZnRlciI6MTA5OTUxMTYyNzc3Nn0"  # {"after": 2**40}: a position, not a version
    assert await errors(await client.get(f"{path}/history?{far}", headers=h)) == {"cursor"}
    assert await get(client, f"/stories/{sid}/comments?{far}", owner) == {"items": [], "next": None}


async def test_a_deleted_user_leaves_its_comments_and_a_deleted_story_takes_them(
    client: Any, task_tree: TaskTree, database_url: str
) -> None:
    owner, tasks = task_tree.users["owner"], task_tree.tasks
    writer = await register(client, "Writer")
    await add_role(client, owner, tasks["leaf"]["id"], writer, "collaborator")
    story = await new_story(client, owner, tasks["leaf"]["id"])
    made = await comment(client, writer, story["id"], "by the writer")
    reply = await comment(client, owner, story["id"], "a reply", made["id"])
    await put(client, writer, made["id"], "edited by the writer")
    gone = await client.delete(f"/users/{writer['id']}", headers=writer["headers"])
    assert gone.status == 204
    kept = await get(client, f"/comments/{made['id']}", owner)
    assert (kept["author_id"], kept["body"], kept["edited"]) == (None, "edited by the writer", True)
    versions = (await get(client, f"/comments/{made['id']}/history", owner))["items"]
    assert [v["actor_id"] for v in versions] == [None, None]
    thread = (await get(client, f"/stories/{story['id']}/comments", owner))["items"]
    assert [c["id"] for c in thread] == [made["id"], reply["id"]]
    # Nobody is its author now: only a maintainer may delete it, nobody edit it.
    await delete(client, owner, made["id"])
    # Deleting the story deletes its comments, their history and its counter.
    assert (await client.delete(f"/stories/{story['id']}", headers=owner["headers"])).status == 204
    await assert_problem(
        await client.get(f"/comments/{reply['id']}", headers=owner["headers"]), 404
    )
    conn = await asyncpg.connect(database_url)
    try:
        for table in ("comments", "comment_versions", "comment_counters"):
            assert await conn.fetchval(f"SELECT count(*) FROM {table}") == 0, table
    finally:
        await conn.close()


async def test_comment_statements_use_their_indexes_on_100_000_comments(
    task_tree: TaskTree, database_url: str
) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        leaf = uuid.UUID(task_tree.tasks["leaf"]["id"])
        owner = uuid.UUID(task_tree.users["owner"]["id"])
        await conn.execute(
            "INSERT INTO stories (task_id, title, author_id)"
            " SELECT $1, 'S' || i, $2 FROM generate_series(1, 1000) AS i",
            leaf,
            owner,
        )
        await conn.execute(
            "INSERT INTO comments (story_id, position, author_id, body)"
            " SELECT s.id, p, $1, 'body' FROM stories AS s, generate_series(1, 100) AS p",
            owner,
        )
        await conn.execute(
            "INSERT INTO comment_versions (comment_id, version, action, body, actor_id)"
            " SELECT id, 1, 'created', body, author_id FROM comments"
        )
        await conn.execute("ANALYZE")
        story, some = await conn.fetchrow("SELECT story_id, id FROM comments LIMIT 1")
        for name, params, index, table in [
            (
                "comments.list_story_comments",
                {"story_id": story, "caller_id": owner, "after_position": 40, "max_rows": 51},
                "comments_story_id_position_key",
                "comments",
            ),
            (
                "comments.get_comment_access",
                {"comment_id": some, "caller_id": owner},
                "comments_pkey",
                "comments",
            ),
            ("comments.lock_comment", {"comment_id": some}, "comments_pkey", "comments"),
            ("comments.get_comment_story", {"comment_id": some}, "comments_pkey", "comments"),
            (
                "comments.list_comment_versions",
                {"comment_id": some, "after_version": 0, "max_rows": 51},
                "comment_versions_pkey",
                "comment_versions",
            ),
        ]:
            await assert_uses_index(conn, name, params, index, table)
    finally:
        await conn.close()
