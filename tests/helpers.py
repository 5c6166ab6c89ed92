"""Test helpers: an SSE reader that parses frames as a browser would, and a TCP proxy that
can be cut to make PostgreSQL unreachable."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

import aiohttp


def with_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path="/" + name))


@dataclass
class Event:
    id: str | None = None
    event: str | None = None
    data: str = ""
    retry: int | None = None
    comments: list[str] = field(default_factory=list)


class EventStream:
    """Reads an SSE response frame by frame (the parsing rules of the HTML standard)."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response
        self.comments: list[str] = []

    async def next(self, timeout: float = 5.0, *, with_comments: bool = False) -> Event:
        async with asyncio.timeout(timeout):
            event = Event()
            data: list[str] = []
            seen = False
            while True:
                raw = await self.response.content.readline()
                if not raw:
                    raise EOFError("stream ended")
                line = raw.decode("utf-8").rstrip("\r\n")
                if line == "":
                    if seen:
                        event.data = "\n".join(data)
                        return event
                    continue
                if line.startswith(":"):
                    self.comments.append(line[1:].strip())
                    if with_comments:
                        event.comments.append(line[1:].strip())
                        return event
                    continue
                name, _, value = line.partition(":")
                value = value[1:] if value.startswith(" ") else value
                seen = True
                if name == "data":
                    data.append(value)
                elif name == "id":
                    event.id = value
                elif name == "event":
                    event.event = value
                elif name == "retry":
                    event.retry = int(value)

    async def take(self, count: int, timeout: float = 10.0) -> list[Event]:
        events: list[Event] = []
        async with asyncio.timeout(timeout):
            while len(events) < count:
                event = await self.next(timeout)
                if event.retry is not None and event.data == "" and event.id is None:
                    continue
                events.append(event)
        return events

    async def ended(self, timeout: float = 5.0) -> bool:
        """True once the server ends the stream (reads and drops anything before the end)."""
        async with asyncio.timeout(timeout):
            while await self.response.content.readany():
                pass
        return True


@dataclass
class Received:
    """One message a Follower got: its id, data and event name, when (time.time()) and from
    which service."""

    id: int
    data: str
    event: str | None
    at: float
    base: str


@dataclass
class StreamEnd:
    """How one connection of a Follower ended: "clean" (the server ended the response),
    "broken: <error>" (cut mid-response), "unreachable: <error>" (no connection at all), or
    "status <code>" (an answer other than 200, after which a browser gives up)."""

    base: str
    how: str
    at: float


