"""Redis killed for 10 s and started again while two service processes write and stream."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from ..helpers import Follower
from .conftest import (
    Load,
    Rig,
    all_ready,
    bounded,
    caught_up,
    read_stored,
    seen,
    sign_up,
    summary,
    tally,
)

pytestmark = pytest.mark.slow

OUTAGE = 10.0
BOUND = 2.0  # API.md: while Redis is unreachable, streams get a message within 2 s of its commit


@bounded(120)
async def test_redis_down_for_10_s_writes_succeed_and_streams_keep_receiving(rig: Rig) -> None:
    a, b = await rig.start_services("A", "B")
    sender = await sign_up(a.base, "Sender")
    recipients = [await sign_up(a.base, f"Reader {i}") for i in range(2)]
    recipient_ids = [r["id"] for r in recipients]
    # Streams on both processes; writes on both: news crosses from one process to the other.
    followers = [
        Follower([a.base], "/events/").start(),
        Follower([b.base], "/events/").start(),
        *(Follower([a.base], f"/sse/{r['id']}", r["headers"]).start() for r in recipients),
        *(Follower([b.base], f"/sse/{r['id']}", r["headers"]).start() for r in recipients),
    ]
    try:
        await all_ready(followers)
        load = Load([a.base, b.base], sender, recipient_ids)
        stop = asyncio.Event()
        writing = asyncio.create_task(load.run(stop, workers=2, pause=0.1))
        await asyncio.sleep(2)

        rig.kill_redis()
        down_at = time.time()
        async with aiohttp.ClientSession() as session:
            async with session.get(b.base + "/health") as response:
                health = response.status, await response.json()
        await asyncio.sleep(max(0.0, down_at + OUTAGE - time.time()))
        await rig.restart_redis()
        back_at = time.time()
        await asyncio.sleep(3)
        stop.set()
        await writing

        stored = await read_stored(rig.postgres.url, recipient_ids)
        expected = {
            f: stored.feed() if f.path == "/events/" else stored.inbox(f.path[len("/sse/") :])
            for f in followers
        }
        await caught_up(list(expected.items()), timeout=20)
    finally:
        for f in followers:
            await f.stop()

    # How long after its commit each message reached each stream.
    committed = stored.committed_at()
    delays: dict[str, list[float]] = {"before": [], "outage": [], "after": []}
    for f in followers:
        channel = "feed" if f.path == "/events/" else f.path[len("/sse/") :]
        for r in f.received:
            at = committed[(channel, r.id)]
            phase = "before" if at < down_at else "outage" if at < back_at else "after"
            delays[phase].append(r.at - at)
    written_down = [w for w in load.writes if down_at <= w.sent < back_at]
    counts = [tally(f, expected[f]) for f in followers]
    summary(
        "redis down",
        outage_s=round(back_at - down_at, 1),
        writes=len(load.writes),
        written_while_down=len(written_down),
        acknowledged=sum(1 for w in load.writes if w.ok),
        streams=len(followers),
        received=sum(c["received"] for c in counts),
        lost=sum(c["lost"] for c in counts),
        duplicated=sum(c["duplicated"] for c in counts),
        out_of_order=sum(c["out_of_order"] for c in counts),
        reconnects=sum(len(f.opened) - 1 for f in followers),
        **{f"max_delay_{k}_s": round(max(v, default=0), 3) for k, v in delays.items()},
    )

    assert health == (503, {"status": "unavailable", "database": "ok", "redis": "unavailable"})
    failed = [(w.text, w.status, w.error) for w in load.writes if not w.ok]
    assert not failed, f"writes that did not succeed: {failed[:10]}"
    assert len(written_down) > 50
    for f in followers:
        assert seen(f) == expected[f], (f.path, tally(f, expected[f]))
        assert len(f.opened) == 1 and not f.ends, "a stream was dropped"
    assert delays["outage"] and max(delays["outage"]) <= BOUND, sorted(delays["outage"])[-5:]
    for service in (a, b):
        assert not service.problems(), service.problems()
