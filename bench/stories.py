"""Stories (issue 11): edits, merges, rebuilt revisions and storage, beside GET /events/{id}.

    python -m bench.stories                       # 10 s per load phase, 16 clients, 1 round
    python -m bench.stories --seconds 5 --rounds 3
    python -m bench.stories --comments            # also bench.comments: the issue's whole list

One run, one service (BENCH_DATABASE_URL / BENCH_REDIS_URL when set), its numbers against
issue 11's targets:

1. A 1,000-revision story of 100 KiB built through the API (one-line edits with PATCH
   .../content, each over the revision before), every revision read back once in random
   order and checked against the text written (the latency of those reads beside GET
   /stories/{id}, a page of 50 revisions with diffs and a whole-history diff).
2. With BENCH_DATABASE_URL: bytes per revision: the two story tables (heap, TOAST, indexes)
   after VACUUM FULL, before and after --edits one-line edits of another 100 KiB story,
   divided by --edits; and every revision of the 1,000-revision story rebuilt in this
   process (stories.service.get_revision: access query, chain read, deltas applied), three
   times each: the slowest revision's median is the rebuild bound's number.
3. Load phases, each --seconds at --clients, in this order per round (--rounds, medians):
   the authenticated GET /events/{id} (the reference); PATCH .../content one-line edits of
   100 KiB stories, every client on its own story, each over the revision it last wrote
   (every answer 200 with the next revision's ETag); the same with merge: true and a base
   5 revisions behind, the edited line 2 or more lines away from the 5 edits since (every
   answer 200, merged: true, and exactly the expected text); GET /stories/{id}/revisions/{n}
   of the 1,000-revision story, n random.

Prints progress, a latency table, and the targets beside the measures with PASS or MISS;
numbers go to bench/results/stories-<time>.json. Bounded: every loop in time and count.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import json
import os
import random
import statistics
import string
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import asyncpg
import orjson

from server.db import Database, create_pool
from server.sql import Queries
from server.stories.service import get_revision

from . import comments as comments_bench
from .common import cpu_seconds, ours, percentile, raise_nofile, save_results, say

STORY_TABLES = ("stories", "story_revisions")
KIB = 1024
# Edits are sent as UTF-8 JSON (orjson), as a browser's JSON.stringify sends them, not with
# every non-ASCII character escaped (json.dumps): the load generator spends less of the
# shared CPU, and the server parses what clients send.
JSON = {"Content-Type": "application/json"}


def story_text(kib: int, rng: random.Random) -> list[str]:
    alphabet = string.ascii_letters + string.digits + " .,;:!?#*-éΩ"
    lines: list[str] = []
    size = 0
    while size < kib * KIB:
        line = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 80))) + "\n"
        lines.append(line)
        size += len(line.encode())
    return lines


async def timed(session: aiohttp.ClientSession, url: str, headers: dict[str, str]) -> Any:
    started = time.perf_counter()
    async with session.get(url, headers=headers) as response:
        body = await response.json()
        assert response.status == 200, body
    return time.perf_counter() - started, body


async def post(
    session: aiohttp.ClientSession, url: str, body: dict[str, Any], headers: dict[str, str]
) -> dict[str, Any]:
    async with session.post(url, json=body, headers=headers) as response:
        found = await response.json()
        assert response.status == 201, found
        return dict(found)


class Writer:
    """One client's story: its lines as last written, its revision, and the last 6
    revisions' lines with the line each edit changed (all edits replace one line, so line
    positions never move)."""

    def __init__(self, story_id: str, lines: list[str], number: int) -> None:
        self.story_id = story_id
        self.lines = lines
        self.revision = 1
        self.number = number
        self.rng = random.Random(number)
        self.history: collections.deque[tuple[int, list[str], int]] = collections.deque(
            maxlen=6
        )  # (revision, its lines, the line its edit changed)
        self.history.append((1, list(lines), -10))

    def edited(self, lines: list[str], position: int) -> None:
        self.revision += 1
        self.lines = lines
        self.history.append((self.revision, lines, position))

    def next_line(self) -> str:
        return f"client {self.number} revision {self.revision + 1}\n"


async def edit(
    session: aiohttp.ClientSession, base: str, auth: dict[str, str], writer: Writer
) -> None:
    """One one-line edit over the writer's current revision."""
    position = writer.rng.randrange(len(writer.lines))
    lines = list(writer.lines)
    lines[position] = writer.next_line()
    body = {"content": "".join(lines), "base_revision": writer.revision}
    url = f"{base}/stories/{writer.story_id}/content"
    async with session.patch(url, data=orjson.dumps(body), headers=auth | JSON) as response:
        await response.read()
        assert response.status == 200, (response.status, await response.text())
        assert response.headers["ETag"] == f'"{writer.revision + 1}"', response.headers
    writer.edited(lines, position)


