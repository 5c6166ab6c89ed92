"""PostgreSQL stopped (fast shutdown) for a few seconds and started again under a running
service, with writes and streams going on."""

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

OUTAGE = 3.0


@bounded(120)
async def test_postgres_restart_is_503_with_retry_after_then_the_same_process_recovers(
    rig: Rig,
) -> None:
    (a,) = await rig.start_services("A")
    pid = a.pid
    sender = await sign_up(a.base, "Sender")
    reader = await sign_up(a.base, "Reader")
    open_before = [
        Follower([a.base], "/events/").start(),
        Follower([a.base], f"/sse/{reader['id']}", reader["headers"]).start(),
    ]
    opened_during: list[Follower] = []
    try:
        await all_ready(open_before)
        load = Load([a.base], sender, [reader["id"]])
        stop = asyncio.Event()
        writing = asyncio.create_task(load.run(stop, workers=2, pause=0.05))
        await asyncio.sleep(1.5)

        down_at = time.time()
        await rig.postgres.stop("fast")
        stopped_at = time.time()
        # Streams opened now are told to come back later (200, retry:, a reason, the end).
        opened_during = [
            Follower([a.base], "/events/").start(),
            Follower([a.base], f"/sse/{reader['id']}", reader["headers"]).start(),
        ]
        async with aiohttp.ClientSession() as session:
            reads = []
            for path in ("/values", "/health", f"/notifications/{reader['id']}"):
                async with session.get(a.base + path, headers=reader["headers"]) as response:
                    reads.append((path, response.status, response.headers.get("Retry-After")))
        await asyncio.sleep(max(0.0, stopped_at + OUTAGE - time.time()))
        starting_at = time.time()
        await rig.postgres.start()
        up_at = time.time()
        for _ in range(300):  # the same process, its pool reconnecting by itself
            if any(w.ok and w.sent >= up_at for w in load.writes):
                break
            await asyncio.sleep(0.05)
        recovered_at = min((w.answered for w in load.writes if w.ok and w.sent >= up_at), default=0)
        await asyncio.sleep(1.5)
        stop.set()
        await writing

        stored = await read_stored(rig.postgres.url, [reader["id"]])
        followers = open_before + opened_during
        expected = {
            f: stored.feed() if f.path == "/events/" else stored.inbox(reader["id"])
            for f in followers
        }
        await caught_up(list(expected.items()), timeout=20)
    finally:
        for f in open_before + opened_during:
            await f.stop()

    during = [w for w in load.writes if stopped_at <= w.sent and w.answered < starting_at]
    unavailable = [w for w in load.writes if w.status == 503]
    stored_values = {v.value for v in stored.values}
    stored_messages = stored.messages(reader["id"])
    missing = [
        w.text
        for w in load.writes
        if w.ok and w.text not in (stored_values if w.kind == "value" else stored_messages)
    ]
    counts = [tally(f, expected[f]) for f in followers]
    pings_while_down = [
        sum(1 for t in f.pings if stopped_at <= t < starting_at) for f in open_before
    ]
    summary(
        "postgres restart",
        outage_s=round(up_at - down_at, 1),
        first_2xx_after_restart_s=round(recovered_at - up_at, 2),
        writes=len(load.writes),
        acknowledged=sum(1 for w in load.writes if w.ok),
        answered_503=len(unavailable),
        stored_after_503=sum(
            1
            for w in unavailable
            if w.text in (stored_values if w.kind == "value" else stored_messages)
        ),
        other_answers=sum(1 for w in load.writes if not w.ok and w.status != 503),
        streams=len(followers),
        received=sum(c["received"] for c in counts),
        lost=sum(c["lost"] for c in counts),
        duplicated=sum(c["duplicated"] for c in counts),
        pings_while_down=min(pings_while_down),
        refusals=sum(len(f.refusals) for f in opened_during),
    )

    assert a.running and a.pid == pid, "the service was restarted"
    answers = {(w.status, w.retry_after) for w in load.writes if not w.ok}
    assert answers and answers <= {(503, "5"), (503, "1")}, answers
    assert during and all(w.status == 503 for w in during)
    assert all(status == 503 and retry for _, status, retry in reads), reads
    assert not missing, f"acknowledged but not in PostgreSQL: {missing[:10]}"
    for f in followers:
        assert seen(f) == expected[f], (f.path, tally(f, expected[f]))
    for f in open_before:  # stayed open through the outage, heartbeats flowing
        assert len(f.opened) == 1 and not f.ends
    assert min(pings_while_down) >= 2
    for f in opened_during:  # refused with a retry while PostgreSQL was away, then served
        assert f.refusals and all("database is unreachable" in r for r in f.refusals)
        assert f.opened[-1] == a.base and not f.gave_up
    assert not a.problems(), a.problems()
