"""Live delivery that never stalls or loses news: the holes found in review (issue 8), each
reproduced here against real PostgreSQL and a test-owned Redis."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import redis.asyncio as aioredis

from server import broker as broker_module
from server import keys
from server.broker import Broker, Publisher, connect
from server.embedded import RedisProcess
from server.feed.repository import ValuesRepository
from server.notifications.repository import NotificationsRepository
from server.wire import NEWS_MAX_BYTES, decode_news

from .helpers import (
    TcpProxy,
    metric,
    open_stream,
    postgres_address,
    proxied_url,
    register,
    send,
    user_stream,
)


async def commit_unannounced_notification(client: Any, user_id: str, text: str) -> None:
    """A notification committed whose news never reaches Redis (a publish lost in a gap)."""
    async with client.app[keys.db_key].transaction() as tx:
        await NotificationsRepository(tx).insert([uuid.UUID(user_id)], "system", {"text": text})


# 1. A reconnect of the subscriber that redis-py does by itself still catches streams up.


async def test_silent_pubsub_reconnect_catches_up_a_quiet_channel(make_client: Any) -> None:
    redis = RedisProcess().start()
    admin = aioredis.Redis.from_url(redis.url)
    try:
        client = await make_client(redis_url=redis.url)
        bob = await register(client)
        stream = await user_stream(client, bob)
        await commit_unannounced_notification(client, bob["id"], "published in the gap")
        # Redis drops the subscriber (as it does past its pub/sub output buffer limit) and
        # stays up: redis-py reconnects and re-subscribes inside get_message.
        assert await admin.client_kill_filter(_type="pubsub") >= 1
        event = (await stream.take(1, timeout=10))[0]
        assert event.id == "1" and "published in the gap" in event.data
    finally:
        await admin.aclose()
        redis.stop()


# 2. Feed news is split into messages far below Redis's pub/sub limit.


async def test_a_big_feed_batch_is_published_in_bounded_messages(
    client: Any, redis_url: str
) -> None:
    settings = client.app[keys.settings_key]
    listener = aioredis.Redis.from_url(redis_url)
    pubsub = listener.pubsub()
    await pubsub.subscribe(settings.redis_prefix + "feed")
    await pubsub.get_message(timeout=2)  # the subscribe confirmation
    stream = await open_stream(client)
    writer = client.app[keys.feed_writer_key]
    values = [f"{i:02}" + "\n" * 9_998 for i in range(20)]  # each frame about 70 KB
    try:
        await asyncio.gather(*(writer.add(v) for v in values))  # one batch of about 1.4 MB
        sizes, covered = [], []
        async with asyncio.timeout(10):
            while not covered or covered[-1][1] < 20:
                message = await pubsub.get_message(timeout=1)
                if message and message["type"] == "message":
                    sizes.append(len(message["data"]))
                    first, last, _ = decode_news(message["data"])
                    covered.append((first, last))
        assert len(sizes) >= 3 and max(sizes) <= NEWS_MAX_BYTES + 64
        assert [c[0] for c in covered] == [1] + [c[1] + 1 for c in covered[:-1]]
        events = await stream.take(20)
        assert [e.data for e in events] == values
    finally:
        await pubsub.aclose()
        await listener.aclose()


# 2 and 4. The publisher's queue is bounded in bytes too, and an overflow owes a resync.


async def test_publisher_queue_is_bounded_in_bytes_and_overflow_owes_a_resync(
    monkeypatch: Any,
) -> None:
    monkeypatch.setattr(broker_module, "PUBLISH_QUEUE_BYTES", 10 * 1024 * 1024)
    client = connect("redis://127.0.0.1:1/0")  # never started: nothing drains the queue
    publisher = Publisher(client, "p:")
    try:
        for _ in range(11):
            publisher.publish("feed", b"x" * 1024 * 1024)
        assert publisher._queued_bytes <= 10 * 1024 * 1024
        assert publisher.dropped == 1
        assert publisher.failing  # a resync is owed: the dropped news must be re-read
    finally:
        await client.aclose()


async def test_publisher_overflow_by_count_owes_a_resync(monkeypatch: Any) -> None:
    monkeypatch.setattr(broker_module, "PUBLISH_QUEUE_MAX", 5)
    client = connect("redis://127.0.0.1:1/0")
    publisher = Publisher(client, "p:")
    try:
        for i in range(6):
            publisher.publish("feed", b"%d" % i)
        assert publisher.dropped == 1 and publisher.failing
    finally:
        await client.aclose()


# 3. A subscribe that arrives while the broker is (re)subscribing is sent to Redis too.


async def test_subscribe_during_a_reconnect_is_not_lost() -> None:
    redis = RedisProcess().start()
    client = connect(redis.url)
    admin = aioredis.Redis.from_url(redis.url)
    gate = asyncio.Event()
    first_call = True
    real_pubsub = client.pubsub

    def slow_pubsub() -> Any:
        # The network is slow: the broker's first SUBSCRIBE takes until the gate opens.
        pubsub = real_pubsub()
        subscribe = pubsub.subscribe

        async def gated(*names: Any) -> Any:
            nonlocal first_call
            if first_call:
                first_call = False
                await gate.wait()
            return await subscribe(*names)

        pubsub.subscribe = gated  # type: ignore[method-assign]
        return pubsub

    client.pubsub = slow_pubsub  # type: ignore[method-assign]
    got: list[tuple[str, bytes]] = []
    broker = Broker(client, "t:", lambda c, p: got.append((c, p)), lambda: None)
    try:
        start = asyncio.create_task(broker.start(wait=10))
        await asyncio.sleep(0.2)
        await broker.subscribe("user:x")  # while the first SUBSCRIBE is on its way
        gate.set()
        await start
        for _ in range(50):
            if await admin.publish("t:user:x", b"news") == 1:
                break
            await asyncio.sleep(0.1)
        for _ in range(50):
            if got:
                break
            await asyncio.sleep(0.1)
        assert got == [("user:x", b"news")]
    finally:
        await broker.stop()
        await client.aclose()
        await admin.aclose()
        redis.stop()


# 5. Revocation ends streams in every process whatever Redis delivered.


async def test_a_token_revoked_without_news_ends_its_streams_within_a_heartbeat(
    make_client: Any,
) -> None:
    client = await make_client(sse_heartbeat_seconds=0.3)
    other = await make_client(sse_heartbeat_seconds=0.3)
    bob = await register(client)
    here = await user_stream(client, bob)
    there = await user_stream(other, bob)
    # The token goes without any control message (lost, or inserted and deleted in a window
    # the announcement missed): only PostgreSQL knows.
    await client.app[keys.db_key].pool.execute("DELETE FROM auth_tokens")
    assert await here.ended(timeout=5)
    assert await there.ended(timeout=5)


async def test_a_deleted_users_stream_ends_in_a_process_that_heard_nothing(
    make_client: Any, redis_url: str
) -> None:
    redis = RedisProcess().start()  # the other process's Redis: it hears no control message
    try:
        client = await make_client(sse_heartbeat_seconds=0.3)
        other = await make_client(sse_heartbeat_seconds=0.3, redis_url=redis.url)
        bob = await register(client)
        there = await user_stream(other, bob)
        assert (await client.delete(f"/users/{bob['id']}", headers=bob["headers"])).status == 204
        assert await there.ended(timeout=5)
    finally:
        redis.stop()


# 6. A Last-Event-ID of thousands of digits is not an id: reset, never 500.


async def test_a_last_event_id_of_thousands_of_digits_gets_a_reset(client: Any) -> None:
    assert (await client.post("/add-value/", json={"value": "a"})).status == 200
    huge = "9" * 5000
    for kwargs in ({"headers": {"Last-Event-ID": huge}}, {"params": {"last_event_id": huge}}):
        stream = await open_stream(client, **kwargs)
        event = await stream.next()
        assert (event.event, event.data) == ("reset", '{"last_event_id":1}')
        stream.response.close()
    bob = await register(client)
    stream = await user_stream(client, bob, **{"Last-Event-ID": huge})
    event = await stream.next()
    assert (event.event, event.data) == ("reset", '{"last_event_id":0}')


# 13. Replay to a client that does not read holds about SSE_QUEUE_BYTES, not a whole page.


async def test_replay_to_a_client_that_does_not_read_is_bounded_in_bytes(client: Any) -> None:
    values = ["\n" * 9_996 + f"{i:04}" for i in range(300)]  # frames of about 70 KB: 21 MB
    await ValuesRepository(client.app[keys.db_key]).insert_batch(values)
    response = await client.get("/events/", headers={"Last-Event-ID": "0"})
    assert response.status == 200  # and never read
    registry = client.app[keys.streams_key]
    stream = next(iter(registry.hubs["feed"].streams))
    last, still = -1, 0
    for _ in range(100):  # until the replay stops moving: the client's buffers are full
        await asyncio.sleep(0.05)
        still = still + 1 if stream.last_sent == last else 0
        last = stream.last_sent
        if still >= 10:
            break
    bound = client.app[keys.settings_key].sse_queue_bytes
    assert stream.last_sent < 300
    assert stream.transport.get_write_buffer_size() <= 2 * bound + 80_000
    response.close()


# 14. Retention never opens a hole inside the kept range.


async def test_pruning_values_keeps_one_contiguous_range(client: Any) -> None:
    db = client.app[keys.db_key]
    await ValuesRepository(db).insert_batch(["1", "2", "3", "4"])
    old, young = datetime.now(UTC) - timedelta(days=10), datetime.now(UTC)
    # ids follow commit order, created_at the transaction's start: they can disagree.
    for value_id, created in [(1, old), (2, young), (3, old), (4, young)]:
        await db.pool.execute(
            "UPDATE feed_values SET created_at = $2 WHERE id = $1", value_id, created
        )
    deleted = await ValuesRepository(db).prune(datetime.now(UTC) - timedelta(days=1), 100)
    assert deleted == 1
    kept = [r["id"] for r in await db.pool.fetch("SELECT id FROM feed_values ORDER BY id")]
    assert kept == [2, 3, 4]


async def test_pruning_notifications_keeps_each_users_range_contiguous(client: Any) -> None:
    db = client.app[keys.db_key]
    ada, bob = await register(client), await register(client)
    for i in range(4):
        await commit_unannounced_notification(client, ada["id"], f"a{i}")
        await commit_unannounced_notification(client, bob["id"], f"b{i}")
    old = datetime.now(UTC) - timedelta(days=10)
    await db.pool.execute(
        "UPDATE notifications SET created_at = $1 WHERE (user_id = $2 AND seq IN (1, 3))"
        " OR user_id = $3",
        old,
        uuid.UUID(ada["id"]),
        uuid.UUID(bob["id"]),
    )
    await NotificationsRepository(db).prune(datetime.now(UTC) - timedelta(days=1), 100)
    rows = await db.pool.fetch("SELECT user_id, seq FROM notifications ORDER BY user_id, seq")
    kept = {(str(r["user_id"]), r["seq"]) for r in rows}
    assert kept == {(ada["id"], 2), (ada["id"], 3), (ada["id"], 4)}


# 15. Shutdown: a stream still subscribing is refused, a stopped feed writer is 503.


async def test_a_stream_still_subscribing_at_shutdown_is_not_served(client: Any) -> None:
    registry = client.app[keys.streams_key]
    gate = asyncio.Event()
    subscribe = registry._subscribe

    async def slow_subscribe(channel: str) -> None:
        await gate.wait()
        await subscribe(channel)

    registry._subscribe = slow_subscribe
    bob = await register(client)
    request = asyncio.create_task(client.get(f"/sse/{bob['id']}", headers=bob["headers"]))
    for _ in range(100):
        await asyncio.sleep(0.02)
        if registry.count:
            break
    registry.close_all()  # SIGTERM: on_shutdown
    gate.set()
    response = await request
    assert response.status == 200
    body = await asyncio.wait_for(response.text(), timeout=5)  # it ends, it does not stream
    assert body.startswith("retry: ") and "shutting down" in body


async def test_adding_a_value_while_the_writer_is_stopped_is_503(client: Any) -> None:
    await client.app[keys.feed_writer_key].stop()
    response = await client.post("/add-value/", json={"value": "late"})
    assert response.status == 503
    assert response.headers["Retry-After"]


# 17. A stream that cannot be served now is told when to come back, with a 200.


async def test_a_stream_opened_while_postgres_is_unreachable_is_told_to_retry(
    make_client: Any, database_url: str
) -> None:
    proxy = await TcpProxy(postgres_address(database_url)).start()
    try:
        client = await make_client(database_url=proxied_url(proxy, database_url))
        bob = await register(client)
        await proxy.cut()
        response = await client.get("/events/", headers={"Last-Event-ID": "0"})
        assert response.status == 200
        body = await asyncio.wait_for(response.text(), timeout=10)
        assert body.startswith("retry: ") and "database" in body
        labels = 'reason="database",stream="feed"'
        assert await metric(client, "sse_connections_rejected_total", labels) == 1
        # A user stream cannot even have its token checked: told to retry all the same.
        response = await client.get(f"/sse/{bob['id']}", headers=bob["headers"])
        assert response.status == 200
        body = await asyncio.wait_for(response.text(), timeout=10)
        assert body.startswith("retry: ") and "database" in body
        labels = 'reason="database",stream="user"'
        assert await metric(client, "sse_connections_rejected_total", labels) == 1
        # Other routes still answer 503 with Retry-After.
        assert (await client.get(f"/users/{bob['id']}", headers=bob["headers"])).status == 503
    finally:
        await proxy.close()


# New: live news while Redis is down, read from PostgreSQL; nothing lost or twice after.


async def test_streams_keep_receiving_while_redis_is_down(make_client: Any) -> None:
    redis = RedisProcess().start()
    try:
        client = await make_client(redis_url=redis.url)
        ada, bob = await register(client), await register(client)
        feed = await open_stream(client)
        inbox = await user_stream(client, bob)
        assert (await client.post("/add-value/", json={"value": "v1"})).status == 200
        assert (await send(client, ada, [bob["id"]], "m1")).status == 202
        assert [e.data for e in await feed.take(1)] == ["v1"]
        assert [e.id for e in await inbox.take(1)] == ["1"]
        watch = client.app[keys.watch_key]
        polls_while_healthy = watch.polls
        reads = {
            kind: await metric(client, "sse_fallback_reads_total", f'kind="{kind}"')
            for kind in ("feed", "users")
        }

        redis.stop()
        for i in range(2, 5):  # each arrives while Redis is still down
            assert (await client.post("/add-value/", json={"value": f"v{i}"})).status == 200
            assert (await send(client, ada, [bob["id"]], f"m{i}")).status == 202
            assert [e.data for e in await feed.take(1, timeout=5)] == [f"v{i}"]
            assert [e.id for e in await inbox.take(1, timeout=5)] == [str(i)]
        assert watch.polls > polls_while_healthy
        for kind in ("feed", "users"):  # the reads are counted, one query per poll per kind
            read = await metric(client, "sse_fallback_reads_total", f'kind="{kind}"') - reads[kind]
            assert 1 <= read <= watch.polls - polls_while_healthy

        redis = RedisProcess(port=redis.port).start()
        for _ in range(100):
            if client.app[keys.broker_key].live and not client.app[keys.publisher_key].failing:
                break
            await asyncio.sleep(0.1)
        for i in range(5, 8):  # live again: once each, in order, nothing repeated
            assert (await client.post("/add-value/", json={"value": f"v{i}"})).status == 200
            assert (await send(client, ada, [bob["id"]], f"m{i}")).status == 202
        assert [(e.id, e.data) for e in await feed.take(3)] == [
            (str(i), f"v{i}") for i in range(5, 8)
        ]
        assert [e.id for e in await inbox.take(3)] == ["5", "6", "7"]
        settled = watch.polls
        settled_reads = await metric(client, "sse_fallback_reads_total", 'kind="feed"')
        await asyncio.sleep(1.5)
        # Healthy again: no more polls of PostgreSQL for news, so no fallback read is counted
        # (the watch's token checks, every heartbeat, still read PostgreSQL as ever).
        assert watch.polls == settled
        assert await metric(client, "sse_fallback_reads_total", 'kind="feed"') == settled_reads
        assert (await client.post("/add-value/", json={"value": "v8"})).status == 200
        assert [e.id for e in await feed.take(1)] == ["8"]
    finally:
        redis.stop()