async def merge_edit(
    session: aiohttp.ClientSession, base: str, auth: dict[str, str], writer: Writer
) -> None:
    """One one-line edit of the revision 5 behind the current one, with merge: true, on a
    line 2 or more away from the 5 edits since (so nothing overlaps or touches): the answer
    must be merged, at the next revision, with exactly that line changed in the current
    text."""
    assert len(writer.history) == 6, "a merge needs the 5 revisions after its base"
    base_revision, base_lines, _ = writer.history[0]
    since = [position for _, _, position in list(writer.history)[1:]]
    for _ in range(1000):
        position = writer.rng.randrange(len(writer.lines))
        if all(abs(position - p) >= 2 for p in since):
            break
    line = writer.next_line()
    ours = list(base_lines)
    ours[position] = line
    expected = list(writer.lines)
    expected[position] = line
    body = {"content": "".join(ours), "base_revision": base_revision, "merge": True}
    url = f"{base}/stories/{writer.story_id}/content"
    async with session.patch(url, data=orjson.dumps(body), headers=auth | JSON) as response:
        answer = orjson.loads(await response.read())
        assert response.status == 200, answer
    assert answer["merged"] is True, answer["merged"]
    assert answer["revision"] == writer.revision + 1, (answer["revision"], writer.revision)
    assert answer["content"] == "".join(expected), "the merged text is not the expected one"
    writer.edited(expected, position)


async def drive(
    label: str,
    clients: int,
    seconds: float,
    step: Callable[[aiohttp.ClientSession, int], Awaitable[None]],
    server_pid: int,
) -> dict[str, Any]:
    """``clients`` workers calling ``step(session, worker)`` back to back for ``seconds``;
    a step raises on a wrong answer, which ends the run."""
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds
    cpu_before = cpu_seconds(server_pid)
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker(number: int) -> None:
            for _ in range(1_000_000):
                if time.perf_counter() >= deadline:
                    return
                started = time.perf_counter()
                await step(session, number)
                latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(worker(n) for n in range(clients)))
        elapsed = time.perf_counter() - started
    result = {
        "requests": len(latencies),
        "per_second": len(latencies) / elapsed,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "cpu_ms_per_request": (cpu_seconds(server_pid) - cpu_before)
        * 1000
        / max(len(latencies), 1),
    }
    say(
        f"  {label}: {result['per_second']:,.0f}/s, p50 {result['p50_ms']:.1f} ms, "
        f"p99 {result['p99_ms']:.1f} ms, {result['cpu_ms_per_request']:.2f} server CPU ms/request"
    )
    return result


async def stored_bytes(conn: asyncpg.Connection) -> int:
    """The bytes of the two story tables, heap, TOAST and indexes, packed tight: the least of
    three VACUUM FULLs a second apart (VACUUM FULL keeps a dead row version that a snapshot
    open somewhere in the database may still see, here the stories row's 100 KiB ones; on a
    shared machine other sessions' transactions come and go)."""
    sizes = []
    for attempt in range(3):
        if attempt:
            await asyncio.sleep(1)
        total = 0
        for table in STORY_TABLES:
            await conn.execute(f"VACUUM FULL {table}")
            total += await conn.fetchval("SELECT pg_total_relation_size($1::regclass)", table)
        sizes.append(int(total))
    return min(sizes)


async def bytes_per_revision(
    session: aiohttp.ClientSession, base: str, auth: dict[str, str], task_id: str, edits: int
) -> dict[str, Any]:
    """--edits one-line edits of a fresh 100 KiB story, the story tables measured around
    them (after VACUUM FULL): bytes added per edit, and the snapshots among the edits."""
    lines = story_text(100, random.Random(5))
    body = {"task_id": task_id, "title": "Size", "content": "".join(lines)}
    story = await post(session, base + "/stories", body, auth)
    writer = Writer(story["id"], lines, 1000)
    conn = await asyncpg.connect(os.environ["BENCH_DATABASE_URL"])
    try:
        before = await stored_bytes(conn)
        for _ in range(edits):
            await edit(session, base, auth, writer)
        after = await stored_bytes(conn)
        snapshots = await conn.fetchval(
            "SELECT count(*) FROM story_revisions WHERE story_id = $1 AND content IS NOT NULL"
            " AND revision > 1",
            uuid.UUID(story["id"]),
        )
    finally:
        await conn.close()
    per_edit = (after - before) / edits
    say(f"storage: {edits} one-line edits added {after - before:,} bytes, {per_edit:,.0f} per "
        f"edit ({snapshots} snapshots among them)")  # fmt: skip
    return {"edits": edits, "before": before, "after": after, "per_edit": per_edit,
            "snapshots": snapshots}  # fmt: skip


