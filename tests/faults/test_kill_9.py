"""kill -9 of one of two service processes in the middle of a write load."""

from __future__ import annotations

import asyncio
import signal
import time

import pytest

from ..helpers import Follower
from .conftest import (
    HoldingProxy,
    Load,
    Rig,
    Write,
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


@bounded(120)
async def test_kill_9_loses_no_acknowledged_write_and_streams_resume_on_the_other_process(
    rig: Rig,
) -> None:
    a, b = await rig.start_services("A", "B")
    sender = await sign_up(a.base, "Sender")
    recipients = [await sign_up(a.base, f"Reader {i}") for i in range(3)]
    recipient_ids = [r["id"] for r in recipients]
    # Most streams on A, the process that dies: they resume on B with Last-Event-ID. One of
    # each kind stays on B all along.
    on_a = [Follower([a.base, b.base], "/events/") for _ in range(3)] + [
        Follower([a.base, b.base], f"/sse/{r['id']}", r["headers"]) for r in recipients
    ]
    on_b = [
        Follower([b.base, a.base], "/events/"),
        Follower([b.base, a.base], f"/sse/{recipients[0]['id']}", recipients[0]["headers"]),
    ]
    followers = [f.start() for f in on_a + on_b]
    try:
        await all_ready(followers)
        load = Load([a.base, b.base], sender, recipient_ids)
        stop = asyncio.Event()
        writing = asyncio.create_task(load.run(stop, workers=6))
        await asyncio.sleep(1.5)
        in_flight = load.in_flight(a.base)
        killed_at = time.time()
        a.signal(signal.SIGKILL)
        load.bases = [b.base]  # as a balancer would: no more requests to the dead process
        await asyncio.sleep(1.5)
        stop.set()
        await writing

        stored = await read_stored(rig.postgres.url, recipient_ids)
        expected = {f: stored.feed() if f.path == "/events/" else [] for f in followers}
        for f in followers:
            if f.path != "/events/":
                expected[f] = stored.inbox(f.path.removeprefix("/sse/"))
        await caught_up(list(expected.items()), timeout=20)
    finally:
        for f in followers:
            await f.stop()

    assert await a.wait(5) == -signal.SIGKILL
    acknowledged = [w for w in load.writes if w.ok]
    unanswered = [w for w in load.writes if w.status is None]
    stored_values = {v.value for v in stored.values}
    stored_messages = {u: stored.messages(u) for u in recipient_ids}

    def is_stored(w: Write) -> bool:
        if w.kind == "value":
            return w.text in stored_values
        return all(w.text in stored_messages[u] for u in recipient_ids)

    counts = [tally(f, expected[f]) for f in followers]
    summary(
        "kill -9",
        writes=len(load.writes),
        acknowledged=len(acknowledged),
        unanswered=len(unanswered),
        unanswered_but_stored=sum(1 for w in unanswered if is_stored(w)),
        in_flight_on_killed=in_flight,
        acknowledged_missing=sum(1 for w in acknowledged if not is_stored(w)),
        streams=len(followers),
        resumed=sum(1 for f in on_a if len(f.opened) > 1),
        received=sum(c["received"] for c in counts),
        lost=sum(c["lost"] for c in counts),
        duplicated=sum(c["duplicated"] for c in counts),
        out_of_order=sum(c["out_of_order"] for c in counts),
        reopened_within_s=round(
            max((f.opened_at[1] for f in on_a if len(f.opened_at) > 1), default=-1) - killed_at,
            2,
        ),
    )

    statuses = {w.status for w in load.writes if w.status is not None}
    assert statuses <= {200, 202}, f"answers other than 2xx: {statuses}"
    missing = [w.text for w in acknowledged if not is_stored(w)]
    assert not missing, f"acknowledged but not in PostgreSQL: {missing[:10]}"
    for f in followers:
        assert seen(f) == expected[f], (f.path, tally(f, expected[f]))
    for f in on_a:  # each was on A when it died, and resumed on B
        assert f.opened[0] == a.base and f.opened[-1] == b.base, f.opened
    for f in on_b:
        assert f.opened == [b.base] and not f.ends
    assert not b.problems(), b.problems()


@bounded(90)
async def test_news_a_killed_process_never_published_still_reaches_the_other_process(
    rig: Rig,
) -> None:
    """A process dies between COMMIT and PUBLISH: its writes were acknowledged, their news never
    left it, and no later write comes to reveal the gap. The other process's live streams must
    still get them (its Redis is fine, so nothing else makes it read PostgreSQL)."""
    proxy = await HoldingProxy(rig.redis.port).start()
    try:
        (a,) = await rig.start_services("A", REDIS_URL=f"redis://127.0.0.1:{proxy.port}/0")
        (b,) = await rig.start_services("B")
        sender = await sign_up(a.base, "Sender")
        reader = await sign_up(a.base, "Reader")
        followers = [
            Follower([b.base], "/events/").start(),
            Follower([b.base], f"/sse/{reader['id']}", reader["headers"]).start(),
        ]
        try:
            await all_ready(followers)
            load = Load([a.base], sender, [reader["id"]])
            for kind in ("value", "message"):
                await load.write_one(kind, "before", a.base)
            await caught_up([(f, [(1, "before")]) for f in followers], timeout=10)
            # A's link to Redis stops passing what A sends: its publishes hang (for up to the
            # client's 5 s socket timeout, so A never finds out that they failed).
            proxy.hold.set()
            for kind in ("value", "message"):
                await load.write_one(kind, "unpublished", a.base)
            await asyncio.sleep(0.5)
            a.signal(signal.SIGKILL)
            killed_at = time.time()
            stored = await read_stored(rig.postgres.url, [reader["id"]])
            expected = {followers[0]: stored.feed(), followers[1]: stored.inbox(reader["id"])}
            await caught_up(list(expected.items()), timeout=15)
        finally:
            for f in followers:
                await f.stop()
    finally:
        await proxy.close()

    arrived = [f.received[-1].at - killed_at for f in followers if len(f.received) == 2]
    summary(
        "kill -9 before publishing",
        acknowledged=sum(1 for w in load.writes if w.ok),
        streams=len(followers),
        received=sum(len(f.received) for f in followers),
        lost=sum(tally(f, expected[f])["lost"] for f in followers),
        arrived_after_kill_s=[round(t, 2) for t in arrived],
    )
    assert all(w.ok for w in load.writes) and len(load.writes) == 4
    for f in followers:
        assert seen(f) == expected[f], (f.path, tally(f, expected[f]))
        assert len(f.received) == 2 and f.opened == [b.base]
    assert not b.problems(), b.problems()
