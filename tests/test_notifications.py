"""Notifications and the per-user stream (API.md, "Notification", "Real-time streams")."""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from server import keys
from server.notifications.repository import NotificationsRepository
from server.retention import prune_older_than
from server.sql import Queries
from server.work import writing

from .helpers import (
    assert_problem,
    assert_uses_index,
    metric,
    open_stream,
    register,
    send,
    user_stream,
)


async def test_message_frames_carry_seq_type_and_the_notification(client: Any) -> None:
    ada = await register(client, "Ada")
    bob = await register(client, "Bob")
    stream = await user_stream(client, bob)
    response = await send(client, ada, [bob["id"]], "line one\nline two", data={"k": [1, 2]})
    assert response.status == 202
    assert await response.json() == {"notified": [bob["id"]]}
    event = (await stream.take(1))[0]
    assert (event.id, event.event) == ("1", "message")
    notification = json.loads(event.data)
    assert set(notification) == {"id", "seq", "user_id", "type", "data", "read", "read_at",
                                 "created_at"}  # fmt: skip
    assert notification["seq"] == 1 and notification["user_id"] == bob["id"]
    assert notification["data"] == {
        "from": ada["id"],
        "message": "line one\nline two",
        "data": {"k": [1, 2]},
    }
    assert notification["read"] is False and notification["read_at"] is None


async def test_stream_headers_and_access_token_query(client: Any) -> None:
    bob = await register(client)
    response = await client.get(f"/sse/{bob['id']}", params={"access_token": bob["token"]})
    assert response.status == 200
    assert response.headers["Content-Type"] == "text/event-stream"
    assert response.headers["X-Accel-Buffering"] == "no"
    assert await response.content.readuntil(b"\n\n") == b"retry: 3000\n\n"
    response.close()


async def test_stream_access_rules(client: Any) -> None:
    ada = await register(client)
    bob = await register(client)
    await assert_problem(await client.get(f"/sse/{bob['id']}"), 401)
    await assert_problem(
        await client.get(f"/sse/{bob['id']}", params={"access_token": "nope"}), 401
    )
    await assert_problem(await client.get(f"/sse/{bob['id']}", headers=ada["headers"]), 403)
    await assert_problem(await client.get(f"/sse/{uuid.uuid4()}", headers=ada["headers"]), 404)
    await assert_problem(await client.get("/sse/not-an-id", headers=ada["headers"]), 404)


async def test_actor_never_notifies_itself(client: Any) -> None:
    ada = await register(client)
    bob = await register(client)
    response = await send(client, ada, [ada["id"], bob["id"]])
    assert (await response.json())["notified"] == [bob["id"]]
    mine = await (await client.get(f"/notifications/{ada['id']}", headers=ada["headers"])).json()
    assert mine["items"] == [] and mine["unread_count"] == 0


async def test_send_message_to_an_unknown_user_is_422_and_notifies_nobody(client: Any) -> None:
    ada = await register(client)
    bob = await register(client)
    ghost = str(uuid.uuid4())
    response = await send(client, ada, [bob["id"], ghost])
    problem = await assert_problem(response, 422)
    assert ghost in " ".join(problem["errors"]["user_ids"])
    page = await (await client.get(f"/notifications/{bob['id']}", headers=bob["headers"])).json()
    assert page["items"] == []
    single = await client.post("/sse/send-message", json={"user_id": ghost, "message": "x"},
                               headers=ada["headers"])  # fmt: skip
    assert "user_id" in (await assert_problem(single, 422))["errors"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"message": "x"}, "user_ids"),
        ({"user_id": "BOB", "user_ids": ["BOB"], "message": "x"}, "user_ids"),
        ({"user_ids": [], "message": "x"}, "user_ids"),
        ({"user_ids": ["not-a-uuid"], "message": "x"}, "user_ids.0"),
        ({"user_ids": ["BOB"], "message": ""}, "message"),
        ({"user_ids": ["BOB"], "message": "x" * 10_001}, "message"),
        ({"user_ids": ["BOB"], "message": "x", "data": "not an object"}, "data"),
        ({"user_ids": ["BOB"], "message": "x", "priority": 1}, "priority"),
    ],
)
async def test_bad_messages_are_422(client: Any, body: dict[str, Any], field: str) -> None:
    ada = await register(client)
    bob = await register(client)
    body = json.loads(json.dumps(body).replace("BOB", bob["id"]))
    response = await client.post("/sse/send-message", json=body, headers=ada["headers"])
    assert field in (await assert_problem(response, 422))["errors"]


