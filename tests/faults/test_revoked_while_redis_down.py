"""A token revoked while Redis is down: its streams end in every process, though the news of
the revocation cannot travel (docs/API.md, "Delivery when Redis misbehaves": Revocation)."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import orjson
import pytest

from ..helpers import Follower
from .conftest import Rig, all_ready, bounded, sign_up, summary

pytestmark = pytest.mark.slow

HEARTBEAT = 1.0  # SSE_HEARTBEAT_SECONDS: the interval of the watch's token check
# What the check itself may add to the interval: its one query, and a loop on a busy machine.
CHECK_GRACE = 0.5


@bounded(90)
async def test_a_token_revoked_while_redis_is_down_ends_its_streams_within_a_heartbeat(
    rig: Rig,
) -> None:
    a, b = await rig.start_services("A", "B", SSE_HEARTBEAT_SECONDS=str(HEARTBEAT))
    user = await sign_up(a.base, "Reader", password="correct horse battery")
    sender = await sign_up(a.base, "Sender")
    async with aiohttp.ClientSession() as session:
        login = {"email": user["email"], "password": user["password"]}
        async with session.post(a.base + "/auth/token", json=login) as response:
            assert response.status == 201, await response.text()
            doomed = {"Authorization": f"Bearer {(await response.json())['token']}"}
    path = f"/sse/{user['id']}"
    revoked_on_b = Follower([b.base], path, doomed).start()  # not where the revocation happens
    revoked_on_a = Follower([a.base], path, doomed).start()  # where it happens
    kept_on_b = Follower([b.base], path, user["headers"]).start()  # another token of the user
    followers = [revoked_on_b, revoked_on_a, kept_on_b]
    try:
        await all_ready(followers)
        rig.kill_redis()
        async with aiohttp.ClientSession() as session:
            for _ in range(100):  # B knows Redis is gone: nothing can reach it from there
                async with session.get(b.base + "/health") as response:
                    if (await response.json())["redis"] == "unavailable":
                        break
                await asyncio.sleep(0.05)
            async with session.delete(a.base + "/auth/token", headers=doomed) as response:
                assert response.status == 204, await response.text()
                revoked_at = time.time()
            for _ in range(200):
                if revoked_on_b.done and revoked_on_a.done:
                    break
                await asyncio.sleep(0.05)
            # The user's other token still streams, Redis or not.
            message = {"user_id": user["id"], "message": "still here"}
            async with session.post(
                a.base + "/sse/send-message", json=message, headers=sender["headers"]
            ) as response:
                assert response.status == 202, await response.text()
            for _ in range(100):
                if kept_on_b.received:
                    break
                await asyncio.sleep(0.05)
    finally:
        for f in followers:
            await f.stop()

    ended_b = revoked_on_b.ends[0].at - revoked_at if revoked_on_b.ends else None
    ended_a = revoked_on_a.ends[0].at - revoked_at if revoked_on_a.ends else None
    summary(
        "token revoked while redis down",
        heartbeat_s=HEARTBEAT,
        ended_on_other_process_after_s=ended_b and round(ended_b, 3),
        ended_on_revoking_process_after_s=ended_a and round(ended_a, 3),
        reconnect_answer=revoked_on_b.gave_up,
        other_token_kept_streaming=bool(kept_on_b.received and not kept_on_b.ends),
    )

    assert rig.redis.proc is None  # Redis was down from before the revocation to the end
    for f in (revoked_on_b, revoked_on_a):
        # Ended cleanly by the server, then its reconnect with the revoked token is refused.
        assert [e.how for e in f.ends] == ["clean", "status 401"], f.ends
        assert f.gave_up == 401 and not f.received
    assert ended_b is not None and ended_b <= HEARTBEAT + CHECK_GRACE, ended_b
    got = [orjson.loads(r.data) for r in kept_on_b.received]
    assert [(n["type"], n["data"]["message"]) for n in got] == [("message", "still here")]
    assert len(kept_on_b.opened) == 1 and not kept_on_b.ends
    for service in (a, b):
        assert not service.problems(), service.problems()
