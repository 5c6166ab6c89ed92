"""Redis pub/sub: one subscriber connection and one ordered publisher per process.

Redis only carries news; PostgreSQL is the record. So the broker never tries to make Redis
reliable: when its connection drops (or goes quiet: redis-py may not notice a restarted
server, #3979), it reconnects, re-subscribes every channel, and tells every local stream to
re-read PostgreSQL from the last id it sent. An outage costs latency, never messages.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from .wire import CONTROL_CHANNEL, RESYNC

log = logging.getLogger(__name__)

PING_INTERVAL = 0.5  # seconds between PINGs on the subscriber connection
QUIET_AFTER = 1.0  # no answer for this long: live news may be late, read PostgreSQL meanwhile
STALE_AFTER = 5.0  # no answer for this long: the connection is dead, reconnect
PUBLISH_QUEUE_MAX = 10_000  # messages waiting to be published, at most
PUBLISH_QUEUE_BYTES = 64 * 1024 * 1024  # and their bytes, at most
PUBLISH_BATCH_BYTES = 4 * 1024 * 1024  # one pipeline sends at most this much


def connect(url: str) -> aioredis.Redis:
    """A client that fails fast: a write must never wait long on Redis."""
    return aioredis.Redis.from_url(
        url,
        socket_connect_timeout=2.0,
        socket_timeout=5.0,
        retry=Retry(NoBackoff(), 1),
        health_check_interval=0,
    )


async def finish(task: asyncio.Task[None], grace: float) -> None:
    """Let a task end by itself for ``grace`` seconds, then cancel it, without ever hanging:
    redis-py can swallow a cancellation that lands inside its connection handshake."""
    done, _ = await asyncio.wait({task}, timeout=grace) if grace > 0 else (set(), None)
    if not done:
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=2.0)
    if not done:
        log.warning("task %s did not stop within its grace period", task.get_name())
    elif not task.cancelled() and task.exception() is not None:
        log.error("task %s ended with %r", task.get_name(), task.exception())


def end_if_cancelled() -> None:
    """redis-py can swallow a cancel that lands inside its connect or SUBSCRIBE: the task stays
    marked as cancelling yet runs on, and a loop talking to Redis would then never end (a
    SIGTERM during startup hung the process this way). Each such loop calls this once a round,
    so that one cancel always ends it."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


