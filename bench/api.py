"""Authenticated API throughput beside the framework ceiling, same machine, same run.

    python -m bench.api                # 10 s per phase, 16 clients
    python -m bench.api --seconds 5
    python -m bench.api --compare ../old  # also a checkout of an older commit, same run
    python -m bench.api --compare ../old --rounds 3  # interleaved, median and spread of each

Phases (each bounded in time): a bare aiohttp handler returning a constant (the ceiling:
routing, HTTP parsing and the event loop, nothing else), then this service's authenticated
GET /events/{id} (token lookup + event read + access check) and POST /events. Beside the
rate, the server's CPU milliseconds per request (from /proc): on a machine whose cores are
shared the rate moves with the neighbours' load, the CPU cost of a request much less. With
``--rounds N`` every checkout is measured N times, interleaved (this, older, this, older...),
and the table gives the median with the lowest and highest round: the spread between rounds
of the same code is the noise a difference between checkouts must exceed. Prints a Markdown
table; numbers go to bench/results/api-<time>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp

from .common import (
    ROOT,
    cpu_seconds,
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
    *,
    server_pid: int,
) -> dict[str, Any]:
    cpu_before = cpu_seconds(server_pid)
    result = await request_loop(method, url, concurrency, seconds, headers, body)
    served = result["requests"] + result["failures"]
    result["cpu_ms_per_request"] = (cpu_seconds(server_pid) - cpu_before) * 1000 / max(served, 1)
    say(
        f"  {method} {url.split(':', 2)[-1]}: {result['per_second']:,.0f}/s, "
        f"p99 {result['p99_ms']:.1f} ms, {result['cpu_ms_per_request']:.3f} CPU ms/request, "
        f"{result['failures']:.0f} failures"
    )
    return result


async def measure_service(
    root: Path, clients: int, seconds: float, results: dict[str, Any], suffix: str
) -> None:
    with ours(root=root) as target:
        say(f"{target.name} from {root} on port {target.port}")
        pid = target.proc.pid
        async with aiohttp.ClientSession() as session:
            async with session.post(
                target.base + "/users", json={"name": "Bench", "email": "bench@example.com"}
            ) as r:
                token = (await r.json())["token"]
            auth = {"Authorization": f"Bearer {token}"}
            async with session.post(target.base + "/events", json=EVENT_BODY, headers=auth) as r:
                event_id = (await r.json())["id"]
        results["get_event" + suffix] = await load(
            "GET", f"{target.base}/events/{event_id}", clients, seconds, auth, server_pid=pid
        )
        results["post_event" + suffix] = await load(
            "POST", f"{target.base}/events", clients, seconds, auth, EVENT_BODY, server_pid=pid
        )


EVENT_BODY = {
    "title": "Bench",
    "start_date": "2030-01-01T10:00:00Z",
    "end_date": "2030-01-01T11:00:00Z",
}


async def main_async(args: argparse.Namespace) -> None:
    raise_nofile()
    results: dict[str, Any] = {}
    port = free_port()
    ceiling = subprocess.Popen([sys.executable, "-c", CEILING_APP, str(port)])
    try:
        wait_http(port, "/", 30)
        say(f"framework ceiling (bare aiohttp, constant answer) on port {port}")
        results["ceiling"] = await load(
            "GET",
            f"http://127.0.0.1:{port}/",
            args.clients,
            args.seconds,
            {},
            server_pid=ceiling.pid,
        )
    finally:
        ceiling.terminate()
        ceiling.wait()
    rows = [("ceiling", "bare aiohttp handler, constant answer (ceiling)")]
    roots = [ROOT, *args.compare]
    rounds: dict[str, list[dict[str, Any]]] = {}
    for round_number in range(1, args.rounds + 1):
        for i, root in enumerate(roots):
            suffix = "" if i == 0 else f"_{i}"
            if args.rounds > 1:
                say(f"round {round_number} of {args.rounds}")
            measured: dict[str, Any] = {}
            await measure_service(root, args.clients, args.seconds, measured, suffix)
            for key, result in measured.items():
                rounds.setdefault(key, []).append(result)
    for i, root in enumerate(roots):
        suffix = "" if i == 0 else f"_{i}"
        name = "" if i == 0 else f" ({root.name})"
        rows += [
            ("get_event" + suffix, "authenticated GET /events/{id}" + name),
            ("post_event" + suffix, "authenticated POST /events" + name),
        ]
    for key, measured_rounds in rounds.items():
        results[key] = median_round(measured_rounds)
    ceiling_rate = results["ceiling"]["per_second"]
    print()
    print(
        f"| measure ({args.clients} clients, {args.seconds:.0f} s each"
        + (f", median of {args.rounds} rounds" if args.rounds > 1 else "")
        + ") | requests/s | p50 (ms) | p99 (ms) | share of the ceiling | server CPU ms/request |"
    )
    print("|---|---|---|---|---|---|")
    for key, label in rows:
        r = results[key]
        print(
            f"| {label} | {r['per_second']:,.0f}{spread(r, 'per_second', '{:,.0f}')} "
            f"| {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['per_second'] / ceiling_rate:.0%} "
            f"| {r['cpu_ms_per_request']:.3f}{spread(r, 'cpu_ms_per_request', '{:.3f}')} |"
        )
    arguments = {**vars(args), "compare": [str(c) for c in args.compare]}
    save_results("api", {"args": arguments, "results": results, "rounds": rounds})


def median_round(measured: list[dict[str, Any]]) -> dict[str, Any]:
    """The median of each number over the rounds, with the lowest and highest of the two
    that the table shows."""
    merged: dict[str, Any] = {}
    for field in measured[0]:
        values = sorted(r[field] for r in measured)
        merged[field] = statistics.median(values)
        merged[field + "_range"] = (values[0], values[-1])
    merged["rounds"] = len(measured)
    return merged


def spread(result: dict[str, Any], field: str, form: str) -> str:
    """ " (low-high)" over the rounds, or nothing for one round."""
    if result.get("rounds", 1) < 2:
        return ""
    low, high = result[field + "_range"]
    return f" ({form.format(low)}-{form.format(high)})"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument(
        "--compare",
        type=Path,
        action="append",
        default=[],
        help="also measure the service of this checkout (e.g. a git worktree of an older commit)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="measure every checkout this many times, interleaved; report median and spread",
    )
    args = parser.parse_args()
    args.seconds = min(args.seconds, 60.0)
    args.rounds = max(1, min(args.rounds, 10))
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