class Follower:
    """A test's EventSource on real services: follows a stream and, whenever it ends or breaks,
    waits the ``retry:`` delay the server last gave and reconnects with Last-Event-ID, moving
    on to the next of ``bases`` (another process of the service). Like a browser it gives up
    on any status other than 200. Records every message, heartbeat and end, for the test to
    compare with what PostgreSQL holds."""

    def __init__(
        self,
        bases: list[str],
        path: str,
        headers: dict[str, str] | None = None,
        last_id: str | None = "0",
    ) -> None:
        self.bases = list(bases)
        self.path = path
        self.headers = dict(headers or {})
        self.first_id = last_id
        self.received: list[Received] = []
        self.pings: list[float] = []  # when each `: ping` arrived
        self.refusals: list[str] = []  # other comments: why a stream was refused
        self.ends: list[StreamEnd] = []
        self.opened: list[str] = []  # the base of every connection that answered 200
        self.opened_at: list[float] = []  # and when
        self.retry_ms = 3000
        self.gave_up: int | None = None  # the status that made it stop
        self.ready = asyncio.Event()  # the first connection has sent its retry: line
        self._task: asyncio.Task[None] | None = None

    @property
    def last_id(self) -> str | None:
        return str(self.received[-1].id) if self.received else self.first_id

    def ids(self) -> list[int]:
        return [r.id for r in self.received]

    def start(self) -> Follower:
        self._task = asyncio.create_task(self._run(), name=f"follower {self.path}")
        return self

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    @property
    def done(self) -> bool:
        return self._task is not None and self._task.done()

    async def _run(self) -> None:
        connector = aiohttp.TCPConnector(force_close=True)
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=5)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            turn = 0
            while True:
                base = self.bases[turn % len(self.bases)]
                how = await self._follow(session, base)
                self.ends.append(StreamEnd(base, how, time.time()))
                if self.gave_up is not None:
                    return
                turn += 1
                await asyncio.sleep(self.retry_ms / 1000)

    async def _follow(self, session: aiohttp.ClientSession, base: str) -> str:
        headers = dict(self.headers)
        last = self.last_id
        if last is not None:
            headers["Last-Event-ID"] = last
        try:
            async with session.get(base + self.path, headers=headers) as response:
                if response.status != 200:
                    self.gave_up = response.status
                    return f"status {response.status}"
                self.opened.append(base)
                self.opened_at.append(time.time())
                stream = EventStream(response)
                while True:
                    event = await stream.next(timeout=3600, with_comments=True)
                    now = time.time()
                    if event.retry is not None:
                        self.retry_ms = event.retry
                        self.ready.set()
                    for comment in event.comments:
                        if comment == "ping":
                            self.pings.append(now)
                        else:
                            self.refusals.append(comment)
                    if event.id is not None and (event.data or event.event):
                        self.received.append(
                            Received(int(event.id), event.data, event.event, now, base)
                        )
        except EOFError:
            return "clean"
        except aiohttp.ClientConnectorError as exc:
            return f"unreachable: {type(exc).__name__}"
        except (aiohttp.ClientError, ConnectionError) as exc:
            return f"broken: {type(exc).__name__}"


async def open_stream(client: Any, path: str = "/events/", **kwargs: Any) -> EventStream:
    response = await client.get(path, **kwargs)
    assert response.status == 200, await response.text()
    stream = EventStream(response)
    first = await stream.next()
    assert first.retry is not None  # the retry: line comes first
    return stream


def postgres_address(url: str) -> tuple[str, Any]:
    """('unix', path) or ('tcp', (host, port)) of the server a URL names."""
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    port = parts.port or 5432
    host = query.get("host", [parts.hostname or ""])[0]
    if host.startswith("/"):
        return "unix", f"{host}/.s.PGSQL.{port}"
    return "tcp", (host or "127.0.0.1", port)


