"""The value-feed benchmark: this service and the LiveDataStream baseline, same machine, same run.

    python -m bench.feed                 # full run, both targets (about 3 minutes)
    python -m bench.feed --quick         # shorter phases, 100 streams only
    python -m bench.feed --target ours   # skip the baseline
    python -m bench.feed --target ours --compare ../old  # beside an older checkout, same run

Phases, each bounded in count and time:
  1. writes: POST /add-value/ at 1, 16 and 64 concurrent clients for --seconds each;
  2. fan-out: 100 and 1,000 SSE clients, 200 values posted at 100/s; delivered/expected,
     delivery latency (POST sent -> frame received) p50/p99/max, POST p99 meanwhile, and
     whether every client saw the values in one order;
  3. reconnect: a client leaves, 50 values are posted, it comes back (with Last-Event-ID
     where the target supports it); values missed;
  4. (ours) SIGTERM with the 1,000 streams open: seconds until the process has exited.
Prints a Markdown table and writes the numbers to bench/results/feed-<time>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import platform
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp

from .common import (
    Target,
    baseline,
    open_sse,
    ours,
    percentile,
    raise_nofile,
    request_loop,
    save_results,
    say,
)


async def post(session: aiohttp.ClientSession, base: str, value: str) -> float:
    started = time.perf_counter()
    async with session.post(base + "/add-value/", json={"value": value}) as response:
        await response.read()
        if response.status != 200:
            raise RuntimeError(f"POST answered {response.status}")
    return time.perf_counter() - started


async def writes(target: Target, concurrency: int, seconds: float) -> dict[str, Any]:
    url = target.base + "/add-value/"
    result = await request_loop("POST", url, concurrency, seconds, body={"value": "bench"})
    say(
        f"  writes x{concurrency}: {result['per_second']:.0f}/s, p50 {result['p50_ms']:.1f} ms, "
        f"p99 {result['p99_ms']:.1f} ms, {result['failures']:.0f} failures"
    )
    return result


async def fanout(
    target: Target, streams: int, values: int, rate: float, spread_posts: bool = False
) -> dict[str, Any]:
    """spread_posts: a new connection per POST, so that several workers share the writes."""
    clients = await open_sse(target.port, "/events/", streams)
    say(f"  fan-out: {streams} streams open, posting {values} values at {rate:.0f}/s")
    await asyncio.sleep(0.5)
    sent_at: dict[str, float] = {}
    post_latencies: list[float] = []
    connector = aiohttp.TCPConnector(force_close=spread_posts)
    async with aiohttp.ClientSession(connector=connector) as session:
        start = time.perf_counter()
        tasks = []
        for i in range(values):
            due = start + i / rate
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            value = f"fan-{i}"
            sent_at[value] = time.perf_counter()
            tasks.append(asyncio.create_task(post(session, target.base, value)))
        post_latencies = list(await asyncio.gather(*tasks))
        # Wait (bounded) for the stragglers.
        deadline = time.perf_counter() + 15
        expected = streams * values
        while time.perf_counter() < deadline:
            if sum(len(c.received) for c in clients) >= expected:
                break
            await asyncio.sleep(0.1)
    delays = [
        (received - sent_at[value])
        for c in clients
        for value, received in c.received
        if value in sent_at
    ]
    delivered = len(delays)
    orders = {tuple(v for v, _ in c.received) for c in clients}
    for client in clients:
        client.close()
    result = {
        "streams": streams,
        "values": values,
        "delivered": delivered,
        "expected": streams * values,
        "delivered_pct": 100.0 * delivered / (streams * values),
        "delivery_p50_ms": percentile(delays, 50) * 1000,
        "delivery_p99_ms": percentile(delays, 99) * 1000,
        "delivery_max_ms": max(delays) * 1000 if delays else float("nan"),
        "post_p99_ms": percentile(post_latencies, 99) * 1000,
        "one_order": len(orders) == 1,
    }
    say(
        f"  fan-out x{streams}: {result['delivered_pct']:.2f}% delivered, "
        f"p50 {result['delivery_p50_ms']:.0f} ms, p99 {result['delivery_p99_ms']:.0f} ms, "
        f"max {result['delivery_max_ms']:.0f} ms, POST p99 {result['post_p99_ms']:.1f} ms, "
        f"one order: {result['one_order']}"
    )
    return result


async def reconnect(target: Target, away_values: int = 50) -> dict[str, Any]:
    [client] = await open_sse(target.port, "/events/", 1)
    async with aiohttp.ClientSession() as session:
        for i in range(5):
            await post(session, target.base, f"before-{i}")
        deadline = time.perf_counter() + 10
        while len(client.received) < 5 and time.perf_counter() < deadline:
            await asyncio.sleep(0.05)
        last_id = client.last_id
        client.close()
        await client.closed
        missed_values = [f"away-{i}" for i in range(away_values)]
        for value in missed_values:
            await post(session, target.base, value)
        [back] = await open_sse(target.port, "/events/", 1, last_event_id=last_id)
        await post(session, target.base, "after")
        deadline = time.perf_counter() + 10
        while time.perf_counter() < deadline:
            if any(v == "after" for v, _ in back.received):
                break
            await asyncio.sleep(0.05)
    got = {v for v, _ in back.received}
    back.close()
    missed = sum(1 for v in missed_values if v not in got)
    say(f"  reconnect: {missed} of {away_values} values sent while away were missed")
    return {"away": away_values, "missed": missed}


async def run_target(target: Target, args: argparse.Namespace) -> dict[str, Any]:
    say(f"{target.name} on port {target.port}")
    result: dict[str, Any] = {"target": target.name, "writes": [], "fanout": []}
    for concurrency in (1, 16, 64):
        result["writes"].append(await writes(target, concurrency, args.seconds))
    for streams in args.streams:
        result["fanout"].append(await fanout(target, streams, args.values, args.rate))
    result["reconnect"] = await reconnect(target)
    if target.has_ids:
        clients = await open_sse(target.port, "/events/", max(args.streams))
        await asyncio.sleep(0.5)
        took = await asyncio.to_thread(target.stop)
        result["sigterm_seconds"] = took
        say(f"  SIGTERM with {len(clients)} streams open: exited in {took:.2f} s")
        for client in clients:
            client.close()
    return result


def table(results: list[dict[str, Any]]) -> str:
    names = [r["target"] for r in results]
    rows: list[tuple[str, list[str]]] = []
    for i, concurrency in enumerate((1, 16, 64)):
        rows.append(
            (
                f"writes/s at {concurrency} clients",
                [f"{r['writes'][i]['per_second']:,.0f}" for r in results],
            )
        )
        rows.append(
            (
                f"POST p99 at {concurrency} clients (ms)",
                [f"{r['writes'][i]['p99_ms']:.1f}" for r in results],
            )
        )
    for j, fan in enumerate(results[0]["fanout"]):
        n = fan["streams"]
        cells = [r["fanout"][j] for r in results]
        rows.append(
            (
                f"{n} streams: delivered/expected",
                [
                    f"{c['delivered']:,}/{c['expected']:,} ({c['delivered_pct']:.1f}%)"
                    for c in cells
                ],
            )
        )
        rows.append(
            (
                f"{n} streams: delivery p50 / p99 / max (ms)",
                [
                    f"{c['delivery_p50_ms']:.0f} / {c['delivery_p99_ms']:.0f} / "
                    f"{c['delivery_max_ms']:.0f}"
                    for c in cells
                ],
            )
        )
        rows.append(
            (
                f"{n} streams: POST p99 during fan-out (ms)",
                [f"{c['post_p99_ms']:.1f}" for c in cells],
            )
        )
        rows.append(
            (
                f"{n} streams: one order for all clients",
                ["yes" if c["one_order"] else "no" for c in cells],
            )
        )
    rows.append(
        (
            "reconnect: values missed while away",
            [f"{r['reconnect']['missed']} of {r['reconnect']['away']}" for r in results],
        )
    )
    rows.append(
        (
            "SIGTERM with streams open: exit (s)",
            [f"{r['sigterm_seconds']:.2f}" if "sigterm_seconds" in r else "-" for r in results],
        )
    )
    lines = ["| measure | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    lines += [f"| {label} | " + " | ".join(cells) + " |" for label, cells in rows]
    return "\n".join(lines)


@contextlib.contextmanager
def started(kind: str | Path) -> Iterator[Target]:
    """ "ours", "baseline", or the path of another checkout of this service."""
    if isinstance(kind, Path):
        with ours(root=kind) as target:
            target.name = f"{target.name} ({kind.name})"
            yield target
        return
    with ours() if kind == "ours" else baseline() as target:
        yield target


async def main_async(args: argparse.Namespace) -> None:
    limit = raise_nofile()
    say(
        f"open files limit {limit}; python {platform.python_version()}; "
        f"{len(args.targets)} target(s)"
    )
    results = []
    for kind in args.targets:
        with started(kind) as target:
            results.append(await run_target(target, args))
    print()
    print(table(results))
    arguments = {
        **vars(args),
        "compare": [str(c) for c in args.compare],
        "targets": [str(t) for t in args.targets],
    }
    save_results("feed", {"args": arguments, "results": results})


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--target", choices=["both", "ours", "baseline"], default="both")
    parser.add_argument("--seconds", type=float, default=10.0, help="per write phase")
    parser.add_argument("--values", type=int, default=200)
    parser.add_argument("--rate", type=float, default=100.0, help="values per second")
    parser.add_argument("--quick", action="store_true", help="3 s write phases, 100 streams")
    parser.add_argument(
        "--compare",
        type=Path,
        action="append",
        default=[],
        help="also measure the service of this checkout (e.g. a git worktree of an older commit)",
    )
    args = parser.parse_args()
    args.targets = ["ours", "baseline"] if args.target == "both" else [args.target]
    args.targets += args.compare
    args.streams = [100] if args.quick else [100, 1000]
    if args.quick:
        args.seconds = 3.0
    args.seconds = min(args.seconds, 60.0)
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
