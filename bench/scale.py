"""Performance at scale, from one command:

    python -m bench.scale              # everything, about 6 minutes
    python -m bench.scale --profile    # also py-spy's top functions during the 10,000 fan-out

Phases (each bounded in count and time; loopback only):
  ceiling   a bare aiohttp handler (same loop), requests/s at 16 clients;
  baseline  the LiveDataStream app: writes/s at 16 clients, fan-out to 1,000 streams;
  10k       one process, 10,000 streams open at once (8,000 on the feed, 2,000 users' own):
            RSS per idle stream, heartbeats on every stream, time to accept a new stream,
            then 20 feed values at 10/s plus one notification per user: delivered, latency;
  workers   N=1 and N=2: writes/s at 16 clients, fan-out of 200 values at 100/s to 1,000;
  restart   N=2, 200 streams, values at 50/s, one worker gets SIGTERM (the supervisor starts
            another): every client reconnects with Last-Event-ID; values missed or repeated;
  cluster   4 processes on one PostgreSQL and one Redis, 4,000 streams spread over them,
            100 values at 25/s written through all four (a new connection per POST):
            delivered, latency.
Prints one Markdown table per phase; numbers go to bench/results/scale-<time>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from .api import CEILING_APP, load
from .common import (
    baseline,
    free_port,
    open_streams,
    ours,
    percentile,
    raise_nofile,
    rss_kib,
    save_results,
    say,
    wait_http,
)
from .feed import fanout, writes


async def ceiling(seconds: float) -> dict[str, Any]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", CEILING_APP, str(port)])
    try:
        wait_http(port, "/", 30)
        say("ceiling: bare aiohttp handler")
        return await load("GET", f"http://127.0.0.1:{port}/", 16, seconds, {})
    finally:
        proc.terminate()
        proc.wait()


async def register_users(base: str, count: int) -> list[dict[str, Any]]:
    users: list[dict[str, Any]] = []
    async with aiohttp.ClientSession() as session:

        async def one(i: int) -> dict[str, Any]:
            body = {"name": f"user {i}", "email": f"scale{i}@bench.example"}
            async with session.post(base + "/users", json=body) as response:
                return dict(await response.json())

        for start in range(0, count, 100):
            users += await asyncio.gather(*(one(i) for i in range(start, min(start + 100, count))))
    return users


async def ten_thousand(args: argparse.Namespace) -> dict[str, Any]:
    feed_streams, user_streams = args.streams - args.user_streams, args.user_streams
    env = {"SSE_HEARTBEAT_SECONDS": "5"}
    with ours(extra_env=env) as target:
        say(f"10k: {target.name}; registering {user_streams + 1} users")
        users = await register_users(target.base, user_streams + 1)
        sender, users = users[0], users[1:]
        await asyncio.sleep(1)
        before = rss_kib(target.proc.pid)
        started = time.perf_counter()
        clients = await open_streams(
            target.port,
            [("/events/", None)] * feed_streams + [(f"/sse/{u['id']}", u["token"]) for u in users],
            timeout=180,
        )
        opened_in = time.perf_counter() - started
        feed_clients, user_clients = clients[:feed_streams], clients[feed_streams:]
        say(f"10k: {len(clients)} streams open in {opened_in:.1f} s")
        await asyncio.sleep(3)
        after = rss_kib(target.proc.pid)
        # A new connection while 10,000 are open: connect to response headers.
        accept: list[float] = []
        for _ in range(50):
            t0 = time.perf_counter()
            [extra] = await open_streams(target.port, [("/events/", None)])
            accept.append(time.perf_counter() - t0)
            extra.close()
            await asyncio.sleep(0.02)
        # Heartbeats: every stream should see at least two in 11 s (interval 5 s).
        pings_before = [c.pings for c in clients]
        await asyncio.sleep(11)
        beating = sum(1 for c, p in zip(clients, pings_before, strict=True) if c.pings - p >= 2)
        say(f"10k: {beating}/{len(clients)} streams got >= 2 heartbeats in 11 s")

        profile = None
        if args.profile and shutil.which("py-spy"):
            raw = Path(tempfile.mkdtemp()) / "profile.txt"
            profile = subprocess.Popen(
                ["py-spy", "record", "-p", str(target.proc.pid), "-d", "6", "-r", "200",
                 "-f", "raw", "-o", str(raw)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
        sent_at: dict[str, float] = {}
        auth = {"Authorization": f"Bearer {sender['token']}"}
        async with aiohttp.ClientSession() as session:
            for i in range(args.fan_values):
                value = f"scale-{i}"
                sent_at[value] = time.perf_counter()
                async with session.post(target.base + "/add-value/", json={"value": value}) as r:
                    assert r.status == 200
                await asyncio.sleep(1 / 10)
            say(f"10k: {args.fan_values} values posted; notifying {len(users)} users")
            for start in range(0, len(users), 100):
                batch = users[start : start + 100]
                message = f"note-{start}"
                sent_at[message] = time.perf_counter()
                body = {"user_ids": [u["id"] for u in batch], "message": message}
                async with session.post(target.base + "/sse/send-message", json=body,
                                        headers=auth) as r:  # fmt: skip
                    assert r.status == 202
        expected = len(feed_clients) * args.fan_values + len(user_clients)
        deadline = time.perf_counter() + 30
        while time.perf_counter() < deadline:
            if sum(len(c.received) for c in clients) >= expected:
                break
            await asyncio.sleep(0.2)
        delays = [at - sent_at[v] for c in feed_clients for v, at in c.received if v in sent_at]
        for client in user_clients:
            for data, at in client.received:
                delays.append(at - sent_at[json.loads(data)["data"]["message"]])
        top = None
        if profile is not None:
            profile.wait(30)
            top = top_functions(raw)
        for client in clients:
            client.close()
    result = {
        "streams": len(clients),
        "feed_streams": len(feed_clients),
        "user_streams": len(user_clients),
        "open_seconds": opened_in,
        "rss_before_kib": before,
        "rss_after_kib": after,
        "rss_per_stream_kib": (after - before) / len(clients),
        "accept_p50_ms": percentile(accept, 50) * 1000,
        "accept_p99_ms": percentile(accept, 99) * 1000,
        "accept_max_ms": max(accept) * 1000,
        "heartbeat_streams": beating,
        "delivered": len(delays),
        "expected": expected,
        "latency_p50_ms": percentile(delays, 50) * 1000,
        "latency_p99_ms": percentile(delays, 99) * 1000,
        "latency_max_ms": max(delays) * 1000 if delays else float("nan"),
        "profile_top": top,
    }
    say(
        f"10k: {len(delays)}/{expected} delivered, p99 {result['latency_p99_ms']:.0f} ms; "
        f"{result['rss_per_stream_kib']:.1f} KiB per stream; accept p99 "
        f"{result['accept_p99_ms']:.1f} ms"
    )
    return result


def top_functions(raw: Path, count: int = 15) -> list[tuple[str, float]]:
    totals: dict[str, int] = {}
    samples = 0
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack:
            continue
        samples += int(n)
        leaf = stack.split(";")[-1]
        totals[leaf] = totals.get(leaf, 0) + int(n)
    ranked = sorted(totals.items(), key=lambda kv: -kv[1])[:count]
    return [(name, 100.0 * n / samples) for name, n in ranked]


async def workers(args: argparse.Namespace) -> list[dict[str, Any]]:
    results = []
    for n in (1, 2):
        with ours(workers=n) as target:
            say(f"workers: {target.name}")
            w = await writes(target, 16, args.seconds)
            f = await fanout(target, 1000, 200, 100.0, spread_posts=True)
            results.append({"workers": n, "writes": w, "fanout": f})
    return results


async def resuming_client(port: int, stop: asyncio.Event, log: list[tuple[str, str]]) -> int:
    """Reads /events/ from the start; on any end, reconnects with its Last-Event-ID."""
    last_id = "0"
    reconnects = 0
    while not stop.is_set():
        try:
            [client] = await open_streams(port, [("/events/", None)], last_event_id=last_id)
        except (OSError, RuntimeError, TimeoutError):
            await asyncio.sleep(0.1)
            continue
        waiter = asyncio.ensure_future(stop.wait())
        await asyncio.wait({waiter, client.closed}, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        client.close()
        log.extend(zip(client.ids, (v for v, _ in client.received), strict=True))
        if client.last_id is not None:
            last_id = client.last_id
        if not stop.is_set():
            reconnects += 1
    return reconnects


async def restart(args: argparse.Namespace) -> dict[str, Any]:
    with ours(workers=2) as target:
        say(f"restart: {target.name}, 200 resuming streams")
        stop = asyncio.Event()
        logs: list[list[tuple[str, str]]] = [[] for _ in range(200)]
        tasks = [asyncio.create_task(resuming_client(target.port, stop, log)) for log in logs]
        await asyncio.sleep(2)
        posted = []
        worker_pids = [int(p) for p in children_of(target.proc.pid)]
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as s:
            for i in range(int(args.restart_seconds * 50)):
                if i == 150 and worker_pids:
                    say(f"restart: SIGTERM to worker {worker_pids[0]}")
                    os.kill(worker_pids[0], signal.SIGTERM)
                value = f"r{i}"
                for _ in range(50):  # a POST that lands on the stopping worker is retried
                    try:
                        async with s.post(target.base + "/add-value/", json={"value": value}) as r:
                            if r.status == 200:
                                posted.append(value)
                                break
                    except aiohttp.ClientError:
                        pass
                    await asyncio.sleep(0.05)
                await asyncio.sleep(1 / 50)
        await asyncio.sleep(3)
        stop.set()
        reconnects = await asyncio.gather(*tasks)
    missed = repeated = out_of_order = 0
    for log in logs:
        values = [v for _, v in log]
        ids = [int(i) for i, _ in log]
        missed += len(set(posted) - set(values))
        repeated += len(values) - len(set(values))
        out_of_order += sum(1 for a, b in itertools.pairwise(ids) if b != a + 1)
    result = {
        "streams": len(logs),
        "posted": len(posted),
        "reconnects": sum(reconnects),
        "missed": missed,
        "repeated": repeated,
        "out_of_order": out_of_order,
    }
    say(
        f"restart: {result['reconnects']} reconnects; {missed} missed, {repeated} repeated, "
        f"{out_of_order} out of order"
    )
    return result


def children_of(pid: int) -> list[str]:
    """The supervisor's worker processes (not the embedded Redis it also started)."""
    path = Path(f"/proc/{pid}/task/{pid}/children")
    pids = path.read_text().split() if path.exists() else []
    return [p for p in pids if b"run.py" in Path(f"/proc/{p}/cmdline").read_bytes()]


