"""No secret in any log (issue 12): `python run.py` with LOG_FILE set serves a representative
session (sign-ups, logins right and wrong, tokens in headers and query strings, malformed
requests), then the log file and the process's own output are scanned for every password and
token the session used."""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import secrets
import signal
import sys
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from aiohttp.http_exceptions import (
    BadHttpMessage,
    BadHttpMethod,
    InvalidURLError,
    LineTooLong,
    TransferEncodingError,
)

from server.embedded import free_port
from server.logs import RedactSecrets, redact
from server.middleware import redact_query

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


class Service:
    """`python run.py` on a free port, its stdout and stderr in a file (a pipe nobody reads
    would fill up at LOG_LEVEL=DEBUG and stall the service)."""

    def __init__(self, env: dict[str, str], output: Path) -> None:
        self.env = env
        self.output = output
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc: Any = None

    async def start(self) -> None:
        with self.output.open("wb") as out:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, str(ROOT / "run.py"), "--port", str(self.port),
                env={**os.environ, **self.env}, stdout=out, stderr=out,
            )  # fmt: skip
        async with aiohttp.ClientSession() as session:
            for _ in range(300):
                if self.proc.returncode is not None:
                    break
                try:
                    async with session.get(self.base + "/health") as response:
                        if response.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
        await self.stop()
        raise AssertionError(f"service did not start:\n{self.output.read_text()}")

    async def stop(self) -> None:
        """SIGTERM, which ends with logging.shutdown(): every handler flushed and closed."""
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 30)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()


