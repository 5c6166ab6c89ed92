"""The stream watch: what the open streams of this process need from PostgreSQL, read for all
of them at once.

- **When live news may be missing**: Redis is unreachable or has not answered for a second
  (the broker is not live), a publish failed or news was dropped (the publisher is failing),
  or the subscription was just (re)established, or another process asked for a resync. Then,
  every ``POLL_INTERVAL``, one query reads the feed after the lowest position of its live
  streams, and one reads, for every connected user, the notifications after the position of
  that user's streams; the hubs hand the rows out exactly as they hand out news from Redis
  (streams that already have a row skip it). So while Redis is down, streams still get each
  message within about a second of its commit, and when Redis returns nothing is lost or sent
  twice. While Redis is healthy this reads nothing (but see the heartbeat's look below).
- **Every heartbeat interval**: one query checks which of the tokens behind the open streams
  still exist, and ends the streams of revoked tokens and deleted users, whatever Redis
  delivered of the revocation news (it only makes the end come sooner). And one look at the
  newest ids (the feed's counter, and one for every connected user) finds commits whose news
  never came although Redis is fine: a process that died between COMMIT and PUBLISH tells
  nobody, and the gap would otherwise show only when a later message on the same channel
  arrives, which for a quiet user may be never. Streams that are behind are read as above.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

import asyncpg

from .db import Runner, is_unavailable
from .feed.frames import value_frame
from .feed.repository import ValuesRepository
from .notifications.frames import notification_frame
from .notifications.repository import NotificationsRepository
from .streams import REPLAY_PAGE, Hub, StreamRegistry
from .users.repository import UsersRepository
from .wire import FEED_CHANNEL, channel_user

log = logging.getLogger(__name__)

POLL_INTERVAL = 0.5  # seconds between reads while live news may be missing
FEED_PAGES = 20  # feed pages read per poll before its streams are left to read the rest
USER_PAGE = 100  # notifications per user per poll; a user with more reads the rest itself


class StreamWatch:
    def __init__(
        self,
        registry: StreamRegistry,
        db: Runner,
        heartbeat: float,
        news_missing: Callable[[], bool],
        *,
        publishing_fails: Callable[[], bool] = lambda: False,
        listen_dsn: str | None = None,
        channel: str = "news_missing",
    ) -> None:
        """``news_missing``: this process may miss live news (its broker is not live, or its
        publisher failing). ``publishing_fails``: this process cannot publish, so the others
        miss its news: it tells them through PostgreSQL (NOTIFY ``channel``), which every
        process LISTENs to on a connection of its own to ``listen_dsn``."""
        self.registry = registry
        self.db = db
        self.heartbeat = heartbeat
        self.news_missing = news_missing
        self.publishing_fails = publishing_fails
        self.listen_dsn = listen_dsn
        self.channel = channel
        self.heard = 0  # "news missing" notices from other processes (for tests)
        self._listener: asyncpg.Connection | None = None
        self._listen_task: asyncio.Task[None] | None = None
        self.polls = 0  # reads done because news was missing (for tests and benchmarks)
        self._kicked = False
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._last_warning = 0.0

    def kick(self) -> None:
        """Live news may have been lost: read PostgreSQL for every stream now."""
        self._kicked = True
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="stream-watch")
        if self.listen_dsn:
            self._listen_task = asyncio.create_task(self._listen(), name="stream-watch-listen")

    async def stop(self) -> None:
        for task in (self._task, self._listen_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._task = self._listen_task = None

    async def _listen(self) -> None:
        """Keep one connection LISTENing for other processes' "news missing" notices."""
        assert self.listen_dsn
        while True:
            ended = asyncio.Event()
            try:
                conn = await asyncpg.connect(self.listen_dsn, timeout=5)
                try:
                    conn.add_termination_listener(lambda _, ended=ended: ended.set())
                    await conn.add_listener(self.channel, self._heard)
                    self._listener = conn
                    while not ended.is_set() and not conn.is_closed():
                        # A dead peer is only noticed when written to (asyncpg #519).
                        with contextlib.suppress(TimeoutError):
                            async with asyncio.timeout(self.heartbeat):
                                await ended.wait()
                        if not ended.is_set():
                            await Runner(conn, self.db.queries).value("health.ping")
                finally:
                    self._listener = None
                    with contextlib.suppress(Exception):
                        await conn.close(timeout=1)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not is_unavailable(exc):
                    log.exception("stream watch: LISTEN connection failed")
            await asyncio.sleep(2.0)

    def _heard(self, conn: Any, pid: int, channel: str, payload: str) -> None:
        """Another process cannot publish: its news reaches no stream through Redis."""
        self.heard += 1
        self.registry.news_missed()

    async def _run(self) -> None:
        next_token_check = time.monotonic() + self.heartbeat
        next_poll = next_notice = 0.0
        polling = False
        while True:
            wait = max(0.0, min(POLL_INTERVAL, next_token_check - time.monotonic()))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._wake.wait()
            self._wake.clear()
            missing = self.news_missing()
            if missing != polling:
                polling = missing
                if missing:
                    log.warning(
                        "live news unavailable: streams read PostgreSQL every %.1f s", POLL_INTERVAL
                    )
                else:
                    log.info("live news is back: streams follow Redis again")
            if self.publishing_fails() and time.monotonic() >= next_notice:
                next_notice = time.monotonic() + POLL_INTERVAL
                try:
                    await self.db.value("streams.notify_news_missing", channel=self.channel)
                except Exception as exc:
                    self._failed(exc)
            kicked, self._kicked = self._kicked, False
            if kicked or (missing and time.monotonic() >= next_poll):
                next_poll = time.monotonic() + POLL_INTERVAL
                try:
                    await self.poll()
                except Exception as exc:
                    self._kicked = self._kicked or kicked  # a catch-up still owed: try again
                    self._failed(exc)
            # Due whatever the poll did: a poll failing (PostgreSQL away) must neither skip it
            # nor leave the wait above at zero.
            if time.monotonic() >= next_token_check:
                next_token_check = time.monotonic() + self.heartbeat
                try:
                    await self.check_tokens()
                    await self.check_behind()
                except Exception as exc:
                    self._failed(exc)

    def _failed(self, exc: Exception) -> None:
        now = time.monotonic()
        if not is_unavailable(exc):
            log.exception("stream watch failed; trying again")
        elif now - self._last_warning > 30:
            self._last_warning = now
            log.warning("stream watch: database unavailable (%s)", type(exc).__name__)

    async def poll(self) -> None:
        """One read of the feed and one of every connected user's notifications."""
        self.polls += 1
        await self._poll_feed()
        await self._poll_users()

    async def _poll_feed(self) -> None:
        hub = self.registry.hubs.get(FEED_CHANNEL)
        if hub is None:
            return
        budget = self.registry.settings.sse_queue_bytes
        repo = ValuesRepository(self.db)
        reads = self.registry.metrics.fallback_reads.labels("feed")
        for _ in range(FEED_PAGES):
            positions = hub.positions()
            if not positions:
                return
            reads.inc()
            found = await repo.after(min(positions), REPLAY_PAGE, budget)
            rows = [(value_id, value_frame(value_id, value)) for value_id, value in found]
            complete = len(rows) < REPLAY_PAGE and sum(len(f) for _, f in rows) < budget
            hub.deliver_rows(rows, complete=True)
            if complete:
                return
        # More than FEED_PAGES pages behind: read on at once rather than sending every stream
        # to read on its own.
        self._kicked = True
        self._wake.set()

    def _user_positions(self) -> tuple[dict[uuid.UUID, Hub], dict[uuid.UUID, int]]:
        """The hub of every connected user with live streams, and where the lowest stands."""
        hubs = {}
        positions: dict[uuid.UUID, int] = {}
        for channel, hub in list(self.registry.hubs.items()):
            user_id = channel_user(channel)
            if user_id is None:
                continue
            live = hub.positions()
            if live:
                hubs[user_id] = hub
                positions[user_id] = min(live)
        return hubs, positions

    async def _poll_users(self) -> None:
        hubs, positions = self._user_positions()
        if not positions:
            return
        self.registry.metrics.fallback_reads.labels("users").inc()
        budget = self.registry.settings.sse_queue_bytes
        found = await NotificationsRepository(self.db).after_many(positions, USER_PAGE, budget)
        for user_id, notifications in found.items():
            rows = [(n.seq, notification_frame(n)) for n in notifications]
            complete = len(rows) < USER_PAGE and sum(len(f) for _, f in rows) < budget
            hubs[user_id].deliver_rows(rows, complete=complete)

    async def check_behind(self) -> None:
        """Read PostgreSQL for every stream (as after lost news) when it holds commits after
        where the live streams stand: news that never came, though Redis may be fine."""
        hub = self.registry.hubs.get(FEED_CHANNEL)
        positions = hub.positions() if hub is not None else set()
        if positions and (await ValuesRepository(self.db).bounds()).newest > min(positions):
            self.kick()
            return
        _, users = self._user_positions()
        if users and await NotificationsRepository(self.db).users_behind(users):
            self.kick()

    async def check_tokens(self) -> None:
        """End the streams whose token no longer exists (revoked, or its user deleted)."""
        digests = self.registry.token_hashes()
        if not digests:
            return
        gone = set(digests) - await UsersRepository(self.db).valid_token_hashes(digests)
        if gone:
            log.info("stream watch: %d revoked tokens still had open streams", len(gone))
            self.registry.close_tokens(list(gone))
