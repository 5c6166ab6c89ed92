"""Abuse limits (issue 12): failed logins per email and per client address, registrations per
address, counted in Redis for every instance and in-process while Redis is away; and at most
SSE_MAX_STREAMS_PER_USER streams of one user, the oldest closed."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any
from urllib.parse import urlsplit

import pytest

from server import keys
from server.limits import LocalCounts

from .helpers import (
    TcpProxy,
    assert_problem,
    register,
    send,
    user_stream,
)

PASSWORD = "the right password"
WRONG = "not the password"


async def login(client: Any, email: str, password: str = WRONG, **headers: str) -> Any:
    return await client.post(
        "/auth/token", json={"email": email, "password": password}, headers=headers
    )


async def statuses(client: Any, email: str, count: int, **headers: str) -> list[int]:
    """The statuses of ``count`` wrong logins for ``email``, one after the other."""
    found = []
    for _ in range(count):
        response = await login(client, email, **headers)
        await response.read()
        found.append(response.status)
    return found


async def assert_too_many(response: Any, window: float) -> int:
    """A 429 problem whose Retry-After is whole seconds within the window; returns it."""
    problem = await assert_problem(response, 429)
    retry_after = int(response.headers["Retry-After"])
    assert 1 <= retry_after <= window
    assert str(retry_after) in problem["detail"]
    return retry_after


async def test_logins_for_one_email_are_429_after_the_limit_with_retry_after(
    make_client: Any,
) -> None:
    client = await make_client(login_limit_per_email=3, login_limit_window_seconds=120)
    ada = await register(client, email="ada@example.com", password=PASSWORD)
    assert await statuses(client, "ada@example.com", 3) == [401, 401, 401]
    await assert_too_many(await login(client, "ada@example.com"), 120)
    # Any case of the email is the same email; and past the limit even the right password
    # is refused (verifying it would tell whoever is guessing when a guess is right).
    await assert_too_many(await login(client, "ADA@Example.com", PASSWORD), 120)
    # Another email is not limited, nor is anything done with a token.
    bob = await register(client, email="bob@example.com", password=PASSWORD)
    assert (await login(client, "bob@example.com", PASSWORD)).status == 201
    assert (await login(client, "bob@example.com")).status == 401
    assert (await client.get(f"/users/{ada['id']}", headers=bob["headers"])).status == 200


async def test_an_unknown_email_is_limited_like_a_known_one(make_client: Any) -> None:
    client = await make_client(login_limit_per_email=2)
    assert await statuses(client, "nobody@example.com", 3) == [401, 401, 429]


async def test_a_successful_login_does_not_count_and_resets_nothing(make_client: Any) -> None:
    client = await make_client(login_limit_per_email=2)
    await register(client, email="ada@example.com", password=PASSWORD)
    for _ in range(4):  # successes alone never reach the limit
        assert (await login(client, "ada@example.com", PASSWORD)).status == 201
    assert (await login(client, "ada@example.com")).status == 401  # 1 failure
    assert (await login(client, "ada@example.com", PASSWORD)).status == 201
    assert (await login(client, "ada@example.com")).status == 401  # 2: not reset by the 201
    assert (await login(client, "ada@example.com")).status == 429


async def test_failed_logins_from_one_address_are_limited_whatever_the_email(
    make_client: Any,
) -> None:
    client = await make_client(login_limit_per_email=10, login_limit_per_address=4)
    for i in range(4):
        assert (await login(client, f"user{i}@example.com")).status == 401
    await assert_too_many(await login(client, "user9@example.com"), 300)
    # Without TRUSTED_PROXIES, X-Forwarded-For is the client's own word: ignored.
    spoofed = await login(client, "user8@example.com", **{"X-Forwarded-For": "203.0.113.7"})
    assert spoofed.status == 429


async def test_behind_trusted_proxies_the_forwarded_client_is_counted(make_client: Any) -> None:
    client = await make_client(login_limit_per_address=2, trusted_proxies=("127.0.0.0/8",))

    async def from_(forwarded: str) -> int:
        response = await login(
            client, f"{uuid.uuid4().hex}@example.com", **{"X-Forwarded-For": forwarded}
        )
        return int(response.status)

    # The entry our proxy appended is the client; what the client wrote left of it is not.
    assert await from_("1.1.1.1, 203.0.113.7") == 401
    assert await from_("2.2.2.2, 203.0.113.7") == 401
    assert await from_("3.3.3.3, 203.0.113.7") == 429
    assert await from_("203.0.113.8") == 401  # another client behind the same proxy
    # An IPv6 client is its /64.
    assert await from_("2001:db8:0:1::1") == 401
    assert await from_("2001:db8:0:1::ffff") == 401
    assert await from_("2001:db8:0:1:abcd::2") == 429
    assert await from_("2001:db8:0:2::1") == 401


async def test_counts_are_shared_by_every_instance(make_client: Any) -> None:
    one = await make_client(login_limit_per_email=4)
    two = await make_client(login_limit_per_email=4)  # same Redis, same prefix
    assert await statuses(one, "ada@example.com", 2) == [401, 401]
    assert await statuses(two, "ada@example.com", 2) == [401, 401]
    assert (await login(one, "ada@example.com")).status == 429
    assert (await login(two, "ada@example.com")).status == 429


@pytest.mark.parametrize("limit_by", ["email", "address"])
async def test_racing_wrong_logins_admit_at_most_the_limit(make_client: Any, limit_by: str) -> None:
    limit = 5
    client = await make_client(
        login_limit_per_email=limit if limit_by == "email" else 0,
        login_limit_per_address=limit if limit_by == "address" else 0,
    )
    passwords = client.app[keys.passwords_key]
    before = passwords.verifications

    async def attempt(i: int) -> int:
        email = "ada@example.com" if limit_by == "email" else f"user{i}@example.com"
        response = await login(client, email)
        await response.read()
        return int(response.status)

    found = await asyncio.gather(*(attempt(i) for i in range(limit + 5)))
    assert sorted(found) == [401] * limit + [429] * 5
    assert passwords.verifications - before == limit  # refused attempts verify nothing


def redis_address(url: str) -> tuple[str, Any]:
    parts = urlsplit(url)
    return "tcp", (parts.hostname or "127.0.0.1", parts.port or 6379)


async def test_logins_are_still_limited_while_redis_is_unreachable(
    make_client: Any, redis_url: str
) -> None:
    proxy = await TcpProxy(redis_address(redis_url)).start()
    try:
        client = await make_client(
            redis_url=f"redis://127.0.0.1:{proxy.port}/0", login_limit_per_email=3
        )
        await register(client, email="ada@example.com", password=PASSWORD)
        assert await statuses(client, "ada@example.com", 1) == [401]
        await proxy.cut()
        # Counted in this process now (the count in Redis cannot be read): 3 more, then 429.
        assert await statuses(client, "ada@example.com", 3) == [401, 401, 401]
        await assert_too_many(await login(client, "ada@example.com"), 300)
        await assert_too_many(await login(client, "ada@example.com", PASSWORD), 300)
        assert (await login(client, "bob@example.com")).status == 401  # per email, as ever
        health = await client.get("/health")
        assert health.status == 503 and (await health.json())["redis"] == "unavailable"
    finally:
        await proxy.close()


async def test_registrations_per_address_are_limited_when_set(make_client: Any) -> None:
    client = await make_client(signup_limit_per_address=3, signup_limit_window_seconds=600)
    for _ in range(3):
        await register(client)
    body = {"name": "Eve", "email": "eve@example.com", "password": "a long password"}
    await assert_too_many(await client.post("/users", json=body), 600)
    # A refused registration created nothing: the email is still free elsewhere.
    other = await make_client(signup_limit_per_address=0)
    assert (await other.post("/users", json=body)).status == 201


def test_in_process_counts_hold_a_bounded_number_of_keys() -> None:
    counts = LocalCounts(max_keys=3)
    for i in range(10):
        assert counts.take(f"key{i}", 60) == (1, pytest.approx(60, abs=1))
    assert len(counts) == 3
    assert counts.take("key9", 60)[0] == 2  # the newest keys are the ones kept
    assert counts.take("key0", 60)[0] == 1  # the oldest went first
    counts.give_back("key9")
    assert counts.take("key9", 60)[0] == 2
    assert counts.take("short", 0.001)[0] == 1


async def test_in_process_counts_expire_with_their_window() -> None:
    counts = LocalCounts()
    assert counts.take("k", 0.05)[0] == 1
    assert counts.take("k", 0.05)[0] == 2
    await asyncio.sleep(0.1)
    assert counts.take("k", 0.05)[0] == 1


async def test_past_the_streams_per_user_the_oldest_is_closed(make_client: Any) -> None:
    client = await make_client(sse_max_streams_per_user=3)
    ada, bob = await register(client, "Ada"), await register(client, "Bob")
    ada_streams = [await user_stream(client, ada) for _ in range(3)]
    bob_streams = [await user_stream(client, bob) for _ in range(3)]
    newest = await user_stream(client, ada)  # the fourth of Ada's: her first one goes
    first = ada_streams[0]
    farewell = await first.next()
    assert farewell.retry == 300_000  # an EventSource comes back after minutes, not at once
    assert any("oldest is closed" in c for c in first.comments)
    assert await first.ended()
    # Ada's three others, and Bob's, all still receive.
    assert (await send(client, bob, [ada["id"]], "to ada")).status == 202
    for stream in [*ada_streams[1:], newest]:
        [event] = await stream.take(1)
        assert (event.event, event.id) == ("message", "1")
    assert (await send(client, ada, [bob["id"]], "to bob")).status == 202
    for stream in bob_streams:
        [event] = await stream.take(1)
        assert (event.event, event.id) == ("message", "1")
