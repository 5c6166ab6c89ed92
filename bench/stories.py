"""Story history: a 1,000-revision story of 100 KiB, every revision read back.

    python -m bench.stories                      # 1,000 revisions of ~100 KiB
    python -m bench.stories --revisions 300 --kib 512

Builds the story through the API (one-line edits with PATCH .../content, each over the
revision before), then reads every revision once in random order with
GET /stories/{id}/revisions/{n} and checks each against the text it wrote. Prints the latency
of those reads beside GET /stories/{id} (the current text, nothing rebuilt): the difference
is what rebuilding a revision from its snapshot and deltas costs (target: under 20 ms), and
the latency of a page of 50 revisions with their diffs and of one diff across the whole
history. With BENCH_DATABASE_URL set it also times the use case alone, in this process
(stories.service.get_revision), which is the number the 20 ms target is about.
Bounded: at most --revisions writes and three reads per revision.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import random
import string
import time
import uuid
from typing import Any

import aiohttp

from server.db import Database, create_pool
from server.sql import Queries
from server.stories.service import get_revision

from .common import ours, percentile, save_results, say


def story_text(kib: int, rng: random.Random) -> list[str]:
    alphabet = string.ascii_letters + string.digits + " .,;:!?#*-éΩ"
    lines: list[str] = []
    size = 0
    while size < kib * 1024:
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


async def rebuild_in_process(
    user_id: str, story_id: str, order: list[int], texts: list[str]
) -> list[float]:
    """The use case alone (stories.service.get_revision: the access query, the chain's one
    range read, the deltas applied), without HTTP, on BENCH_DATABASE_URL; [] without it."""
    url = os.environ.get("BENCH_DATABASE_URL")
    if not url:
        say("BENCH_DATABASE_URL unset: the in-process rebuild is not measured")
        return []
    pool = await create_pool(url, min_size=1, max_size=1, command_timeout=30)
    try:
        db = Database(pool, Queries())
        caller, story = uuid.UUID(user_id), uuid.UUID(story_id)
        spent = []
        for n in order:
            started = time.perf_counter()
            found = await get_revision(db, caller, story, n)
            spent.append(time.perf_counter() - started)
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


async def main_async(args: argparse.Namespace) -> None:
    rng = random.Random(7)
    with ours() as target:
        base = target.base
        async with aiohttp.ClientSession() as session:
            body = {"name": "Writer", "email": "writer@bench.example"}
            async with session.post(base + "/users", json=body) as response:
                user = await response.json()
            auth = {"Authorization": f"Bearer {user['token']}"}
            event = {"title": "Bench", "start_date": "2024-01-15T10:00:00Z",
                     "end_date": "2024-01-15T11:00:00Z"}  # fmt: skip
            async with session.post(base + "/events", json=event, headers=auth) as response:
                event_id = (await response.json())["id"]
            task = {"event_id": event_id, "title": "Bench", "duration_minutes": 60}
            async with session.post(base + "/tasks", json=task, headers=auth) as response:
                task_id = (await response.json())["id"]
            lines = story_text(args.kib, rng)
            texts = ["".join(lines)]
            story = {"task_id": task_id, "title": "History", "content": texts[0]}
            async with session.post(base + "/stories", json=story, headers=auth) as response:
                story_id = (await response.json())["id"]
            say(f"story of {len(texts[0].encode()) / 1024:.0f} KiB; {args.revisions} revisions")
            started = time.perf_counter()
            for n in range(2, args.revisions + 1):
                lines[rng.randrange(len(lines))] = f"edit {n}\n"
                texts.append("".join(lines))
                edit = {"content": texts[-1], "base_revision": n - 1}
                url = f"{base}/stories/{story_id}/content"
                async with session.patch(url, json=edit, headers=auth) as response:
                    assert response.status == 200, await response.text()
            writes = time.perf_counter() - started
            say(f"{args.revisions - 1} edits in {writes:.1f} s")
            order = list(range(1, args.revisions + 1))
            rng.shuffle(order)
            current, revisions = [], []
            for n in order:
                spent, _ = await timed(session, f"{base}/stories/{story_id}", auth)
                current.append(spent)
                spent, found = await timed(
                    session, f"{base}/stories/{story_id}/revisions/{n}", auth
                )
                assert found["content"] == texts[n - 1], n
                revisions.append(spent)
            pages = []
            for after in range(0, args.revisions, 50):
                cursor = ""
                if after:
                    raw = json.dumps({"after": after}, separators=(",", ":")).encode()
                    cursor = base64.urlsafe_b64encode(raw).decode().rstrip("=")
                url = f"{base}/stories/{story_id}/revisions?limit=50&cursor={cursor}"
                spent, _ = await timed(session, url, auth)
                pages.append(spent)
            diff_url = f"{base}/stories/{story_id}/diff?from=1&to={args.revisions}"
            diffs = [(await timed(session, diff_url, auth))[0] for _ in range(10)]
        rebuilt = await rebuild_in_process(user["id"], story_id, order, texts)
    print()
    print(f"story of {args.kib} KiB, {args.revisions} revisions, one-line edits; latency in ms")
    print()
    print("| request | n | p50 | p99 | max |")
    print("|---|---|---|---|---|")
    for line in (
        row("GET /stories/{id} (current, no rebuild)", current),
        row("GET /stories/{id}/revisions/{n} (rebuilt)", revisions),
        row("GET /stories/{id}/revisions?limit=50 (with diffs)", pages),
        row(f"GET /stories/{{id}}/diff?from=1&to={args.revisions}", diffs),
    ):
        print(line)
    if rebuilt:
        print(row("stories.service.get_revision, in process (no HTTP)", rebuilt))
    save_results(
        "stories",
        {
            "kib": args.kib,
            "revisions": args.revisions,
            "edit_seconds": writes,
            "current_ms": [v * 1000 for v in current],
            "revision_ms": [v * 1000 for v in revisions],
            "page_ms": [v * 1000 for v in pages],
            "diff_ms": [v * 1000 for v in diffs],
            "in_process_ms": [v * 1000 for v in rebuilt],
        },
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--revisions", type=int, default=1000)
    parser.add_argument("--kib", type=int, default=100)
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
