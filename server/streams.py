"""Server-Sent Event streams: replay from PostgreSQL, then live news from the broker.

Every open connection belongs to the hub of its channel ("feed", or "user:<id>"). The broker
hands each Redis message to ``StreamRegistry.deliver``, and the hub's fan-out loop writes the
message's bytes, encoded and chunk-framed once per message, straight to every connection's
transport that is live and in sequence: no coroutine is woken per connection per message.

A connection is live once it has caught up from PostgreSQL. A live message whose first id is
not ``last_sent + 1`` means a gap (publishes from two processes can reach Redis out of commit
order, and a process can die between COMMIT and PUBLISH), so the connection leaves the live
path and re-reads PostgreSQL from ``last_sent`` before going on. A message at or below
``last_sent`` is dropped as already sent. A connection whose unsent bytes pass the queue bound
is cut, and its client resumes with Last-Event-ID like any other.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import orjson
from aiohttp import web
from aiohttp.http import HttpVersion11
from aiohttp_sse import EventSourceResponse

from . import keys
from .db import is_unavailable
from .errors import CLIENT_GONE
from .metrics import Metrics
from .settings import Settings
from .wire import (
    CONTROL_CHANNEL,
    RESYNC,
    REVOKE,
    chunk,
    decode_control,
    decode_news,
    encode_event,
    encode_revoke,
)

log = logging.getLogger(__name__)

REPLAY_PAGE = 500  # rows per PostgreSQL read while catching up (the byte bound may cut it short)
MAX_ID = 2**63 - 1
UNUSABLE_ID = -1  # a Last-Event-ID that is not an id: the stream starts with a reset
TOO_MANY_RETRY_MS = 300_000  # the retry: sent to a stream closed for being one too many


def client_gone(request: web.Request, channel: str) -> web.Response:
    """The answer to a stream request whose client left before its headers went out: nothing
    can be sent, so aiohttp drops this one quietly when it finds the connection closed (an
    EventSourceResponse would fail instead: its prepare() asserts that there is a transport)."""
    log.info(
        "sse %s: the client left before the stream started request_id=%s",
        channel,
        request.get(keys.request_id_key),
    )
    return web.Response(status=CLIENT_GONE)


class Refused(Exception):
    """The stream cannot be served now (``reason``: cap, stopping, database)."""

    def __init__(self, reason: str, why: str) -> None:
        super().__init__(why)
        self.reason = reason
        self.why = why


@dataclass(frozen=True)
class Bounds:
    oldest: int | None  # oldest id still kept, None when nothing is kept
    newest: int  # newest id committed (0 before the first)


class Source(Protocol):
    """Where a stream's history lives (PostgreSQL)."""

    kind: str  # the metrics label: "feed" or "user"

    async def bounds(self) -> Bounds: ...

    async def after(self, last_id: int, limit: int, max_bytes: int) -> list[tuple[int, bytes]]:
        """Frames after ``last_id``, oldest first: at most ``limit`` rows and about
        ``max_bytes`` of stored text (always at least one row when there is one)."""
        ...


