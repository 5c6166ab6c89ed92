"""Delivery at its edges: catch-ups racing replays, resyncs racing drops, a process cut off
from Redis, PostgreSQL away while news is missing, retention between runs, and what the bulk
reads cost and hold (each a defect found in review of the delivery change, fixed after it)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis.asyncio as aioredis

from server import broker as broker_module
from server import keys, retention
from server.broker import Publisher, connect
from server.embedded import RedisProcess
from server.feed.repository import ValuesRepository
from server.feed.service import FeedSource
from server.notifications.repository import NotificationsRepository
from server.streams import REPLAY_PAGE
from server.wire import CONTROL_CHANNEL, RESYNC, encode_event, encode_news

from .helpers import (
    EventStream,
    TcpProxy,
    open_stream,
    postgres_address,
    proxied_url,
    register,
)


async def _ids_until_quiet(reader: EventStream, quiet: float) -> list[int]:
    """The ids a stream sends until it says nothing for ``quiet`` seconds."""
    ids: list[int] = []
    while True:
        try:
            event = await reader.next(timeout=quiet)
        except TimeoutError:
            return ids
        if event.id is not None:
            ids.append(int(event.id))


async def _wait_for(predicate: Any, timeout: float = 10.0) -> None:
    for _ in range(int(timeout / 0.02)):
        if predicate():
            return
        await asyncio.sleep(0.02)
    raise TimeoutError("the condition never held")


@pytest.mark.parametrize("trigger", ["resync", "silent_reconnect"])
async def test_a_catch_up_reaches_a_stream_that_is_still_replaying(
    make_client: Any, trigger: str
) -> None:
    """A resync, or a reconnect of the subscriber, must catch up every stream, not only the
    live ones: a stream still writing its replay read PostgreSQL before the lost message, and
    goes live past it."""
    redis = RedisProcess().start()
    admin = aioredis.Redis.from_url(redis.url)
    try:
        # A byte bound large enough that the whole backlog is one page, written in one piece.
        client = await make_client(redis_url=redis.url, sse_queue_bytes=64 * 1024 * 1024)
        db = client.app[keys.db_key]
        # 300 values of 10,000 characters, mostly line breaks: frames of ~70 KB, 21 MB in
        # all, far more than the sockets between server and client take.
        backlog = ["\n" * 9_996 + f"{i:04}" for i in range(300)]
        await ValuesRepository(db).insert_batch(backlog)
        response = await client.get("/events/", headers={"Last-Event-ID": "0"})
        assert response.status == 200  # not read yet: the replay's write waits on the client
        stream = next(iter(client.app[keys.streams_key].hubs["feed"].streams))
        # It has read its page and is writing it: the transport holds what the client left.
        await _wait_for(lambda: stream.transport.get_write_buffer_size() > 0)
        await asyncio.sleep(0.2)
        assert not stream.live and stream.last_sent == 0

        # Value 301 commits and its news is lost: another process's publisher dropped it (and
        # says so with a resync), or it was published while Redis had cut our subscriber.
        await ValuesRepository(db).insert_batch(["the lost one"])
        watch = client.app[keys.watch_key]
        polls = watch.polls
        if trigger == "resync":
            prefix = client.app[keys.settings_key].redis_prefix
            await admin.publish(prefix + CONTROL_CHANNEL, RESYNC)
        else:
            assert await admin.client_kill_filter(_type="pubsub") >= 1
        await _wait_for(lambda: watch.polls > polls)  # the catch-up ran

        ids = await _ids_until_quiet(EventStream(response), quiet=3.0)
        assert ids[-2:] == [300, 301]
    finally:
        await admin.aclose()
        redis.stop()


async def test_the_watch_does_not_write_past_the_queue_bound_to_a_reader_that_stopped(
    make_client: Any,
) -> None:
    """While Redis is down the watch hands a user up to 100 notifications (of up to 64 KiB
    each) as one piece: a client that stopped reading gets ~6 MB queued at once, where the
    live path cuts it past SSE_QUEUE_BYTES (256 KiB)."""
    redis = RedisProcess().start()
    try:
        client = await make_client(redis_url=redis.url)
        bob = await register(client)
        response = await client.get(f"/sse/{bob['id']}", headers=bob["headers"])
        assert response.status == 200  # and from now on never read
        registry = client.app[keys.streams_key]
        hub = registry.hubs[f"user:{bob['id']}"]
        stream = next(iter(hub.streams))
        await _wait_for(lambda: stream.live)
        _small_socket_buffers(stream.transport, response)
        redis.stop()
        watch = client.app[keys.watch_key]
        await _wait_for(lambda: not client.app[keys.broker_key].live)
        # 100 notifications of ~60 KiB (what send-message allows), committed together.
        data = {"message": "m" * 10_000, "data": {"blob": "b" * 50_000}}
        async with client.app[keys.db_key].transaction() as tx:
            for _ in range(100):
                await NotificationsRepository(tx).insert([uuid.UUID(bob["id"])], "message", data)
        polls = watch.polls
        await _wait_for(lambda: watch.polls > polls + 1)
        bound = client.app[keys.settings_key].sse_queue_bytes
        queued = stream.transport.get_write_buffer_size()
        assert queued <= 2 * bound + 80_000, f"{queued} bytes queued for a client that stopped"
        response.close()
    finally:
        redis.stop()


def _small_socket_buffers(server_transport: Any, response: Any) -> None:
    """Kernel buffers of a few KiB on both ends, so what the server queues shows in its
    transport's write buffer instead of vanishing into megabytes of loopback buffers."""
    server_socket = server_transport.get_extra_info("socket")
    server_socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    client_socket = response.connection.transport.get_extra_info("socket")
    client_socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)


