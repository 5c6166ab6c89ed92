"""Retention: delete what is older than the configured age, in batches, on a timer.

Streams compare a client's Last-Event-ID against the oldest id still kept: an id from before
it gets the SSE ``reset`` event, so pruning never makes a stream skip silently.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from .db import is_unavailable

log = logging.getLogger(__name__)

BATCH_SIZE = 10_000
Prune = Callable[[datetime, int], Awaitable[int]]


async def prune_older_than(what: str, prune: Prune, max_age: timedelta) -> int:
    """Delete everything older than max_age, one batch per statement; how many rows went."""
    cutoff = datetime.now(UTC) - max_age
    started = time.perf_counter()
    total = 0
    while True:
        deleted = await prune(cutoff, BATCH_SIZE)
        total += deleted
        if deleted < BATCH_SIZE:
            break
        await asyncio.sleep(0)  # let requests through between batches
    if total:
        log.info(
            "retention: deleted %d %s older than %s in %.1f s",
            total,
            what,
            cutoff.isoformat(timespec="seconds"),
            time.perf_counter() - started,
        )
    return total


async def run_periodically(what: str, prune: Prune, max_age: timedelta, interval: float) -> None:
    while True:
        try:
            await prune_older_than(what, prune, max_age)
        except Exception as exc:
            if not is_unavailable(exc):
                log.exception("retention: pruning %s failed", what)
            else:
                log.warning("retention: database unavailable, pruning %s later", what)
        await asyncio.sleep(interval)