async def test_more_than_100_targets_is_422(client: Any) -> None:
    ada = await register(client)
    targets = [str(uuid.uuid4()) for _ in range(101)]
    response = await send(client, ada, targets)
    assert "user_ids" in (await assert_problem(response, 422))["errors"]


async def test_seq_is_gapless_under_20_concurrent_notifiers_to_overlapping_users(
    client: Any,
) -> None:
    users = [await register(client, f"u{i}") for i in range(6)]
    senders = [await register(client, f"s{i}") for i in range(20)]
    rng = random.Random(7)
    plans = [rng.sample([u["id"] for u in users], k=rng.randint(2, 6)) for _ in senders]
    responses = await asyncio.gather(
        *(send(client, s, plan) for s, plan in zip(senders, plans, strict=True))
    )
    assert [r.status for r in responses] == [202] * 20
    for user in users:
        expected = sum(user["id"] in plan for plan in plans)
        page = await (
            await client.get(
                f"/notifications/{user['id']}", params={"limit": "200"}, headers=user["headers"]
            )
        ).json()
        assert sorted(n["seq"] for n in page["items"]) == list(range(1, expected + 1))


async def test_racing_notifications_are_timed_in_the_order_of_their_seq(client: Any) -> None:
    """A notification's created_at is taken once it holds the recipient's counter, not when
    its transaction began: otherwise a writer that waited for the counter gets a later seq
    and an earlier time, and a client sorting by time sees them out of order."""
    bob = await register(client)
    senders = [await register(client, f"s{i}") for i in range(20)]
    for _ in range(3):
        responses = await asyncio.gather(*(send(client, s, [bob["id"]]) for s in senders))
        assert [r.status for r in responses] == [202] * 20
    page = await (
        await client.get(
            f"/notifications/{bob['id']}", params={"limit": "100"}, headers=bob["headers"]
        )
    ).json()
    by_seq = sorted(page["items"], key=lambda n: n["seq"])
    assert [n["seq"] for n in by_seq] == list(range(1, 61))
    times = [datetime.fromisoformat(n["created_at"]) for n in by_seq]
    backwards = [by_seq[i]["seq"] for i in range(1, len(times)) if times[i] < times[i - 1]]
    assert backwards == []


async def test_nothing_is_published_or_numbered_for_a_rolled_back_transaction(
    client: Any,
) -> None:
    bob = await register(client)
    stream = await user_stream(client, bob)
    bob_id = uuid.UUID(bob["id"])

    class Abort(Exception):
        pass

    with pytest.raises(Abort):
        async with writing(client.app[keys.db_key], client.app[keys.publisher_key]) as work:
            await work.notify([bob_id], "system", {"note": "rolled back"}, actor_id=None)
            raise Abort
    async with writing(client.app[keys.db_key], client.app[keys.publisher_key]) as work:
        await work.notify([bob_id], "system", {"note": "committed"}, actor_id=None)
    event = (await stream.take(1))[0]
    assert json.loads(event.data)["data"] == {"note": "committed"}
    assert event.id == "1"  # the rolled-back one took no seq


async def test_resume_after_disconnect_across_a_burst_of_200(client: Any) -> None:
    ada = await register(client)
    bob = await register(client)
    stream = await user_stream(client, bob)
    await send(client, ada, [bob["id"]], "first")
    assert (await stream.take(1))[0].id == "1"
    stream.response.close()
    await asyncio.gather(*(send(client, ada, [bob["id"]], f"m{i}") for i in range(200)))
    resumed = await user_stream(client, bob, **{"Last-Event-ID": "1"})
    events = await resumed.take(200)
    assert [int(e.id) for e in events] == list(range(2, 202))
    assert {json.loads(e.data)["data"]["message"] for e in events} == {f"m{i}" for i in range(200)}
    await send(client, ada, [bob["id"]], "live")
    live = (await resumed.take(1))[0]
    assert live.id == "202" and json.loads(live.data)["data"]["message"] == "live"


