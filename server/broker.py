"""Redis pub/sub: one subscriber connection and one ordered publisher per process.

Redis only carries news; PostgreSQL is the record. So the broker never tries to make Redis
reliable: when its connection drops (or goes quiet: redis-py may not notice a restarted
server, #3979), it reconnects, re-subscribes every channel, and tells every local stream to
re-read PostgreSQL from the last id it sent. An outage costs latency, never messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from .streams import CONTROL_CHANNEL, RESYNC

log = logging.getLogger(__name__)

PING_INTERVAL = 2.0  # seconds between PINGs on the subscriber connection
STALE_AFTER = 6.0  # no answer for this long: the connection is dead, reconnect
PUBLISH_QUEUE_MAX = 10_000


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


class Broker:
    """Subscribes the channels that local streams want and hands each message to ``deliver``."""

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
        self._pubsub: Any = None
        self._confirmations: dict[bytes, asyncio.Future[None]] = {}
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    def full_name(self, channel: str) -> str:
        return self.prefix + channel

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
        if not self.connected or self._pubsub is None:
            return  # the reconnect will subscribe it, then catch every stream up
        name = self.full_name(channel).encode()
        confirmed = asyncio.get_running_loop().create_future()
        self._confirmations[name] = confirmed
        try:
            await self._pubsub.subscribe(name)
            async with asyncio.timeout(wait):
                await confirmed
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning(
                "redis subscribe %s failed (%s); streams catch up on reconnect",
                channel,
                type(exc).__name__,
            )
        finally:
            self._confirmations.pop(name, None)

    async def unsubscribe(self, channel: str) -> None:
        self.channels.discard(channel)
        if self.connected and self._pubsub is not None:
            with contextlib.suppress(RedisError, OSError):
                await self._pubsub.unsubscribe(self.full_name(channel))

    async def _run(self) -> None:
        first = True
        failures = 0
        while True:
            pubsub = self.client.pubsub()
            try:
                # A control channel keeps the connection open even with no stream subscribed.
                names = [self.full_name(c) for c in {CONTROL_CHANNEL, *self.channels}]
                await pubsub.subscribe(*names)
                self._pubsub = pubsub
                self.connected = True
                self._ready.set()
                if first:
                    log.info("redis pub/sub connected")
                else:
                    log.info("redis pub/sub reconnected; streams catch up from PostgreSQL")
                # News published while we were not subscribed is lost to us: every stream
                # re-reads PostgreSQL (also after a first connect that came late).
                self.on_reconnect()
                first = False
                failures = 0
                await self._listen(pubsub)
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError, ConnectionError) as exc:
                if self.connected or failures == 0:
                    log.warning(
                        "redis pub/sub lost (%s: %s); reconnecting", type(exc).__name__, exc
                    )
                failures += 1
            finally:
                self.connected = False
                self._pubsub = None
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
            self._ready.set()  # startup does not wait for a Redis that is down
            await asyncio.sleep(min(0.1 * 2**failures, 2.0))

    async def _listen(self, pubsub: Any) -> None:
        last_heard = time.monotonic()
        next_ping = last_heard + PING_INTERVAL
        prefix_len = len(self.prefix)
        while True:
            message = await pubsub.get_message(timeout=1.0)
            now = time.monotonic()
            if message is not None:
                last_heard = now
                kind = message["type"]
                if kind == "message":
                    channel = message["channel"]
                    self.deliver(channel[prefix_len:].decode(), message["data"])
                elif kind == "subscribe":
                    waiter = self._confirmations.get(message["channel"])
                    if waiter is not None and not waiter.done():
                        waiter.set_result(None)
            if now >= next_ping:
                await pubsub.ping()
                next_ping = now + PING_INTERVAL
            if now - last_heard > STALE_AFTER:
                raise ConnectionError(f"no answer from Redis for {STALE_AFTER:.0f} s")


class Publisher:
    """Publishes news after COMMIT, in order, without ever making a write wait on Redis.

    A bounded queue drained by one task in pipelines; when Redis is down the oldest news is
    dropped. Dropped news is not lost to readers: after a failed publish, the first publish
    that succeeds again is followed by a "resync" on the control channel, which makes every
    process re-read PostgreSQL for all its streams (the subscriber side may never have noticed
    the trouble: a publish can time out while the pub/sub connection stays up).
    """

    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        self.client = client
        self.prefix = prefix
        self._queue: asyncio.Queue[tuple[str, bytes] | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._last_warning = 0.0
        self._resync = False  # news was dropped: send a resync once Redis takes writes again
        self.dropped = 0

    def publish(self, channel: str, payload: bytes) -> None:
        if self._queue.qsize() >= PUBLISH_QUEUE_MAX:
            self._queue.get_nowait()
            self.dropped += 1
        self._queue.put_nowait((self.prefix + channel, payload))

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="redis-publisher")

    async def stop(self, drain: float = 2.0) -> None:
        """Publish what is queued (for up to ``drain`` seconds), then end."""
        task, self._task = self._task, None
        if task is None:
            return
        self._queue.put_nowait(None)  # the end marker: everything before it gets published
        await finish(task, drain)

    async def _next(self) -> tuple[str, bytes] | None:
        if not self._resync:
            return await self._queue.get()
        try:  # owed a resync: retry it every second even when no other news comes
            async with asyncio.timeout(1.0):
                return await self._queue.get()
        except TimeoutError:
            return self.prefix + CONTROL_CHANNEL, RESYNC

    async def _run(self) -> None:
        while True:
            item = await self._next()
            if item is None:
                return
            batch = [item]
            while not self._queue.empty() and len(batch) < 500:
                item = self._queue.get_nowait()
                if item is None:
                    self._queue.put_nowait(None)  # end after this batch
                    break
                batch.append(item)
            resync = self._resync
            if resync and batch[-1][1] != RESYNC:
                batch.append((self.prefix + CONTROL_CHANNEL, RESYNC))
            try:
                if len(batch) == 1:
                    await self.client.publish(*batch[0])
                else:
                    async with self.client.pipeline(transaction=False) as pipe:
                        for channel, payload in batch:
                            pipe.publish(channel, payload)
                        await pipe.execute()
                if resync:
                    self._resync = False
                    log.info("redis publish works again; every process re-reads its streams")
            except (RedisError, OSError) as exc:
                self._resync = True
                self.dropped += len(batch)
                now = time.monotonic()
                if now - self._last_warning > 30:
                    self._last_warning = now
                    log.warning(
                        "redis publish failed (%s); %d messages not published so far; "
                        "streams recover from PostgreSQL",
                        type(exc).__name__,
                        self.dropped,
                    )