class Broker:
    """Subscribes the channels that local streams want and hands each message to ``deliver``.

    ``on_reconnect`` runs whenever the subscription is (re)established and confirmed by Redis,
    however that happened: our own reconnect after an error, or redis-py's silent one inside
    ``get_message`` (it re-subscribes by itself, but whatever was published meanwhile is gone).
    """

    def __init__(
        self,
        client: aioredis.Redis,
        prefix: str,
        deliver: Callable[[str, bytes], None],
        on_reconnect: Callable[[], None],
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.deliver = deliver
        self.on_reconnect = on_reconnect
        self.channels: set[str] = set()  # channels wanted, without the prefix
        self.connected = False
        self.last_heard = 0.0  # monotonic time of the last answer on the subscriber connection
        self._pubsub: Any = None
        self._owed_catch_up = False  # (re)subscribed: catch up once Redis confirms
        self._confirmations: dict[bytes, asyncio.Future[None]] = {}
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._broken: Any = None  # the PubSub a subscribe or unsubscribe failed on

    def full_name(self, channel: str) -> str:
        return self.prefix + channel

    @property
    def live(self) -> bool:
        """Live news is flowing: connected, and Redis answered within QUIET_AFTER."""
        return self.connected and time.monotonic() - self.last_heard <= QUIET_AFTER

    async def start(self, wait: float = 2.0) -> None:
        self._task = asyncio.create_task(self._run(), name="redis-broker")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait):
                await self._ready.wait()

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            await finish(task, 0)

    async def subscribe(self, channel: str, wait: float = 2.0) -> None:
        """Subscribe and wait for Redis to confirm, so no publish falls between."""
        self.channels.add(channel)
        pubsub = self._pubsub
        if not self.connected or pubsub is None:
            return  # the (re)connect subscribes it, then catches every stream up
        name = self.full_name(channel).encode()
        confirmed = asyncio.get_running_loop().create_future()
        self._confirmations[name] = confirmed
        try:
            await pubsub.subscribe(name)
            async with asyncio.timeout(wait):
                await confirmed
        except TimeoutError:
            log.warning(
                "redis subscribe %s not confirmed within %.1f s; streams catch up on reconnect",
                channel,
                wait,
            )
        except Exception as exc:
            self._failed(pubsub, "subscribe", channel, exc)
        finally:
            self._confirmations.pop(name, None)

    async def unsubscribe(self, channel: str) -> None:
        """Never raises: a channel left subscribed only brings messages nobody reads, until
        the connection is replaced."""
        self.channels.discard(channel)
        pubsub = self._pubsub
        if self.connected and pubsub is not None:
            try:
                await pubsub.unsubscribe(self.full_name(channel))
            except Exception as exc:
                self._failed(pubsub, "unsubscribe", channel, exc)

    def _failed(self, pubsub: Any, verb: str, channel: str, exc: Exception) -> None:
        """A SUBSCRIBE or UNSUBSCRIBE sent from a stream's coroutine failed. When Redis drops
        the connection, redis-py reconnects it from that coroutine while the listener reads
        the same connection: besides ConnectionError it then raises AttributeError (the
        connection's writer already None) or RuntimeError ("readuntil() called while another
        coroutine is already waiting"). The connection cannot be trusted after that: the
        listener replaces it (re-subscribing what is wanted, every stream catching up from
        PostgreSQL), and the stream goes on or ends as if nothing happened."""
        log.warning(
            "redis %s %s failed (%s: %s); the subscriber reconnects, streams catch up",
            verb,
            channel,
            type(exc).__name__,
            exc,
        )
        self._broken = pubsub

    def _reconnected(self, connection: Any) -> None:
        """redis-py reconnected the subscriber by itself (and re-sent every SUBSCRIBE)."""
        log.info("redis pub/sub reconnected by the client; streams catch up from PostgreSQL")
        self._owed_catch_up = True

    async def _subscribe_all(self, pubsub: Any) -> None:
        """Subscribe every wanted channel on a new connection, including those wanted while
        an earlier SUBSCRIBE was on its way (``subscribe`` only records them until then)."""
        sent: set[str] = set()
        for _ in range(100):  # bounded: each round only sends what arrived during the last
            missing = {CONTROL_CHANNEL, *self.channels} - sent
            if not missing:
                break
            await pubsub.subscribe(*(self.full_name(c) for c in sorted(missing)))
            sent |= missing
        extra = sent - {CONTROL_CHANNEL, *self.channels}
        if extra:  # left while we subscribed
            await pubsub.unsubscribe(*(self.full_name(c) for c in sorted(extra)))

    async def _run(self) -> None:
        first = True
        failures = 0
        while True:
            end_if_cancelled()
            pubsub = self.client.pubsub()
            try:
                # A control channel keeps the connection open even with no stream subscribed.
                self._owed_catch_up = True
                await self._subscribe_all(pubsub)
                end_if_cancelled()
                # Any later reconnect of this connection, ours or redis-py's, owes a catch-up.
                assert pubsub.connection is not None  # subscribing connected it
                pubsub.connection.register_connect_callback(self._reconnected)
                self._pubsub = pubsub
                self.connected = True
                self.last_heard = time.monotonic()
                self._ready.set()
                if first:
                    log.info("redis pub/sub connected")
                else:
                    log.info("redis pub/sub reconnected; streams catch up from PostgreSQL")
                first = False
                failures = 0
                await self._listen(pubsub)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # redis-py races raise more than RedisError (see _failed)
                if self.connected or failures == 0:
                    log.warning(
                        "redis pub/sub lost (%s: %s); reconnecting", type(exc).__name__, exc
                    )
                failures += 1
            finally:
                self.connected = False
                self._pubsub = None
                if self._broken is pubsub:
                    self._broken = None
                if pubsub.connection is not None:  # it goes back to the pool without our hook
                    pubsub.connection.deregister_connect_callback(self._reconnected)
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
            self._ready.set()  # startup does not wait for a Redis that is down
            await asyncio.sleep(min(0.1 * 2**failures, 2.0))

    async def _listen(self, pubsub: Any) -> None:
        next_ping = self.last_heard + PING_INTERVAL
        prefix_len = len(self.prefix)
        while True:
            end_if_cancelled()
            if self._broken is pubsub:
                raise ConnectionError("a subscribe or unsubscribe broke this connection")
            message = await pubsub.get_message(timeout=PING_INTERVAL)
            now = time.monotonic()
            if message is not None:
                self.last_heard = now
                kind = message["type"]
                if kind == "message":
                    channel = message["channel"]
                    self.deliver(channel[prefix_len:].decode(), message["data"])
                elif kind == "subscribe":
                    # News published while we were not subscribed is lost to us: once Redis
                    # has confirmed the (re)subscription, every stream re-reads PostgreSQL.
                    if self._owed_catch_up:
                        self._owed_catch_up = False
                        self.on_reconnect()
                    waiter = self._confirmations.get(message["channel"])
                    if waiter is not None and not waiter.done():
                        waiter.set_result(None)
            if now >= next_ping:
                await pubsub.ping()
                next_ping = now + PING_INTERVAL
            if now - self.last_heard > STALE_AFTER:
                raise ConnectionError(f"no answer from Redis for {STALE_AFTER:.0f} s")


