"""How the feed behaves when PostgreSQL or Redis goes away (DESIGN.md, "Failure behaviour")."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from server.broker import Broker, Publisher, connect
from server.embedded import RedisProcess

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


async def post(client: Any, value: str) -> int:
    response = await client.post("/add-value/", json={"value": value})
    return int(response.status)


async def test_postgres_unreachable_gives_503_and_open_streams_stay_open(
    make_client: Any, database_url: str
) -> None:
    proxy = await TcpProxy(postgres_address(database_url)).start()
    try:
        client = await make_client(
            database_url=proxied_url(proxy, database_url), sse_heartbeat_seconds=0.2
        )
        stream = await open_stream(client)
        assert await post(client, "before") == 200
        assert (await stream.take(1))[0].data == "before"

        await proxy.cut()
        response = await client.post("/add-value/", json={"value": "during"})
        assert response.status == 503
        assert response.headers["Retry-After"]
        assert response.content_type == "application/problem+json"
        health = await client.get("/health")
        assert health.status == 503
        assert await health.json() == {
            "status": "unavailable",
            "database": "unavailable",
            "redis": "ok",
        }
        values = await client.get("/values")
        assert values.status == 503
        # The open stream is still there: heartbeats keep coming.
        assert (await stream.next(timeout=3, with_comments=True)).comments == ["ping"]
        assert (await stream.next(timeout=3, with_comments=True)).comments == ["ping"]

        await proxy.start()  # PostgreSQL is back on the same address
        for _ in range(50):
            if await post(client, "after") == 200:
                break
            await asyncio.sleep(0.1)
        event = (await stream.take(1))[0]
        assert event.data == "after"
        assert (await client.get("/health")).status == 200
    finally:
        await proxy.close()


@pytest.mark.parametrize("kind", ["feed", "user"])
async def test_redis_restart_mid_stream_loses_nothing(make_client: Any, kind: str) -> None:
    """Redis stops and comes back on the same port while a stream of each kind is open:
    writes keep succeeding, and the stream gets everything once, in order."""
    redis = RedisProcess().start()
    try:
        writer = await make_client(redis_url=redis.url)
        reader = await make_client(redis_url=redis.url)
        ada, bob = await register(writer), await register(writer)
        if kind == "feed":
            stream = await open_stream(reader)

            async def write(text: str) -> int:
                return await post(writer, text)
        else:
            stream = await user_stream(reader, bob)

            async def write(text: str) -> int:
                return int((await send(writer, ada, [bob["id"]], text)).status)

        for i in range(3):
            assert await write(f"before {i}") in (200, 202)
        assert [e.id for e in await stream.take(3)] == ["1", "2", "3"]

        redis.stop()
        for i in range(5):  # writes succeed: the record is PostgreSQL
            assert await write(f"during {i}") in (200, 202)
        health = await writer.get("/health")
        assert health.status == 503 and (await health.json())["redis"] == "unavailable"

        redis = RedisProcess(port=redis.port).start()
        events = await stream.take(5, timeout=15)
        assert [e.id for e in events] == ["4", "5", "6", "7", "8"]
        for _ in range(100):
            if (await writer.get("/health")).status == 200:
                break
            await asyncio.sleep(0.1)
        assert await write("after") in (200, 202)
        assert [e.id for e in await stream.take(1, timeout=10)] == ["9"]
    finally:
        redis.stop()


async def test_redis_down_at_start_still_serves_and_recovers(make_client: Any) -> None:
    redis = RedisProcess()  # not started yet
    client = await make_client(redis_url=redis.url)
    stream = await open_stream(client)
    assert await post(client, "while redis is down") == 200
    redis.start()
    try:
        event = (await stream.take(1, timeout=15))[0]
        assert event.data == "while redis is down"
        assert await metric(client, "sse_connections", 'stream="feed"') == 1
    finally:
        redis.stop()


async def test_news_dropped_by_a_failed_publish_still_arrives(make_client: Any) -> None:
    # Redis refuses writes (PUBLISH) for longer than the publisher waits, while the pub/sub
    # connection stays up: the subscriber side never notices. The value is committed, its
    # news is dropped, and the resync that follows once publishing works again brings it.
    import redis.asyncio as aioredis

    redis = RedisProcess().start()
    admin = aioredis.Redis.from_url(redis.url)
    try:
        client = await make_client(redis_url=redis.url)
        stream = await open_stream(client)
        assert await post(client, "before") == 200
        assert (await stream.take(1))[0].data == "before"
        await admin.execute_command("CLIENT", "PAUSE", "11000", "WRITE")
        assert await post(client, "while publishing fails") == 200
        event = (await stream.take(1, timeout=25))[0]
        assert (event.id, event.data) == ("2", "while publishing fails")
        assert await post(client, "after") == 200
        assert (await stream.take(1, timeout=10))[0].data == "after"
    finally:
        await admin.aclose()
        redis.stop()


async def test_one_cancel_ends_the_redis_tasks_wherever_their_handshake_is(redis_url: str) -> None:
    """A SIGTERM during startup: aiohttp cancels every task once and waits for them all. redis-py
    can swallow a cancel that lands inside its connect or SUBSCRIBE; a broker that then listened
    on would hang the process until the supervisor killed it (CI, test_several_workers_share_
    the_port). Whichever step the cancel lands on, one cancel must end either task."""

    for steps in range(40):
        client = connect(redis_url)
        publisher = Publisher(client, f"cancel{steps}:")
        publisher.start()
        assert publisher._task is not None
        publisher.publish("feed", b"news")  # its first publish connects
        for _ in range(steps):
            await asyncio.sleep(0)
        publisher._task.cancel()
        done, _ = await asyncio.wait({publisher._task}, timeout=3)
        await client.aclose()
        assert done, f"a cancel after {steps} loop steps did not end the publisher"

        client = connect(redis_url)
        broker = Broker(client, f"cancel{steps}:", lambda c, p: None, lambda: None)
        task = broker._task = asyncio.create_task(broker._run(), name="redis-broker")
        for _ in range(steps):
            await asyncio.sleep(0)
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=3)
        await client.aclose()
        assert done, f"a cancel after {steps} loop steps did not end the broker"
