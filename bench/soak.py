"""Soak: a long mixed load on the service, watching its memory and open files.

    python -m bench.soak                  # 10 minutes, 2,000 streams (about 12 minutes in all)
    python -m bench.soak --minutes 30     # longer
    python -m bench.soak --short          # a smoke run: 2 minutes, 200 streams

The service runs as its own process (one worker) on a fresh embedded PostgreSQL (or
BENCH_DATABASE_URL) and on a Redis (Valkey) that this benchmark starts, stops and restarts
itself (never the machine's). Load, all on loopback and bounded in count and time:
  streams   --streams SSE streams held for the whole run, --user-streams of them on
            `/sse/{id}` (one user each), the rest on the feed `/events/`; --reconnecting of
            each kind close themselves every 15-45 s and come back with Last-Event-ID (every
            other stream also comes back that way if the server ends it);
  writes    POST /add-value/, POST /sse/send-message, POST/PUT/DELETE /events, POST /tasks,
            PATCH /tasks/{id}/completion, PATCH /stories/{id}/content, POST/PUT /comments;
  reads     GET /events/{id}, /events/{id}/tasks, /tasks/{id}, /stories/{id},
            /stories/{id}/revisions, /stories/{id}/comments, /comments/{id}, /values,
            /notifications/{id}, /users/{id}/events;
            mixed at --rate requests/s (open loop, at most 64 in flight). Writes by the task
            members notify the other members, who hold the user streams.
  Redis     stopped in the middle of the run for --redis-down seconds, then restarted on the
            same port.
Every --sample-every seconds: the service process's RSS and open file descriptors (from
/proc), its open SSE connections (/metrics), requests and errors so far, one line each.
At the end, once the load has stopped and the streams have caught up: every feed stream must
have received exactly the values PostgreSQL holds (same ids, same values, one order) and every
user stream exactly its user's notifications (seq 1..n, gapless); lost and duplicated count
what differs. RSS and descriptors after warm-up vs at the end: "flat" when the end is within
--rss-tolerance percent (RSS) and --fd-tolerance percent (descriptors) of the after-warm-up
value. Then every stream is closed and the idle descriptors are compared with those before
the streams opened. Prints a Markdown table and JSON, writes the numbers (with every sample)
to bench/results/soak-<time>.json, and plots RSS and descriptors over time to --plot (PNG,
with matplotlib: `pip install -e '.[bench]'`; skipped without it).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import random
import re
import statistics
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from server.embedded import RedisProcess

from .common import (
    ROOT,
    SSEClient,
    Target,
    cpu_seconds,
    ours,
    percentile,
    raise_nofile,
    rss_kib,
    save_results,
    say,
)

POOL_SWING = 8  # descriptors other than client connections may differ by this much: the
# PostgreSQL pool holds 2 to 10 connections
IN_FLIGHT = 64  # requests of the mixed load in flight at most
CONNECTING = 100  # streams connecting at once at most
HASH_MOD = (1 << 61) - 1  # the feed streams' sequence hash
SSE_GAUGE = re.compile(rb'^sse_connections\{stream="(\w+)"\} (\S+)$', re.MULTILINE)
EVENT_DATES = {"start_date": "2030-01-15T10:00:00Z", "end_date": "2030-01-15T11:00:00Z"}

# Requests of the mixed load, by weight (at --rate 70 a weight is about one request a second).
MIX = {
    "POST /add-value/": 5,
    "POST /sse/send-message": 8,
    "POST /events": 1,
    "PUT /events/{id}": 1,
    "DELETE /events/{id}": 0.5,
    "POST /tasks": 1,
    "PATCH /tasks/{id}/completion": 3,
    "PATCH /stories/{id}/content": 3,
    "POST /comments": 3,
    "PUT /comments/{id}": 1,
    "GET /events/{id}": 14,
    "GET /events/{id}/tasks": 4,
    "GET /tasks/{id}": 3,
    "GET /stories/{id}": 3,
    "GET /stories/{id}/revisions": 1,
    "GET /stories/{id}/comments": 4,
    "GET /comments/{id}": 2,
    "GET /values": 3,
    "GET /notifications/{id}": 4,
    "GET /users/{id}/events": 1.5,
}


# --- streams ------------------------------------------------------------------------------


def feed_hash(h: int, event_id: int, value: str) -> int:
    """The running hash of a feed sequence: equal hashes, same ids and values in one order."""
    return (h * 1_000_003 + event_id * 65_537 + zlib.crc32(value.encode())) % HASH_MOD


@dataclass
class Tally:
    """What one logical stream received over all its connections (it resumes with its last
    id, so the connections together must make one gapless, once-only sequence)."""

    kind: str  # "feed" or "user"
    path: str
    token: str | None
    last_id: int  # where the stream stands: it resumes after this id
    voluntary: bool  # closes itself now and then, and resumes
    count: int = 0
    duplicates: int = 0  # an id at or below one already received
    gaps: int = 0  # user streams: ids skipped (seq is gapless)
    resets: int = 0  # `event: reset` (the resume id was unusable: never expected here)
    digest: int = 0  # feed streams: feed_hash over what was received
    connects: int = 0
    reconnects: int = 0  # closed by the client on purpose, then resumed
    server_ends: int = 0  # ended by the server (refused, cut, shut down), then resumed
    failed_connects: int = 0
    connected: bool = False

    def message(self, raw_id: str | None, data: str, event: str | None) -> None:
        if event == "reset":
            self.resets += 1
            return
        event_id = int(raw_id or 0)
        if event_id <= self.last_id:
            self.duplicates += 1
            return
        if self.kind == "user" and event_id != self.last_id + 1:
            self.gaps += event_id - self.last_id - 1
        if self.kind == "feed":
            self.digest = feed_hash(self.digest, event_id, data)
        self.count += 1
        self.last_id = event_id


class CountingClient(SSEClient):
    """An SSE client that hands each message to its tally instead of keeping it."""

    def __init__(self, tally: Tally) -> None:
        super().__init__(tally.path, str(tally.last_id), tally.token)
        self.tally = tally

    def message(self, data: str, event: str | None, at: float) -> None:
        self.tally.message(self.last_id, data, event)


@dataclass
class Streams:
    port: int
    tallies: list[Tally]
    connecting: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(CONNECTING))
    settle: asyncio.Event = field(default_factory=asyncio.Event)  # no more voluntary closes
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    def open_now(self) -> int:
        return sum(t.connected for t in self.tallies)

    async def life(self, tally: Tally, rng: random.Random, deadline: float) -> None:
        """Hold the stream open until stop; resume with the last id whenever it ends."""
        loop = asyncio.get_running_loop()
        for _ in range(100_000):
            if self.stop.is_set() or time.monotonic() > deadline:
                return
            client: CountingClient | None = None
            async with self.connecting:
                try:
                    _, client = await loop.create_connection(
                        lambda: CountingClient(tally), "127.0.0.1", self.port
                    )
                    async with asyncio.timeout(30):
                        await client.ready
                except (OSError, RuntimeError, TimeoutError) as exc:
                    tally.failed_connects += 1
                    if client is not None:
                        client.close()
                    if tally.failed_connects <= 3 or tally.failed_connects % 100 == 0:
                        say(f"  stream {tally.path}: connect failed ({exc!r}); retrying")
                    await asyncio.sleep(1.0)
                    continue
            tally.connects += 1
            tally.connected = True
            hold = rng.uniform(15.0, 45.0) if tally.voluntary else None
            ended_by = await self._hold(client, hold)
            tally.connected = False
            client.close()
            if ended_by == "server":
                tally.server_ends += 1
                await asyncio.sleep(0.5)  # as an EventSource would (the server says 3 s)
            elif ended_by == "client":
                tally.reconnects += 1

    async def _hold(self, client: CountingClient, hold: float | None) -> str:
        """Until the server ends the connection ("server"), the hold time passes ("client",
        unless settling: then it stays), or the run stops ("stop")."""
        stopping = asyncio.ensure_future(self.stop.wait())
        try:
            if hold is not None:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(hold):
                        await asyncio.wait({stopping, client.closed}, return_when="FIRST_COMPLETED")
                if not (stopping.done() or client.closed.done() or self.settle.is_set()):
                    return "client"
            await asyncio.wait({stopping, client.closed}, return_when="FIRST_COMPLETED")
            return "stop" if stopping.done() else "server"
        finally:
            stopping.cancel()


# --- the mixed load -----------------------------------------------------------------------


@dataclass
class User:
    id: str
    token: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@dataclass
class Story:
    id: str
    lines: list[str]
    revision: int
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


@dataclass
class Task:
    id: str
    event_id: str
    members: list[User]  # the owner first, then the collaborators
    story: Story


@dataclass
class OpStats:
    done: int = 0
    errors: int = 0
    statuses: collections.Counter[str] = field(default_factory=collections.Counter)
    latencies: list[float] = field(default_factory=list)


@dataclass
class World:
    """What the load works on: the users, the fixture tasks and stories, what it created."""

    base: str
    session: aiohttp.ClientSession
    owner: User
    users: list[User]  # the stream users
    tasks: list[Task]
    rng: random.Random
    stats: dict[str, OpStats] = field(default_factory=dict)
    created_events: collections.deque[str] = field(default_factory=collections.deque)
    comments: collections.deque[tuple[str, User]] = field(
        default_factory=lambda: collections.deque(maxlen=500)
    )
    values_posted: int = 0
    n: int = 0  # a counter for unique names

    def totals(self) -> tuple[int, int]:
        return (
            sum(s.done for s in self.stats.values()),
            sum(s.errors for s in self.stats.values()),
        )

    async def call(
        self, op: str, method: str, path: str, ok: int, user: User | None, body: Any = None
    ) -> Any:
        """One request; the parsed body when the status is ``ok``, else None (an error)."""
        stats = self.stats.setdefault(op, OpStats())
        started = time.perf_counter()
        found: Any = None
        try:
            async with self.session.request(
                method, self.base + path, json=body, headers=user.auth if user else None
            ) as response:
                raw = await response.read()
                status = str(response.status)
                if response.status == ok and raw:
                    found = json.loads(raw)
        except (aiohttp.ClientError, TimeoutError) as exc:
            status = type(exc).__name__
        stats.done += 1
        if status != str(ok):
            stats.errors += 1
            stats.statuses[status] += 1
            if stats.errors <= 3:
                say(f"  {op}: answered {status}, expected {ok}")
            return None
        stats.latencies.append(time.perf_counter() - started)
        return found if found is not None else {}

    def next_n(self) -> int:
        self.n += 1
        return self.n

    async def run(self, op: str) -> None:
        rng = self.rng
        task = rng.choice(self.tasks)
        member = rng.choice(task.members)
        story = task.story
        n = self.next_n()
        if op == "POST /add-value/":
            if await self.call(op, "POST", "/add-value/", 200, None, {"value": f"soak-{n}"}):
                self.values_posted += 1
        elif op == "POST /sse/send-message":
            targets = rng.sample(self.users, min(len(self.users), rng.randint(1, 5)))
            body = {"user_ids": [u.id for u in targets], "message": f"message {n}"}
            await self.call(op, "POST", "/sse/send-message", 202, rng.choice(self.users), body)
        elif op == "POST /events":
            body = {"title": f"Soak event {n}", **EVENT_DATES}
            made = await self.call(op, "POST", "/events", 201, self.owner, body)
            if made:
                self.created_events.append(made["id"])
        elif op == "PUT /events/{id}":
            event_id = self.created_events[-1] if self.created_events else task.event_id
            body = {"description": f"edited {n}"}
            await self.call(op, "PUT", f"/events/{event_id}", 200, self.owner, body)
        elif op == "DELETE /events/{id}":
            if len(self.created_events) > 20:  # keep the newest: tasks and reads go there
                event_id = self.created_events.popleft()
                await self.call(op, "DELETE", f"/events/{event_id}", 204, self.owner)
        elif op == "POST /tasks":
            event_id = self.created_events[-1] if self.created_events else task.event_id
            body = {"event_id": event_id, "title": f"Soak task {n}", "duration_minutes": 30}
            await self.call(op, "POST", "/tasks", 201, self.owner, body)
        elif op == "PATCH /tasks/{id}/completion":
            body = {"completed": rng.random() < 0.5}
            await self.call(op, "PATCH", f"/tasks/{task.id}/completion", 200, member, body)
        elif op == "PATCH /stories/{id}/content":
            async with story.lock:  # one edit at a time per story, from its current revision
                lines = list(story.lines)
                lines[rng.randrange(len(lines))] = f"line edited by request {n}\n"
                body = {"content": "".join(lines), "base_revision": story.revision}
                path = f"/stories/{story.id}/content"
                edited = await self.call(op, "PATCH", path, 200, member, body)
                if edited:
                    story.lines, story.revision = lines, edited["revision"]
        elif op == "POST /comments":
            body = {"story_id": story.id, "body": f"comment {n}"}
            if rng.random() < 0.2:
                body["body"] += f" for <@{rng.choice(task.members).id}>"
            made = await self.call(op, "POST", "/comments", 201, member, body)
            if made:
                self.comments.append((made["id"], member))
        elif op == "PUT /comments/{id}":
            if self.comments:
                comment_id, author = rng.choice(self.comments)
                body = {"body": f"comment edited by request {n}"}
                await self.call(op, "PUT", f"/comments/{comment_id}", 200, author, body)
        elif op == "GET /events/{id}":
            event_id = (
                self.created_events[-1]
                if self.created_events and rng.random() < 0.3
                else task.event_id
            )
            await self.call(op, "GET", f"/events/{event_id}", 200, self.owner)
        elif op == "GET /events/{id}/tasks":
            await self.call(op, "GET", f"/events/{task.event_id}/tasks", 200, member)
        elif op == "GET /tasks/{id}":
            await self.call(op, "GET", f"/tasks/{task.id}", 200, member)
        elif op == "GET /stories/{id}":
            await self.call(op, "GET", f"/stories/{story.id}", 200, member)
        elif op == "GET /stories/{id}/revisions":
            await self.call(op, "GET", f"/stories/{story.id}/revisions?limit=20", 200, member)
        elif op == "GET /stories/{id}/comments":
            await self.call(op, "GET", f"/stories/{story.id}/comments?limit=50", 200, member)
        elif op == "GET /comments/{id}":
            if self.comments:
                comment_id, author = rng.choice(self.comments)
                await self.call(op, "GET", f"/comments/{comment_id}", 200, author)
        elif op == "GET /values":
            await self.call(op, "GET", "/values?limit=50", 200, None)
        elif op == "GET /notifications/{id}":
            user = rng.choice(self.users)
            await self.call(op, "GET", f"/notifications/{user.id}?limit=20", 200, user)
        elif op == "GET /users/{id}/events":
            await self.call(op, "GET", f"/users/{self.owner.id}/events?limit=50", 200, self.owner)
        else:
            raise ValueError(op)


async def mixed_load(world: World, rate: float, until: float) -> dict[str, float]:
    """Requests of MIX at ``rate`` per second until ``until`` (monotonic), at most IN_FLIGHT
    at once; how far behind the schedule it fell at worst."""
    names, weights = list(MIX), list(MIX.values())
    in_flight = asyncio.Semaphore(IN_FLIGHT)
    running: set[asyncio.Task[None]] = set()
    started = time.monotonic()
    worst_late = 0.0

    async def one(op: str) -> None:
        try:
            await world.run(op)
        finally:
            in_flight.release()

    for k in range(10_000_000):
        due = started + k / rate
        if due >= until:
            break
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        try:  # a stalled service must not hold the load past its end
            async with asyncio.timeout(max(0.0, until - time.monotonic())):
                await in_flight.acquire()
        except TimeoutError:
            break
        worst_late = max(worst_late, time.monotonic() - due)
        op = world.rng.choices(names, weights)[0]
        job = asyncio.create_task(one(op))
        running.add(job)
        job.add_done_callback(running.discard)
    if running:
        await asyncio.wait(running, timeout=60)
        for job in list(running):  # still waiting after a minute: given up (counted as sent)
            job.cancel()
    return {"worst_late_s": worst_late}


# --- setup --------------------------------------------------------------------------------


async def create(
    session: aiohttp.ClientSession, url: str, body: dict[str, Any], user: User | None
) -> dict[str, Any]:
    async with session.post(url, json=body, headers=user.auth if user else None) as response:
        found = await response.json()
        if response.status != 201:
            raise RuntimeError(f"POST {url} answered {response.status}: {found}")
        return dict(found)


async def build_world(session: aiohttp.ClientSession, base: str, args: argparse.Namespace) -> World:
    """The owner and one user per user stream; --events events of 5 tasks each, each task
    with one story and its share of the users as collaborators."""

    async def user(i: int) -> User:
        body = {"name": f"Soak user {i}", "email": f"soak{i}@bench.example"}
        made = await create(session, base + "/users", body, None)
        return User(made["id"], made["token"])

    owner = await user(0)
    users: list[User] = []
    for start in range(1, args.user_streams + 1, 100):
        stop = min(start + 100, args.user_streams + 1)
        users += await asyncio.gather(*(user(i) for i in range(start, stop)))
    tasks: list[Task] = []
    count = args.events * 5
    per_task = max(1, len(users) // count)
    text = [
        f"line {i} of the story, long enough to look like prose in a real one\n" for i in range(40)
    ]
    for e in range(args.events):
        event = await create(
            session, base + "/events", {"title": f"Soak fixture {e}", **EVENT_DATES}, owner
        )
        for t in range(5):
            body = {"event_id": event["id"], "title": f"Task {e}.{t}", "duration_minutes": 60}
            made = await create(session, base + "/tasks", body, owner)
            index = e * 5 + t
            collaborators = [users[(index * per_task + j) % len(users)] for j in range(per_task)]
            await asyncio.gather(*(
                create(session, f"{base}/tasks/{made['id']}/collaborators",
                       {"user_id": c.id, "role": "collaborator"}, owner)
                for c in collaborators
            ))  # fmt: skip
            story_body = {
                "task_id": made["id"],
                "title": f"Story {e}.{t}",
                "content": "".join(text),
            }
            story = await create(session, base + "/stories", story_body, owner)
            tasks.append(
                Task(
                    made["id"],
                    event["id"],
                    [owner, *collaborators],
                    Story(story["id"], list(text), story["revision"]),
                )
            )
    return World(base, session, owner, users, tasks, random.Random(12))


async def newest_value_id(session: aiohttp.ClientSession, base: str) -> int:
    async with session.get(base + "/values?limit=1") as response:
        items = (await response.json())["items"]
    return int(items[0]["id"]) if items else 0


async def stored_feed(
    session: aiohttp.ClientSession, base: str, after: int
) -> list[tuple[int, str]]:
    """Every value PostgreSQL holds after ``after``, oldest first (GET /values, newest first)."""
    found: list[tuple[int, str]] = []
    cursor = ""
    for _ in range(100_000):
        async with session.get(f"{base}/values?limit=200&cursor={cursor}") as response:
            page = await response.json()
        for item in page["items"]:
            if item["id"] <= after:
                return found[::-1]
            found.append((int(item["id"]), item["value"]))
        if page["next"] is None:
            break
        cursor = page["next"]
    return found[::-1]


async def newest_seq(session: aiohttp.ClientSession, base: str, user: User) -> int:
    async with session.get(f"{base}/notifications/{user.id}?limit=1", headers=user.auth) as r:
        items = (await r.json())["items"]
    return int(items[0]["seq"]) if items else 0


# --- sampling -----------------------------------------------------------------------------


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def fd_kinds(pid: int) -> dict[str, int]:
    """The process's open descriptors, in all and by kind (socket, pipe, anon_inode, file)."""
    kinds: collections.Counter[str] = collections.Counter()
    for name in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            link = os.readlink(f"/proc/{pid}/fd/{name}")
            kinds[
                link.split(":", 1)[0] if ":" in link and not link.startswith("/") else "file"
            ] += 1
    return {"total": sum(kinds.values()), **dict(sorted(kinds.items()))}


