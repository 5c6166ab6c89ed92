"""The live value feed: POST /add-value/, GET /events/, GET /values (API.md, "The value feed")."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from .helpers import metric, open_stream


async def post_value(client: Any, value: str) -> None:
    response = await client.post("/add-value/", json={"value": value})
    assert response.status == 200, await response.text()
    assert await response.json() == {"message": "Value added successfully"}


async def test_livedatastream_client_flow_is_unchanged(client: Any) -> None:
    # What a LiveDataStream client does: open /events/, POST /add-value/, read `data:`.
    stream = await open_stream(client)
    response = await client.post("/add-value/", json={"value": "42.5"})
    assert response.status == 200
    assert response.content_type == "application/json"
    assert await response.json() == {"message": "Value added successfully"}
    event = (await stream.take(1))[0]
    assert event.data == "42.5"
    assert event.event is None  # a plain message event, as before
    assert event.id == "1"


async def test_stream_headers_and_exact_frames(client: Any) -> None:
    response = await client.get("/events/")
    assert response.status == 200
    assert response.headers["Content-Type"] == "text/event-stream"
    assert response.headers["Cache-Control"] == "no-cache"
    assert response.headers["X-Accel-Buffering"] == "no"
    assert await response.content.readuntil(b"\n\n") == b"retry: 3000\n\n"
    await post_value(client, "first line\nsecond line\r\nthird")
    await post_value(client, "plain")
    frame = await asyncio.wait_for(response.content.readuntil(b"\n\n"), 5)
    assert frame == b"id: 1\ndata: first line\ndata: second line\ndata: third\n\n"
    frame = await asyncio.wait_for(response.content.readuntil(b"\n\n"), 5)
    assert frame == b"id: 2\ndata: plain\n\n"


async def test_heartbeat_comments_keep_flowing(make_client: Any) -> None:
    client = await make_client(sse_heartbeat_seconds=0.2)
    stream = await open_stream(client)
    event = await stream.next(timeout=2, with_comments=True)
    assert event.comments == ["ping"]


async def test_values_are_kept_exactly_as_sent(client: Any) -> None:
    value = "tab\there, unicode ✓ 𝄞, quotes \" ' and trailing spaces  \n"
    await post_value(client, value)
    page = await (await client.get("/values")).json()
    assert page["items"][0]["value"] == value


async def test_resume_after_disconnect_misses_nothing_and_repeats_nothing(client: Any) -> None:
    stream = await open_stream(client)
    for i in range(5):
        await post_value(client, f"v{i}")
    seen = await stream.take(5)
    assert [e.id for e in seen] == ["1", "2", "3", "4", "5"]
    stream.response.close()  # the client goes away ...

    await asyncio.gather(*(post_value(client, f"v{i}") for i in range(5, 105)))  # ... a burst

    resumed = await open_stream(client, headers={"Last-Event-ID": seen[-1].id})
    replayed = await resumed.take(100)
    assert [int(e.id) for e in replayed] == list(range(6, 106))
    await post_value(client, "live")
    live = await resumed.take(1)
    assert live[0].id == "106" and live[0].data == "live"


async def test_last_event_id_query_parameter_and_header_precedence(client: Any) -> None:
    for i in range(3):
        await post_value(client, f"v{i}")
    by_query = await open_stream(client, params={"last_event_id": "1"})
    assert [e.id for e in await by_query.take(2)] == ["2", "3"]
    both = await open_stream(client, params={"last_event_id": "0"}, headers={"Last-Event-ID": "2"})
    assert [e.id for e in await both.take(1)] == ["3"]
    from_start = await open_stream(client, headers={"Last-Event-ID": "0"})
    assert [e.data for e in await from_start.take(3)] == ["v0", "v1", "v2"]


async def test_without_last_id_only_live_values_arrive(client: Any) -> None:
    await post_value(client, "old")
    stream = await open_stream(client)
    await post_value(client, "new")
    event = (await stream.take(1))[0]
    assert (event.id, event.data) == ("2", "new")


async def test_invalid_last_event_id_gets_reset_then_live(client: Any) -> None:
    await post_value(client, "a")
    await post_value(client, "b")
    for newest, bad in enumerate(["abc", "-1", "999", "1.5", ""], start=2):
        stream = await open_stream(client, headers={"Last-Event-ID": bad})
        reset = (await stream.take(1))[0]
        assert reset.event == "reset", bad
        assert reset.data == f'{{"last_event_id":{newest}}}'
        assert reset.id == str(newest)
        await post_value(client, f"after {bad}")
        live = (await stream.take(1))[0]
        assert live.data == f"after {bad}"
        stream.response.close()


async def test_too_old_last_event_id_gets_reset(client: Any) -> None:
    from datetime import timedelta

    from server import keys
    from server.feed.repository import ValuesRepository
    from server.retention import prune_older_than

    for i in range(4):
        await post_value(client, f"v{i}")
    repo = ValuesRepository(client.app[keys.db_key])
    deleted = await prune_older_than("feed values", repo.prune, timedelta(seconds=-1))
    assert deleted == 4
    await post_value(client, "kept")  # id 5; ids 1..4 are gone
    too_old = await open_stream(client, headers={"Last-Event-ID": "2"})
    reset = (await too_old.take(1))[0]
    assert reset.event == "reset" and reset.data == '{"last_event_id":5}'
    # One before the oldest kept is still a valid resume point.
    ok = await open_stream(client, headers={"Last-Event-ID": "4"})
    assert [(e.id, e.data) for e in await ok.take(1)] == [("5", "kept")]


async def test_concurrent_posts_arrive_in_id_order_without_gaps(client: Any) -> None:
    stream = await open_stream(client)
    values = [f"concurrent {i}" for i in range(50)]
    await asyncio.gather(*(post_value(client, v) for v in values))
    events = await stream.take(50)
    assert [int(e.id) for e in events] == list(range(1, 51))
    assert sorted(e.data for e in events) == sorted(values)
    page = await (await client.get("/values", params={"limit": "200"})).json()
    assert [item["id"] for item in page["items"]] == list(range(50, 0, -1))


async def test_two_instances_share_the_feed(make_client: Any) -> None:
    writer = await make_client()
    reader = await make_client()
    stream = await open_stream(reader)
    await post_value(writer, "from the other instance")
    await post_value(reader, "from this one")
    events = await stream.take(2)
    assert [(e.id, e.data) for e in events] == [
        ("1", "from the other instance"),
        ("2", "from this one"),
    ]


async def test_client_that_leaves_is_noticed_within_a_heartbeat(make_client: Any) -> None:
    client = await make_client(sse_heartbeat_seconds=0.2)
    stream = await open_stream(client)
    assert await metric(client, "sse_connections", 'stream="feed"') == 1
    stream.response.close()
    for _ in range(50):
        await asyncio.sleep(0.05)
        if await metric(client, "sse_connections", 'stream="feed"') == 0:
            break
    assert await metric(client, "sse_connections", 'stream="feed"') == 0


async def test_stalled_reader_is_cut_and_others_get_everything(make_client: Any) -> None:
    client = await make_client(sse_queue_bytes=64 * 1024)
    healthy = await open_stream(client)

    # A client that reads the headers and then never reads again, with a tiny receive window.
    stalled = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(stalled, (client.host, client.port))
    await loop.sock_sendall(stalled, b"GET /events/ HTTP/1.1\r\nHost: test\r\n\r\n")
    head = await asyncio.wait_for(loop.sock_recv(stalled, 1024), 5)
    assert head.startswith(b"HTTP/1.1 200")
    try:
        big = "x" * 10_000
        count = 600  # ~6 MB, far past what the socket buffers and the 64 KiB queue hold
        for start in range(0, count, 50):
            await asyncio.gather(*(post_value(client, big) for _ in range(start, start + 50)))
        events = await healthy.take(count, timeout=60)
        assert [int(e.id) for e in events] == list(range(1, count + 1))
        assert all(e.data == big for e in events)
        assert await metric(client, "sse_slow_consumer_disconnects_total") == 1
        assert await metric(client, "sse_messages_dropped_total") == 1  # the one that overflowed
        assert await metric(client, "sse_connections", 'stream="feed"') == 1
    finally:
        stalled.close()


async def test_a_stream_over_the_cap_is_told_to_retry_and_ended(make_client: Any) -> None:
    # A browser's EventSource gives up for good on any non-200 answer: the refusal is a 200
    # stream with a retry delay (with jitter) and a comment saying why, then the end.
    client = await make_client(sse_max_connections=2, sse_retry_ms=1000)
    first = await open_stream(client)
    second = await open_stream(client)
    response = await client.get("/events/")
    assert response.status == 200
    assert response.content_type == "text/event-stream"
    lines = (await response.text()).split("\n")
    assert lines[0].startswith("retry: ") and 1000 <= int(lines[0][7:]) <= 2000
    assert lines[1].startswith(": ") and "maximum of 2 streams" in lines[1]
    assert lines[2:] == ["", ""]
    assert await metric(client, "sse_connections_rejected_total", 'reason="cap",stream="feed"') == 1
    # A freed place is usable again.
    first.response.close()
    for _ in range(100):
        await asyncio.sleep(0.05)
        if await metric(client, "sse_connections", 'stream="feed"') < 2:
            break
    third = await client.get("/events/", headers={"Last-Event-ID": "0"})
    assert third.status == 200
    third.close()
    second.response.close()


async def test_shutdown_ends_open_streams_cleanly(make_client: Any) -> None:
    client = await make_client()
    streams = [await open_stream(client) for _ in range(3)]
    await client.server.close()  # on_shutdown ends every stream
    for stream in streams:
        assert await stream.ended()


async def test_values_are_listed_newest_first_with_keyset_pages(client: Any) -> None:
    for i in range(5):
        await post_value(client, f"v{i}")
    first = await (await client.get("/values", params={"limit": "2"})).json()
    assert [i["value"] for i in first["items"]] == ["v4", "v3"]
    assert set(first["items"][0]) == {"id", "value", "created_at"}
    assert first["items"][0]["created_at"].endswith("Z")
    params = {"limit": "2", "cursor": first["next"]}
    second = await (await client.get("/values", params=params)).json()
    assert [i["value"] for i in second["items"]] == ["v2", "v1"]
    params = {"limit": "2", "cursor": second["next"]}
    last = await (await client.get("/values", params=params)).json()
    assert [i["value"] for i in last["items"]] == ["v0"]
    assert last["next"] is None


async def test_empty_feed_lists_nothing(client: Any) -> None:
    response = await client.get("/values")
    assert response.status == 200
    assert await response.json() == {"items": [], "next": None}


async def test_feed_routes_answer_with_and_without_trailing_slash(client: Any) -> None:
    assert (await client.post("/add-value", json={"value": "x"})).status == 200
    assert (await client.get("/values/", allow_redirects=False)).status == 200
    assert (await client.get("/health/", allow_redirects=False)).status == 200
    response = await client.get("/events", allow_redirects=False)
    assert response.status == 200 and response.content_type == "text/event-stream"
    response.close()


async def test_index_page_shows_the_feed(client: Any) -> None:
    response = await client.get("/")
    assert response.status == 200
    assert response.content_type == "text/html"
    html = await response.text()
    assert "EventSource" in html and "/add-value/" in html and 'href="/docs"' in html
    assert "http://" not in html and "https://" not in html  # nothing from a CDN


async def test_stream_stays_open_while_idle(make_client: Any) -> None:
    client = await make_client(sse_heartbeat_seconds=0.1)
    stream = await open_stream(client)
    for _ in range(3):
        assert (await stream.next(timeout=2, with_comments=True)).comments == ["ping"]
    await post_value(client, "still here")
    assert (await stream.take(1))[0].data == "still here"


async def test_a_setting_can_require_a_token_to_add_values(make_client: Any) -> None:
    from .helpers import register

    client = await make_client(feed_require_token=True)
    response = await client.post("/add-value/", json={"value": "anonymous"})
    assert response.status == 401 and response.headers["WWW-Authenticate"] == "Bearer"
    user = await register(client)
    response = await client.post("/add-value/", json={"value": "signed"}, headers=user["headers"])
    assert response.status == 200
    items = (await (await client.get("/values")).json())["items"]
    assert [i["value"] for i in items] == ["signed"]


async def test_http_1_0_clients_get_unchunked_frames(client: Any) -> None:
    # The fan-out writes pre-framed bytes straight to the transport: chunk-framed for
    # HTTP/1.1, as they are for HTTP/1.0, which has no chunked encoding.
    reader, writer = await asyncio.open_connection(client.host, client.port)
    try:
        writer.write(b"GET /events/ HTTP/1.0\r\nHost: test\r\n\r\n")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.0 200") and b"chunked" not in head.lower()
        assert await asyncio.wait_for(reader.readuntil(b"\n\n"), 5) == b"retry: 3000\n\n"
        await post_value(client, "old protocol")
        frame = await asyncio.wait_for(reader.readuntil(b"\n\n"), 5)
        assert frame == b"id: 1\ndata: old protocol\n\n"
    finally:
        writer.close()
