"""Task trees (issue 10): reads of a 1,000-task tree and concurrent subtask creates, beside the
authenticated GET /events/{id} of the same run.

    BENCH_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/<fresh db> python -m bench.tasks
    python -m bench.tasks --seconds 5 --clients 16

Builds through the API an event with 1,000 tasks 5 levels deep (4, 16, 64, 256 and 660 per
level, at most 16 requests in flight), and a second user made a collaborator of one level-3
task (POST /tasks/{id}/collaborators). Then, each phase bounded by --seconds at --clients
clients: GET /events/{id} as the owner (the reference); GET /events/{id}/tasks?limit=200 as
the owner (5 full pages per walk) and as the collaborator (its subtree: one page), each client
following `next` to the end and starting over; GET /tasks/{id} of a level-5 task inside the
collaborator's subtree, as the owner and as the collaborator; POST /events (one INSERT in
its own implicit transaction: what the cheapest create costs on this machine, for scale);
POST /tasks of one-minute subtasks, each client under its own level-4 parent (16 parents),
then all under one level-4 parent. The parents were given room for them (the duration rule).

A list "read" is one page request: its rate is pages/s, comparable request for request with
GET /events/{id}; a walk of the whole list is also shown (walks/s); the owner's walk also
at API.md's default page of 50. CPU per request is given three times: the service process's,
every process named postgres on the machine (bench.common.postgres_cpu_seconds: anything else
PostgreSQL runs meanwhile counts too), and this benchmark client's own (it shares the cores).

The plans: EXPLAIN (ANALYZE, BUFFERS) of every recursive (tree) statement of queries/tasks.sql,
loaded through server.sql.Queries, on the built tree before the read phases, with the indexes
its comment names that the plan reads: once as built (the tree is written in seconds, before
autovacuum has gathered statistics) and once after ANALYZE of tasks and task_members (what
autovacuum gives within a minute or so); with BENCH_DATABASE_URL the read phases run after that
ANALYZE. The plans need a database this process can reach: set BENCH_DATABASE_URL (a fresh
database; the service migrates it). Without it the service runs on its embedded PostgreSQL
and the plans are skipped (said so).

--profile: py-spy samples the service during each phase (it takes CPU from the same cores,
so the numbers of such a run are not the ones to quote); prints per phase the functions with
the most samples on top of the stack (self) and the service's own functions on the stack
(inclusive).

Prints a Markdown table and the plans; numbers go to bench/results/tasks-<time>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import orjson

from server.sql import _INDEX_NAME, Queries

from .common import (
    cpu_seconds,
    ours,
    percentile,
    postgres_cpu_seconds,
    raise_nofile,
    save_results,
    say,
)

LEVELS = (4, 16, 64, 256, 660)  # tasks per level: 1,000 in all, 5 levels deep
MAX_MINUTES = 525_600  # server.tasks.schemas.MAX_MINUTES
ROOM_EACH = 20_000  # free minutes of each of the 16 parents of the spread creates
ROOM_ONE = 300_000  # free minutes of the one parent of the contended creates
PAGE = 200  # the largest ?limit=
CREATE_CLIENTS = 16
EVENT_BODY = {
    "title": "Task tree",
    "start_date": "2030-01-01T10:00:00Z",
    "end_date": "2030-01-01T18:00:00Z",
}


class Tree:
    """The shape: parent index per task, level by level, and the durations that fit."""

    def __init__(self) -> None:
        self.levels: list[list[int]] = []  # task indexes per level
        self.parent: list[int | None] = []
        self.children: list[list[int]] = []
        for count in LEVELS:
            above = self.levels[-1] if self.levels else []
            row = []
            for i in range(count):
                index = len(self.parent)
                parent = above[i % len(above)] if above else None
                self.parent.append(parent)
                self.children.append([])
                if parent is not None:
                    self.children[parent].append(index)
                row.append(index)
            self.levels.append(row)
        level4 = self.levels[3]
        # One level-4 parent per level-2 task (spread over the whole tree), and one more.
        self.spread = [
            next(t for t in level4 if self.ancestor(t, 1) == l2) for l2 in self.levels[1]
        ]
        self.single = next(t for t in level4 if t not in self.spread)
        self.mid = self.ancestor(self.spread[0], 2)  # the collaborator's level-3 task
        self.deep = next(t for t in self.levels[4] if self.ancestor(t, 2) == self.mid)
        room = {t: ROOM_EACH for t in self.spread} | {self.single: ROOM_ONE}
        self.minutes = [0] * len(self.parent)
        for row in reversed(self.levels):
            for t in row:
                need = sum(self.minutes[c] for c in self.children[t]) + room.get(t, 0)
                self.minutes[t] = max(1, need)
                assert self.minutes[t] <= MAX_MINUTES, (t, self.minutes[t])

    def ancestors(self, task: int) -> list[int]:
        """The ancestors of ``task``, its parent first."""
        found = []
        while (up := self.parent[task]) is not None:
            found.append(up)
            task = up
        return found

    def ancestor(self, task: int, level: int) -> int:
        """The ancestor of ``task`` at ``level`` (0: top)."""
        return [*self.ancestors(task)[::-1], task][level]


async def post(
    session: aiohttp.ClientSession, url: str, body: dict[str, Any], headers: dict[str, str]
) -> dict[str, Any]:
    async with session.post(url, json=body, headers=headers) as response:
        found = await response.json()
        assert response.status == 201, (url, response.status, found)
        return dict(found)


async def build(base: str, tree: Tree) -> dict[str, Any]:
    """Owner, collaborator, the event and its 1,000 tasks, through the API."""
    async with aiohttp.ClientSession() as session:
        owner = await post(
            session, base + "/users", {"name": "Owner", "email": "o@bench.example"}, {}
        )
        other = await post(
            session, base + "/users", {"name": "Collab", "email": "c@bench.example"}, {}
        )
        auth = {"Authorization": f"Bearer {owner['token']}"}
        event_id = (await post(session, base + "/events", EVENT_BODY, auth))["id"]
        ids: list[str] = [""] * len(tree.parent)
        gate = asyncio.Semaphore(16)

        async def create(t: int) -> None:
            parent = tree.parent[t]
            body = {
                "event_id": event_id,
                "parent_id": None if parent is None else ids[parent],
                "title": f"Task {t}",
                "duration_minutes": tree.minutes[t],
            }
            async with gate:
                ids[t] = (await post(session, base + "/tasks", body, auth))["id"]

        started = time.perf_counter()
        for depth, row in enumerate(tree.levels, 1):
            await asyncio.gather(*(create(t) for t in row))
            say(f"  level {depth}: {len(row)} tasks ({time.perf_counter() - started:.1f} s)")
        grant = {"user_id": other["id"], "role": "collaborator"}
        await post(session, f"{base}/tasks/{ids[tree.mid]}/collaborators", grant, auth)
    return {
        "owner": owner,
        "collaborator": other,
        "event_id": event_id,
        "ids": ids,
        "build_seconds": time.perf_counter() - started,
    }


Step = Callable[[aiohttp.ClientSession, int], Awaitable[bool]]


async def timed_loop(
    clients: int, seconds: float, step: Step, headers: dict[str, str], server_pid: int
) -> dict[str, Any]:
    """``clients`` workers calling ``step`` (one request each time) back to back for
    ``seconds``, at most 2,000,000 each; latency and rate of the answers below 400."""
    latencies: list[float] = []
    failures = 0
    deadline = time.perf_counter() + seconds
    cpu_before = cpu_seconds(server_pid)
    postgres_before, client_before = postgres_cpu_seconds(), time.process_time()
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:

        async def worker(index: int) -> None:
            nonlocal failures
            count = 0
            while time.perf_counter() < deadline and count < 2_000_000:
                count += 1
                started = time.perf_counter()
                try:
                    ok = await step(session, index)
                except aiohttp.ClientError:
                    ok = False
                if ok:
                    latencies.append(time.perf_counter() - started)
                else:
                    failures += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker(i) for i in range(clients)))
        elapsed = time.perf_counter() - started
    served = len(latencies) + failures
    return {
        "clients": clients,
        "requests": len(latencies),
        "failures": failures,
        "per_second": len(latencies) / elapsed,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "cpu_ms_per_request": (cpu_seconds(server_pid) - cpu_before) * 1000 / max(served, 1),
        "postgres_cpu_ms_per_request": (postgres_cpu_seconds() - postgres_before)
        * 1000
        / max(served, 1),
        "client_cpu_ms_per_request": (time.process_time() - client_before) * 1000 / max(served, 1),
    }


def start_profile(pid: int, seconds: float) -> tuple[subprocess.Popen[bytes], Path]:
    raw = Path(tempfile.mkdtemp(prefix="taskbench-")) / "profile.txt"
    spy = Path(sys.executable).parent / "py-spy"
    proc = subprocess.Popen(
        [str(spy), "record", "-p", str(pid), "-d", str(max(1, int(seconds))), "-r", "100",
         "-f", "raw", "-o", str(raw)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    return proc, raw


def read_profile(proc: subprocess.Popen[bytes], raw: Path, count: int = 8) -> dict[str, Any]:
    """The top functions by self samples, and the service's own (server/) by inclusive ones."""
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    own: dict[str, int] = {}
    leaf: dict[str, int] = {}
    samples = 0
    lines = raw.read_text().splitlines() if raw.exists() else []
    for line in lines:
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        samples += int(n)
        frames = stack.split(";")
        leaf[frames[-1]] = leaf.get(frames[-1], 0) + int(n)
        for frame in {f.rsplit(":", 1)[0] + ")" for f in frames if "(server/" in f}:
            own[frame] = own.get(frame, 0) + int(n)

    def ranked(totals: dict[str, int]) -> list[tuple[str, float]]:
        top = sorted(totals.items(), key=lambda kv: -kv[1])[:count]
        return [(name, 100.0 * n / max(samples, 1)) for name, n in top]

    return {"samples": samples, "self": ranked(leaf), "inclusive_server": ranked(own)}