def port_sockets(port: int) -> tuple[int, int]:
    """Server-side TCP sockets on ``port`` (local port ``port``; the listening one aside):
    ESTABLISHED, and CLOSE_WAIT (the client has closed; the server has not yet)."""
    established = close_wait = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if int(fields[1].rsplit(":", 1)[1], 16) != port:
                    continue
                established += fields[3] == "01"
                close_wait += fields[3] == "08"
    return established, close_wait


def threads(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    return -1


@dataclass
class Sample:
    t: float  # seconds since the load started (negative before)
    rss_mib: float
    fds: int
    connections: int  # client connections the service holds (TCP, its port): streams + requests
    close_wait: int  # of those, closed by the client and not yet by the service
    # fds - connections: PostgreSQL and Redis connections, files, pipes, epoll. Connections
    # still in the accept queue have no descriptor yet, so an overloaded service reads lower.
    other_fds: int
    streams_open_server: int  # sse_connections, both kinds (nan-free: -1 when unread)
    streams_open_client: int
    requests: int
    errors: int
    messages: int  # stream messages received so far, all streams
    threads: int  # the service's
    cpu_s: float  # the service's CPU seconds so far
    generator_cpu_s: float  # this process's


async def sample(
    target: Target, session: aiohttp.ClientSession, streams: Streams, world: World | None, t: float
) -> Sample:
    server = -1
    with contextlib.suppress(aiohttp.ClientError, TimeoutError):
        async with session.get(target.base + "/metrics") as response:
            server = int(sum(float(v) for _, v in SSE_GAUGE.findall(await response.read())))
    requests, errors = world.totals() if world else (0, 0)
    pid = target.proc.pid
    fds = open_fds(pid)
    established, close_wait = port_sockets(target.port)
    return Sample(
        t=round(t, 2),
        rss_mib=round(rss_kib(pid) / 1024, 1),
        fds=fds,
        connections=established + close_wait,
        close_wait=close_wait,
        other_fds=fds - established - close_wait,
        streams_open_server=server,
        streams_open_client=streams.open_now(),
        requests=requests,
        errors=errors,
        messages=sum(x.count for x in streams.tallies),
        threads=threads(pid),
        cpu_s=round(cpu_seconds(pid), 2),
        generator_cpu_s=round(time.process_time(), 2),
    )


def show(s: Sample, note: str = "") -> None:
    say(
        f"t {s.t / 60:5.1f} min  RSS {s.rss_mib:6.1f} MiB  fds {s.fds:5d} (other than "
        f"connections {s.other_fds}, CLOSE_WAIT {s.close_wait})  streams "
        f"{s.streams_open_server:5d} (client {s.streams_open_client:5d})  requests "
        f"{s.requests:7,d}  errors {s.errors}  messages {s.messages:10,d}  threads {s.threads}  "
        f"CPU {s.cpu_s:6.1f} s" + (f"  {note}" if note else "")
    )


async def sampler(
    target: Target,
    session: aiohttp.ClientSession,
    streams: Streams,
    world: World,
    load_started: float,
    every: float,
    until: float,
    samples: list[Sample],
    notes: dict[str, str],
) -> None:
    while time.monotonic() < until:
        s = await sample(target, session, streams, world, time.monotonic() - load_started)
        samples.append(s)
        show(s, notes.pop("now", ""))
        await asyncio.sleep(max(0.0, every - (time.monotonic() - load_started - s.t)))


# --- the run ------------------------------------------------------------------------------


def window(samples: list[Sample], start: float, end: float) -> list[Sample]:
    return [s for s in samples if start <= s.t <= end]


def slope_per_minute(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, value), per minute."""
    if len(points) < 2:
        return float("nan")
    xs, ys = zip(*points, strict=True)
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return 60 * sum((x - mx) * (y - my) for x, y in points) / den if den else float("nan")


def flatness(
    samples: list[Sample], args: argparse.Namespace, load_seconds: float
) -> dict[str, Any]:
    """After warm-up vs the end: the median of the samples in the first --window seconds after
    the warm-up, and in the last --window seconds of the load."""
    span = args.window
    early = window(samples, args.warmup, args.warmup + span)
    late = window(samples, load_seconds - span, load_seconds)
    after = window(samples, args.warmup, load_seconds)
    out: dict[str, Any] = {"window_s": span}
    for key, tolerance in (
        ("rss_mib", f"{args.rss_tolerance:g}%"),
        ("fds", f"{args.fd_tolerance:g}%"),
        ("other_fds", str(POOL_SWING)),
    ):
        a = statistics.median(getattr(s, key) for s in early) if early else float("nan")
        b = statistics.median(getattr(s, key) for s in late) if late else float("nan")
        growth = 100 * (b - a) / a if a else float("nan")
        allowed = float(tolerance[:-1]) * a / 100 if tolerance.endswith("%") else float(tolerance)
        out[key] = {
            "after_warmup": a,
            "end": b,
            "growth_pct": growth,
            "max_after_warmup": max((getattr(s, key) for s in after), default=float("nan")),
            "slope_per_min": slope_per_minute([(s.t, getattr(s, key)) for s in after]),
            "tolerance": tolerance,
            "flat": abs(b - a) <= allowed,
        }
    out["close_wait_max"] = max((s.close_wait for s in after), default=0)
    return out


def delivery(
    tallies: list[Tally], feed: list[tuple[int, str]], seqs: dict[str, int], feed_start: int
) -> dict[str, Any]:
    """Each stream against what PostgreSQL holds for it."""
    digest = 0
    for event_id, value in feed:
        digest = feed_hash(digest, event_id, value)
    out: dict[str, Any] = {}
    for kind in ("feed", "user"):
        mine = [t for t in tallies if t.kind == kind]
        expected = delivered = lost = duplicated = wrong = 0
        for t in mine:
            want = len(feed) if kind == "feed" else seqs[t.path]
            expected += want
            delivered += t.count
            duplicated += t.duplicates
            if kind == "feed":
                lost += max(0, want - t.count)
                wrong += t.digest != digest
            else:
                lost += t.gaps + max(0, want - t.last_id)
                wrong += t.last_id > want
        out[kind] = {
            "streams": len(mine),
            "expected": expected,
            "delivered": delivered,
            "lost": lost,
            "duplicated": duplicated,
            # feed: streams whose sequence (ids, values, order) differs from PostgreSQL's;
            # user: streams that got a seq PostgreSQL does not have
            "streams_not_matching": wrong,
            "resets": sum(t.resets for t in mine),
            "connects": sum(t.connects for t in mine),
            "client_reconnects": sum(t.reconnects for t in mine),
            "server_ends": sum(t.server_ends for t in mine),
            "failed_connects": sum(t.failed_connects for t in mine),
        }
    out["feed"]["values_in_postgresql"] = len(feed)
    out["feed"]["resumed_from"] = feed_start
    return out


async def caught_up(
    tallies: list[Tally], feed: list[tuple[int, str]], seqs: dict[str, int], limit: float
) -> float:
    """Wait (at most ``limit`` seconds) until every stream stands at its last stored id."""
    newest = feed[-1][0] if feed else 0
    started = time.monotonic()
    while time.monotonic() - started < limit:
        if all(t.last_id >= (newest if t.kind == "feed" else seqs[t.path]) for t in tallies):
            break
        await asyncio.sleep(0.2)
    return time.monotonic() - started


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    limit = raise_nofile()
    say(f"open files limit {limit}")
    redis = RedisProcess().start()
    redis_port = redis.port
    say(f"Redis (Valkey) of this run on port {redis_port}")
    samples: list[Sample] = []
    events: dict[str, float] = {}
    notes: dict[str, str] = {}
    try:
        with ours(extra_env={"REDIS_URL": redis.url}) as target:
            pid = target.proc.pid
            timeout = aiohttp.ClientTimeout(total=30)
            async with aiohttp.ClientSession(timeout=timeout) as setup:
                say(f"{target.name} on port {target.port}, pid {pid}; building the fixtures")
                world = await build_world(setup, target.base, args)
                feed_start = await newest_value_id(setup, target.base)
            say(
                f"{len(world.users)} users, {len(world.tasks)} tasks with a story each, "
                f"{len(world.tasks[0].members) - 1} collaborators per task"
            )
            # Idle: no request and no stream open (the setup's connections closed).
            await asyncio.sleep(2)
            idle_before = fd_kinds(pid)
            connector = aiohttp.TCPConnector(limit=IN_FLIGHT + 8)
            async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
                world.session = session
                rng = random.Random(5)
                feed_count = args.streams - args.user_streams
                tallies = [
                    Tally("feed", "/events/", None, feed_start, voluntary=i < args.reconnecting)
                    for i in range(feed_count)
                ] + [
                    Tally("user", f"/sse/{u.id}", u.token, 0, voluntary=i < args.reconnecting)
                    for i, u in enumerate(world.users)
                ]
                streams = Streams(target.port, tallies)
                total = args.minutes * 60
                lives_deadline = time.monotonic() + total + 600
                lives = [
                    asyncio.create_task(
                        streams.life(t, random.Random(rng.random()), lives_deadline)
                    )
                    for t in tallies
                ]
                opening = time.monotonic()
                while streams.open_now() < len(tallies) and time.monotonic() - opening < 180:
                    await asyncio.sleep(0.2)
                say(
                    f"{streams.open_now()}/{len(tallies)} streams open in "
                    f"{time.monotonic() - opening:.1f} s ({feed_count} feed, "
                    f"{args.user_streams} user; {args.reconnecting} of each kind reconnect)"
                )
                await asyncio.sleep(2)
                show(await sample(target, session, streams, world, -1.0), "before the load")

                load_started = time.monotonic()
                load_until = load_started + total
                sampling = asyncio.create_task(
                    sampler(target, session, streams, world, load_started,
                            args.sample_every, load_until, samples, notes)
                )  # fmt: skip
                load = asyncio.create_task(mixed_load(world, args.rate, load_until))

                # Redis stops in the middle of the run and comes back --redis-down s later.
                await asyncio.sleep(max(0.0, load_started + total / 2 - time.monotonic()))
                await asyncio.to_thread(redis.stop)
                events["redis_stopped_s"] = time.monotonic() - load_started
                notes["now"] = "<- Redis stopped"
                say(f"Redis stopped at {events['redis_stopped_s']:.0f} s")
                await asyncio.sleep(args.redis_down)
                redis = await asyncio.to_thread(RedisProcess(port=redis_port).start)
                events["redis_started_s"] = time.monotonic() - load_started
                notes["now"] = "<- Redis restarted"
                say(f"Redis restarted at {events['redis_started_s']:.0f} s")

                load_info = await load
                load_seconds = time.monotonic() - load_started
                await sampling
                streams.settle.set()
                say(f"load stopped after {load_seconds:.0f} s; checking every stream")
                await asyncio.sleep(2)
                feed = await stored_feed(session, target.base, feed_start)
                seqs = {}
                for start in range(0, len(world.users), 50):
                    batch = world.users[start : start + 50]
                    found = await asyncio.gather(
                        *(newest_seq(session, target.base, u) for u in batch)
                    )
                    seqs.update({f"/sse/{u.id}": s for u, s in zip(batch, found, strict=True)})
                waited = await caught_up(tallies, feed, seqs, 60)
                end_sample = await sample(target, session, streams, world, load_seconds + waited)
                show(end_sample, "load stopped, streams caught up")
                delivered = delivery(tallies, feed, seqs, feed_start)
                delivered["catch_up_wait_s"] = waited

                streams.stop.set()
                await asyncio.wait(lives, timeout=60)
                # The service lets a stream go when it next writes to it (news or a heartbeat).
                closing = time.monotonic()
                left = await sample(target, session, streams, None, 0)
                while time.monotonic() - closing < 60:
                    await asyncio.sleep(1)
                    left = await sample(target, session, streams, None, 0)
                    if left.streams_open_server == 0:
                        break
                streams_gone_s = time.monotonic() - closing
                show(left, "every stream closed")
            # Idle again: the load's connections closed too.
            await asyncio.sleep(2)
            idle_after = fd_kinds(pid)
            rss_after = rss_kib(pid) / 1024
    finally:
        redis.stop()

    requests, errors = world.totals()
    span = samples[-1].t - samples[0].t
    result = {
        "args": vars(args),
        "load_seconds": load_seconds,
        "redis": events,
        "requests": requests,
        "errors": errors,
        "requests_per_second": requests / load_seconds,
        "values_posted": world.values_posted,
        "worst_late_s": load_info["worst_late_s"],
        # Of one core, over the load: the service, and this process (the load generator reads
        # every stream: when it is busy, the request latencies below include its delays).
        "service_cpu_pct": 100 * (samples[-1].cpu_s - samples[0].cpu_s) / span,
        "generator_cpu_pct": 100
        * (samples[-1].generator_cpu_s - samples[0].generator_cpu_s)
        / span,
        "service_threads": [min(s.threads for s in samples), max(s.threads for s in samples)],
        "per_request": {
            op: {
                "done": s.done,
                "errors": s.errors,
                "error_statuses": dict(s.statuses),
                "p50_ms": percentile(s.latencies, 50) * 1000,
                "p99_ms": percentile(s.latencies, 99) * 1000,
            }
            for op, s in sorted(world.stats.items())
        },
        "flat": flatness(samples, args, load_seconds),
        "delivery": delivered,
        "idle_fds": {
            "before_streams": idle_before,
            "after_streams_closed": idle_after,
            "rss_mib_after_streams_closed": round(rss_after, 1),
            "server_streams_after_close": left.streams_open_server,
            # The PostgreSQL pool holds 2 to 10 connections: up to 8 may come or go.
            "flat": abs(idle_after["total"] - idle_before["total"]) <= POOL_SWING,
            "server_let_go_of_streams_s": streams_gone_s,
        },
        "end_sample": vars(end_sample),
    }
    return {"result": result, "samples": [vars(s) for s in samples]}


def table(r: dict[str, Any]) -> str:
    f, d = r["flat"], r["delivery"]
    rss, fds = f["rss_mib"], f["fds"]

    def flat(x: dict[str, Any], unit: str, fmt: str) -> str:
        return (
            f"{format(x['after_warmup'], fmt)} → {format(x['end'], fmt)} {unit} "
            f"({x['growth_pct']:+.1f}%; slope {x['slope_per_min']:+.2f}/min; max "
            f"{format(x['max_after_warmup'], fmt)}): "
            + ("flat" if x["flat"] else "NOT flat")
            + f" (tolerance ±{x['tolerance']})"
        )

    def stream_row(kind: str) -> str:
        x = d[kind]
        return (
            f"| {kind} streams ({x['streams']:,}): delivered / expected, lost, duplicated | "
            f"{x['delivered']:,} / {x['expected']:,}, {x['lost']} lost, {x['duplicated']} "
            f"duplicated, {x['streams_not_matching']} not matching PostgreSQL, "
            f"{x['resets']} resets |"
        )

    def kinds(fds: dict[str, int]) -> str:
        return (
            f"{fds['total']} ("
            + ", ".join(f"{k} {v}" for k, v in fds.items() if k != "total")
            + ")"
        )

    args = r["args"]
    lines = [
        f"| soak: {args['minutes']:g} min, {args['streams']:,} streams, "
        f"{args['rate']:g} requests/s, Redis down {args['redis_down']:g} s in the middle "
        "| measured |",
        "|---|---|",
        f"| RSS, after warm-up ({args['warmup']:g} s) → end (medians of {f['window_s']:g} s) "
        f"| {flat(rss, 'MiB', '.1f')} |",
        f"| open fds, after warm-up → end | {flat(fds, '', '.0f')} |",
        f"| fds other than client connections (PostgreSQL, Redis, files, pipes) | "
        f"{flat(f['other_fds'], '', '.0f')} |",
        f"| CLOSE_WAIT sockets (client gone, service not yet closed), most after warm-up | "
        f"{f['close_wait_max']} |",
        f"| idle fds (no request, no stream): before → after the run | "
        f"{kinds(r['idle_fds']['before_streams'])} → "
        f"{kinds(r['idle_fds']['after_streams_closed'])}: "
        + ("flat" if r["idle_fds"]["flat"] else "NOT flat")
        + f" (tolerance ±{POOL_SWING}, the PostgreSQL pool's swing) |",
        f"| streams the service still counts after the clients closed theirs (waited) | "
        f"{r['idle_fds']['server_streams_after_close']} "
        f"({r['idle_fds']['server_let_go_of_streams_s']:.0f} s) |",
        f"| requests done (per second) | {r['requests']:,} ({r['requests_per_second']:.1f}/s) |",
        f"| errors (anything but the expected status) | {r['errors']} |",
        stream_row("feed"),
        stream_row("user"),
        f"| reconnects: by the clients / ended by the server / failed connects | "
        f"{d['feed']['client_reconnects'] + d['user']['client_reconnects']:,} / "
        f"{d['feed']['server_ends'] + d['user']['server_ends']:,} / "
        f"{d['feed']['failed_connects'] + d['user']['failed_connects']:,} |",
        f"| values posted / in PostgreSQL | {r['values_posted']:,} / "
        f"{d['feed']['values_in_postgresql']:,} |",
        f"| Redis stopped / restarted at | {r['redis'].get('redis_stopped_s', float('nan')):.0f}"
        f" s / {r['redis'].get('redis_started_s', float('nan')):.0f} s |",
        f"| load generator: worst lag behind its schedule | {r['worst_late_s'] * 1000:.0f} ms |",
        f"| CPU of one core: service / load generator | {r['service_cpu_pct']:.0f}% / "
        f"{r['generator_cpu_pct']:.0f}% |",
        f"| service threads (min / max) | {r['service_threads'][0]} / {r['service_threads'][1]} |",
    ]
    lines += ["", "| request | done | errors | p50 ms | p99 ms |", "|---|---|---|---|---|"]
    for op, x in r["per_request"].items():
        errors = str(x["errors"])
        if x["error_statuses"]:
            errors += " (" + ", ".join(f"{k}: {v}" for k, v in x["error_statuses"].items()) + ")"
        lines.append(f"| {op} | {x['done']:,} | {errors} | {x['p50_ms']:.1f} | {x['p99_ms']:.1f} |")
    return "\n".join(lines)


def plot(run: dict[str, Any], path: Path) -> bool:
    """RSS and open descriptors over time, the warm-up and the Redis outage shaded."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        say("matplotlib is not installed (pip install -e '.[bench]'): no plot")
        return False
    samples, r = run["samples"], run["result"]
    minutes = [s["t"] / 60 for s in samples]
    fig, (top, middle, bottom) = plt.subplots(3, 1, sharex=True, figsize=(9, 8), dpi=110)
    top.plot(minutes, [s["rss_mib"] for s in samples], color="tab:blue")
    top.set_ylabel("RSS (MiB)")
    middle.plot(minutes, [s["fds"] for s in samples], color="tab:orange")
    middle.set_ylabel("open fds")
    bottom.plot(minutes, [s["other_fds"] for s in samples], color="tab:green")
    bottom.plot(minutes, [s["close_wait"] for s in samples], color="tab:purple", label="CLOSE_WAIT")
    bottom.set_ylabel("fds other than\nclient connections")
    bottom.set_xlabel("minutes since the load started")
    for axis in (top, middle, bottom):
        axis.axvspan(0, r["args"]["warmup"] / 60, color="0.9", label="warm-up")
        if "redis_stopped_s" in r["redis"]:
            axis.axvspan(
                r["redis"]["redis_stopped_s"] / 60,
                r["redis"]["redis_started_s"] / 60,
                color="tab:red",
                alpha=0.2,
                label="Redis down",
            )
        axis.grid(alpha=0.3)
        axis.set_ylim(0, axis.get_ylim()[1] * 1.15)  # from zero: growth at its true scale
    for axis, key, what in (
        (top, "rss_mib", "service RSS (MiB)"),
        (middle, "fds", "service's open file descriptors"),
        (bottom, "other_fds", "of them not client connections; sockets in CLOSE_WAIT"),
    ):
        x = r["flat"][key]
        axis.set_title(
            f"{what}: after warm-up {x['after_warmup']:,.1f}, end {x['end']:,.1f} "
            f"(tolerance ±{x['tolerance']}: {'flat' if x['flat'] else 'NOT flat'})",
            fontsize=9,
            loc="left",
        )
    top.legend(loc="lower right")
    bottom.legend(loc="center right")
    a = r["args"]
    fig.suptitle(
        f"bench.soak: {a['minutes']:g} min, {a['streams']:,} SSE streams, "
        f"{a['rate']:g} requests/s, Redis restarted in the middle"
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    say(f"plot written to {path}")
    return True


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--short", action="store_true", help="a smoke run: 2 min, 200 streams")
    parser.add_argument("--streams", type=int, default=2000, help="SSE streams, both kinds")
    parser.add_argument("--user-streams", type=int, default=400, help="of --streams")
    parser.add_argument("--reconnecting", type=int, default=100, help="of each kind")
    parser.add_argument("--events", type=int, default=8, help="fixture events, 5 tasks each")
    parser.add_argument("--rate", type=float, default=70.0, help="requests per second")
    parser.add_argument("--redis-down", type=float, default=10.0, help="seconds")
    parser.add_argument("--warmup", type=float, default=60.0, help="seconds")
    parser.add_argument("--window", type=float, default=60.0, help="seconds averaged")
    parser.add_argument("--sample-every", type=float, default=5.0, help="seconds")
    parser.add_argument("--rss-tolerance", type=float, default=5.0, help="percent")
    parser.add_argument("--fd-tolerance", type=float, default=2.0, help="percent")
    parser.add_argument("--plot", default=None, help="PNG (default docs/soak.png)")
    args = parser.parse_args()
    if args.short:
        args.minutes, args.streams, args.user_streams, args.reconnecting = 2.0, 200, 50, 20
        args.events, args.redis_down, args.warmup, args.window = 2, 5.0, 20.0, 20.0
        args.sample_every = min(args.sample_every, 2.0)
        # Of ~230 fds, up to IN_FLIGHT + 8 = 72 are the load's own keep-alive connections,
        # which come and go with the requests in flight (30%); the fds other than client
        # connections keep their tight bound.
        args.fd_tolerance = max(args.fd_tolerance, 30.0)
    args.minutes = max(1.0, min(args.minutes, 120.0))
    args.streams = max(2, min(args.streams, 10_000))
    args.user_streams = max(1, min(args.user_streams, args.streams - 1, 5_000))
    args.reconnecting = max(0, min(args.reconnecting, args.user_streams))
    args.rate = max(1.0, min(args.rate, 2_000.0))
    args.redis_down = max(1.0, min(args.redis_down, args.minutes * 60 / 4))
    args.warmup = min(args.warmup, args.minutes * 60 / 3)
    args.window = min(args.window, (args.minutes * 60 - args.warmup) / 3)
    if args.plot is None:  # a smoke run does not overwrite the plot in docs/
        args.plot = str(ROOT / ("bench/results/soak-short.png" if args.short else "docs/soak.png"))
    run = asyncio.run(main_async(args))
    print()
    print(table(run["result"]))
    print()
    print(json.dumps({k: v for k, v in run["result"].items() if k != "per_request"}, indent=2))
    plot(run, Path(args.plot))
    save_results("soak", run)


if __name__ == "__main__":
    main()