async def test_pruning_notifications_never_leaves_a_hole_between_runs(
    client: Any, monkeypatch: Any
) -> None:
    """The batch is the oldest rows by created_at; a user's rows in it need not be a prefix of
    its seqs, so a batch that deletes fewer than its size (ending the run) can leave a hole."""
    monkeypatch.setattr(retention, "BATCH_SIZE", 3)
    db = client.app[keys.db_key]
    ada, bob = await register(client), await register(client)
    for i in range(4):
        await NotificationsRepository(db).insert([uuid.UUID(ada["id"])], "system", {"i": i})
    for i in range(2):
        await NotificationsRepository(db).insert([uuid.UUID(bob["id"])], "system", {"i": i})
    now = datetime.now(UTC)
    old = now - timedelta(days=40)
    # created_at is the transaction's start, seq the commit order: they can disagree.
    created = {
        (ada["id"], 1): old,
        (ada["id"], 3): old + timedelta(seconds=1),
        (bob["id"], 2): old + timedelta(seconds=2),
        (ada["id"], 2): old + timedelta(seconds=3),
        (ada["id"], 4): now,
        (bob["id"], 1): now,
    }
    for (user_id, seq), at in created.items():
        await db.pool.execute(
            "UPDATE notifications SET created_at = $3 WHERE user_id = $1 AND seq = $2",
            uuid.UUID(user_id),
            seq,
            at,
        )
    await retention.prune_older_than("notifications", NotificationsRepository(db).prune,
                                     timedelta(days=30))  # fmt: skip
    # A client resuming after seq 2 must get 3 (or a reset), never 4 straight away.
    stream = await open_stream(
        client, f"/sse/{ada['id']}", headers={**ada["headers"], "Last-Event-ID": "2"}
    )
    first = await stream.next()
    rows = await db.pool.fetch(
        "SELECT seq FROM notifications WHERE user_id = $1 ORDER BY seq", uuid.UUID(ada["id"])
    )
    kept = [r["seq"] for r in rows]
    assert first.event == "reset" or first.id == "3", (first.event, first.id, kept)


class ReplyDelayProxy:
    """A TCP proxy to Redis that, while ``hold`` is set, keeps Redis's replies back (commands
    still reach Redis at once): a publish that Redis has executed but whose answer is late."""

    def __init__(self, port: int) -> None:
        self.upstream_port = port
        self.port = 0
        self.hold = asyncio.Event()
        self.released = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> ReplyDelayProxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)

        async def forward(src: asyncio.StreamReader, dst: asyncio.StreamWriter, held: bool) -> None:
            with contextlib.suppress(ConnectionError, OSError):
                while data := await src.read(65536):
                    if held and self.hold.is_set():
                        await self.released.wait()
                    dst.write(data)
                    await dst.drain()
            dst.close()

        tasks = [
            asyncio.create_task(forward(reader, up_writer, False)),
            asyncio.create_task(forward(up_reader, writer, True)),
        ]
        self._tasks.update(tasks)
        await asyncio.gather(*tasks, return_exceptions=True)

    async def close(self) -> None:
        self.released.set()
        if self._server is not None:
            self._server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