async def cluster(args: argparse.Namespace) -> dict[str, Any]:
    with ours(workers=4) as target:
        say(f"cluster: {target.name}, 4,000 streams")
        # 100 values at 25/s: 100,000 deliveries a second, as many as 1,000 streams at 100/s,
        # which is what one load-generator process here can read without becoming the limit.
        result = await fanout(target, 4000, 100, 25.0, spread_posts=True)
    return result


def report(results: dict[str, Any]) -> str:
    out = []
    c, b = results["ceiling"], results["baseline"]
    out += [
        "| same run | value |",
        "|---|---|",
        f"| framework ceiling (bare aiohttp, 16 clients) | {c['per_second']:,.0f} req/s |",
        f"| baseline writes/s at 16 clients (p99) | {b['writes']['per_second']:,.0f} "
        f"({b['writes']['p99_ms']:.1f} ms) |",
        f"| baseline fan-out to 1,000: delivery p99 / POST p99 | "
        f"{b['fanout']['delivery_p99_ms']:.0f} ms / {b['fanout']['post_p99_ms']:.0f} ms |",
        "",
    ]
    t = results["10k"]
    out += [
        f"| 10,000 streams on one process ({t['feed_streams']:,} feed + "
        f"{t['user_streams']:,} user) | measured |",
        "|---|---|",
        f"| opened in | {t['open_seconds']:.1f} s |",
        f"| RSS per idle stream | {t['rss_per_stream_kib']:.1f} KiB |",
        f"| streams with >= 2 heartbeats in 11 s (every 5 s) | {t['heartbeat_streams']:,}"
        f" / {t['streams']:,} |",
        f"| new stream accepted, p50 / p99 / max | {t['accept_p50_ms']:.1f} / "
        f"{t['accept_p99_ms']:.1f} / {t['accept_max_ms']:.1f} ms |",
        f"| delivered / expected | {t['delivered']:,} / {t['expected']:,} |",
        f"| latency p50 / p99 / max | {t['latency_p50_ms']:.0f} / {t['latency_p99_ms']:.0f}"
        f" / {t['latency_max_ms']:.0f} ms |",
        "",
    ]
    out += [
        "| workers | writes/s at 16 (p99 ms) | fan-out 1,000: delivered | delivery p99 ms "
        "| POST p99 ms |",
        "|---|---|---|---|---|",
    ]
    for w in results["workers"]:
        f = w["fanout"]
        out.append(
            f"| {w['workers']} | {w['writes']['per_second']:,.0f} "
            f"({w['writes']['p99_ms']:.1f}) | {f['delivered']:,}/{f['expected']:,} | "
            f"{f['delivery_p99_ms']:.0f} | {f['post_p99_ms']:.1f} |"
        )
    r = results["restart"]
    out += [
        "",
        "| graceful restart of one of 2 workers | value |",
        "|---|---|",
        f"| values posted / resuming streams | {r['posted']} / {r['streams']} |",
        f"| reconnects | {r['reconnects']} |",
        f"| missed / repeated / out of order | {r['missed']} / {r['repeated']} / "
        f"{r['out_of_order']} |",
    ]
    k = results["cluster"]
    out += [
        "",
        "| 4 processes, 4,000 streams, 100 values at 25/s | value |",
        "|---|---|",
        f"| delivered | {k['delivered']:,}/{k['expected']:,} ({k['delivered_pct']:.1f}%) |",
        f"| delivery p50 / p99 / max | {k['delivery_p50_ms']:.0f} / "
        f"{k['delivery_p99_ms']:.0f} / {k['delivery_max_ms']:.0f} ms |",
        f"| POST p99 | {k['post_p99_ms']:.1f} ms |",
        f"| one order for all clients | {'yes' if k['one_order'] else 'no'} |",
    ]
    if t.get("profile_top"):
        out += ["", "| py-spy, self time during the 10k fan-out | share |", "|---|---|"]
        out += [f"| `{name}` | {share:.1f}% |" for name, share in t["profile_top"]]
    return "\n".join(out)


async def main_async(args: argparse.Namespace) -> None:
    limit = raise_nofile()
    say(f"open files limit {limit}")
    results: dict[str, Any] = {"ceiling": await ceiling(args.seconds)}
    with baseline() as target:
        say(f"baseline: {target.name}")
        results["baseline"] = {
            "writes": await writes(target, 16, args.seconds),
            "fanout": await fanout(target, 1000, 200, 100.0),
        }
    results["10k"] = await ten_thousand(args)
    results["workers"] = await workers(args)
    results["restart"] = await restart(args)
    results["cluster"] = await cluster(args)
    print()
    print(report(results))
    save_results("scale", {"args": vars(args), "results": results})


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--streams", type=int, default=10_000)
    parser.add_argument("--user-streams", type=int, default=2_000)
    parser.add_argument("--fan-values", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=10.0, help="per throughput phase")
    parser.add_argument("--restart-seconds", type=float, default=10.0)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    args.seconds = min(args.seconds, 30.0)
    args.restart_seconds = min(args.restart_seconds, 30.0)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