async def rebuild_in_process(
    user_id: str, story_id: str, order: list[int], texts: list[str], repeats: int
) -> dict[int, list[float]]:
    """The use case alone (stories.service.get_revision: the access query, the chain's one
    range read, the deltas applied), without HTTP, on BENCH_DATABASE_URL: seconds per
    revision, ``repeats`` times each, every result checked."""
    pool = await create_pool(
        os.environ["BENCH_DATABASE_URL"], min_size=1, max_size=1, command_timeout=30
    )
    try:
        db = Database(pool, Queries())
        caller, story = uuid.UUID(user_id), uuid.UUID(story_id)
        spent: dict[int, list[float]] = {n: [] for n in order}
        for _ in range(repeats):
            for n in order:
                started = time.perf_counter()
                found = await get_revision(db, caller, story, n)
                spent[n].append(time.perf_counter() - started)
                assert found.content == texts[n - 1], n
        return spent
    finally:
        await pool.close()


def row(name: str, values: list[float]) -> str:
    ms = [v * 1000 for v in values]
    return (
        f"| {name} | {len(ms)} | {percentile(ms, 50):.1f} | {percentile(ms, 99):.1f} "
        f"| {max(ms):.1f} |"
    )


def median_of(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    merged: dict[str, Any] = {"rounds": len(rounds)}
    for field in rounds[0]:
        values = sorted(r[field] for r in rounds)
        merged[field] = statistics.median(values)
        merged[field + "_range"] = (values[0], values[-1])
    return merged


def spread(result: dict[str, Any], field: str, form: str) -> str:
    if result["rounds"] < 2:
        return form.format(result[field])
    low, high = result[field + "_range"]
    return f"{form.format(result[field])} ({form.format(low)}-{form.format(high)})"


async def build_history(
    session: aiohttp.ClientSession,
    base: str,
    auth: dict[str, str],
    task_id: str,
    args: argparse.Namespace,
) -> tuple[str, list[str], dict[str, list[float]]]:
    """The --revisions story, built serially and every revision read back and checked."""
    rng = random.Random(7)
    lines = story_text(args.kib, rng)
    texts = ["".join(lines)]
    story = {"task_id": task_id, "title": "History", "content": texts[0]}
    story_id = (await post(session, base + "/stories", story, auth))["id"]
    say(f"story of {len(texts[0].encode()) / KIB:.0f} KiB; {args.revisions} revisions")
    started = time.perf_counter()
    for n in range(2, args.revisions + 1):
        lines[rng.randrange(len(lines))] = f"edit {n}\n"
        texts.append("".join(lines))
        body = {"content": texts[-1], "base_revision": n - 1}
        url = f"{base}/stories/{story_id}/content"
        async with session.patch(url, json=body, headers=auth) as response:
            assert response.status == 200, await response.text()
    say(f"{args.revisions - 1} edits in {time.perf_counter() - started:.1f} s, one at a time")
    order = list(range(1, args.revisions + 1))
    rng.shuffle(order)
    latency: dict[str, list[float]] = {"current": [], "revision": [], "page": [], "diff": []}
    for n in order:
        latency["current"].append((await timed(session, f"{base}/stories/{story_id}", auth))[0])
        spent, found = await timed(session, f"{base}/stories/{story_id}/revisions/{n}", auth)
        assert found["content"] == texts[n - 1], n
        latency["revision"].append(spent)
    say(f"every one of the {args.revisions} revisions read back and checked")
    for after in range(0, args.revisions, 50):
        cursor = ""
        if after:
            raw = json.dumps({"after": after}, separators=(",", ":")).encode()
            cursor = base64.urlsafe_b64encode(raw).decode().rstrip("=")
        url = f"{base}/stories/{story_id}/revisions?limit=50&cursor={cursor}"
        latency["page"].append((await timed(session, url, auth))[0])
    diff_url = f"{base}/stories/{story_id}/diff?from=1&to={args.revisions}"
    latency["diff"] = [(await timed(session, diff_url, auth))[0] for _ in range(10)]
    return story_id, texts, latency


async def main_async(args: argparse.Namespace) -> None:
    raise_nofile()
    direct = bool(os.environ.get("BENCH_DATABASE_URL"))
    if not direct:
        say("BENCH_DATABASE_URL unset: storage and the in-process rebuild are not measured")
    out: dict[str, Any] = {"args": vars(args)}
    with ours() as target:
        base, pid = target.base, target.proc.pid
        say(f"{target.name} on port {target.port}")
        async with aiohttp.ClientSession() as session:
            user = await post(
                session, base + "/users", {"name": "Writer", "email": "writer@bench.example"}, {}
            )
            auth = {"Authorization": f"Bearer {user['token']}"}
            event = await post(
                session,
                base + "/events",
                {"title": "Bench", "start_date": "2030-01-15T10:00:00Z",
                 "end_date": "2030-01-15T11:00:00Z"},
                auth,
            )  # fmt: skip
            task = await post(
                session,
                base + "/tasks",
                {"event_id": event["id"], "title": "Bench", "duration_minutes": 60},
                auth,
            )
            history_id, texts, latency = await build_history(session, base, auth, task["id"], args)
            out["latency_ms"] = {k: [v * 1000 for v in vs] for k, vs in latency.items()}
            if direct:
                out["storage"] = await bytes_per_revision(
                    session, base, auth, task["id"], args.edits
                )
            writers = []
            for number in range(args.clients):
                lines = story_text(args.kib, random.Random(100 + number))
                body = {"task_id": task["id"], "title": f"S{number}", "content": "".join(lines)}
                made = await post(session, base + "/stories", body, auth)
                writers.append(Writer(made["id"], lines, number))
            # Five edits each before the first merge phase (a merge's base is 5 behind).
            for writer in writers:
                for _ in range(5):
                    await edit(session, base, auth, writer)
        event_url = f"{base}/events/{event['id']}"

        async def get_event(session: aiohttp.ClientSession, _: int) -> None:
            async with session.get(event_url, headers=auth) as response:
                await response.read()
                assert response.status == 200, response.status

        async def patch(session: aiohttp.ClientSession, number: int) -> None:
            await edit(session, base, auth, writers[number])

        async def patch_merge(session: aiohttp.ClientSession, number: int) -> None:
            await merge_edit(session, base, auth, writers[number])

        read_rng = random.Random(3)

        async def get_old_revision(session: aiohttp.ClientSession, _: int) -> None:
            n = read_rng.randint(1, args.revisions)
            url = f"{base}/stories/{history_id}/revisions/{n}"
            async with session.get(url, headers=auth) as response:
                await response.read()
                assert response.status == 200, response.status

        phases = [
            ("get_event", "authenticated GET /events/{id}", get_event),
            ("patch", "PATCH .../content, one line of 100 KiB, own story", patch),
            ("merge", "the same with merge: true, base 5 revisions behind", patch_merge),
            ("revision", f"GET /stories/{{id}}/revisions/{{n}}, n random in 1..{args.revisions}",
             get_old_revision),
        ]  # fmt: skip
        rounds: dict[str, list[dict[str, Any]]] = {key: [] for key, _, _ in phases}
        for number in range(1, args.rounds + 1):
            say(f"round {number} of {args.rounds}: {args.clients} clients, {args.seconds:g} s each")
            for key, label, step in phases:
                rounds[key].append(await drive(label, args.clients, args.seconds, step, pid))
        out["rounds"] = rounds
    rebuilt: dict[int, list[float]] = {}
    if direct:
        order = list(range(1, args.revisions + 1))
        random.Random(9).shuffle(order)
        rebuilt = await rebuild_in_process(user["id"], history_id, order, texts, 3)
        out["in_process_ms"] = {n: [v * 1000 for v in vs] for n, vs in rebuilt.items()}
    thread: dict[str, Any] = {}
    if args.comments:
        say("bench.comments: a 1,000-comment thread's pages beside GET /events/{id}")
        thread = await comments_bench.main_async(
            argparse.Namespace(seconds=args.seconds, clients=args.clients, comments=1000)
        )
    report(args, latency, rebuilt, rounds, out, thread)
    save_results("stories", out)


def report(
    args: argparse.Namespace,
    latency: dict[str, list[float]],
    rebuilt: dict[int, list[float]],
    rounds: dict[str, list[dict[str, Any]]],
    out: dict[str, Any],
    thread: dict[str, Any],
) -> None:
    print()
    print(f"story of {args.kib} KiB, {args.revisions} revisions, one-line edits, one client; "
          "latency in ms")  # fmt: skip
    print()
    print("| request | n | p50 | p99 | max |")
    print("|---|---|---|---|---|")
    print(row("GET /stories/{id} (current, no rebuild)", latency["current"]))
    print(row("GET /stories/{id}/revisions/{n} (rebuilt)", latency["revision"]))
    print(row("GET /stories/{id}/revisions?limit=50 (with diffs)", latency["page"]))
    print(row(f"GET /stories/{{id}}/diff?from=1&to={args.revisions}", latency["diff"]))
    if rebuilt:
        every = [v for vs in rebuilt.values() for v in vs]
        print(row("stories.service.get_revision, in process, 3 times each", every))
        print(row(f"the same, revision {args.revisions}", rebuilt[args.revisions]))
    loads = {key: median_of(found) for key, found in rounds.items()}
    out["medians"] = loads
    # A phase's rate beside GET /events/{id} of the same round (the machine's load moves
    # between rounds), the median over the rounds.
    shares = {
        key: statistics.median(
            r["per_second"] / e["per_second"]
            for r, e in zip(found, rounds["get_event"], strict=True)
        )
        for key, found in rounds.items()
    }
    out["shares"] = shares
    print()
    medians = f", median of {args.rounds} rounds (lowest-highest)" if args.rounds > 1 else ""
    print(f"{args.clients} clients, {args.seconds:g} s per phase{medians}")
    print()
    print(
        "| load | requests/s | p50 (ms) | p99 (ms) | server CPU ms/request "
        "| beside GET /events/{id} of the same round |"
    )
    print("|---|---|---|---|---|---|")
    labels = {
        "get_event": "authenticated GET /events/{id}",
        "patch": "PATCH .../content, one line of 100 KiB, own story",
        "merge": "PATCH .../content, merge: true, base 5 behind",
        "revision": f"GET /stories/{{id}}/revisions/{{n}} (n random, {args.revisions} revisions)",
    }
    for key, label in labels.items():
        r = loads[key]
        print(
            f"| {label} | {spread(r, 'per_second', '{:,.0f}')} | {spread(r, 'p50_ms', '{:.1f}')} "
            f"| {spread(r, 'p99_ms', '{:.1f}')} | {spread(r, 'cpu_ms_per_request', '{:.2f}')} "
            f"| {shares[key]:.0%} |"
        )
    checks: list[tuple[str, str, bool | None]] = [
        ("PATCH one-line edits: at least 500/s", f"{loads['patch']['per_second']:,.0f}/s",
         loads["patch"]["per_second"] >= 500),
        ("PATCH p99 under 50 ms", f"{loads['patch']['p99_ms']:.1f} ms",
         loads["patch"]["p99_ms"] < 50),
        ("merges (base 5 behind): at least 200/s", f"{loads['merge']['per_second']:,.0f}/s",
         loads["merge"]["per_second"] >= 200),
        ("GET revision n: at least half of GET /events/{id} (same round)",
         f"{shares['revision']:.0%}", shares["revision"] >= 0.5),
    ]  # fmt: skip
    if thread:
        thread_reference = thread["get_event"]["per_second"]
        for key in ("first_page", "middle_page", "page_of_200"):
            share = thread[key]["per_second"] / thread_reference
            checks.append(
                (f"{thread[key]['label']}: at least half of GET /events/{{id}} (bench.comments)",
                 f"{share:.0%}", share >= 0.5)
            )  # fmt: skip
    if "storage" in out:
        per_edit = out["storage"]["per_edit"]
        checks.append(
            ("a one-line edit of 100 KiB adds at most 4 KiB (story tables, VACUUM FULL)",
             f"{per_edit / KIB:.2f} KiB", per_edit <= 4 * KIB)
        )  # fmt: skip
    if rebuilt:
        worst = max(statistics.median(vs) for vs in rebuilt.values())
        checks.append(
            (f"any revision of {args.revisions} rebuilt under 20 ms (slowest revision's median "
             "of 3, in process)", f"{worst * 1000:.1f} ms", worst < 0.020)
        )  # fmt: skip
    print()
    print("| target (issue 11) | measured | verdict |")
    print("|---|---|---|")
    for label, measured, ok in checks:
        print(f"| {label} | {measured} | {'PASS' if ok else 'MISS'} |")
    out["targets"] = [{"target": t, "measured": m, "pass": ok} for t, m, ok in checks]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--revisions", type=int, default=1000)
    parser.add_argument("--kib", type=int, default=100)
    parser.add_argument("--edits", type=int, default=200, help="edits of the storage phase")
    parser.add_argument(
        "--comments", action="store_true", help="also run bench.comments (its own service)"
    )
    args = parser.parse_args()
    args.seconds = min(max(args.seconds, 1.0), 60.0)
    args.clients = max(1, min(args.clients, 256))
    args.rounds = max(1, min(args.rounds, 10))
    args.revisions = max(2, min(args.revisions, 10_000))
    args.edits = max(1, min(args.edits, 10_000))
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