async def test_an_overflow_while_a_resync_is_in_flight_still_owes_a_resync(
    client: Any, redis_url: str, monkeypatch: Any
) -> None:
    """Another process's publisher: a resync is on its way to Redis when an overflow drops a
    value's news. The resync's success clears ``_resync``, so the drop is never announced and
    the readers, who caught up before that value committed, never get it."""
    monkeypatch.setattr(broker_module, "PUBLISH_QUEUE_MAX", 1)
    port = int(redis_url.rsplit(":", 1)[1].split("/")[0])
    proxy = await ReplyDelayProxy(port).start()
    prefix = client.app[keys.settings_key].redis_prefix
    redis = connect(f"redis://127.0.0.1:{proxy.port}/0")
    await redis.ping()  # connected before the link slows down
    publisher = Publisher(redis, prefix)  # the other process's, through the slow link
    publisher.start()
    db = client.app[keys.db_key]
    try:
        feed = await open_stream(client)  # the reader, in this process
        watch = client.app[keys.watch_key]
        polls = watch.polls
        # News was dropped: a resync is owed and goes out with the next batch.
        publisher.publish("unrelated", b"1 1\n")
        publisher.publish("unrelated", b"2 2\n")
        assert publisher.failing
        proxy.hold.set()  # Redis executes the batch; its answer is late
        publisher._wakeup.set()
        await _wait_for(lambda: watch.polls > polls)  # the resync reached us: we caught up
        # Now a value commits, and its news is dropped by an overflow (a burst of writes).
        [(value_id, _)] = await ValuesRepository(db).insert_batch(["dropped news"])
        publisher.publish("feed", encode_news(value_id, value_id, encode_event(value_id, "x")))
        publisher.publish("unrelated", b"3 3\n")
        assert publisher.dropped >= 2 and publisher.failing  # a resync is owed again
        proxy.released.set()
        assert value_id in await _ids_until_quiet(feed, quiet=3.0)
    finally:
        await publisher.stop(drain=0.5)
        await redis.aclose()
        await proxy.close()


async def test_a_process_that_cannot_reach_redis_still_reaches_the_other_processes_streams(
    make_client: Any,
) -> None:
    """Redis unreachable from one process (its host's network, a partition): its commits
    never reach the streams of the processes that still have Redis, not within 2 s and not
    at all on a quiet channel, since their broker is live and they read nothing."""
    gone = RedisProcess().start()
    try:
        reader = await make_client()  # Redis is fine here
        writer = await make_client(redis_url=gone.url)
        gone.stop()  # the writer's Redis is unreachable from the writer
        feed = await open_stream(reader)
        ada = await register(reader)
        bob = await register(reader)
        inbox = await open_stream(reader, f"/sse/{bob['id']}", headers=bob["headers"])
        assert (await writer.post("/add-value/", json={"value": "from A"})).status == 200
        response = await writer.post(
            "/sse/send-message",
            json={"user_ids": [bob["id"]], "message": "from A"},
            headers=ada["headers"],
        )
        assert response.status == 202
        assert [e.data for e in await feed.take(1, timeout=2.5)] == ["from A"]
        assert [e.id for e in await inbox.take(1, timeout=2.5)] == ["1"]
    finally:
        gone.stop()


async def test_a_replay_page_holds_about_the_byte_bound_in_frames(client: Any) -> None:
    """The SQL window counts the stored text; a frame costs 'data: ' per line on top, so a
    page of multi-line values held for a client that does not read is ~7x SSE_QUEUE_BYTES
    (the watch also writes such a page to a stream in one piece)."""
    db = client.app[keys.db_key]
    await ValuesRepository(db).insert_batch(["\n" * 9_996 + f"{i:04}" for i in range(100)])
    budget = client.app[keys.settings_key].sse_queue_bytes
    rows = await FeedSource(db).after(0, REPLAY_PAGE, budget)
    held = sum(len(frame) for _, frame in rows)
    assert held <= 2 * budget, f"a page of {len(rows)} rows holds {held} bytes for {budget}"


