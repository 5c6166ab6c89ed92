"""Live news while Redis is down: the same load before, during and after a Redis outage.

    python -m bench.degraded            # 1,000 feed + 200 user streams, 20 s per phase
    python -m bench.degraded --quick    # 100 feed + 50 user streams, 5 s per phase

The service runs on a Redis this benchmark starts, stops and restarts itself (REDIS_URL; its
PostgreSQL is embedded, or BENCH_DATABASE_URL, as in the other benchmarks). The streams are
opened once: N on the feed (`/events/`) and one `/sse/{id}` per user for M users. Each phase
posts values at 50/s and sends notifications to random users at 50/s, interleaved:
  1. healthy: Redis up;
  2. Redis down: Redis is stopped as the phase starts, the load starts at once;
  3. Redis back: Redis is restarted on the same port as the phase starts, the load at once.
Per phase: delivered/expected for both kinds, latency p50/p99/max from sending the POST to
receiving the frame (an upper bound of the time from commit to receipt, which is what API.md
bounds at 2 s), POST p99, the stream watch's PostgreSQL reads (`sse_fallback_reads_total` by
kind, sampled every 0.5 s) per second, and the CPU of the service and of the embedded
PostgreSQL. Over the whole run: no stream got a message twice, every stream's ids only grow
(and a user's are gapless), all feed streams saw one order. After each phase the benchmark
waits (at most 10 s) for the stragglers. Prints a Markdown table and writes the numbers to
bench/results/degraded-<time>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import itertools
import json
import os
import platform
import random
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from server.embedded import RedisProcess

from .common import (
    SSEClient,
    Target,
    open_sse,
    open_streams,
    ours,
    percentile,
    raise_nofile,
    save_results,
    say,
)

RATE = 50.0  # values per second, and as many notifications per second
STRAGGLERS = 10.0  # seconds to wait for the last messages of a phase
SAMPLE_EVERY = 0.5  # seconds between reads of /metrics
READS = re.compile(rb'^sse_fallback_reads_total\{kind="(\w+)"\} (\S+)$', re.MULTILINE)


@dataclass
class Sample:
    at: float  # perf_counter
    reads: dict[str, float]
    cpu: tuple[float, float, float]  # service, embedded PostgreSQL, this process (seconds)


@dataclass
class Sampler:
    """Reads the fallback-read counters and the CPU times every SAMPLE_EVERY seconds."""

    target: Target
    samples: list[Sample] = field(default_factory=list)
    failures: int = 0
    stalls: list[tuple[float, float]] = field(default_factory=list)  # (at, seconds late)

    async def loop_lag(self, stop: asyncio.Event, limit: float) -> None:
        """How late a 10 ms timer fires in this (the load generator's) process: a stall here
        delays receipts too, so it tells the generator's pauses from the service's."""
        deadline = time.perf_counter() + limit
        while not stop.is_set() and time.perf_counter() < deadline:
            due = time.perf_counter() + 0.01
            await asyncio.sleep(0.01)
            now = time.perf_counter()
            self.stalls.append((now, now - due))

    def worst_stall(self, start: float, end: float) -> float:
        return max((lag for at, lag in self.stalls if start <= at <= end), default=float("nan"))

    async def one(self, session: aiohttp.ClientSession) -> None:
        reads = {"feed": float("nan"), "users": float("nan")}
        try:
            async with session.get(self.target.base + "/metrics") as response:
                for kind, value in READS.findall(await response.read()):
                    reads[kind.decode()] = float(value)
        except (aiohttp.ClientError, TimeoutError):
            self.failures += 1
            return
        self.samples.append(Sample(time.perf_counter(), reads, cpu_times(self.target)))

    async def run(self, session: aiohttp.ClientSession, stop: asyncio.Event, limit: float) -> None:
        deadline = time.perf_counter() + limit
        while not stop.is_set() and time.perf_counter() < deadline:
            await self.one(session)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(SAMPLE_EVERY):
                    await stop.wait()
        await self.one(session)

    def between(self, start: float, end: float) -> list[Sample]:
        return sorted((s for s in self.samples if start <= s.at <= end), key=lambda s: s.at)


async def pause_gc() -> None:
    """Collect now, then leave this process's garbage collector off until the next call: a
    full collection scans every frame received so far (a million in the full run) and stalled
    the load generator for up to a second, which showed up as delivery latency."""
    gc.enable()
    gc.collect()
    gc.freeze()  # what exists now is never scanned again
    gc.disable()
    await asyncio.sleep(0.05)  # the stall of this collection is not counted in the next phase


def _proc_cpu() -> dict[int, tuple[int, float]]:
    """pid -> (parent pid, user + system CPU seconds) for every process we can read."""
    tick = os.sysconf("SC_CLK_TCK")
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = (entry / "stat").read_bytes().rsplit(b")", 1)[1].split()
            table[int(entry.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / tick)
    return table


def cpu_times(target: Target) -> tuple[float, float, float]:
    """CPU seconds of the service process, of the embedded PostgreSQL (its postmaster and
    backends; nan when PostgreSQL is not the embedded one), and of this process."""
    table = _proc_cpu()
    service = table.get(target.proc.pid, (0, float("nan")))[1]
    postgres = float("nan")
    pidfile = target.data_dir / "postgres" / "postmaster.pid" if target.data_dir else None
    with contextlib.suppress(OSError, ValueError, IndexError):
        if pidfile is not None:
            postmaster = int(pidfile.read_text().split()[0])
            if postmaster in table:
                postgres = table[postmaster][1] + sum(
                    cpu for parent, cpu in table.values() if parent == postmaster
                )
    return service, postgres, time.process_time()


@dataclass
class Load:
    sent_at: dict[str, float] = field(default_factory=dict)  # message -> POST sent
    post_ms: dict[str, list[float]] = field(default_factory=lambda: {"value": [], "note": []})
    answered: list[tuple[float, float]] = field(default_factory=list)  # (sent, ms) per POST
    failures: int = 0
    committed: dict[str, int] = field(default_factory=lambda: {"value": 0, "note": 0})


async def load(
    session: aiohttp.ClientSession,
    target: Target,
    sender: dict[str, Any],
    users: list[dict[str, Any]],
    tag: str,
    seconds: float,
    rng: random.Random,
) -> Load:
    """Values and notifications at RATE/s each, interleaved, for ``seconds``."""
    result = Load()
    auth = {"Authorization": f"Bearer {sender['token']}"}

    async def post(
        kind: str, name: str, url: str, body: dict[str, Any], ok: int, **kw: Any
    ) -> None:
        started = time.perf_counter()
        result.sent_at[name] = started
        try:
            async with session.post(url, json=body, **kw) as response:
                await response.read()
                status = response.status
        except (aiohttp.ClientError, TimeoutError):
            status = 0
        if status != ok:
            result.failures += 1
            return
        result.committed[kind] += 1
        result.post_ms[kind].append((time.perf_counter() - started) * 1000)
        result.answered.append((started, result.post_ms[kind][-1]))

    count = int(RATE * seconds)
    tasks = []
    start = time.perf_counter()
    for k in range(2 * count):
        await asyncio.sleep(max(0.0, start + k / (2 * RATE) - time.perf_counter()))
        i = k // 2
        if k % 2 == 0:
            name = f"{tag}-v{i}"
            url = target.base + "/add-value/"
            tasks.append(asyncio.create_task(post("value", name, url, {"value": name}, 200)))
        else:
            name = f"{tag}-n{i}"
            body = {"user_id": rng.choice(users)["id"], "message": name}
            url = target.base + "/sse/send-message"
            tasks.append(asyncio.create_task(post("note", name, url, body, 202, headers=auth)))
    await asyncio.gather(*tasks)
    return result


def note_name(data: str) -> str:
    return str(json.loads(data)["data"]["message"])


def stats(delays: list[float]) -> dict[str, float]:
    return {
        "p50_ms": percentile(delays, 50) * 1000,
        "p99_ms": percentile(delays, 99) * 1000,
        "max_ms": max(delays) * 1000 if delays else float("nan"),
    }


async def stragglers(
    feed: list[SSEClient],
    inboxes: list[SSEClient],
    feed_from: list[int],
    inbox_from: list[int],
    sent: Load,
    deadline: float,
) -> None:
    """Wait until every stream has as many new messages as were committed, or the deadline."""
    want_feed = sum(feed_from) + len(feed) * sent.committed["value"]
    want_notes = sum(inbox_from) + sent.committed["note"]
    while time.perf_counter() < deadline:
        if (
            sum(len(c.received) for c in feed) >= want_feed
            and sum(len(c.received) for c in inboxes) >= want_notes
        ):
            return
        await asyncio.sleep(0.1)


async def phase(
    name: str,
    tag: str,
    session: aiohttp.ClientSession,
    target: Target,
    sampler: Sampler,
    feed: list[SSEClient],
    inboxes: list[SSEClient],
    sender: dict[str, Any],
    users: list[dict[str, Any]],
    args: argparse.Namespace,
    rng: random.Random,
    started: float,
) -> dict[str, Any]:
    """The load for one phase, then (bounded) its stragglers; ``started``: when the phase
    began (Redis stopped or restarted just before)."""
    feed_from = [len(c.received) for c in feed]
    inbox_from = [len(c.received) for c in inboxes]
    say(f"{name}: posting values and notifications at {RATE:.0f}/s each for {args.seconds:.0f} s")
    sent = await load(session, target, sender, users, tag, args.seconds, rng)
    sending_ended = time.perf_counter()
    await stragglers(feed, inboxes, feed_from, inbox_from, sent, sending_ended + STRAGGLERS)
    await asyncio.sleep(SAMPLE_EVERY)
    await sampler.one(session)  # the phase's last sample
    ended = time.perf_counter()

    feed_delays: list[float] = []
    worst_feed: dict[int, float] = {}  # second of the phase the value was sent in -> latency
    feed_twice = stray = 0
    for client, offset in zip(feed, feed_from, strict=True):
        seen: set[str] = set()
        for value, received in client.received[offset:]:
            if value in seen:
                feed_twice += 1
                continue
            seen.add(value)
            if value in sent.sent_at:
                delay = received - sent.sent_at[value]
                feed_delays.append(delay)
                second = int(sent.sent_at[value] - started)
                if delay > worst_feed.get(second, 0.0):
                    worst_feed[second] = delay
            else:
                stray += 1
    note_delays: list[float] = []
    notes_twice = 0
    for client, offset in zip(inboxes, inbox_from, strict=True):
        seen = set()
        for data, received in client.received[offset:]:
            message = note_name(data)
            if message in seen:
                notes_twice += 1
                continue
            seen.add(message)
            if message in sent.sent_at:
                note_delays.append(received - sent.sent_at[message])
            else:
                stray += 1

    window = sampler.between(started, ended)
    reads: dict[str, Any] = {}
    cpu: dict[str, float] = {}
    if len(window) >= 2:
        first, last = window[0], window[-1]
        span = last.at - first.at
        for kind in ("feed", "users"):
            count = last.reads[kind] - first.reads[kind]
            rising = [
                b.at - started
                for a, b in itertools.pairwise(window)
                if b.reads[kind] > a.reads[kind]
            ]
            half = [x for x in window if x.at >= first.at + span / 2]  # settled: 2nd half
            settled = half[-1].reads[kind] - half[0].reads[kind] if len(half) >= 2 else 0.0
            settled_span = half[-1].at - half[0].at if len(half) >= 2 else float("nan")
            reads[kind] = {
                "count": count,
                "per_second": count / span,
                "per_second_2nd_half": settled / settled_span,
                "first_s": rising[0] if rising else None,  # after the phase began (sampled)
                "last_s": rising[-1] if rising else None,
            }
        cpu = {
            "service_pct": 100 * (last.cpu[0] - first.cpu[0]) / span,
            "postgres_pct": 100 * (last.cpu[1] - first.cpu[1]) / span,
            "generator_pct": 100 * (last.cpu[2] - first.cpu[2]) / span,
            "seconds": span,
        }
    expected_feed = len(feed) * sent.committed["value"]
    result: dict[str, Any] = {
        "phase": name,
        "feed": {
            "delivered": len(feed_delays),
            "expected": expected_feed,
            "twice": feed_twice,
            **stats(feed_delays),
        },
        "notifications": {
            "delivered": len(note_delays),
            "expected": sent.committed["note"],
            "twice": notes_twice,
            **stats(note_delays),
        },
        "stray": stray,  # messages of another phase received during this one
        "post_failures": sent.failures,
        "value_post_p99_ms": percentile(sent.post_ms["value"], 99),
        "note_post_p99_ms": percentile(sent.post_ms["note"], 99),
        "fallback_reads": reads,
        "cpu": cpu,
        "wall_seconds": ended - started,
        "generator_worst_stall_ms": sampler.worst_stall(started, ended) * 1000,
        "timeline": timeline(started, worst_feed, sent),
    }
    f, n = result["feed"], result["notifications"]
    say(
        f"  {name}: feed {f['delivered']:,}/{f['expected']:,}, p50 {f['p50_ms']:.0f} ms, "
        f"p99 {f['p99_ms']:.0f} ms, max {f['max_ms']:.0f} ms; notifications "
        f"{n['delivered']:,}/{n['expected']:,}, p99 {n['p99_ms']:.0f} ms, max "
        f"{n['max_ms']:.0f} ms; twice {f['twice'] + n['twice']}; POST p99 "
        f"{result['value_post_p99_ms']:.1f} / {result['note_post_p99_ms']:.1f} ms; "
        f"{sent.failures} POST failures; load generator stalled up to "
        f"{result['generator_worst_stall_ms']:.0f} ms; fallback reads/s "
        + " / ".join(f"{k} {v['per_second']:.2f}" for k, v in reads.items())
    )
    return result


def timeline(started: float, worst_feed: dict[int, float], sent: Load) -> list[dict[str, Any]]:
    """Second by second of the phase (by when the POST was sent): the slowest feed delivery
    and the slowest POST, to tell a stall from a steady delay."""
    worst_post: dict[int, float] = {}
    for at, ms in sent.answered:
        second = int(at - started)
        worst_post[second] = max(ms, worst_post.get(second, 0.0))
    return [
        {
            "second": second,
            "feed_max_ms": round(worst_feed.get(second, float("nan")) * 1000, 1),
            "post_max_ms": round(worst_post.get(second, float("nan")), 1),
        }
        for second in sorted(set(worst_feed) | set(worst_post))
    ]


def whole_run(feed: list[SSEClient], inboxes: list[SSEClient]) -> dict[str, Any]:
    """Over every message of the run: ids only grow on each stream (so nothing twice, one
    order), a user's ids are gapless from 1, all feed streams saw the same sequence."""
    feed_bad = sum(
        1
        for c in feed
        if any(int(b) <= int(a) for a, b in itertools.pairwise(c.ids))
        or len({v for v, _ in c.received}) != len(c.received)
    )
    inbox_bad = sum(1 for c in inboxes if [int(i) for i in c.ids] != list(range(1, len(c.ids) + 1)))
    orders = {tuple(v for v, _ in c.received) for c in feed}
    return {
        "feed_streams_out_of_order_or_twice": feed_bad,
        "user_streams_not_gapless": inbox_bad,
        "feed_orders": len(orders),
        "one_order": feed_bad == 0 and inbox_bad == 0 and len(orders) == 1,
    }


def cell_ms(part: dict[str, Any]) -> str:
    return f"{part['p50_ms']:.0f} / {part['p99_ms']:.0f} / {part['max_ms']:.0f}"


def table(phases: list[dict[str, Any]], run: dict[str, Any], args: argparse.Namespace) -> str:
    def delivered(part: dict[str, Any]) -> str:
        pct = 100.0 * part["delivered"] / part["expected"] if part["expected"] else float("nan")
        return f"{part['delivered']:,}/{part['expected']:,} ({pct:.1f}%)"

    def reads(p: dict[str, Any], key: str, fmt: str) -> str:
        r = p["fallback_reads"]
        if not r:
            return "-"
        return " / ".join(format(r[k][key], fmt) for k in ("feed", "users"))

    def since(p: dict[str, Any]) -> str:
        r = p["fallback_reads"].get("feed")
        if not r or r["first_s"] is None:
            return "none"
        return f"{r['first_s']:.1f} / {r['last_s']:.1f}"

    def cpu(p: dict[str, Any], key: str) -> str:
        value = p["cpu"].get(key, float("nan"))
        return "-" if value != value else f"{value:.0f}%"

    rows = [
        ("feed: delivered/expected", [delivered(p["feed"]) for p in phases]),
        ("feed: latency p50 / p99 / max (ms)", [cell_ms(p["feed"]) for p in phases]),
        ("notifications: delivered/expected", [delivered(p["notifications"]) for p in phases]),
        (
            "notifications: latency p50 / p99 / max (ms)",
            [cell_ms(p["notifications"]) for p in phases],
        ),
        (
            "delivered twice (feed + notifications)",
            [str(p["feed"]["twice"] + p["notifications"]["twice"]) for p in phases],
        ),
        (
            "POST p99: /add-value/ / send-message (ms)",
            [f"{p['value_post_p99_ms']:.1f} / {p['note_post_p99_ms']:.1f}" for p in phases],
        ),
        ("POST failures", [str(p["post_failures"]) for p in phases]),
        ("fallback reads: feed / users (count)", [reads(p, "count", ".0f") for p in phases]),
        (
            "fallback reads per second: feed / users",
            [reads(p, "per_second", ".2f") for p in phases],
        ),
        (
            "the same in the phase's 2nd half",
            [reads(p, "per_second_2nd_half", ".2f") for p in phases],
        ),
        ("fallback reads: first / last seen, s into the phase", [since(p) for p in phases]),
        ("service CPU (of one core)", [cpu(p, "service_pct") for p in phases]),
        ("PostgreSQL CPU (of one core)", [cpu(p, "postgres_pct") for p in phases]),
        ("load generator CPU (of one core)", [cpu(p, "generator_pct") for p in phases]),
        (
            "load generator's longest stall (ms)",
            [f"{p['generator_worst_stall_ms']:.0f}" for p in phases],
        ),
    ]
    head = (
        f"| measure ({args.feed_streams:,} feed + {args.users:,} user streams, "
        f"{RATE:.0f} values/s + {RATE:.0f} notifications/s, {args.seconds:.0f} s per phase) | "
        + " | ".join(p["phase"] for p in phases)
        + " |"
    )
    lines = [head, "|---|" + "---|" * len(phases)]
    lines += [f"| {label} | " + " | ".join(cells) + " |" for label, cells in rows]
    order = (
        "yes"
        if run["one_order"]
        else (
            f"no: {run['feed_streams_out_of_order_or_twice']} feed streams out of order or "
            f"twice, {run['user_streams_not_gapless']} user streams not gapless, "
            f"{run['feed_orders']} feed orders"
        )
    )
    lines.append(f"| whole run: one order per stream, ids gapless | {order} | | |")
    return "\n".join(lines)


async def register_users(
    session: aiohttp.ClientSession, target: Target, count: int
) -> list[dict[str, Any]]:
    async def one(i: int) -> dict[str, Any]:
        body = {"name": f"user {i}", "email": f"user{i}@degraded.bench.example"}
        async with session.post(target.base + "/users", json=body) as response:
            if response.status != 201:
                raise RuntimeError(f"POST /users answered {response.status}")
            return dict(await response.json())

    users: list[dict[str, Any]] = []
    for start in range(0, count, 100):
        users += await asyncio.gather(*(one(i) for i in range(start, min(start + 100, count))))
    return users


async def main_async(args: argparse.Namespace) -> None:
    limit = raise_nofile()
    say(f"open files limit {limit}; python {platform.python_version()}")
    redis = RedisProcess().start()
    say(f"Redis (Valkey) of this benchmark on port {redis.port}")
    try:
        with ours(extra_env={"REDIS_URL": redis.url}) as target:
            say(f"{target.name} on port {target.port}; registering {args.users + 1} users")
            timeout = aiohttp.ClientTimeout(total=30)
            async with aiohttp.ClientSession(timeout=timeout) as session:
                sender, *users = await register_users(session, target, args.users + 1)
                feed = await open_sse(target.port, "/events/", args.feed_streams)
                inboxes = await open_streams(
                    target.port, [(f"/sse/{u['id']}", u["token"]) for u in users]
                )
                say(f"{len(feed)} feed streams and {len(inboxes)} user streams open")
                # Warm up (pool connections, prepared statements), then measure.
                rng = random.Random(8)
                feed_from = [len(c.received) for c in feed]
                inbox_from = [len(c.received) for c in inboxes]
                warm = await load(session, target, sender, users, "w", 2.0, rng)
                deadline = time.perf_counter() + STRAGGLERS
                await stragglers(feed, inboxes, feed_from, inbox_from, warm, deadline)
                await asyncio.sleep(1)
                sampler = Sampler(target)
                stop = asyncio.Event()
                limit = 3 * (args.seconds + STRAGGLERS + 30) + 60
                sampling = asyncio.gather(
                    sampler.run(session, stop, limit), sampler.loop_lag(stop, limit)
                )
                common = (session, target, sampler, feed, inboxes, sender, users, args, rng)
                phases = []
                try:
                    await pause_gc()
                    healthy_at = time.perf_counter()
                    await sampler.one(session)  # each phase starts with a sample
                    phases.append(await phase("healthy", "h", *common, healthy_at))

                    await pause_gc()
                    down_at = time.perf_counter()
                    await sampler.one(session)
                    await asyncio.to_thread(redis.stop)
                    say(f"Redis stopped (port {redis.port})")
                    phases.append(await phase("Redis down", "d", *common, down_at))

                    await pause_gc()
                    back_at = time.perf_counter()
                    await sampler.one(session)
                    redis = await asyncio.to_thread(RedisProcess(port=redis.port).start)
                    say(f"Redis restarted on port {redis.port}")
                    phases.append(await phase("Redis back", "b", *common, back_at))
                finally:
                    gc.unfreeze()
                    gc.enable()
                    stop.set()
                    await sampling
                run = whole_run(feed, inboxes)
                for client in feed + inboxes:
                    client.close()
    finally:
        redis.stop()
    say(
        "whole run: "
        + (
            "every stream in one order, nothing twice, user ids gapless"
            if run["one_order"]
            else f"ORDER BROKEN: {run}"
        )
    )
    print()
    print(table(phases, run, args))
    save_results(
        "degraded", {"args": vars(args), "phases": phases, "run": run, "rate_per_kind": RATE}
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--feed-streams", type=int, default=1000)
    parser.add_argument("--users", type=int, default=200, help="one stream each")
    parser.add_argument("--seconds", type=float, default=20.0, help="per phase")
    parser.add_argument("--quick", action="store_true", help="100 + 50 streams, 5 s phases")
    args = parser.parse_args()
    if args.quick:
        args.feed_streams, args.users, args.seconds = 100, 50, 5.0
    args.seconds = min(args.seconds, 60.0)
    args.feed_streams = min(args.feed_streams, 10_000)
    args.users = min(args.users, 5_000)
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
