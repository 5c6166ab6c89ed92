"""Shared pieces of the benchmarks: starting the servers under test, a light SSE client, stats.

The load generator runs in its own process (this one), on loopback only, with every loop
bounded in count and time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
BASELINE = ROOT.parent / "shared" / "baselines" / "livedatastream"


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def raise_nofile() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    return soft


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far (Linux /proc). CPU per request
    stays comparable when other work shares the cores; requests per second does not."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def postgres_cpu_seconds() -> float:
    """User + system CPU seconds used so far by every process named ``postgres`` that this
    user can read (Linux /proc): the server's backends and its background processes, on the
    same cores as the service. A backend that exits in between takes its seconds with it; the
    service's pool keeps its connections open, so within a phase this counts them."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        name, rest = text.split("(", 1)[1].rsplit(")", 1)
        if name == "postgres":
            fields = rest.split()
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[index]


def wait_http(port: int, path: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1) as s:
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
            if s.recv(64).startswith(b"HTTP/1.1 200"):
                return
        time.sleep(0.2)
    raise RuntimeError(f"nothing healthy on port {port} after {timeout:.0f} s")


@dataclass
class Target:
    """A server under test."""

    name: str
    port: int
    proc: subprocess.Popen[bytes]
    has_ids: bool  # whether its stream carries `id:` and honours Last-Event-ID
    cleanup: list[Callable[[], None]] = field(default_factory=list)
    data_dir: Path | None = None  # ours: DATA_DIR (the embedded PostgreSQL lives in it)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self, timeout: float = 30.0) -> float:
        """SIGTERM; seconds until the process ended."""
        started = time.monotonic()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        took = time.monotonic() - started
        for step in self.cleanup:
            step()
        return took


@contextlib.contextmanager
def ours(
    workers: int = 1, extra_env: dict[str, str] | None = None, root: Path = ROOT
) -> Iterator[Target]:
    """This service on a fresh embedded PostgreSQL and Redis (or BENCH_DATABASE_URL and
    BENCH_REDIS_URL when set), one process unless told otherwise. ``extra_env`` wins over
    both (bench.degraded passes REDIS_URL: a Redis it stops and restarts itself). ``root``
    runs another checkout of the service (an older commit, to compare in the same run)."""
    port = free_port()
    data_dir = Path(tempfile.mkdtemp(prefix="collab-bench-"))
    data_dir.chmod(0o755)
    env = {
        **os.environ,
        "DATA_DIR": str(data_dir),
        "DATABASE_URL": os.environ.get("BENCH_DATABASE_URL", ""),
        "REDIS_URL": os.environ.get("BENCH_REDIS_URL", ""),
        "LOG_LEVEL": "WARNING",  # like the baseline's uvicorn --log-level warning: no access log
        "FEED_RETENTION_DAYS": "0",
        **(extra_env or {}),
    }
    args = [sys.executable, str(root / "run.py"), "--port", str(port), "--workers", str(workers)]
    proc = subprocess.Popen(args, env=env, cwd=root)
    target = Target(
        f"collab-service ({workers} process{'es' if workers > 1 else ''})",
        port,
        proc,
        has_ids=True,
        data_dir=data_dir,
    )
    target.cleanup.append(lambda: shutil.rmtree(data_dir, ignore_errors=True))
    try:
        wait_http(port, "/health", 60)
        yield target
    finally:
        target.stop()


@contextlib.contextmanager
def baseline() -> Iterator[Target]:
    """The LiveDataStream app (FastAPI + SQLite, one uvicorn worker), via its own start.sh."""
    port = free_port()
    proc = subprocess.Popen(["bash", str(BASELINE / "start.sh"), str(port)], start_new_session=True)
    target = Target("LiveDataStream baseline", port, proc, has_ids=False)
    try:
        wait_http(port, "/docs", 300)  # the first run builds its virtualenv
        yield target
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        target.stop()