class TcpProxy:
    """Forwards 127.0.0.1:port to a server; ``cut()`` makes the server unreachable."""

    def __init__(self, upstream: tuple[str, Any]) -> None:
        self.upstream = upstream
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> TcpProxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        kind, address = self.upstream
        try:
            if kind == "unix":
                up_reader, up_writer = await asyncio.open_unix_connection(address)
            else:
                up_reader, up_writer = await asyncio.open_connection(*address)
        except OSError:
            writer.close()
            return
        self._writers.update({writer, up_writer})
        tasks = {
            asyncio.create_task(self._pipe(reader, up_writer)),
            asyncio.create_task(self._pipe(up_reader, writer)),
        }
        self._tasks.update(tasks)
        await asyncio.gather(*tasks, return_exceptions=True)
        self._writers.difference_update({writer, up_writer})

    async def cut(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def close(self) -> None:
        await self.cut()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def proxied_url(proxy: TcpProxy, database_url: str) -> str:
    """database_url, reached through the proxy."""
    parts = urlsplit(database_url)
    user = parts.username or "postgres"
    password = f":{parts.password}" if parts.password else ""
    return f"postgresql://{user}{password}@127.0.0.1:{proxy.port}{parts.path}"


async def metric(client: Any, name: str, labels: str = "") -> float:
    text = await (await client.get("/metrics")).text()
    pattern = re.escape(name) + (r"\{" + re.escape(labels) + r"\}" if labels else "") + r" (\S+)"
    match = re.search(r"^" + pattern + r"$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


async def register(
    client: Any, name: str = "Ada", email: str | None = None, password: str | None = None
) -> dict[str, Any]:
    """A new user; the answer plus `headers` carrying its token."""
    import uuid

    body: dict[str, Any] = {"name": name, "email": email or f"{uuid.uuid4().hex[:10]}@example.com"}
    if password is not None:
        body["password"] = password
    response = await client.post("/users", json=body)
    assert response.status == 201, await response.text()
    user = await response.json()
    user["headers"] = {"Authorization": f"Bearer {user['token']}"}
    return dict(user)


class ResponseContract:
    """Records every JSON answer an app gives during a test, then checks each against what
    /openapi.json documents for its route, method and status: the bodies the handlers build
    and the schemas the document shows cannot drift apart unnoticed."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, int, bytes]] = []

    def attach(self, app: Any) -> None:
        from aiohttp import web

        from server.openapi import endpoint_of

        async def record(request: web.Request, response: web.StreamResponse) -> None:
            match = request.match_info
            if match.http_exception is not None or endpoint_of(match.handler) is None:
                return  # no route (404/405 of the router), or an undocumented one (static)
            if not isinstance(response, web.Response) or response.body is None:
                return
            if response.content_type not in ("application/json", "application/problem+json"):
                return
            path = match.route.resource.canonical if match.route.resource else request.path
            body = response.body if isinstance(response.body, bytes) else b""
            self.seen.append((path, request.method.lower(), response.status, body))

        app.on_response_prepare.append(record)

    def violations(self, spec: dict[str, Any]) -> list[str]:
        import orjson
        from jsonschema import Draft202012Validator

        documented: dict[str, dict[str, Any]] = {}
        for documented_path, operations in spec["paths"].items():  # /events and /events/ too
            documented.setdefault(documented_path.rstrip("/") or "/", {}).update(operations)
        found = []
        for path, method, status, body in self.seen:
            operation = documented.get(path.rstrip("/") or "/", {}).get(method)
            where = f"{method.upper()} {path} -> {status}"
            if operation is None:
                found.append(f"{where}: the route is not in /openapi.json")
                continue
            response = operation["responses"].get(str(status))
            if response is None:
                found.append(f"{where}: this status is not documented for the route")
                continue
            content = response.get("content", {})
            media = content.get("application/json") or content.get("application/problem+json")
            if media is None:
                found.append(f"{where}: documented without a JSON body, answered with one")
                continue
            schema = {**media["schema"], "components": spec.get("components", {})}
            errors = sorted(Draft202012Validator(schema).iter_errors(orjson.loads(body)), key=str)
            if errors:
                found.append(f"{where}: {errors[0].message} at {list(errors[0].absolute_path)}")
        return found


PROBLEM = "application/problem+json"
ROOT = Path(__file__).resolve().parent.parent


async def assert_problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status == status, await response.text()
    assert response.content_type == PROBLEM
    body = await response.json()
    assert body["status"] == status
    assert body["type"] == "about:blank"
    assert body["title"] and body["detail"]
    text = str(body).lower()
    assert "traceback" not in text and "select" not in text and "insert" not in text
    return body


async def send(
    client: Any, sender: dict[str, Any], targets: list[str], message: str = "hi", **extra: Any
) -> Any:
    body: dict[str, Any] = {"user_ids": targets, "message": message, **extra}
    return await client.post("/sse/send-message", json=body, headers=sender["headers"])


async def user_stream(client: Any, user: dict[str, Any], **headers: str) -> EventStream:
    return await open_stream(client, f"/sse/{user['id']}", headers={**user["headers"], **headers})


async def run_cli(*args: str, env: dict[str, str]) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(ROOT / "run.py"), *args,
        env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode()


async def assert_uses_index(
    conn: Any, name: str, params: dict[str, Any], index: str, table: str
) -> None:
    """The plan of queries/ statement ``name`` reads ``index`` and never scans ``table`` whole
    (the check DBAs rely on when they tune the SQL files)."""
    from server.sql import Queries

    query = Queries()[name]
    statement = await conn.prepare(query.sql)
    plan = await statement.explain(*query.args(params))  # EXPLAIN (FORMAT JSON, VERBOSE)
    nodes = list(plan_nodes(plan[0]["Plan"]))
    shape = [(n["Node Type"], n.get("Relation Name"), n.get("Index Name")) for n in nodes]
    assert index in {n.get("Index Name") for n in nodes}, (name, shape)
    scanned = {n.get("Relation Name") for n in nodes if n["Node Type"] == "Seq Scan"}
    assert table not in scanned, (name, shape)


def plan_nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every node of a JSON plan, ``node`` first (subplans and CTEs are children too)."""
    yield node
    for child in node.get("Plans", []):
        yield from plan_nodes(child)


async def create_event(client: Any, user: dict[str, Any], title: str = "Offsite") -> dict[str, Any]:
    body = {
        "title": title,
        "start_date": "2024-01-15T10:00:00Z",
        "end_date": "2024-01-15T18:00:00Z",
    }
    response = await client.post("/events", json=body, headers=user["headers"])
    assert response.status == 201, await response.text()
    return dict(await response.json())


async def create_task(
    client: Any, user: dict[str, Any], event_id: str, minutes: int, parent_id: str | None = None,
    title: str = "Task",
) -> dict[str, Any]:  # fmt: skip
    body = {"event_id": event_id, "parent_id": parent_id, "title": title,
            "duration_minutes": minutes}  # fmt: skip
    response = await client.post("/tasks", json=body, headers=user["headers"])
    assert response.status == 201, await response.text()
    return dict(await response.json())


async def add_role(
    client: Any, by: dict[str, Any], task_id: str, user: dict[str, Any], role: str
) -> None:
    response = await client.post(
        f"/tasks/{task_id}/collaborators", json={"user_id": user["id"], "role": role},
        headers=by["headers"],
    )  # fmt: skip
    assert response.status == 201, await response.text()


async def get(client: Any, path: str, user: dict[str, Any]) -> dict[str, Any]:
    """GET ``path`` as ``user``: the JSON of a 200."""
    response = await client.get(path, headers=user["headers"])
    assert response.status == 200, await response.text()
    return dict(await response.json())


async def new_story(
    client: Any, user: dict[str, Any], task_id: str, content: str = "", title: str = "Story"
) -> dict[str, Any]:
    body = {"task_id": task_id, "title": title, "content": content}
    response = await client.post("/stories", json=body, headers=user["headers"])
    assert response.status == 201, await response.text()
    assert response.headers["ETag"] == '"1"'
    return dict(await response.json())


async def notifications_of(client: Any, user: dict[str, Any], *types: str) -> list[dict[str, Any]]:
    """The user's notifications of these types, oldest first (its latest 200)."""
    page = await get(client, f"/notifications/{user['id']}?limit=200", user)
    return [n for n in reversed(page["items"]) if n["type"] in types]


# The actors of a task tree's access tables (conftest.TaskTree), in the order of row().
ACTORS = ("owner", "inherited", "maintainer", "collaborator", "outsider", "anonymous")


def row(*statuses: int) -> dict[str, int]:
    """An access table's row: the status each of ACTORS gets, in that order."""
    return dict(zip(ACTORS, statuses, strict=True))


async def racing_a_deletion(
    client: Any, delete: tuple[str, Any], send: Any, what: str = "the request"
) -> Any:
    """``send()`` (a request coroutine) racing a deletion that has run but not committed:
    a connection of the test runs ``delete`` (SQL text and one argument) in a transaction,
    starts the request, waits until the request waits on a lock that transaction holds (the
    row it deletes), then commits. The request's reads saw the row; its write finds it gone.
    Returns the response."""
    from server import keys

    pool = client.app[keys.db_key]._target
    async with pool.acquire() as conn:
        async with conn.transaction():
            await conn.execute(*delete)
            request = asyncio.create_task(send())
            waiting = 0
            for _ in range(200):  # at most ~10 s
                waiting = await conn.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
                )
                if waiting or request.done():
                    break
                await asyncio.sleep(0.05)
            assert waiting, f"{what} never waited on the deleted row"
    return await request