class Stream:
    """One open SSE connection."""

    __slots__ = (
        "_closed_task",
        "_wake",
        "chunked",
        "closed",
        "dirty",
        "farewell",
        "hub",
        "last_sent",
        "live",
        "opened",
        "response",
        "token_hash",
        "transport",
    )

    def __init__(
        self, response: EventSourceResponse, transport: asyncio.Transport, chunked: bool, hub: Hub
    ) -> None:
        self.response = response
        self.transport = transport
        self.chunked = chunked
        self.hub = hub
        self.token_hash: bytes | None = None  # the token that opened it, for revocation
        self.last_sent = 0
        self.live = False  # True once caught up: the fan-out loop then writes to it directly
        self.dirty = False  # news arrived while not live: read PostgreSQL again before going live
        self.closed = False
        self.opened = 0  # the registry's count of streams opened before it: oldest first
        self.farewell: bytes | None = None  # written last by its own coroutine, once ended
        self._wake = asyncio.Event()
        self._closed_task: asyncio.Future[None] | None = None

    def leave_live(self) -> None:
        self.live = False
        self.dirty = True
        self._wake.set()

    def cut(self, reason: str) -> None:
        """Drop the connection at once (a stalled reader never drains a graceful close)."""
        if self.closed:
            return
        self.closed = True
        self.live = False
        log.info("sse %s stream cut: %s", self.hub.channel, reason)
        self.transport.abort()
        self._wake.set()

    def end(self, reason: str) -> None:
        """End the stream cleanly (the terminating chunk is sent): revocation, shutdown."""
        if self.closed:
            return
        self.closed = True
        self.live = False
        log.info("sse %s stream ended: %s", self.hub.channel, reason)
        with contextlib.suppress(RuntimeError):
            self.response.stop_streaming()
        self._wake.set()

    async def wait_for_wake(self) -> bool:
        """Wait until news needs a PostgreSQL read (True) or the connection ends (False)."""
        closed_task = self._closed_task
        if closed_task is None:
            closed_task = self._closed_task = asyncio.ensure_future(self.response.wait())
        if not self._wake.is_set():
            waiter = asyncio.ensure_future(self._wake.wait())
            pending: set[asyncio.Future[Any]] = {waiter, closed_task}
            try:
                await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiter.cancel()
        self._wake.clear()
        if closed_task.done() or self.closed or self.transport.is_closing():
            self.closed = True
            return False
        return True

    def close_task(self) -> None:
        if self._closed_task is not None:
            self._closed_task.cancel()


def frames_from(frames: bytes, event_id: int) -> bytes | None:
    """The frames from the one with ``id: event_id`` on (every frame starts with its id line,
    and no data line can: each is prefixed), or None when it is not among them."""
    marker = b"id: %d\n" % event_id
    if frames.startswith(marker):
        return frames
    at = frames.find(b"\n\n" + marker)
    return frames[at + 2 :] if at >= 0 else None


class Hub:
    """The local streams of one channel."""

    __slots__ = ("channel", "metrics", "queue_bytes", "streams")

    def __init__(self, channel: str, queue_bytes: int, metrics: Metrics) -> None:
        self.channel = channel
        self.streams: set[Stream] = set()
        self.queue_bytes = queue_bytes
        self.metrics = metrics

    def deliver(self, first: int, last: int, raw: bytes) -> None:
        """The fan-out hot path: one loop, one encoding, no awaits."""
        framed = chunk(raw)
        limit = self.queue_bytes
        delivered = dropped = 0
        for stream in self.streams:
            if not stream.live:
                stream.dirty = True
                continue
            sent = stream.last_sent
            if last <= sent:
                continue
            data = raw
            if first != sent + 1:
                # News that partly overlaps what the stream has (a PostgreSQL read got there
                # first) goes on from the next id; a gap sends it to read PostgreSQL.
                tail = frames_from(raw, sent + 1) if first <= sent else None
                if tail is None:
                    stream.leave_live()
                    continue
                data = tail
            transport = stream.transport
            if transport.is_closing():
                stream.cut("client gone")
                continue
            if transport.get_write_buffer_size() > limit:
                dropped += 1
                self.metrics.slow_disconnects.inc()
                stream.cut(f"slow consumer, over {limit} bytes unsent")
                continue
            if data is raw:
                transport.write(framed if stream.chunked else raw)
            else:
                transport.write(chunk(data) if stream.chunked else data)
            stream.last_sent = last
            delivered += 1
        if delivered:
            self.metrics.delivered.inc(delivered)
        if dropped:
            self.metrics.dropped.inc(dropped)

    def positions(self) -> set[int]:
        """Where the live streams of this hub stand (usually one id: they all follow the news)."""
        return {stream.last_sent for stream in self.streams if stream.live}

    def deliver_rows(self, rows: list[tuple[int, bytes]], complete: bool) -> None:
        """Hand rows read from PostgreSQL (consecutive ids after the lowest position) to the
        live streams as news: cut into pieces at every stream's position, so each stream gets
        exactly what follows its last id, and streams that are ahead skip what they have.
        ``complete``: nothing newer was left unread; if something was, every live stream is
        behind and reads the rest itself."""
        if rows:
            # Pieces also end every queue_bytes, so a reader that stopped is cut between them.
            cuts = {p + 1 for p in self.positions()}
            start = size = 0
            for i in range(1, len(rows) + 1):
                size += len(rows[i - 1][1])
                if i == len(rows) or rows[i][0] in cuts or size >= self.queue_bytes:
                    frames = b"".join(frame for _, frame in rows[start:i])
                    self.deliver(rows[start][0], rows[i - 1][0], frames)
                    start, size = i, 0
        if not complete:
            for stream in self.streams:
                if stream.live:
                    stream.leave_live()

    def catch_up_all(self) -> None:
        for stream in self.streams:
            if not stream.closed:
                stream.leave_live()


