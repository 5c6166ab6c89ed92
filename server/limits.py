"""Abuse limits: how often one subject (an email, a client address) may be counted in a window.

Counted in Redis, so every instance of the service shares each count: one small Lua script per
key increments it and, when the key is new, sets its expiry in the same step, so a count never
outlives its window even if a process dies between the two. The keys of one attempt go out in
one pipeline (one round trip); each key is its own script call, so they need not share a Redis
Cluster slot. Keys are ``<REDIS_PREFIX>limit:<rule>:<subject>``; an email is kept only as a
digest of its lower-cased form, an address in clear (an operator can read or DEL its key), and
no password ever reaches this module.

Windows are fixed: the first count of a key starts its window and the key expires at its end,
so at most ``limit`` attempts pass per window (twice that across a window's edge at worst).

While Redis cannot be reached (an error, or no answer within ``REDIS_TIMEOUT``), the same counts
are kept in this process by ``LocalCounts``, a dict with expiry holding at most
``LOCAL_MAX_KEYS`` keys: each process then allows ``limit`` per window by itself. After a
failure Redis is left alone for ``REDIS_RETRY_AFTER`` seconds, so an outage costs no login a
connect timeout.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from .settings import Settings

log = logging.getLogger(__name__)

REDIS_TIMEOUT = 0.5  # seconds a count may wait on Redis before the process counts by itself
REDIS_RETRY_AFTER = 1.0  # seconds Redis is left alone after it failed
LOCAL_MAX_KEYS = 10_000  # keys counted in-process while Redis is away, at most

# KEYS[1]: the counter; ARGV[1]: its window in ms. Returns {count, ms left in the window}.
_TAKE = """
local n = redis.call('INCR', KEYS[1])
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {n, ttl}
"""
# KEYS[1]: the counter. Undoes one count, unless the window has ended meanwhile (no key: no
# count to undo, and a DECR would create a key without expiry).
_GIVE_BACK = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  return redis.call('DECR', KEYS[1])
end
return 0
"""


@dataclass(frozen=True, slots=True)
class Rule:
    name: str  # part of the key: login_email, login_address, signup_address
    limit: int  # counts allowed per window; 0: no limit
    window: float  # seconds


@dataclass(frozen=True, slots=True)
class Taken:
    """One attempt as counted: the keys it incremented and where (Redis or this process), and
    when it is refused, the seconds until the first of its keys over its limit is free again."""

    keys: tuple[str, ...]
    local: bool
    retry_after: int | None = None  # None: within every limit

    @property
    def refused(self) -> bool:
        return self.retry_after is not None


NOTHING = Taken((), local=False)


def email_subject(email: str) -> str:
    """An email as a key part: a digest of its lower-cased form (logins match it in any case)."""
    return hashlib.sha256(email.lower().encode("utf-8", "surrogatepass")).hexdigest()[:32]


class LocalCounts:
    """Counts with expiry in this process, at most ``max_keys`` of them: when full, expired keys
    go first, then the oldest."""

    def __init__(self, max_keys: int = LOCAL_MAX_KEYS) -> None:
        self.max_keys = max_keys
        self._counts: dict[str, tuple[int, float]] = {}  # key -> (count, monotonic expiry)

    def __len__(self) -> int:
        return len(self._counts)

    def take(self, key: str, window: float) -> tuple[int, float]:
        """Count ``key`` once; its count and the seconds left in its window."""
        now = time.monotonic()
        count, expires = self._counts.get(key, (0, 0.0))
        if expires <= now:
            self._counts.pop(key, None)
            self._make_room(now)
            count, expires = 0, now + window
        self._counts[key] = (count + 1, expires)
        return count + 1, expires - now

    def give_back(self, key: str) -> None:
        found = self._counts.get(key)
        if found is not None and found[1] > time.monotonic():
            self._counts[key] = (max(0, found[0] - 1), found[1])

    def _make_room(self, now: float) -> None:
        if len(self._counts) < self.max_keys:
            return
        for key in [k for k, (_, expires) in self._counts.items() if expires <= now]:
            del self._counts[key]
        while len(self._counts) >= self.max_keys:
            del self._counts[next(iter(self._counts))]


