"""`python run.py`: serving, embedded servers, several workers, SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from server.embedded import free_port

from .helpers import EventStream

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


async def start_service(env: dict[str, str], *args: str) -> tuple[Any, str]:
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(ROOT / "run.py"), *args, "--port", str(port),
        env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,  # its own process group, as in a terminal
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession() as session:
        for _ in range(300):
            if proc.returncode is not None:
                break
            try:
                async with session.get(base + "/health") as response:
                    if response.status == 200:
                        return proc, base
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    if proc.returncode is None:
        proc.kill()
    out = await proc.stdout.read()
    raise AssertionError(
        f"service did not become healthy (exit {proc.returncode}):\n{out.decode()}"
    )


async def stop_service(proc: Any, timeout: float = 10.0) -> tuple[int, str, float]:
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        out, _ = await proc.communicate()
        raise AssertionError(
            f"still running {timeout:.0f} s after SIGTERM; its output:\n{out.decode()}"
        ) from None
    return proc.returncode, out.decode(), time.monotonic() - started


def processes_using(path: Path) -> list[str]:
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if str(path) in cmdline:
            found.append(cmdline)
    return found


async def test_sigterm_ends_open_streams_and_the_process(database_url: str, redis_url: str) -> None:
    env = {"DATABASE_URL": database_url, "REDIS_URL": redis_url, "MIGRATE_ON_START": "true"}
    proc, base = await start_service(env)
    async with aiohttp.ClientSession() as session:
        responses = [await session.get(base + "/events/") for _ in range(20)]
        streams = [EventStream(r) for r in responses]
        async with session.post(base + "/add-value/", json={"value": "hi"}) as r:
            assert r.status == 200
        for stream in streams:
            assert (await stream.take(1))[0].data == "hi"
        code, output, _ = await stop_service(proc)
        assert code == 0, output
        for stream in streams:
            assert await stream.ended(timeout=2)
    assert "stopped" in output
    assert "Traceback" not in output


async def test_embedded_default_starts_and_leaves_nothing_running(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    env = {"DATA_DIR": str(data_dir), "DATABASE_URL": "", "REDIS_URL": ""}
    proc, base = await start_service(env)
    async with aiohttp.ClientSession() as session:
        async with session.post(base + "/add-value/", json={"value": "kept"}) as r:
            assert r.status == 200
    code, output, _ = await stop_service(proc, timeout=30)
    assert code == 0, output
    assert "embedded PostgreSQL ready" in output and "embedded Redis (Valkey) ready" in output
    assert "embedded PostgreSQL stopped" in output and "embedded Redis stopped" in output
    assert processes_using(data_dir) == []
    # Data survives a restart.
    proc, base = await start_service(env)
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(base + "/values") as r:
                assert [i["value"] for i in (await r.json())["items"]] == ["kept"]
    finally:
        code, output, _ = await stop_service(proc, timeout=30)
    assert code == 0, output
    assert processes_using(data_dir) == []


async def test_ctrl_c_in_a_terminal_stops_everything(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    proc, _ = await start_service({"DATA_DIR": str(data_dir), "DATABASE_URL": "", "REDIS_URL": ""})
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C does: the whole foreground group
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode in (0, 130), out.decode()
    assert "Traceback" not in out.decode()
    assert processes_using(data_dir) == []


async def test_several_workers_share_the_port(database_url: str, redis_url: str) -> None:
    env = {"DATABASE_URL": database_url, "REDIS_URL": redis_url}
    proc, base = await start_service(env, "--workers", "2")
    try:
        async with aiohttp.ClientSession() as session:
            # Streams land on both workers; a value posted anywhere reaches all of them.
            responses = [await session.get(base + "/events/") for _ in range(8)]
            streams = [EventStream(r) for r in responses]
            for i in range(3):
                async with session.post(base + "/add-value/", json={"value": f"w{i}"}) as r:
                    assert r.status == 200
            for stream in streams:
                assert [e.data for e in await stream.take(3)] == ["w0", "w1", "w2"]
            async with session.get(base + "/metrics") as r:
                assert r.status == 200
    finally:
        code, output, _ = await stop_service(proc, timeout=20)
    assert code == 0, output
    assert "started 2 workers" in output


def worker_pids(supervisor: int) -> list[int]:
    children = Path(f"/proc/{supervisor}/task/{supervisor}/children").read_text().split()
    return [int(p) for p in children if b"run.py" in Path(f"/proc/{p}/cmdline").read_bytes()]


def tcp_sockets(port: int) -> dict[int, str]:
    """inode -> state ('0A' listening, '01' established) of the IPv4 sockets on a local port."""
    found = {}
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].split(":")[1], 16) == port:
            found[int(fields[9])] = fields[3]
    return found


def socket_inodes(pid: int) -> set[int]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(int(target[8:-1]))
    return inodes


async def test_graceful_restart_of_one_worker_loses_nothing_for_resuming_clients(
    database_url: str, redis_url: str
) -> None:
    env = {"DATABASE_URL": database_url, "REDIS_URL": redis_url, "SSE_HEARTBEAT_SECONDS": "1"}
    proc, base = await start_service(env, "--workers", "2")
    posted: list[str] = []
    seen: list[list[tuple[int, str]]] = [[] for _ in range(12)]
    connections = [0] * len(seen)
    stop = asyncio.Event()

    async def reader(n: int, log: list[tuple[int, str]]) -> None:
        # What EventSource does: read; when the stream ends, reconnect with Last-Event-ID.
        last = "0"
        async with aiohttp.ClientSession() as session:
            while not stop.is_set():
                try:
                    async with session.get(
                        base + "/events/", headers={"Last-Event-ID": last}
                    ) as response:
                        connections[n] += 1
                        stream = EventStream(response)
                        while not stop.is_set():
                            try:
                                event = await stream.next(timeout=0.5)
                            except TimeoutError:
                                continue
                            if event.id and event.data:
                                log.append((int(event.id), event.data))
                                last = event.id
                except (aiohttp.ClientError, EOFError):
                    await asyncio.sleep(0.05)

    port = int(base.rsplit(":", 1)[1])
    try:
        for _ in range(100):  # both workers listening, so streams land on both
            if list(tcp_sockets(port).values()).count("0A") >= 2:
                break
            await asyncio.sleep(0.1)
        readers = [asyncio.create_task(reader(n, log)) for n, log in enumerate(seen)]
        await asyncio.sleep(1)
        # Stop the worker that holds the most reader streams, so some readers must resume.
        established = {i for i, state in tcp_sockets(port).items() if state == "01"}
        victim = max(worker_pids(proc.pid), key=lambda p: len(socket_inodes(p) & established))
        async with aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(force_close=True)
        ) as session:
            for i in range(60):
                if i == 20:
                    os.kill(victim, signal.SIGTERM)  # one worker restarts
                for _ in range(100):  # a POST that reaches the stopping worker is retried
                    try:
                        async with session.post(
                            base + "/add-value/", json={"value": f"v{i}"}
                        ) as response:
                            if response.status == 200:
                                posted.append(f"v{i}")
                                break
                    except aiohttp.ClientError:
                        pass
                    await asyncio.sleep(0.05)
                await asyncio.sleep(0.02)
        for _ in range(100):
            if all(len(log) >= len(posted) for log in seen):
                break
            await asyncio.sleep(0.1)
        stop.set()
        await asyncio.gather(*readers)
    finally:
        code, output, _ = await stop_service(proc, timeout=30)
    assert len(posted) == 60
    for log in seen:
        assert [i for i, _ in log] == list(range(1, 61)), "a gap or a repeat after the restart"
        assert [v for _, v in log] == posted
    assert "starting a new one" in output  # the supervisor replaced the stopped worker
    assert sum(connections) > len(seen), "no stream was on the restarted worker"
    assert code == 0, output


def test_respawn_delay_doubles_from_a_fifth_of_a_second_up_to_half_a_minute() -> None:
    from server.cli import respawn_delay

    assert [respawn_delay(n) for n in range(1, 6)] == [0.2, 0.4, 0.8, 1.6, 3.2]
    assert respawn_delay(9) == 30.0
    assert respawn_delay(10_000) == 30.0


async def test_workers_that_cannot_start_back_off_then_the_supervisor_gives_up(
    database_url: str, redis_url: str
) -> None:
    # The port is held by a socket without SO_REUSEPORT: every worker fails to bind it.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(ROOT / "run.py"), "--workers", "2", "--port", str(port),
            env={**os.environ, "DATABASE_URL": database_url, "REDIS_URL": redis_url},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), 90)
        except TimeoutError:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = await proc.communicate()
            raise AssertionError(
                "still respawning workers after 90 s:\n" + out.decode()[-3000:]
            ) from None
    output = out.decode()
    assert proc.returncode == 1, output
    verdict = [line for line in output.splitlines() if "giving up" in line]
    assert len(verdict) == 1, output
    assert "exited 5 times in a row before it listened" in verdict[0]
    assert f"http://127.0.0.1:{port}" in verdict[0]
    assert "address already in use" in output  # the workers' own reason is in the log
    # Each slot waited 0.2, 0.4, 0.8, then 1.6 s before its next try (the other slot may be
    # one try behind when the first gives up): no spinning.
    delays = re.findall(r"starting a new one in ([0-9.]+) s", output)
    assert set(delays) == {"0.2", "0.4", "0.8", "1.6"}, output
    assert 5 <= len(re.findall(r"worker \d+ exited with 1", output)) <= 10, output
    assert "Traceback" not in output
