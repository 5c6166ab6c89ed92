"""Operations: health, metrics, access log, CORS, error handling of the unexpected, indexes."""

from __future__ import annotations

import asyncio
import logging
import re
from logging.handlers import TimedRotatingFileHandler
from pathlib import Path
from typing import Any

import asyncpg
from aiohttp import web
from aiohttp.test_utils import TestServer

from server import keys
from server.errors import error_middleware
from server.logs import redact, setup_logging
from server.metrics import Metrics
from server.middleware import AccessLogger, observe_middleware, redact_query
from server.settings import Settings
from server.sql import Queries

from .helpers import assert_uses_index, metric


async def test_health_reports_both_dependencies(client: Any) -> None:
    response = await client.get("/health")
    assert response.status == 200
    assert await response.json() == {"status": "ok", "database": "ok", "redis": "ok"}


async def test_metrics_count_requests_by_route_pattern(client: Any) -> None:
    await client.post("/add-value/", json={"value": "x"})
    await client.post("/add-value", json={"value": ""})
    await client.get("/values?limit=1")
    await client.get("/no/such/path")
    text = await (await client.get("/metrics")).text()
    assert 'http_requests_total{method="POST",route="/add-value",status="200"} 1.0' in text
    assert 'http_requests_total{method="POST",route="/add-value",status="422"} 1.0' in text
    assert 'http_requests_total{method="GET",route="/values",status="200"} 1.0' in text
    assert 'route="<unmatched>",status="404"' in text
    assert 'http_request_duration_seconds_bucket{le="0.005",method="GET",route="/values"}' in text
    for name in (
        "sse_connections",
        "sse_messages_delivered_total",
        "sse_messages_dropped_total",
        "sse_slow_consumer_disconnects_total",
    ):
        assert f"# TYPE {name}" in text


async def test_delivered_messages_are_counted(client: Any) -> None:
    from .helpers import open_stream

    stream = await open_stream(client)
    await client.post("/add-value/", json={"value": "counted"})
    await stream.take(1)
    assert await metric(client, "sse_messages_delivered_total") == 1


async def test_unexpected_error_is_a_logged_500_without_details(
    aiohttp_client: Any, caplog: Any
) -> None:
    async def broken(request: web.Request) -> web.Response:
        raise RuntimeError("secret internals: SELECT password_hash FROM users")

    app = web.Application(middlewares=[observe_middleware, error_middleware])
    app[keys.metrics_key] = Metrics()
    app.router.add_get("/broken", broken)
    client = await aiohttp_client(app)
    with caplog.at_level(logging.ERROR):
        response = await client.get("/broken", headers={"X-Request-ID": "req-42"})
    assert response.status == 500
    assert response.content_type == "application/problem+json"
    body = await response.text()
    assert "req-42" in body
    assert "secret" not in body and "SELECT" not in body and "Traceback" not in body
    assert any("req-42" in r.getMessage() and r.exc_info for r in caplog.records)


def test_tokens_in_query_strings_are_redacted() -> None:
    assert redact_query("access_token=abc&last_event_id=5") == "access_token=***&last_event_id=5"
    assert redact_query("last_event_id=5&access_token=abc") == "last_event_id=5&access_token=***"
    assert redact_query("a=1;access_token=abc") == "a=1;access_token=***"
    assert redact_query("access%5Ftoken=abc") == "access%5Ftoken=***"
    assert redact_query("a=1%3Baccess_token%3Dabc") == "a=1%3Baccess_token%3D***"
    assert "abc" not in redact_query("token=abc")
    assert redact_query("last_event_id=5&mytoken=kept") == "last_event_id=5&mytoken=kept"
    assert redact_query("") == ""
    assert redact("'Authorization': 'Bearer abc.def'") == "'Authorization': 'Bearer ***'"


