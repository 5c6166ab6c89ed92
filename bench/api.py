"""Authenticated API throughput beside the framework ceiling, same machine, same run.

    python -m bench.api                # 10 s per phase, 16 clients
    python -m bench.api --seconds 5

Phases (each bounded in time): a bare aiohttp handler returning a constant (the ceiling:
routing, HTTP parsing and the event loop, nothing else), then this service's authenticated
GET /events/{id} (token lookup + event read + access check) and POST /events. Prints a
Markdown table; numbers go to bench/results/api-<time>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
from typing import Any

import aiohttp

from .common import (
    free_port,
    ours,
    raise_nofile,
    request_loop,
    save_results,
    say,
    wait_http,
)

# The same event loop as the service (uvloop), so the ratio compares handlers, not loops.
CEILING_APP = """
import sys
import uvloop
from aiohttp import web
async def constant(request):
    return web.json_response({"ok": True})
app = web.Application()
app.router.add_get("/", constant)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None,
            loop=uvloop.new_event_loop())
"""


async def load(
    method: str,
    url: str,
    concurrency: int,
    seconds: float,
    headers: dict[str, str],
    body: dict[str, Any] | None = None,
) -> dict[str, Any]:
    result = await request_loop(method, url, concurrency, seconds, headers, body)
    say(
        f"  {method} {url.split(':', 2)[-1]}: {result['per_second']:,.0f}/s, "
        f"p99 {result['p99_ms']:.1f} ms, {result['failures']:.0f} failures"
    )
    return result


async def main_async(args: argparse.Namespace) -> None:
    raise_nofile()
    results: dict[str, Any] = {}
    port = free_port()
    ceiling = subprocess.Popen([sys.executable, "-c", CEILING_APP, str(port)])
    try:
        wait_http(port, "/", 30)
        say(f"framework ceiling (bare aiohttp, constant answer) on port {port}")
        results["ceiling"] = await load(
            "GET", f"http://127.0.0.1:{port}/", args.clients, args.seconds, {}
        )
    finally:
        ceiling.terminate()
        ceiling.wait()
    with ours() as target:
        say(f"{target.name} on port {target.port}")
        async with aiohttp.ClientSession() as session:
            async with session.post(
                target.base + "/users", json={"name": "Bench", "email": "bench@example.com"}
            ) as r:
                token = (await r.json())["token"]
            auth = {"Authorization": f"Bearer {token}"}
            event_body = {
                "title": "Bench",
                "start_date": "2030-01-01T10:00:00Z",
                "end_date": "2030-01-01T11:00:00Z",
            }
            async with session.post(target.base + "/events", json=event_body, headers=auth) as r:
                event_id = (await r.json())["id"]
        results["get_event"] = await load(
            "GET", f"{target.base}/events/{event_id}", args.clients, args.seconds, auth
        )
        results["post_event"] = await load(
            "POST", f"{target.base}/events", args.clients, args.seconds, auth, event_body
        )
    ceiling_rate = results["ceiling"]["per_second"]
    print()
    print(
        f"| measure ({args.clients} clients, {args.seconds:.0f} s each) | requests/s | p50 (ms) "
        "| p99 (ms) | share of the ceiling |"
    )
    print("|---|---|---|---|---|")
    for key, label in [
        ("ceiling", "bare aiohttp handler, constant answer (ceiling)"),
        ("get_event", "authenticated GET /events/{id}"),
        ("post_event", "authenticated POST /events"),
    ]:
        r = results[key]
        print(
            f"| {label} | {r['per_second']:,.0f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | "
            f"{r['per_second'] / ceiling_rate:.0%} |"
        )
    save_results("api", {"args": vars(args), "results": results})


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=16)
    args = parser.parse_args()
    args.seconds = min(args.seconds, 60.0)
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