async def raw_request(port: int, data: bytes) -> bytes:
    """Bytes sent as they are (no client would send them), and the answer's first bytes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        writer.write_eof()  # a body shorter than its Content-Length ends here
        await writer.drain()
        return await asyncio.wait_for(reader.read(200), 10)
    finally:
        writer.close()


class Session:
    """Requests that remember every secret they carry, so the logs can be searched for them."""

    def __init__(self, http: aiohttp.ClientSession, base: str) -> None:
        self.http = http
        self.base = base
        self.secrets: set[str] = set()

    def secret(self, value: str) -> str:
        self.secrets.add(value)
        return value

    def basic(self, email: str, password: str) -> str:
        encoded = base64.b64encode(f"{email}:{password}".encode()).decode()
        return self.secret(encoded)

    async def call(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        async with self.http.request(method, self.base + path, **kwargs) as response:
            body = await response.read()
            return response.status, body

    async def peek(self, path: str, **kwargs: Any) -> int:
        """A request whose answer may be an endless stream: its status and first line only."""
        async with self.http.get(self.base + path, **kwargs) as response:
            await asyncio.wait_for(response.content.readline(), 5)
            return response.status

    async def sign_up(self, name: str, password: str | None) -> dict[str, Any]:
        body: dict[str, Any] = {"name": name, "email": f"{uuid.uuid4().hex[:10]}@example.com"}
        if password is not None:
            body["password"] = self.secret(password)
        async with self.http.post(self.base + "/users", json=body) as response:
            assert response.status == 201, await response.text()
            user = dict(await response.json())
        user["password"] = password
        self.secret(user["token"])
        return user

    async def login(self, email: str, password: str, status: int) -> str | None:
        body = {"email": email, "password": self.secret(password)}
        async with self.http.post(self.base + "/auth/token", json=body) as response:
            assert response.status == status, await response.text()
            if status != 201:
                return None
            return self.secret((await response.json())["token"])


def password() -> str:
    return "pw-" + secrets.token_urlsafe(12)


async def run_session(s: Session, port: int) -> None:
    ada = await s.sign_up("Ada", password())
    bob = await s.sign_up("Bob", password())
    cy = await s.sign_up("Cy", password())
    await s.sign_up("Tokenonly", None)

    # Logins: right, wrong, unknown email; JSON is the only form the API reads, so the others
    # (query string, Basic auth, a form body) are refused, but they still reach the logs.
    ada_login = await s.login(ada["email"], ada["password"], 201)
    assert ada_login is not None
    await s.login(ada["email"], password(), 401)
    await s.login("nobody@example.com", password(), 401)
    for email, pw in ((bob["email"], bob["password"]), (cy["email"], s.secret(password()))):
        query = f"email={quote(email)}&password={quote(pw)}"
        await s.call("POST", f"/auth/token?{query}")
        await s.call("GET", f"/auth/token?{query}")
        await s.call("POST", f"/auth/token?{query}", json={"email": email, "password": pw})
        await s.call("POST", "/users?name=X&" + query)
        basic = s.basic(email, pw)
        await s.call("POST", "/auth/token", headers={"Authorization": f"Basic {basic}"})
        await s.call("GET", f"/users/{bob['id']}", headers={"Authorization": f"Basic {basic}"})
        await s.call("POST", "/auth/token", data={"email": email, "password": pw})
        # Bad JSON with the password inside: no log may quote the body.
        await s.call(
            "POST",
            "/auth/token",
            data=f'{{"email": "{email}", "password": "{pw}"',
            headers={"Content-Type": "application/json"},
        )
        await s.call("POST", "/auth/token", json={"email": email, "password": [pw]})
        await s.call("POST", "/users", json={"name": "", "email": "no", "password": pw})
    await s.call(
        "POST",
        "/users",
        json={"name": "Dee", "email": bob["email"], "password": s.secret(password())},
    )

    # Tokens in the Authorization header: valid, unknown, malformed, another scheme.
    mine = f"/users/{ada['id']}"
    statuses: list[int] = []
    for header in (
        f"Bearer {ada['token']}",
        f"Bearer {ada_login}",
        f"bearer   {bob['token']}",
        f"Token {cy['token']} {s.secret(secrets.token_urlsafe(8))}",
        f"Token {bob['token']}",
        f"{ada['token']}",
        f"Bearer {s.secret('x' + secrets.token_urlsafe(12))}",
        f"Bearer {s.secret(secrets.token_urlsafe(300))}",
        f"Basic {s.basic(ada['email'], ada['password'])}",
    ):
        status, _ = await s.call("GET", mine, headers={"Authorization": header})
        statuses.append(status)
        await s.peek(f"/sse/{ada['id']}", headers={"Authorization": header})

    assert statuses == [200, 200, 200] + [401] * 6  # the headers did reach the service

    # Tokens in query strings: where the API reads them (the SSE routes) and where it does not.
    for name in ("access_token", "token", "access%5Ftoken", "ACCESS_TOKEN", "password"):
        for token in (ada["token"], bob["token"]):
            await s.call("GET", f"{mine}?{name}={token}")
            await s.call("GET", f"/no/such/route?x=1&{name}={token}#frag")
            await s.call("GET", f"/values?limit=1;{name}={token}")
            await s.peek(f"/sse/{ada['id']}?{name}={token}")
    async with s.http.get(f"{s.base}/sse/{ada['id']}?access_token={ada['token']}") as stream:
        assert stream.status == 200
        assert b"retry:" in await asyncio.wait_for(stream.content.readline(), 5)
    await s.peek(f"/sse/{ada['id']}?access_token={bob['token']}&last_event_id=0")
    await s.peek(f"/sse/{bob['id']}?token={bob['token']}")

    # A revoked token, then used in a header and in a query string.
    revoked = await s.login(cy["email"], cy["password"], 201)
    status, _ = await s.call(
        "DELETE", "/auth/token", headers={"Authorization": f"Bearer {revoked}"}
    )
    assert status == 204
    await s.call("GET", f"/users/{cy['id']}", headers={"Authorization": f"Bearer {revoked}"})
    await s.peek(f"/sse/{cy['id']}?access_token={revoked}")

    # A new password (and the old one tried after it).
    new_password = s.secret(password())
    status, _ = await s.call(
        "PUT",
        f"/users/{bob['id']}",
        json={"password": new_password},
        headers={"Authorization": f"Bearer {bob['token']}"},
    )
    assert status == 200
    await s.login(bob["email"], bob["password"], 401)

    # Requests aiohttp's parser refuses before any handler runs: a header over the size limit,
    # a request line that is not HTTP, control bytes, a bad chunked body; each carries secrets.
    token = ada["token"]
    basic = s.basic(ada["email"], ada["password"])
    raw = [
        f"GET {mine}?access_token={token} HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: Bearer {token}{'A' * 9000}\r\n\r\n",
        f"GET {mine} HTTP/1.1\r\nHost: x\r\nX-Pad: {'p' * 9000}\r\n"
        f"Authorization: Bearer {token}\r\n\r\n",
        f"GET /sse/{ada['id']}?access_token={token} HTTP/9.9 junk\r\nHost: x\r\n\r\n",
        f"GET /sse/{ada['id']}?access_token={token}\x01 HTTP/1.1\r\nHost: x\r\n\r\n",
        f"GET {mine} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\x01\r\n\r\n",
        f"GET {mine} HTTP/1.1\r\nHost: x\r\nAuthorization Bearer {token}\r\n\r\n",
        f"GET {mine} HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {basic}\r\n"
        "Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
        f"POST /auth/token?password={ada['password']} HTTP/1.1\r\nHost: x\r\n"
        "Transfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\n"
        f'zz\r\n{{"password": "{ada["password"]}"}}\r\n0\r\n\r\n',
        f"{token} {mine} HTTP/1.1\r\nHost: x\r\n\r\n",
        f"GET {mine} HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {basic}\x01\r\n\r\n",
        f"GET {mine} HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {basic}{'B' * 9000}\r\n\r\n",
        f"GET {mine} HTTP/1.1\r\nHost: x\r\nAuthorization: Token {token} x\x01\r\n\r\n",
        f"GET {mine} HTTP/1.1\r\nHost: x\r\nAuthorization: {token}\x7f\r\n\r\n",
        f"GET /users/{token} HTTP/1.1\r\nHost: x\r\nX-Pad: {'p' * 9000}\r\n\r\n",
        f"POST /auth/token HTTP/1.1\r\nHost: x\r\nContent-Length: 40\r\n\r\n{ada['password']}",
    ]
    for data in raw:
        await raw_request(port, data.encode("latin-1"))


@pytest.mark.parametrize("parser", ["C", "Python"])
async def test_no_password_or_token_reaches_any_log(
    parser: str, database_url: str, redis_url: str, tmp_path: Path
) -> None:
    """Under either of aiohttp's HTTP parsers: they refuse different requests, in words of
    their own (the Python one takes any token as a method, for one)."""
    log_file = tmp_path / "service.log"
    service = Service(
        {
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "REDIS_PREFIX": f"test-{uuid.uuid4().hex[:12]}:",
            "MIGRATE_ON_START": "false",
            "LOG_FILE": str(log_file),
            "LOG_LEVEL": "DEBUG",  # everything INFO logs and more: aiohttp's parser errors
            "SSE_HEARTBEAT_SECONDS": "0.5",
            "AIOHTTP_NO_EXTENSIONS": "1" if parser == "Python" else "",
        },
        tmp_path / "output.txt",
    )
    await service.start()
    try:
        async with aiohttp.ClientSession() as http:
            session = Session(http, service.base)
            await run_session(session, service.port)
            status, metrics = await session.call("GET", "/metrics")  # public: scanned too
            assert status == 200 and b"http_requests_total" in metrics
    finally:
        await service.stop()

    logged = log_file.read_text(encoding="utf-8", errors="replace")
    output = service.output.read_text(encoding="utf-8", errors="replace")
    # The scan finds nothing only if there is something to scan: one line per request.
    assert '"POST /users" 201' in logged
    assert '"POST /auth/token" 201' in logged and '"POST /auth/token" 401' in logged
    assert '"GET /sse/' in logged and '"DELETE /auth/token" 204' in logged
    assert "access_token=***" in logged and "password=***" in logged
    assert "LineTooLong: 400" in logged and "InvalidURLError: 400" in logged
    assert "aiohttp.server" in logged  # the parser's own complaints are in the file too
    assert '"POST /users" 201' in output  # and the same lines on stderr
    assert len(session.secrets) >= 15
    for where, text in (("LOG_FILE", logged), ("stderr", output), ("/metrics", metrics.decode())):
        # In any case: a token in the method's place comes out upper-cased, nearly as useful.
        lowered = text.lower()
        leaked = sorted(s for s in session.secrets if s.lower() in lowered)
        lines = [
            line for line in text.splitlines() if any(s.lower() in line.lower() for s in leaked)
        ]
        assert not leaked, f"{len(leaked)} secrets in {where}:\n" + "\n".join(lines[:20])


def test_redaction_of_each_form_a_secret_takes() -> None:
    """What the session above found, one form at a time: a query parameter named like a
    credential, an Authorization header whatever its scheme, Basic and Bearer credentials."""
    assert (
        redact("/auth/token?email=a@b.c&password=hunter22")
        == "/auth/token?email=a@b.c&password=***"
    )
    assert redact("/x?a=1;PASSWORD=p&b=2") == "/x?a=1;PASSWORD=***&b=2"
    assert redact("/x?pass%77ord=p") == "/x?pass%77ord=***"
    assert redact("/x?passwords=kept&api_key=k") == "/x?passwords=kept&api_key=***"
    assert redact("Authorization: Token abc def") == "Authorization: ***"
    assert redact("'Authorization': 'abc'") == "'Authorization': '***'"
    assert redact("b'Authorization: Basic Zm9vOmJhcg==\\x01'") == "b'Authorization: Basic ***\\x01'"
    assert redact("reading: b'Basic Zm9vOmJhcg==BBBB...'") == "reading: b'Basic ***'"
    assert redact("the Authorization header must be 'Bearer <token>'") == (
        "the Authorization header must be 'Bearer ***'"
    )
    line = "2 revoked tokens still had open streams"
    assert redact(line) == line


def test_a_refused_request_is_logged_without_its_raw_bytes() -> None:
    raw = "s3cret /users?access_token=t0ken HTTP/1.1"
    for exc in (
        # aiohttp's C parser quotes the line as bytes on a line of its own, its Python one
        # inline, or even as the whole message (a bad chunk size is the message itself).
        BadHttpMessage(f"Invalid method encountered:\n\n    b'{raw}'\n     ^"),
        BadHttpMethod(raw),
        LineTooLong(b"Authorization: s3cret t0ken", 8190),
        TransferEncodingError("s3cret"),
        InvalidURLError(f"/users/s3cret?x={raw}"),
    ):
        record = logging.LogRecord(
            "aiohttp.server", logging.ERROR, __file__, 1, "Error handling request", None,
            (type(exc), exc, None),
        )  # fmt: skip
        assert RedactSecrets().filter(record)
        text = logging.Formatter().format(record)
        assert f"{type(exc).__name__}: 400" in text, text
        assert "s3cret" not in text and "t0ken" not in text, text


def test_a_method_that_is_no_method_is_logged_and_counted_as_other() -> None:
    from server.middleware import known_method  # here: a module that lacks it fails this test only

    assert known_method("GET") == "GET" and known_method("PATCH") == "PATCH"
    assert known_method("JFCBYQSM9RKKMVLG3DU8VD5NVXSR198XWENEEQD_IUQ") == "OTHER"


def test_a_secret_query_value_in_quotes_or_brackets_is_redacted() -> None:
    """A token pasted with its quotes (curl '...?access_token="<token>"' typed by hand) or
    in angle brackets is refused as malformed, but it is still the user's token: the access
    log's query (middleware.redact_query, the raw query string) must not carry it. Found by
    the issue-12 review: a value starting with a quote or bracket was kept whole."""
    token = "a" * 20 + "SECRETtoken" + "b" * 12
    for raw in (
        f"access_token='{token}'",
        f'access_token="{token}"',
        f"x=1&access_token=<{token}>",
        f"token=\\{token}",
        f"password='{token}",
    ):
        logged = redact_query(raw)
        assert token not in logged and "***" in logged, (raw, logged)