class StreamRegistry:
    """Every open stream of this process, by channel; subscribes the broker as hubs come and go."""

    def __init__(
        self,
        settings: Settings,
        metrics: Metrics,
        subscribe: Callable[[str], Awaitable[None]],
        unsubscribe: Callable[[str], Awaitable[None]],
        cap: int,
        pinned: frozenset[str] | set[str] = frozenset(),
        read_missed: Callable[[], None] | None = None,
    ) -> None:
        """``read_missed``: the bulk read of PostgreSQL for the live streams when news may have
        been lost (the stream watch); by default every stream re-reads on its own."""
        self.settings = settings
        self.metrics = metrics
        self.hubs: dict[str, Hub] = {}
        self.cap = cap
        self.count = 0
        self._subscribe = subscribe
        self._unsubscribe = unsubscribe
        self._responses: set[EventSourceResponse] = set()
        self._by_token: dict[bytes, set[Stream]] = {}
        self._subscribed: set[str] = set()
        self.pinned = frozenset(pinned)  # subscribed for the life of the process
        # Per-channel locks, dropped by the garbage collector once no coroutine holds one.
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        self.stopping = False
        self._opened = 0
        self._read_missed = read_missed or self.catch_up_all

    def deliver(self, channel: str, payload: bytes) -> None:
        if channel == CONTROL_CHANNEL:
            self._control(payload)
            return
        hub = self.hubs.get(channel)
        if hub is None:
            return
        try:
            first, last, frames = decode_news(payload)
        except ValueError:
            log.warning("ignored a malformed message on channel %s", channel)
            return
        hub.deliver(first, last, frames)

    def _control(self, payload: bytes) -> None:
        verb, digests = decode_control(payload)
        if verb == RESYNC:
            self.news_missed()
        elif verb == REVOKE:
            self.close_tokens(digests)

    def token_hashes(self) -> list[bytes]:
        """The tokens that opened the open streams of this process."""
        return list(self._by_token)

    def close_tokens(self, digests: list[bytes]) -> None:
        """Close every local stream opened with one of these (now revoked) tokens."""
        for digest in digests:
            for stream in list(self._by_token.get(digest, ())):
                stream.end("its token was revoked")

    def news_missed(self) -> None:
        """Live news may have been lost (a reconnect, a resync): streams still replaying read
        PostgreSQL once more before going live (what they read may predate the lost news), and
        the live ones get the bulk read."""
        for hub in self.hubs.values():
            for stream in hub.streams:
                if not stream.live:
                    stream.dirty = True
        self._read_missed()

    def catch_up_all(self) -> None:
        """Every stream re-reads PostgreSQL on its own."""
        for hub in self.hubs.values():
            hub.catch_up_all()

    def _join(self, stream: Stream, keep_at_most: int | None) -> None:
        """Put the stream in its channel's hub (synchronously: no leave can interleave); past
        ``keep_at_most`` open streams there, end the oldest."""
        self._opened += 1
        stream.opened = self._opened
        stream.hub.streams.add(stream)
        if stream.token_hash is not None:
            self._by_token.setdefault(stream.token_hash, set()).add(stream)
        if keep_at_most is None:
            return
        open_ = [s for s in stream.hub.streams if not s.closed]
        if len(open_) <= keep_at_most:
            return
        for oldest in sorted(open_, key=lambda s: s.opened)[: len(open_) - keep_at_most]:
            why = f"more than {keep_at_most} streams of {stream.hub.channel} in this process"
            # A long retry: an EventSource comes back (with its Last-Event-ID) only after it,
            # rather than at once, which would close the next oldest, and so on round.
            oldest.farewell = (
                f"retry: {TOO_MANY_RETRY_MS}\n: {why}: the oldest is closed; "
                f"reconnect in {TOO_MANY_RETRY_MS} ms\n\n"
            ).encode()
            oldest.end(f"{why}, the oldest is closed")

    def _hub_for(self, channel: str) -> Hub:
        hub = self.hubs.get(channel)
        if hub is None:
            hub = self.hubs[channel] = Hub(channel, self.settings.sse_queue_bytes, self.metrics)
        return hub

    async def _sync_subscription(self, channel: str) -> None:
        """Make Redis match the hubs: subscribed while a local stream wants the channel.

        One lock per channel orders subscribe and unsubscribe, so a tab that reloads (its old
        stream leaving as the new one joins) cannot end unsubscribed; and a second stream
        joining waits until Redis has confirmed the first one's subscription.
        """
        lock = self._locks.get(channel)
        if lock is None:
            lock = self._locks[channel] = asyncio.Lock()
        async with lock:
            wanted = channel in self.hubs or channel in self.pinned
            if wanted and channel not in self._subscribed:
                await self._subscribe(channel)
                self._subscribed.add(channel)
            elif not wanted and channel in self._subscribed:
                self._subscribed.discard(channel)
                await self._unsubscribe(channel)

    async def subscribe_pinned(self) -> None:
        for channel in self.pinned:
            await self._sync_subscription(channel)

    async def _leave(self, stream: Stream) -> None:
        if stream.token_hash is not None:
            same = self._by_token.get(stream.token_hash)
            if same is not None:
                same.discard(stream)
                if not same:
                    del self._by_token[stream.token_hash]
        hub = stream.hub
        hub.streams.discard(stream)
        if not hub.streams and self.hubs.get(hub.channel) is hub:
            del self.hubs[hub.channel]
            await self._sync_subscription(hub.channel)

    def close_all(self) -> None:
        """On shutdown: end every stream cleanly; clients resume elsewhere with Last-Event-ID."""
        self.stopping = True
        for response in list(self._responses):
            with contextlib.suppress(RuntimeError):
                response.stop_streaming()

    async def serve(
        self,
        request: web.Request,
        channel: str,
        source: Source,
        requested: int | None,
        token_hash: bytes | None = None,
        keep_at_most: int | None = None,
    ) -> web.StreamResponse:
        """Run one SSE connection from its first byte to its end.

        ``requested``: the client's last id (None: live only; UNUSABLE_ID: not an id). Raises
        Refused, before anything is sent, when the stream cannot be served now.
        ``keep_at_most``: open streams of this channel in this process; a new one past it ends
        the oldest (SSE_MAX_STREAMS_PER_USER for a user's channel)."""
        if self.stopping:
            raise Refused("stopping", "this server is shutting down")
        if self.count >= self.cap:
            raise Refused("cap", f"this server holds its maximum of {self.cap} streams")
        settings = self.settings
        response = EventSourceResponse(
            sep="\n",
            ping_interval=settings.sse_heartbeat_seconds,
            send_timeout=settings.sse_send_timeout,
        )
        transport = request.transport
        if transport is None:  # the client left while the request was checked
            return client_gone(request, channel)
        gauge = self.metrics.sse_connections.labels(source.kind)
        self.count += 1
        gauge.inc()
        stream = Stream(
            response, transport, request.version >= HttpVersion11, self._hub_for(channel)
        )
        stream.token_hash = token_hash
        self._join(stream, keep_at_most)
        try:
            # Subscribed (confirmed by Redis) before the first read: nothing falls between.
            await self._sync_subscription(channel)
            # Where to start is settled before the headers go out, so that whatever a client
            # posts after seeing them is after the start.
            try:
                reset = await self._start_position(stream, source, requested)
            except Exception as exc:
                if not is_unavailable(exc):
                    raise
                log.warning("sse %s refused: database unavailable (%r)", channel, exc)
                raise Refused("database", "the database is unreachable") from None
            if self.stopping:  # SIGTERM came while this stream was subscribing
                raise Refused("stopping", "this server is shutting down")
            if request.transport is None:  # it left while we subscribed and read PostgreSQL
                return client_gone(request, channel)
            # No await since the check: prepare() finds the transport (aiohttp-sse asserts it).
            await response.prepare(request)
            request[keys.streaming_key] = True
            self._responses.add(response)
            # The first write sends the headers too; after it, frames may go to the transport.
            await response.write(f"retry: {settings.sse_retry_ms}\n\n".encode())
            if reset is not None and not await self._write(stream, reset):
                return response
            await self._run(stream, source)
            if stream.farewell is not None:
                await self._write(stream, stream.farewell)
        except (ConnectionError, TimeoutError):
            if not response.prepared:
                raise  # the middleware answers 503 when it is the database
            # else the client went away while we wrote to it
        except Exception:
            if not response.prepared:
                raise
            # Headers are sent: no error body is possible, so end the stream; the client resumes.
            log.exception(
                "sse %s stream failed request_id=%s", channel, request.get(keys.request_id_key)
            )
        finally:
            self.count -= 1
            gauge.dec()
            self._responses.discard(response)
            stream.close_task()
            await self._leave(stream)
        return response

    async def _start_position(
        self, stream: Stream, source: Source, requested: int | None
    ) -> bytes | None:
        """Set where the stream starts; the reset frame to send first, if the id is unusable."""
        bounds = await source.bounds()
        if requested is None:
            stream.last_sent = bounds.newest  # live messages only
            return None
        oldest = bounds.oldest if bounds.oldest is not None else bounds.newest + 1
        if oldest - 1 <= requested <= bounds.newest:
            stream.last_sent = requested
            return None
        stream.last_sent = bounds.newest
        reset = orjson.dumps({"last_event_id": bounds.newest}).decode()
        return encode_event(bounds.newest, reset, "reset")

    async def _run(self, stream: Stream, source: Source) -> None:
        backoff = 0.5
        while not stream.closed:
            try:
                await self._catch_up(stream, source)
                backoff = 0.5
            except Exception as exc:
                if not is_unavailable(exc):
                    raise
                # PostgreSQL is away: keep the stream open (heartbeats go on) and try again.
                log.warning(
                    "sse %s: database unavailable, retrying in %.1f s", stream.hub.channel, backoff
                )
                stream.dirty = True
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(backoff):
                        await stream.wait_for_wake()
                backoff = min(backoff * 2, 5.0)
                continue
            if not await stream.wait_for_wake():
                return

    async def _write(self, stream: Stream, data: bytes) -> bool:
        """Write through aiohttp (with flow control); a stalled or gone client is cut."""
        try:
            async with asyncio.timeout(self.settings.sse_send_timeout):
                await stream.response.write(data)
        except TimeoutError:
            stream.cut("send timed out")
            return False
        except (ConnectionError, RuntimeError):
            stream.cut("client gone")
            return False
        return True

    async def _catch_up(self, stream: Stream, source: Source) -> None:
        """Write everything after last_sent from PostgreSQL, then go live."""
        stream.live = False
        budget = self.settings.sse_queue_bytes  # what a page may hold, as on the live path
        while not stream.closed:
            stream.dirty = False
            rows = await source.after(stream.last_sent, REPLAY_PAGE, budget)
            # Written in pieces of about the queue bound, each after the client took the last.
            piece: list[bytes] = []
            size = total = 0
            for i, (row_id, frame) in enumerate(rows):
                if stream.closed:  # revoked or cut while its page was being written
                    return
                piece.append(frame)
                size += len(frame)
                if size >= budget or i == len(rows) - 1:
                    if not await self._write(stream, b"".join(piece)):
                        return
                    stream.last_sent = row_id
                    self.metrics.delivered.inc(len(piece))
                    total += size
                    piece, size = [], 0
            # Fewer rows than asked and less than the byte bound: nothing more was there.
            if len(rows) < REPLAY_PAGE and total < budget and not stream.dirty:
                stream.live = True
                return


def announce_revoked(app: web.Application, digests: list[bytes]) -> None:
    """Close streams opened with these tokens, here at once and in every other process."""
    if not digests:
        return
    app[keys.streams_key].close_tokens(digests)
    app[keys.publisher_key].publish(CONTROL_CHANNEL, encode_revoke(digests))