async def test_access_log_has_request_id_duration_and_no_token(
    settings: Settings, aiohttp_client: Any, caplog: Any
) -> None:
    from server.app import create_app

    server = TestServer(create_app(settings))
    # As run.py serves: our access logger (TestServer's own kwargs do not reach the runner).
    await server.start_server(
        access_log_class=AccessLogger, access_log=logging.getLogger("server.access")
    )
    client = await aiohttp_client(server)
    with caplog.at_level(logging.INFO, logger="server.access"):
        response = await client.get(
            "/values?access_token=very-secret", headers={"X-Request-ID": "abc"}
        )
        assert response.status == 200
        for _ in range(50):  # the line is written once the response is fully sent
            if any(r.name == "server.access" for r in caplog.records):
                break
            await asyncio.sleep(0.02)
    lines = [r.getMessage() for r in caplog.records if r.name == "server.access"]
    assert len(lines) == 1
    assert '"GET /values?access_token=***" 200' in lines[0]
    assert "request_id=abc" in lines[0] and "ms" in lines[0]
    assert "very-secret" not in lines[0]


async def test_cors_allows_configured_origins_only(make_client: Any) -> None:
    client = await make_client(cors_origins=("https://app.example",))
    preflight = await client.options(
        "/add-value/",
        headers={
            "Origin": "https://app.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "Content-Type",
        },
    )
    assert preflight.status == 200
    assert preflight.headers["Access-Control-Allow-Origin"] == "https://app.example"
    response = await client.get("/values", headers={"Origin": "https://app.example"})
    assert response.headers["Access-Control-Allow-Origin"] == "https://app.example"
    other = await client.get("/values", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in other.headers


def test_log_file_rotates_at_midnight_keeping_ten(tmp_path: Path) -> None:
    root = logging.getLogger()
    before = list(root.handlers)
    try:
        setup_logging(Settings(log_file=str(tmp_path / "app.log")))
        [handler] = [h for h in root.handlers if isinstance(h, TimedRotatingFileHandler)]
        assert handler.when == "MIDNIGHT" and handler.backupCount == 10
        logging.getLogger("server").warning("one line")
        handler.flush()
        assert "one line" in (tmp_path / "app.log").read_text()
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
            handler.close()
        for handler in before:
            root.addHandler(handler)


async def test_hot_feed_queries_use_the_primary_key(database_url: str) -> None:
    queries = Queries()
    conn = await asyncpg.connect(database_url)
    try:
        values = [f"value {i}" for i in range(10_000)]
        insert = queries["feed.insert_values"]
        for _ in range(10):  # 100,000 rows
            await conn.fetch(insert.sql, *insert.args({"values": values}))
        await conn.execute("ANALYZE feed_values")
        for name, params in [
            (
                "feed.list_values_after",
                {"after_id": 50_000, "max_rows": 500, "max_bytes": 1 << 18},
            ),
            ("feed.list_values_before", {"before_id": 50_000, "max_rows": 51}),
            ("feed.get_feed_bounds", {}),
            ("feed.prune_values", {"cutoff": None, "batch_size": 10_000}),
        ]:
            await assert_uses_index(conn, name, params, "feed_values_pkey", "feed_values")
    finally:
        await conn.close()


async def test_streams_are_counted_but_not_timed(client: Any) -> None:
    from .helpers import open_stream

    stream = await open_stream(client)
    stream.response.close()
    # Counted once it ends (200 when it returns, 499 when the test server cancels its handler
    # as the client leaves), and never in the latency histogram.
    counted = re.compile(
        r'http_requests_total\{method="GET",route="/events",status="(200|499)"\} 1'
    )
    for _ in range(100):
        text = await (await client.get("/metrics")).text()
        if counted.search(text):
            break
        await asyncio.sleep(0.05)
    assert counted.search(text), text
    timed = re.search(
        r'http_request_duration_seconds_count\{method="GET",route="/events"\} ([0-9.]+)', text
    )
    assert timed is None or float(timed.group(1)) == 0


async def test_retention_jobs_prune_feed_values_and_notifications(make_client: Any) -> None:
    from .helpers import register

    # Keep everything for about a tenth of a millisecond, prune ten times a second.
    client = await make_client(
        feed_retention_days=1e-9, notification_retention_days=1e-9, prune_interval_seconds=0.1
    )
    ada = await register(client)
    bob = await register(client)
    assert (await client.post("/add-value/", json={"value": "short-lived"})).status == 200
    sent = await client.post(
        "/sse/send-message", json={"user_id": bob["id"], "message": "short-lived"},
        headers=ada["headers"],
    )  # fmt: skip
    assert sent.status == 202
    path = f"/notifications/{bob['id']}"
    for _ in range(100):
        values = await (await client.get("/values")).json()
        notes = await (await client.get(path, headers=bob["headers"])).json()
        if not values["items"] and not notes["items"]:
            break
        await asyncio.sleep(0.05)
    assert values["items"] == [] and notes["items"] == [] and notes["unread_count"] == 0


async def test_no_token_reaches_the_log_file_whatever_the_request(
    settings: Settings, tmp_path: Path
) -> None:
    """A real server logging to LOG_FILE as run.py sets it up, sent requests that make aiohttp
    itself log the raw request line (malformed, over-long) and ones our access log writes;
    then the file is scanned for the tokens."""
    from server.app import create_app

    log_file = tmp_path / "app.log"
    root = logging.getLogger()
    before = list(root.handlers), root.level
    setup_logging(settings.with_(log_file=str(log_file), log_level="DEBUG"))
    server = TestServer(create_app(settings))
    await server.start_server(
        access_log_class=AccessLogger, access_log=logging.getLogger("server.access")
    )
    secrets = [f"SECRET{i}xyz" for i in range(9)]
    requests = [
        # aiohttp.server logs these with the request line quoted in its traceback
        f"GET /sse/x?access_token={secrets[0]} HTTP/1.1 extra\r\nHost: x\r\n\r\n",
        f"GET /sse/x?access_token={secrets[1]}\x01 HTTP/1.1\r\nHost: x\r\n\r\n",
        f"GET /sse/x?access_token={secrets[2]}&a={'y' * 9000} HTTP/1.1\r\nHost: x\r\n\r\n",
        f"GET /sse/x?access_token={secrets[3]} HTTP/9.9\r\nHost: x\r\n\r\n",
        f"GET /sse/x?a=1;access_token={secrets[4]} HTTP/1.1\r\nHost: x\r\n"
        "Content-Length: abc\r\n\r\n",
        f"GET /values HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {secrets[5]}\r\n"
        f"X-Long: {'z' * 9000}\r\n\r\n",
        # served, and written by the access log
        f"GET /values?a=1;access_token={secrets[6]} HTTP/1.1\r\nHost: x\r\n"
        "Connection: close\r\n\r\n",
        f"GET /values?access%5Ftoken={secrets[7]} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        f"GET /sse/{'0' * 8}?access_token={secrets[8]} HTTP/1.1\r\nHost: x\r\n"
        "Connection: close\r\n\r\n",
    ]
    try:
        for raw in requests:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(raw.encode("latin-1"))
            await writer.drain()
            status_line = await reader.readline()
            assert status_line.split()[1] in (b"200", b"400", b"401", b"404", b"431"), raw[:80]
            writer.close()
        for _ in range(100):  # access lines are written once each response is sent
            if log_file.read_text().count("server.access") >= 3:
                break
            await asyncio.sleep(0.02)
    finally:
        await server.close()
        for handler in list(root.handlers):
            root.removeHandler(handler)
            handler.close()
        for handler in before[0]:
            root.addHandler(handler)
        root.setLevel(before[1])
    text = log_file.read_text()
    leaked = [s for s in secrets if s in text]
    assert not leaked, f"tokens in the log: {leaked}\n{text[-3000:]}"
    assert "aiohttp.server" in text  # the requests did make aiohttp log them
    assert text.count("server.access") >= 3