async def test_unusable_last_event_ids_get_a_reset(client: Any) -> None:
    ada = await register(client)
    bob = await register(client)
    for i in range(3):
        await send(client, ada, [bob["id"]], f"m{i}")
    for bad in ["x", "99"]:
        stream = await user_stream(client, bob, **{"Last-Event-ID": bad})
        reset = (await stream.take(1))[0]
        assert (reset.event, reset.data, reset.id) == ("reset", '{"last_event_id":3}', "3")
        stream.response.close()
    repo = NotificationsRepository(client.app[keys.db_key])
    assert await prune_older_than("notifications", repo.prune, timedelta(seconds=-1)) == 3
    await send(client, ada, [bob["id"]], "after pruning")
    stream = await user_stream(client, bob, **{"Last-Event-ID": "1"})  # 2 and 3 are gone
    reset = (await stream.take(1))[0]
    assert reset.event == "reset" and reset.data == '{"last_event_id":4}'


async def test_ten_streams_of_one_user_all_get_everything(client: Any) -> None:
    ada = await register(client)
    bob = await register(client)
    streams = [await user_stream(client, bob) for _ in range(10)]
    for i in range(5):
        await send(client, ada, [bob["id"]], f"m{i}")
    for stream in streams:
        assert [e.id for e in await stream.take(5)] == ["1", "2", "3", "4", "5"]
    assert await metric(client, "sse_connections", 'stream="user"') == 10


async def test_stream_on_one_instance_writes_on_the_other(make_client: Any) -> None:
    reader = await make_client()
    writer = await make_client()
    ada = await register(writer)
    bob = await register(writer)
    stream = await user_stream(reader, bob)
    assert (await send(writer, ada, [bob["id"]], "across")).status == 202
    event = (await stream.take(1))[0]
    assert json.loads(event.data)["data"]["message"] == "across"


async def test_revoking_the_token_closes_its_open_stream(make_client: Any) -> None:
    client = await make_client()
    other = await make_client()  # a second instance: the revocation reaches it through Redis
    bob = await register(client)
    here = await user_stream(client, bob)
    there = await user_stream(other, bob)
    response = await client.delete("/auth/token", headers=bob["headers"])
    assert response.status == 204
    assert await here.ended()
    assert await there.ended()
    again = await client.get(f"/sse/{bob['id']}", headers=bob["headers"])
    await assert_problem(again, 401)


async def test_deleting_the_user_closes_their_streams(client: Any) -> None:
    bob = await register(client)
    stream = await user_stream(client, bob)
    assert (await client.delete(f"/users/{bob['id']}", headers=bob["headers"])).status == 204
    assert await stream.ended()


async def test_new_password_closes_streams_of_other_tokens_only(client: Any) -> None:
    bob = await register(client, email="sse-pw@example.com", password="first password")
    login = await client.post(
        "/auth/token", json={"email": "sse-pw@example.com", "password": "first password"}
    )
    other = {"Authorization": f"Bearer {(await login.json())['token']}"}
    other_stream = await open_stream(client, f"/sse/{bob['id']}", headers=other)
    own_stream = await user_stream(client, bob)
    response = await client.put(
        f"/users/{bob['id']}", json={"password": "second password"}, headers=bob["headers"]
    )
    assert response.status == 200
    assert await other_stream.ended()
    ada = await register(client)
    await send(client, ada, [bob["id"]], "still open")
    assert json.loads((await own_stream.take(1))[0].data)["data"]["message"] == "still open"


