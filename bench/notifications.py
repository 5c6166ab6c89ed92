"""Per-user notification streams: 1,000 users with one open stream each, a sender notifying
random users at 200/s.

    python -m bench.notifications                  # 1,000 streams, 200/s for 30 s
    python -m bench.notifications --seconds 10 --users 300

Measures delivered/expected, latency from sending POST /sse/send-message to receiving the
frame, the send requests' p99, and the server's RSS per open idle stream (RSS with the streams
open minus RSS before, divided by their number). Bounded: at most 120 s of sending.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
from typing import Any

import aiohttp

from .common import open_streams, ours, percentile, raise_nofile, rss_kib, save_results, say


async def main_async(args: argparse.Namespace) -> None:
    raise_nofile()
    with ours() as target:
        say(f"{target.name} on port {target.port}; registering {args.users} users")
        async with aiohttp.ClientSession() as session:

            async def register(i: int) -> dict[str, Any]:
                body = {"name": f"user {i}", "email": f"user{i}@bench.example"}
                async with session.post(target.base + "/users", json=body) as response:
                    return dict(await response.json())

            users = []
            for start in range(0, args.users + 1, 100):
                batch = range(start, min(start + 100, args.users + 1))
                users += await asyncio.gather(*(register(i) for i in batch))
            sender, users = users[0], users[1:]
            await asyncio.sleep(1)
            before = rss_kib(target.proc.pid)
            clients = await open_streams(
                target.port, [(f"/sse/{u['id']}", u["token"]) for u in users]
            )
            await asyncio.sleep(3)  # idle: let allocations settle
            after = rss_kib(target.proc.pid)
            per_stream = (after - before) / len(clients)
            say(
                f"{len(clients)} streams open; RSS {before:,} KiB -> {after:,} KiB, "
                f"{per_stream:.1f} KiB per idle stream"
            )

            auth = {"Authorization": f"Bearer {sender['token']}"}
            rng = random.Random(1)
            sent_at: dict[str, float] = {}
            post_latencies: list[float] = []
            total = int(args.rate * args.seconds)

            async def send(n: int, user: dict[str, Any]) -> None:
                message = f"n{n}"
                started = time.perf_counter()
                sent_at[message] = started
                body = {"user_id": user["id"], "message": message}
                async with session.post(
                    target.base + "/sse/send-message", json=body, headers=auth
                ) as response:
                    await response.read()
                    if response.status != 202:
                        raise RuntimeError(f"send-message answered {response.status}")
                post_latencies.append(time.perf_counter() - started)

            say(f"sending {total} notifications at {args.rate:.0f}/s to random users")
            start = time.perf_counter()
            tasks = []
            for n in range(total):
                await asyncio.sleep(max(0.0, start + n / args.rate - time.perf_counter()))
                tasks.append(asyncio.create_task(send(n, rng.choice(users))))
                if n and n % int(args.rate * 5) == 0:
                    say(f"  {n}/{total} sent")
            await asyncio.gather(*tasks)
            deadline = time.perf_counter() + 15
            while time.perf_counter() < deadline:
                if sum(len(c.received) for c in clients) >= total:
                    break
                await asyncio.sleep(0.1)
            delays = []
            for client in clients:
                for data, received in client.received:
                    message = json.loads(data)["data"]["message"]
                    delays.append(received - sent_at[message])
                client.close()
    result = {
        "streams": len(clients),
        "sent": total,
        "delivered": len(delays),
        "delivered_pct": 100.0 * len(delays) / total,
        "latency_p50_ms": percentile(delays, 50) * 1000,
        "latency_p99_ms": percentile(delays, 99) * 1000,
        "latency_max_ms": max(delays) * 1000 if delays else float("nan"),
        "send_p99_ms": percentile(post_latencies, 99) * 1000,
        "rss_before_kib": before,
        "rss_after_kib": after,
        "rss_per_stream_kib": per_stream,
    }
    print()
    print(
        f"| measure ({len(clients)} streams, {args.rate:.0f}/s for {args.seconds:.0f} s) "
        "| collab-service (1 process) |"
    )
    print("|---|---|")
    print(
        f"| delivered/expected | {result['delivered']:,}/{total:,} "
        f"({result['delivered_pct']:.1f}%) |"
    )
    print(
        f"| latency p50 / p99 / max (ms) | {result['latency_p50_ms']:.0f} / "
        f"{result['latency_p99_ms']:.0f} / {result['latency_max_ms']:.0f} |"
    )
    print(f"| POST /sse/send-message p99 (ms) | {result['send_p99_ms']:.1f} |")
    print(f"| server RSS per open idle stream | {per_stream:.1f} KiB |")
    save_results("notifications", {"args": vars(args), "result": result})


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()
    args.seconds = min(args.seconds, 120.0)
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