class Publisher:
    """Publishes news after COMMIT, in order, without ever making a write wait on Redis.

    A queue bounded in count and bytes, drained by one task in pipelines; when it overflows
    (Redis down or slow) the oldest news is dropped. Dropped news is not lost to readers: once
    news was dropped (by overflow or by a failed publish), the first publish that succeeds
    again is followed by a "resync" on the control channel, which makes every process re-read
    PostgreSQL for all its streams (the subscriber side may never have noticed the trouble: a
    publish can time out while the pub/sub connection stays up).
    """

    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        self.client = client
        self.prefix = prefix
        self._queue: collections.deque[tuple[str, bytes]] = collections.deque()
        self._queued_bytes = 0
        self._wakeup = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._last_warning = 0.0
        self._resync = False  # news was dropped: send a resync once Redis takes writes again
        self.dropped = 0

    @property
    def failing(self) -> bool:
        """News was dropped and Redis has not taken a publish since."""
        return self._resync

    def publish(self, channel: str, payload: bytes) -> None:
        queue = self._queue
        while queue and (
            len(queue) >= PUBLISH_QUEUE_MAX
            or self._queued_bytes + len(payload) > PUBLISH_QUEUE_BYTES
        ):
            _, oldest = queue.popleft()
            self._queued_bytes -= len(oldest)
            self.dropped += 1
            self._resync = True
        queue.append((self.prefix + channel, payload))
        self._queued_bytes += len(payload)
        self._wakeup.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="redis-publisher")

    async def stop(self, drain: float = 2.0) -> None:
        """Publish what is queued (for up to ``drain`` seconds), then end."""
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping = True  # everything queued before this still gets published
        self._wakeup.set()
        await finish(task, drain)

    def _take_batch(self) -> list[tuple[str, bytes]]:
        """The oldest queued news, up to 500 messages or PUBLISH_BATCH_BYTES (at least one)."""
        batch: list[tuple[str, bytes]] = []
        size = 0
        queue = self._queue
        while queue and len(batch) < 500:
            item = queue[0]
            if batch and size + len(item[1]) > PUBLISH_BATCH_BYTES:
                break
            queue.popleft()
            batch.append(item)
            size += len(item[1])
        self._queued_bytes -= size
        return batch

    async def _run(self) -> None:
        control = self.prefix + CONTROL_CHANNEL
        while True:
            end_if_cancelled()
            if not self._queue:
                if self._stopping:
                    return
                self._wakeup.clear()
                # Owed a resync: retry it every second even when no other news comes.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(1.0 if self._resync else None):
                        await self._wakeup.wait()
            batch = self._take_batch()
            resync = self._resync
            dropped_before = self.dropped
            if resync:
                batch.append((control, RESYNC))
            if not batch:
                continue
            try:
                if len(batch) == 1:
                    await self.client.publish(*batch[0])
                else:
                    async with self.client.pipeline(transaction=False) as pipe:
                        for channel, payload in batch:
                            pipe.publish(channel, payload)
                        await pipe.execute()
                # News dropped while this batch was on its way is not covered by its resync.
                if resync and self.dropped == dropped_before:
                    self._resync = False
                    log.info("redis publish works again; every process re-reads its streams")
            except (RedisError, OSError) as exc:
                self._resync = True
                self.dropped += len(batch) - resync
                now = time.monotonic()
                if now - self._last_warning > 30:
                    self._last_warning = now
                    log.warning(
                        "redis publish failed (%s); %d messages not published so far; "
                        "streams recover from PostgreSQL",
                        type(exc).__name__,
                        self.dropped,
                    )