async def test_the_watch_does_not_spin_while_postgres_is_unreachable(
    make_client: Any, database_url: str
) -> None:
    """A failed poll skips the token check, whose time has come, so the next wait is 0: with
    PostgreSQL refusing connections and live news missing (or a catch-up owed), the watch
    retries in a tight loop, a new connection attempt each time, instead of every 0.5 s."""
    redis = RedisProcess().start()
    proxy = await TcpProxy(postgres_address(database_url)).start()
    try:
        client = await make_client(
            redis_url=redis.url,
            database_url=proxied_url(proxy, database_url),
            sse_heartbeat_seconds=0.3,
        )
        feed = await open_stream(client)
        watch = client.app[keys.watch_key]
        redis.stop()  # live news is missing: the watch polls every 0.5 s
        await _wait_for(lambda: not client.app[keys.broker_key].live)
        await proxy.cut()  # and PostgreSQL goes away too
        await asyncio.sleep(1.0)
        polls = watch.polls
        await asyncio.sleep(2.0)
        assert watch.polls - polls <= 6, f"{watch.polls - polls} polls in 2 s"
        feed.response.close()
    finally:
        await proxy.close()
        redis.stop()


@pytest.fixture
def stream_reads(monkeypatch: Any) -> dict[str, int]:
    """Counts the feed reads a stream does on its own (the real query still runs)."""
    count = {"reads": 0}
    real = FeedSource.after

    async def after(self: FeedSource, last_id: int, limit: int, max_bytes: int) -> Any:
        count["reads"] += 1
        return await real(self, last_id, limit, max_bytes)

    monkeypatch.setattr(FeedSource, "after", after)
    return count


async def _live_feed_streams(client: Any, count: int) -> list[Any]:
    streams = [await open_stream(client) for _ in range(count)]
    hub = client.app[keys.streams_key].hubs["feed"]
    await _wait_for(lambda: len(hub.streams) == count and all(s.live for s in hub.streams))
    return streams


async def test_a_burst_while_redis_is_down_is_read_once_per_process_not_once_per_stream(
    make_client: Any, stream_reads: dict[str, int]
) -> None:
    """More than FEED_PAGES pages behind, the watch sends every live stream to read alone:
    with 10,000 streams, 20,000 queries per poll for as long as writes outpace 20 pages per
    0.5 s (10,000 small values, or 5 MiB of text)."""
    redis = RedisProcess().start()
    try:
        client = await make_client(redis_url=redis.url)
        streams = await _live_feed_streams(client, 30)
        redis.stop()
        await _wait_for(lambda: not client.app[keys.broker_key].live)
        await asyncio.sleep(0.6)
        stream_reads["reads"] = 0
        await ValuesRepository(client.app[keys.db_key]).insert_batch(
            [f"v{i}" for i in range(10_500)]  # 21 pages: about half a second of a busy feed
        )
        await asyncio.sleep(2.0)
        assert stream_reads["reads"] < len(streams), f"{stream_reads['reads']} reads by streams"
    finally:
        redis.stop()


async def test_a_catch_up_on_a_busy_feed_is_one_read_not_one_per_stream(
    make_client: Any, redis_url: str, stream_reads: dict[str, int]
) -> None:
    """Redis healthy, a resync (or a reconnect) while the feed is busy: the watch's bulk read
    advances streams into the middle of a batch whose news is still on its way; that news
    then overlaps their position, and every stream leaves live to read PostgreSQL alone."""
    client = await make_client()
    streams = await _live_feed_streams(client, 30)
    writer = client.app[keys.feed_writer_key]
    admin = aioredis.Redis.from_url(redis_url)
    control = client.app[keys.settings_key].redis_prefix + CONTROL_CHANNEL
    try:
        stream_reads["reads"] = 0
        for round_ in range(20):
            adds = [asyncio.create_task(writer.add(f"{round_}.{i}")) for i in range(1500)]
            await asyncio.sleep(0)
            await admin.publish(control, RESYNC)  # another process dropped some news
            await asyncio.gather(*adds)
            await asyncio.sleep(0.3)
        assert stream_reads["reads"] < len(streams), f"{stream_reads['reads']} reads by streams"
    finally:
        await admin.aclose()