def connect(url: str) -> aioredis.Redis:
    """A client of its own for the counters: short timeouts and no retry, so that a Redis that
    does not answer delays an attempt by ``REDIS_TIMEOUT`` at most."""
    return aioredis.Redis.from_url(
        url,
        socket_connect_timeout=REDIS_TIMEOUT,
        socket_timeout=REDIS_TIMEOUT,
        retry=Retry(NoBackoff(), 0),
        health_check_interval=0,
    )


class Counters:
    """Counts attempts against rules, in Redis when it answers, else in this process."""

    def __init__(self, client: aioredis.Redis, prefix: str, local: LocalCounts | None = None):
        self.client = client
        self.prefix = prefix
        self.local = local or LocalCounts()
        self._take = client.register_script(_TAKE)
        self._give_back = client.register_script(_GIVE_BACK)
        self._skip_redis_until = 0.0

    def key(self, rule: Rule, subject: str) -> str:
        return f"{self.prefix}limit:{rule.name}:{subject}"

    async def take(self, subjects: Sequence[tuple[Rule, str]]) -> Taken:
        """Count one attempt for each (rule, subject) whose rule limits anything. If any count
        passes its limit the attempt is refused, and its counts are given back at once: only
        attempts that were let through count."""
        counted = [(rule, self.key(rule, subject)) for rule, subject in subjects if rule.limit > 0]
        if not counted:
            return NOTHING
        keys = tuple(key for _, key in counted)
        results = await self._redis_take(counted)
        local = results is None
        if results is None:
            results = [self.local.take(key, rule.window) for rule, key in counted]
        waits = [
            left for (rule, _), (count, left) in zip(counted, results, strict=True)
            if count > rule.limit
        ]  # fmt: skip
        if not waits:
            return Taken(keys, local)
        taken = Taken(keys, local, retry_after=max(1, math.ceil(max(waits))))
        await self.give_back(taken)
        return taken

    async def give_back(self, taken: Taken) -> None:
        """Undo an attempt's counts (where they were made)."""
        if not taken.keys:
            return
        if taken.local:
            for key in taken.keys:
                self.local.give_back(key)
            return
        try:
            async with self.client.pipeline(transaction=False) as pipe:
                for key in taken.keys:
                    await self._give_back(keys=[key], client=pipe)
                await pipe.execute()
        except (RedisError, OSError) as exc:
            # The count stays a little high until its window ends: the safe side.
            self._redis_failed(exc)

    async def _redis_take(self, counted: list[tuple[Rule, str]]) -> list[tuple[int, float]] | None:
        """(count, seconds left) per key from Redis; None when Redis cannot count now."""
        if time.monotonic() < self._skip_redis_until:
            return None
        try:
            async with asyncio.timeout(REDIS_TIMEOUT * 2):
                async with self.client.pipeline(transaction=False) as pipe:
                    for rule, key in counted:
                        window_ms = max(1, round(rule.window * 1000))
                        await self._take(keys=[key], args=[window_ms], client=pipe)
                    replies = await pipe.execute()
        except (RedisError, OSError, TimeoutError) as exc:
            self._redis_failed(exc)
            return None
        return [(int(count), int(ttl) / 1000) for count, ttl in replies]

    def _redis_failed(self, exc: BaseException) -> None:
        if time.monotonic() >= self._skip_redis_until:
            log.warning("abuse limits: Redis unavailable (%r), counting in this process", exc)
        self._skip_redis_until = time.monotonic() + REDIS_RETRY_AFTER


class Limits:
    """The abuse limits of the settings (README, "Configuration"), counted by ``Counters``."""

    def __init__(self, settings: Settings, counters: Counters) -> None:
        self.counters = counters
        window = settings.login_limit_window_seconds
        self.login_email = Rule("login_email", settings.login_limit_per_email, window)
        self.login_address = Rule("login_address", settings.login_limit_per_address, window)
        self.signup_address = Rule(
            "signup_address",
            settings.signup_limit_per_address,
            settings.signup_limit_window_seconds,
        )

    async def login(self, email: str, address: str) -> Taken:
        """Count a login attempt for this email and this client address."""
        return await self.counters.take(
            [(self.login_email, email_subject(email)), (self.login_address, address)]
        )

    async def signup(self, address: str) -> Taken:
        """Count a registration from this client address."""
        return await self.counters.take([(self.signup_address, address)])

    async def give_back(self, taken: Taken) -> None:
        await self.counters.give_back(taken)