def get_step(url: str) -> Step:
    async def step(session: aiohttp.ClientSession, index: int) -> bool:
        async with session.get(url) as response:
            await response.read()
            return response.status < 400

    return step


def walk_step(url: str, walks: list[int]) -> Step:
    """One page per call; each client follows `next` and starts over after the last page
    (``walks[0]`` counts the walks finished)."""
    cursors: dict[int, str | None] = {}

    async def step(session: aiohttp.ClientSession, index: int) -> bool:
        cursor = cursors.get(index)
        page_url = url if cursor is None else f"{url}&cursor={cursor}"
        async with session.get(page_url) as response:
            # orjson: the stdlib's json.loads of a 100 KB page takes the client ~1 CPU ms, on
            # the cores the service and PostgreSQL share.
            body = orjson.loads(await response.read())
            if response.status >= 400:
                cursors[index] = None
                return False
        cursors[index] = body["next"]
        if body["next"] is None:
            walks[0] += 1
        return True

    return step


async def walk_once(url: str, headers: dict[str, str]) -> list[dict[str, Any]]:
    """Every item of a list, page by page (at most 100 pages), each with my_role."""
    items: list[dict[str, Any]] = []
    pages = 0
    async with aiohttp.ClientSession(headers=headers) as session:
        cursor: str | None = ""
        while cursor is not None and pages < 100:
            page_url = url if not cursor else f"{url}&cursor={cursor}"
            async with session.get(page_url) as response:
                body = await response.json()
                assert response.status == 200, body
            pages += 1
            items += body["items"]
            cursor = body["next"]
    assert all(item["my_role"] in ("maintainer", "collaborator") for item in items)
    return items


