"""A story's thread: pages of a 1,000-comment thread beside GET /events/{id}, same run.

    python -m bench.comments                  # 10 s per phase, 16 clients, 1,000 comments
    python -m bench.comments --seconds 2 --comments 300

Builds one story's thread through the API (--comments comments, one in five a reply to an
earlier one, one in twenty deleted afterwards, 8 writers at a time), walks every page once
and checks it (each comment once, placeholders where deleted), then
loads, each for --seconds at --clients: the authenticated GET /events/{id} (token lookup,
one access query: the reference), and GET /stories/{id}/comments pages of 50 from the
start, from the middle (a cursor after position N/2) and of 200 from the start. Each thread
page is one statement (access and page together). Prints a Markdown table; numbers go to
bench/results/comments-<time>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import random
import time
from typing import Any

import aiohttp

from .common import ours, raise_nofile, request_loop, save_results, say


def cursor_after(position: int) -> str:
    raw = json.dumps({"after": position}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


async def post(
    session: aiohttp.ClientSession, url: str, body: dict[str, Any], headers: dict[str, str]
) -> dict[str, Any]:
    async with session.post(url, json=body, headers=headers) as response:
        found = await response.json()
        assert response.status == 201, found
        return dict(found)


async def build_thread(
    session: aiohttp.ClientSession, base: str, auth: dict[str, str], story_id: str, count: int
) -> tuple[list[str], set[str]]:
    """``count`` comments written 8 at a time (replies to earlier ones among them), then some
    deleted; their ids in the order their batches were written, and the deleted ids."""
    rng = random.Random(11)
    written: list[str] = []
    for start in range(0, count, 8):
        bodies = []
        for n in range(start, min(start + 8, count)):
            body: dict[str, Any] = {"story_id": story_id, "body": f"comment {n}\nsecond line"}
            if written and n % 5 == 0:
                body["parent_id"] = rng.choice(written)
            bodies.append(body)
        made = await asyncio.gather(*(post(session, base + "/comments", b, auth) for b in bodies))
        written += [m["id"] for m in made]
    deleted = set(written[::20])
    for comment_id in deleted:
        async with session.delete(f"{base}/comments/{comment_id}", headers=auth) as response:
            assert response.status == 204, await response.text()
    return written, deleted


async def walk(
    session: aiohttp.ClientSession, url: str, auth: dict[str, str]
) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = ""
    for _ in range(10_000):
        async with session.get(f"{url}?limit=50&cursor={cursor}", headers=auth) as response:
            page = await response.json()
            assert response.status == 200, page
        items += page["items"]
        if page["next"] is None:
            return items
        cursor = page["next"]
    raise AssertionError("the pages never ended")


async def load(
    label: str, url: str, args: argparse.Namespace, auth: dict[str, str]
) -> dict[str, Any]:
    result = await request_loop("GET", url, args.clients, args.seconds, auth)
    say(
        f"  {label}: {result['per_second']:,.0f}/s, p50 {result['p50_ms']:.1f} ms, "
        f"p99 {result['p99_ms']:.1f} ms, {result['failures']:.0f} failures"
    )
    return result


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    """The run; its results by phase (bench.stories --comments reads them)."""
    raise_nofile()
    results: dict[str, Any] = {}
    with ours() as target:
        base = target.base
        say(f"{target.name} on port {target.port}")
        async with aiohttp.ClientSession() as session:
            user = await post(
                session, base + "/users", {"name": "Bench", "email": "bench@example.com"}, {}
            )
            auth = {"Authorization": f"Bearer {user['token']}"}
            event = await post(
                session,
                base + "/events",
                {"title": "Bench", "start_date": "2030-01-01T10:00:00Z",
                 "end_date": "2030-01-01T11:00:00Z"},
                auth,
            )  # fmt: skip
            task = await post(
                session,
                base + "/tasks",
                {"event_id": event["id"], "title": "Bench", "duration_minutes": 60},
                auth,
            )
            story = await post(
                session, base + "/stories", {"task_id": task["id"], "title": "Thread"}, auth
            )
            started = time.perf_counter()
            written, deleted = await build_thread(session, base, auth, story["id"], args.comments)
            say(f"{len(written)} comments ({len(deleted)} deleted) in "
                f"{time.perf_counter() - started:.1f} s")  # fmt: skip
            thread_url = f"{base}/stories/{story['id']}/comments"
            thread = await walk(session, thread_url, auth)
            ids = [c["id"] for c in thread]
            assert len(ids) == len(set(ids)) == len(written), (len(ids), len(written))
            assert set(ids) == set(written)
            assert all(c["deleted"] == (c["id"] in deleted) for c in thread)
            assert all((c["body"] is None) == c["deleted"] for c in thread)
            say("every page walked once: each comment once, placeholders where deleted")
        middle = cursor_after(args.comments // 2)
        for key, label, url in [
            ("get_event", "authenticated GET /events/{id}", f"{base}/events/{event['id']}"),
            ("first_page", "GET /stories/{id}/comments?limit=50", f"{thread_url}?limit=50"),
            (
                "middle_page",
                f"GET /stories/{{id}}/comments?limit=50, after position {args.comments // 2}",
                f"{thread_url}?limit=50&cursor={middle}",
            ),
            ("page_of_200", "GET /stories/{id}/comments?limit=200", f"{thread_url}?limit=200"),
        ]:
            results[key] = await load(label, url, args, auth)
            results[key]["label"] = label
    reference = results["get_event"]["per_second"]
    print()
    print(f"thread of {args.comments} comments; {args.clients} clients, {args.seconds:g} s each")
    print()
    print("| request | requests/s | p50 (ms) | p99 (ms) | rate beside GET /events/{id} |")
    print("|---|---|---|---|---|")
    for r in results.values():
        print(
            f"| {r['label']} | {r['per_second']:,.0f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} "
            f"| {r['per_second'] / reference:.0%} |"
        )
    save_results("comments", {"args": vars(args), "results": results})
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--comments", type=int, default=1000)
    args = parser.parse_args()
    args.seconds = min(args.seconds, 60.0)
    args.comments = max(2, min(args.comments, 100_000))
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