class SSEClient(asyncio.Protocol):
    """A lean HTTP/1.1 SSE reader (chunked or not), so that 1,000 of them fit in one process.

    It records (value, receive time) for every message, and the last `id:` seen.
    """

    def __init__(
        self, path: str, last_event_id: str | None = None, token: str | None = None
    ) -> None:
        headers = "" if last_event_id is None else f"Last-Event-ID: {last_event_id}\r\n"
        if token is not None:
            headers += f"Authorization: Bearer {token}\r\n"
        self.request = (
            f"GET {path} HTTP/1.1\r\nHost: bench\r\nAccept: text/event-stream\r\n{headers}\r\n"
        ).encode()
        self.transport: asyncio.Transport | None = None
        self.ready = asyncio.get_running_loop().create_future()
        self.closed = asyncio.get_running_loop().create_future()
        self.received: list[tuple[str, float]] = []
        self.ids: list[str] = []
        self.pings = 0
        self.last_id: str | None = None
        self._head = b""
        self._chunked = False
        self._raw = bytearray()  # body bytes not yet de-chunked
        self._need = 0  # bytes left in the current chunk, plus its CRLF
        self._body = bytearray()  # de-chunked bytes not yet split into frames

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        if not self.ready.done():
            self._head += data
            end = self._head.find(b"\r\n\r\n")
            if end < 0:
                return
            head, rest = self._head[:end].lower(), self._head[end + 4 :]
            if not head.startswith(b"http/1.1 200"):
                self.ready.set_exception(RuntimeError(head.split(b"\r\n", 1)[0].decode()))
                return
            self._chunked = b"transfer-encoding: chunked" in head
            self.ready.set_result(None)
            data = rest
        if self._chunked:
            self._raw += data
            self._dechunk()
        else:
            self._body += data
        self._frames()

    def _dechunk(self) -> None:
        raw = self._raw
        while True:
            if self._need == 0:
                end = raw.find(b"\r\n")
                if end < 0:
                    return
                size = int(bytes(raw[:end]).split(b";")[0], 16)
                del raw[: end + 2]
                if size == 0:  # the server ended the stream (a clean end, e.g. on shutdown)
                    if self.transport is not None:
                        self.transport.close()
                    return
                self._need = size + 2
            if len(raw) < self._need:
                return
            self._body += raw[: self._need - 2]
            del raw[: self._need]
            self._need = 0

    def _frames(self) -> None:
        body = self._body
        now = time.perf_counter()
        while True:
            end = body.find(b"\n\n")
            if end < 0:
                return
            frame = bytes(body[:end])
            del body[: end + 2]
            if frame.startswith(b":"):
                self.pings += 1
                continue
            data = []
            event = None
            for line in frame.split(b"\n"):
                if line.startswith(b"data: "):
                    data.append(line[6:])
                elif line.startswith(b"id: "):
                    self.last_id = line[4:].decode()
                elif line.startswith(b"event: "):
                    event = line[7:].decode()
            if data:
                self.message(b"\n".join(data).decode(), event, now)

    def message(self, data: str, event: str | None, at: float) -> None:
        """One message (a frame with data; its id is ``self.last_id``): kept with its receive
        time. A client of a long run overrides this to count instead of keeping everything."""
        self.received.append((data, at))
        self.ids.append(self.last_id or "")

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ready.done():
            self.ready.set_exception(ConnectionError("closed before headers"))
        if not self.closed.done():
            self.closed.set_result(None)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def open_sse(
    port: int, path: str, count: int, last_event_id: str | None = None, timeout: float = 60.0
) -> list[SSEClient]:
    return await open_streams(port, [(path, None)] * count, last_event_id, timeout)


async def open_streams(
    port: int,
    targets: list[tuple[str, str | None]],
    last_event_id: str | None = None,
    timeout: float = 60.0,
) -> list[SSEClient]:
    """One stream per (path, token), opened 100 at a time; in the order given."""
    loop = asyncio.get_running_loop()
    semaphore = asyncio.Semaphore(100)

    async def one(path: str, token: str | None) -> SSEClient:
        async with semaphore:
            _, client = await loop.create_connection(
                lambda: SSEClient(path, last_event_id, token), "127.0.0.1", port
            )
            await client.ready
            return client

    async with asyncio.timeout(timeout):
        return list(await asyncio.gather(*(one(path, token) for path, token in targets)))


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def save_results(kind: str, payload: dict[str, object]) -> None:
    """Write a run's numbers to bench/results/<kind>-<time>.json and say where."""
    results = ROOT / "bench" / "results"
    results.mkdir(parents=True, exist_ok=True)
    path = results / f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(payload, indent=2))
    say(f"numbers written to {path.relative_to(ROOT)}")


async def request_loop(
    method: str,
    url: str,
    concurrency: int,
    seconds: float,
    headers: dict[str, str] | None = None,
    body: dict[str, object] | None = None,
) -> dict[str, float]:
    """``concurrency`` clients sending the same request back to back for ``seconds``.

    Throughput and latency count answered requests below 400; the rest are failures.
    """
    latencies: list[float] = []
    failures = 0
    deadline = time.perf_counter() + seconds
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:

        async def worker() -> None:
            nonlocal failures
            count = 0
            while time.perf_counter() < deadline and count < 2_000_000:
                count += 1
                started = time.perf_counter()
                try:
                    async with session.request(method, url, json=body) as response:
                        await response.read()
                        ok = response.status < 400
                except aiohttp.ClientError:
                    ok = False
                if ok:
                    latencies.append(time.perf_counter() - started)
                else:
                    failures += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return {
        "concurrency": concurrency,
        "requests": len(latencies),
        "failures": failures,
        "per_second": len(latencies) / elapsed,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
    }