def post_step(url: str, body: dict[str, Any]) -> Step:
    async def step(session: aiohttp.ClientSession, index: int) -> bool:
        async with session.post(url, json=body) as response:
            await response.read()
            return response.status == 201

    return step


def create_step(url: str, event_id: str, parents: list[str]) -> Step:
    async def step(session: aiohttp.ClientSession, index: int) -> bool:
        body = {
            "event_id": event_id,
            "parent_id": parents[index % len(parents)],
            "title": "Subtask",
            "duration_minutes": 1,
        }
        async with session.post(url, json=body) as response:
            await response.read()
            return response.status == 201

    return step


def plan_params(name: str, ids: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The cases to explain for each tree statement: (label, parameters)."""
    first = uuid.UUID(int=0)
    deep, mid, owner, collab = ids["deep"], ids["mid"], ids["owner"], ids["collaborator"]
    event = ids["event"]
    cases: dict[str, list[tuple[str, dict[str, Any]]]] = {
        "tasks.get_task_access": [
            ("level-5 task, owner", {"task_id": deep, "caller_id": owner}),
            ("level-5 task, collaborator", {"task_id": deep, "caller_id": collab}),
        ],
        "tasks.lock_task_access": [
            ("level-5 task, collaborator", {"task_id": deep, "caller_id": collab}),
        ],
        "tasks.task_is_in_subtree": [
            ("level-5 task under its level-3 ancestor", {"task_id": mid, "candidate_id": deep}),
        ],
        "tasks.list_event_tasks_if_owner": [
            (
                "first page of 200, owner",
                {"event_id": event, "caller_id": owner, "after_id": first, "max_rows": PAGE + 1},
            ),
        ],
        "tasks.list_event_tasks_as_member": [
            (
                "first page of 200, collaborator",
                {"event_id": event, "caller_id": collab, "after_id": first, "max_rows": PAGE + 1},
            ),
        ],
        "tasks.list_task_collaborators": [
            ("level-5 task", {"task_id": deep, "after_user_id": first, "max_rows": PAGE + 1}),
        ],
        "tasks.list_task_member_ids": [("level-5 task", {"task_id": deep})],
        "tasks.insert_task": [  # run in the transaction rolled back
            (
                "subtask of a level-5 task, owner",
                {
                    "event_id": event,
                    "parent_id": deep,
                    "title": "Plan",
                    "description": "",
                    "duration_minutes": 1,
                    "created_by": owner,
                },
            ),
        ],
    }
    return cases.get(name, [])


async def explain_tree_queries(
    url: str, ids: dict[str, Any], when: str, analyze_first: bool
) -> list[dict[str, Any]]:
    """EXPLAIN (ANALYZE, BUFFERS) of every recursive (tree) statement of queries/tasks.sql, in
    a transaction rolled back, with the indexes its comment names and whether the plan reads
    them. ``analyze_first``: ANALYZE the two tables before (as autovacuum does within a minute
    or so of the inserts; the tree is built in seconds)."""
    tree_queries = [
        q for q in Queries().values() if q.path == "queries/tasks.sql" and "RECURSIVE" in q.sql
    ]
    found = []
    conn = await asyncpg.connect(url)
    try:
        if analyze_first:
            await conn.execute("ANALYZE tasks, task_members")
        stats = await conn.fetch(
            "SELECT relname, coalesce(last_analyze, last_autoanalyze)::text AS at "
            "FROM pg_stat_user_tables WHERE relname IN ('tasks', 'task_members') ORDER BY 1"
        )
        say(f"plans {when}; statistics: " + ", ".join(f"{r[0]} {r[1] or 'none'}" for r in stats))
        for query in tree_queries:
            cases = plan_params(query.name, ids)
            assert cases, f"no parameters to explain {query.name} with"
            named = sorted(set(_INDEX_NAME.findall(query.doc)))
            for label, params in cases:
                transaction = conn.transaction()
                await transaction.start()
                try:
                    rows = await conn.fetch(
                        "EXPLAIN (ANALYZE, BUFFERS) " + query.sql, *query.args(params)
                    )
                finally:
                    await transaction.rollback()
                plan = "\n".join(r[0] for r in rows)
                scans = [line for line in plan.splitlines() if "Seq Scan on " in line]
                whole = sorted(
                    {line.split("Seq Scan on ")[1].split()[0]
                     for line in scans if "never executed" not in line}
                )  # fmt: skip
                found.append(
                    {
                        "statement": query.name,
                        "case": label,
                        "when": when,
                        "named_indexes": named,
                        "missing_indexes": [i for i in named if i not in plan],
                        "seq_scans": whole,  # nodes that ran ("never executed" ones left out)
                        "plan": plan,
                    }
                )
    finally:
        await conn.close()
    return found


def uses_its_indexes(plan: dict[str, Any]) -> bool:
    """Reads an index its comment names, and never tasks or task_members whole (a Seq Scan
    node that ran)."""
    read = set(plan["named_indexes"]) - set(plan["missing_indexes"])
    return bool(read) and not {"tasks", "task_members"} & set(plan["seq_scans"])


def verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"


async def main_async(args: argparse.Namespace) -> None:
    raise_nofile()
    tree = Tree()
    results: dict[str, Any] = {}
    with ours() as target:
        base, pid = target.base, target.proc.pid
        say(f"{target.name} on port {target.port}; building {len(tree.parent)} tasks")
        built = await build(base, tree)
        ids = built["ids"]
        event_id = built["event_id"]
        owner = {"Authorization": f"Bearer {built['owner']['token']}"}
        collab = {"Authorization": f"Bearer {built['collaborator']['token']}"}
        list_url = f"{base}/events/{event_id}/tasks?limit={PAGE}"
        seen_owner = await walk_once(list_url, owner)
        seen_collab = await walk_once(list_url, collab)
        assert len(seen_owner) == len(tree.parent), len(seen_owner)
        subtree = {ids[t] for t in range(len(ids)) if tree.mid in (t, *tree.ancestors(t))}
        assert {item["id"] for item in seen_collab} == subtree
        assert all(item["my_role"] == "collaborator" for item in seen_collab)
        pages = {"owner": -(-len(seen_owner) // PAGE), "collaborator": -(-len(subtree) // PAGE)}
        say(
            f"tree built in {built['build_seconds']:.1f} s; the collaborator sees "
            f"{len(subtree)} tasks; pages per walk: {pages}"
        )
        plans: list[dict[str, Any]] = []
        url = os.environ.get("BENCH_DATABASE_URL")
        if url:
            plan_ids = {
                "event": uuid.UUID(event_id),
                "owner": uuid.UUID(built["owner"]["id"]),
                "collaborator": uuid.UUID(built["collaborator"]["id"]),
                "deep": uuid.UUID(ids[tree.deep]),
                "mid": uuid.UUID(ids[tree.mid]),
            }
            plans += await explain_tree_queries(url, plan_ids, "as built", False)
            plans += await explain_tree_queries(url, plan_ids, "after ANALYZE", True)
        else:
            say("BENCH_DATABASE_URL unset: no plans (the service runs on its embedded PostgreSQL)")
        deep_url = f"{base}/tasks/{ids[tree.deep]}"
        phases: list[tuple[str, str, dict[str, str], Step, list[int] | None]] = []
        walks = {"owner": [0], "owner_default": [0], "collaborator": [0]}
        phases += [
            ("get_event", "GET /events/{id}, owner (reference)", owner,
             get_step(f"{base}/events/{event_id}"), None),
            ("list_owner", f"GET /events/{{id}}/tasks?limit={PAGE}, owner: pages "
             f"({pages['owner']} per walk of {len(seen_owner)})", owner,
             walk_step(list_url, walks["owner"]), walks["owner"]),
            ("list_owner_default", "GET /events/{id}/tasks?limit=50 (API.md's default), owner: "
             f"pages ({-(-len(seen_owner) // 50)} per walk)", owner,
             walk_step(f"{base}/events/{event_id}/tasks?limit=50", walks["owner_default"]),
             walks["owner_default"]),
            ("list_collaborator", f"GET /events/{{id}}/tasks?limit={PAGE}, collaborator: pages "
             f"({pages['collaborator']} per walk of {len(subtree)})", collab,
             walk_step(list_url, walks["collaborator"]), walks["collaborator"]),
            ("get_task_owner", "GET /tasks/{id} (level 5), owner", owner, get_step(deep_url),
             None),
            ("get_task_collaborator", "GET /tasks/{id} (level 5), collaborator", collab,
             get_step(deep_url), None),
        ]  # fmt: skip
        profiles: dict[str, Any] = {}
        for key, label, headers, step, walked in phases:
            say(label)
            spy = start_profile(pid, args.seconds) if args.profile else None
            results[key] = await timed_loop(args.clients, args.seconds, step, headers, pid)
            if walked is not None:
                results[key]["walks"] = walked[0]
            show(results[key])
            if spy is not None:
                profiles[key] = read_profile(*spy)
        spread = [ids[t] for t in tree.spread]
        creates = [
            ("create_event", "POST /events (one INSERT, no transaction: the cheapest create "
             "the service has)", []),
            ("create_spread", f"POST /tasks, {CREATE_CLIENTS} clients under "
             f"{CREATE_CLIENTS} level-4 parents", spread),
            ("create_one", f"POST /tasks, {CREATE_CLIENTS} clients under one level-4 parent",
             [ids[tree.single]]),
        ]  # fmt: skip
        for key, label, parents in creates:
            say(label)
            step = (
                create_step(base + "/tasks", event_id, parents)
                if parents
                else post_step(base + "/events", EVENT_BODY)
            )
            spy = start_profile(pid, args.seconds) if args.profile else None
            results[key] = await timed_loop(CREATE_CLIENTS, args.seconds, step, owner, pid)
            show(results[key])
            if spy is not None:
                profiles[key] = read_profile(*spy)
    reference = results["get_event"]["per_second"]
    labels = {key: label for key, label, *_ in phases} | {k: lab for k, lab, _ in creates}
    targets: dict[str, tuple[str, bool | None]] = {"get_event": ("reference", None)}
    for key in ("list_owner", "list_owner_default", "list_collaborator", "get_task_owner",
                "get_task_collaborator"):  # fmt: skip
        share = results[key]["per_second"] / reference
        targets[key] = (">= 50% of GET /events/{id}", share >= 0.5)
    spread_ok = results["create_spread"]["per_second"] >= 1000 and (
        results["create_spread"]["p99_ms"] < 40
    )
    targets["create_spread"] = (">= 1,000/s, p99 < 40 ms", spread_ok)
    targets["create_one"] = ("none (reported)", None)
    targets["create_event"] = ("none (what a create costs at least)", None)
    print()
    print(
        f"| measure ({args.clients} clients, {args.seconds:.0f} s each) | requests/s | p50 (ms) "
        "| p99 (ms) | share of GET /events/{id} | CPU ms/request: service, PostgreSQL, client "
        "| failures | target |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for key, label in labels.items():
        r = results[key]
        rate = f"{r['per_second']:,.0f}"
        if "walks" in r:
            rate += f" ({r['walks'] / args.seconds:,.1f} walks/s)"
        goal, ok = targets[key]
        mark = goal if ok is None else f"{goal}: {verdict(ok)}"
        print(
            f"| {label} | {rate} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | "
            f"{r['per_second'] / reference:.0%} | {r['cpu_ms_per_request']:.3f}, "
            f"{r['postgres_cpu_ms_per_request']:.3f}, {r['client_cpu_ms_per_request']:.3f} | "
            f"{r['failures']:.0f} | {mark} |"
        )
    for key, profile in profiles.items():
        print(f"\npy-spy during {labels[key]} ({profile['samples']} samples):")
        print("| self | share | | service function, inclusive | share |\n|---|---|---|---|---|")
        pairs = itertools.zip_longest(profile["self"], profile["inclusive_server"])
        for (a, x), (b, y) in ((p or ("", 0.0), q or ("", 0.0)) for p, q in pairs):
            print(f"| `{a}` | {x:.1f}% | | `{b}` | {y:.1f}% |")
    if plans:
        print()
        print("| tree statement (queries/tasks.sql) | case | statistics | indexes named: read "
              "(not read) | seq scans | uses its indexes |")  # fmt: skip
        print("|---|---|---|---|---|---|")
        for p in plans:
            read = [i for i in p["named_indexes"] if i not in p["missing_indexes"]]
            print(
                f"| {p['statement']} | {p['case']} | {p['when']} | {', '.join(read) or '-'} "
                f"({', '.join(p['missing_indexes']) or '-'}) | "
                f"{', '.join(p['seq_scans']) or '-'} | {verdict(uses_its_indexes(p))} |"
            )
        for p in plans:
            print(f"\n{p['statement']} ({p['case']}, {p['when']}):\n{p['plan']}")
    save_results(
        "tasks",
        {
            "args": vars(args),
            "levels": LEVELS,
            "build_seconds": built["build_seconds"],
            "collaborator_sees": len(subtree),
            "pages_per_walk": pages,
            "results": results,
            "targets": {k: {"goal": g, "met": ok} for k, (g, ok) in targets.items()},
            "plans": plans,
            "profiles": profiles,
        },
    )


def show(r: dict[str, Any]) -> None:
    say(
        f"  {r['per_second']:,.0f}/s, p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms, "
        f"CPU ms/request {r['cpu_ms_per_request']:.3f} service, "
        f"{r['postgres_cpu_ms_per_request']:.3f} PostgreSQL, "
        f"{r['client_cpu_ms_per_request']:.3f} client, {r['failures']:.0f} failures"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--profile", action="store_true", help="py-spy during each phase")
    args = parser.parse_args()
    args.seconds = min(args.seconds, 60.0)
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