async def test_notification_list_unread_filter_and_mark_read(client: Any) -> None:
    ada = await register(client)
    bob = await register(client)
    for i in range(5):
        await send(client, ada, [bob["id"]], f"m{i}")
    path = f"/notifications/{bob['id']}"
    page = await (await client.get(path, params={"limit": "2"}, headers=bob["headers"])).json()
    assert [n["seq"] for n in page["items"]] == [5, 4]
    assert page["unread_count"] == 5
    rest = await (
        await client.get(
            path, params={"limit": "10", "cursor": page["next"]}, headers=bob["headers"]
        )
    ).json()
    assert [n["seq"] for n in rest["items"]] == [3, 2, 1] and rest["next"] is None

    target = page["items"][1]  # seq 4
    response = await client.patch(f"/notifications/{target['id']}", json={"read": True},
                                  headers=bob["headers"])  # fmt: skip
    assert response.status == 200
    marked = await response.json()
    assert marked["read"] is True and marked["read_at"].endswith("Z")
    unread = await (
        await client.get(path, params={"unread": "true"}, headers=bob["headers"])
    ).json()
    assert [n["seq"] for n in unread["items"]] == [5, 3, 2, 1]
    assert unread["unread_count"] == 4
    back = await client.patch(f"/notifications/{target['id']}", json={"read": False},
                              headers=bob["headers"])  # fmt: skip
    assert (await back.json())["read_at"] is None

    # Someone else's notification is not there for you; bad bodies are 422.
    stolen = await client.patch(f"/notifications/{target['id']}", json={"read": True},
                                headers=ada["headers"])  # fmt: skip
    await assert_problem(stolen, 404)
    for body in [{"read": "yes"}, {"read": 1}, {}, {"read": True, "x": 1}]:
        bad = await client.patch(f"/notifications/{target['id']}", json=body,
                                 headers=bob["headers"])  # fmt: skip
        await assert_problem(bad, 422)
    await assert_problem(await client.get(path, headers=ada["headers"]), 403)
    bad_filter = await client.get(path, params={"unread": "maybe"}, headers=bob["headers"])
    assert "unread" in (await assert_problem(bad_filter, 422))["errors"]


async def test_notification_reads_use_their_indexes_on_100000_rows(database_url: str) -> None:
    queries = Queries()
    conn = await asyncpg.connect(database_url)
    try:
        users = []
        for i in range(100):
            insert = queries["users.insert_user"]
            row = await conn.fetchrow(
                insert.sql,
                *insert.args(
                    {"name": f"u{i}", "email": f"u{i}@example.com", "password_hash": None}
                ),
            )
            users.append(row["id"])
        # 1,000 notifications each for 100 users, some read.
        await conn.execute(
            """
            INSERT INTO notifications (user_id, seq, type, data, read_at)
            SELECT u, s, 'message', '{}'::jsonb, CASE WHEN s % 3 = 0 THEN now() END
            FROM unnest($1::uuid[]) AS u, generate_series(1, 1000) AS s
            """,
            users,
        )
        await conn.execute("ANALYZE notifications")
        user = users[42]
        for name, params, index in [
            ("notifications.list_notifications_after",
             {"user_id": user, "after_seq": 500, "max_rows": 500, "max_bytes": 1 << 18},
             "notifications_user_id_seq_key"),
            ("notifications.list_notifications_after_many",
             {"user_ids": users[:10], "after_seqs": [990] * 10, "max_rows": 100,
              "max_bytes": 1 << 18},
             "notifications_user_id_seq_key"),
            ("notifications.prune_notifications",
             {"cutoff": datetime(2000, 1, 1, tzinfo=UTC), "batch_size": 10_000},
             "notifications_created_at_idx"),
            ("notifications.list_notifications",
             {"user_id": user, "before_seq": 900, "max_rows": 51}, "notifications_user_id_seq_key"),
            ("notifications.list_unread_notifications",
             {"user_id": user, "before_seq": 900, "max_rows": 51}, "notifications_unread_idx"),
            ("notifications.count_unread_notifications", {"user_id": user},
             "notifications_unread_idx"),
            ("notifications.get_notification_bounds", {"user_id": user},
             "notifications_user_id_seq_key"),
        ]:  # fmt: skip
            await assert_uses_index(conn, name, params, index, "notifications")
    finally:
        await conn.close()


async def test_a_reloading_tab_never_ends_up_unsubscribed(client: Any) -> None:
    # The old stream leaves (last one: unsubscribe) while the new one joins (subscribe).
    ada = await register(client)
    bob = await register(client)
    old = await user_stream(client, bob)
    for i in range(10):
        old.response.close()
        new = await user_stream(client, bob)
        await asyncio.sleep(0.05 * (i % 3))  # let the old stream's leave run at varied points
        assert (await send(client, ada, [bob["id"]], f"after reload {i}")).status == 202
        event = (await new.take(1, timeout=5))[0]
        assert json.loads(event.data)["data"]["message"] == f"after reload {i}"
        old = new
