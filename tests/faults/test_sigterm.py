"""SIGTERM to one of two service processes while its clients stream and write."""

from __future__ import annotations

import asyncio
import signal
import time

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


@bounded(120)
async def test_sigterm_ends_streams_cleanly_and_they_resume_on_the_other_process(
    rig: Rig,
) -> None:
    a, b = await rig.start_services("A", "B")
    sender = await sign_up(a.base, "Sender")
    recipients = [await sign_up(a.base, f"Reader {i}") for i in range(2)]
    recipient_ids = [r["id"] for r in recipients]
    followers = [Follower([a.base, b.base], "/events/").start() for _ in range(3)] + [
        Follower([a.base, b.base], f"/sse/{r['id']}", r["headers"]).start() for r in recipients
    ]
    try:
        await all_ready(followers)
        load = Load([a.base, b.base], sender, recipient_ids)
        stop = asyncio.Event()
        writing = asyncio.create_task(load.run(stop, workers=4, pause=0.01))
        await asyncio.sleep(1.5)
        in_flight = load.in_flight(a.base)
        term_at = time.time()
        a.signal(signal.SIGTERM)
        code = await a.wait(15)
        exited_at = time.time()
        load.bases = [b.base]
        await asyncio.sleep(1.5)
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

    stored_values = {v.value for v in stored.values}
    stored_messages = {u: stored.messages(u) for u in recipient_ids}
    missing = [
        w.text
        for w in load.writes
        if w.ok
        and not (
            w.text in stored_values
            if w.kind == "value"
            else all(w.text in stored_messages[u] for u in recipient_ids)
        )
    ]
    to_a = [w for w in load.writes if w.base == a.base]
    counts = [tally(f, expected[f]) for f in followers]
    first_ends = [f.ends[0] for f in followers if f.ends]
    summary(
        "sigterm",
        exit_code=code,
        exited_after_s=round(exited_at - term_at, 2),
        streams_ended_within_s=round(max(e.at for e in first_ends) - term_at, 2),
        clean_ends=sum(1 for e in first_ends if e.how == "clean"),
        writes=len(load.writes),
        acknowledged=sum(1 for w in load.writes if w.ok),
        in_flight_on_stopped=in_flight,
        to_stopped_after_sigterm=sum(1 for w in to_a if w.sent >= term_at),
        answers_from_stopped=sorted({str(w.status or w.error) for w in to_a if w.sent >= term_at}),
        streams=len(followers),
        received=sum(c["received"] for c in counts),
        lost=sum(c["lost"] for c in counts),
        duplicated=sum(c["duplicated"] for c in counts),
        out_of_order=sum(c["out_of_order"] for c in counts),
    )

    assert code == 0, a.output()
    assert not a.problems(), a.problems()
    assert "stopped (pid" in a.output()
    for f in followers:
        assert f.ends and f.ends[0].base == a.base and f.ends[0].how == "clean", f.ends
        assert f.opened[0] == a.base and f.opened[-1] == b.base, f.opened
        assert seen(f) == expected[f], (f.path, tally(f, expected[f]))
    # Writes to the stopping process: finished (2xx), or told to retry (503), or refused once
    # it stopped listening; never a 500.
    statuses = {w.status for w in load.writes if w.status is not None}
    assert statuses <= {200, 202, 503}, statuses
    assert not missing, f"acknowledged but not in PostgreSQL: {missing[:10]}"
    assert not b.problems(), b.problems()
