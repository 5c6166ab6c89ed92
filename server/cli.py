"""``python run.py [serve|migrate|check-sql]``: the one entry point."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from types import FrameType

import asyncpg

from .db import APPLICATION_NAME, Runner, redact_url
from .embedded import die_with_parent, embedded_services
from .logs import setup_logging
from .migrations import MIGRATIONS_DIR, MigrationError, migrate
from .schema import dump_schema
from .settings import Settings, SettingsError
from .sql import QUERIES_DIR, Queries, QueryFileError, check_queries

log = logging.getLogger("server")

# Index names as the comments in queries/ write them: users_pkey, users_email_key, *_idx.
RUN_PY = Path(__file__).resolve().parent.parent / "run.py"


def raise_open_files_limit() -> tuple[int, int]:
    """Raise the soft limit on open descriptors to the hard limit: each stream holds one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft, hard


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through finally blocks: embedded servers stop


@contextmanager
def services(settings: Settings) -> Iterator[Settings]:
    """The settings with DATABASE_URL and REDIS_URL filled in, embedding what is unset."""
    with embedded_services(
        settings.data_dir,
        want_postgres=settings.database_url is None,
        want_redis=settings.redis_url is None,
    ) as (database_url, redis_url):
        yield settings.with_(
            database_url=settings.database_url or database_url,
            redis_url=settings.redis_url or redis_url,
        )


async def _connect(settings: Settings) -> asyncpg.Connection:
    assert settings.database_url
    return await asyncpg.connect(
        settings.database_url, timeout=10, server_settings={"application_name": APPLICATION_NAME}
    )


async def run_migrations(settings: Settings, directory: Path = MIGRATIONS_DIR) -> int:
    conn = await _connect(settings)
    try:
        applied = await migrate(conn, Queries(), directory, progress=print)
    finally:
        await conn.close()
    print(f"migrate: done, {len(applied)} applied")
    return 0


async def check_sql(settings: Settings, queries_dir: Path, migrations_dir: Path) -> int:
    """Prepare every statement of queries/ against the migrated schema; 1 on any error."""
    try:
        queries = Queries(queries_dir)
    except QueryFileError as exc:
        print(f"check-sql: {exc}")
        return 1
    conn = await _connect(settings)
    try:
        await migrate(conn, Queries(), migrations_dir, progress=lambda _: None)
        indexes = {
            r["name"] for r in await Runner(conn, Queries()).many("catalog.list_index_names")
        }
        lines = await check_queries(conn, queries, indexes)
    finally:
        await conn.close()
    for line in lines:
        print(f"check-sql: {line}")
    failures = sum(" FAIL " in line for line in lines)
    print(f"check-sql: {len(queries) - failures} ok, {failures} failed")
    return 1 if failures else 0


async def print_schema(settings: Settings) -> int:
    """Migrate, then print the schema from the catalogs (what migrations/schema.sql holds)."""
    conn = await _connect(settings)
    try:
        await migrate(conn, Queries(), progress=lambda _: None)
        print(await dump_schema(Runner(conn, Queries())), end="")
    finally:
        await conn.close()
    return 0


def new_event_loop(settings: Settings) -> asyncio.AbstractEventLoop:
    """uvloop when enabled and installed (it measurably speeds up requests: docs/benchmarks.md),
    asyncio's own loop otherwise."""
    if settings.uvloop:
        try:
            import uvloop
        except ImportError:
            log.warning("UVLOOP is on but uvloop is not installed; using asyncio's loop")
        else:
            return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def _tell_listening(ready_fd: int | None) -> Callable[..., None] | None:
    """run_app's ``print``, called once every socket listens: a worker tells its supervisor so
    by writing one byte to the pipe it was given (the supervisor's give-up rule needs it)."""
    if ready_fd is None:
        return None

    def told(*_: object) -> None:
        with suppress(OSError):
            os.write(ready_fd, b"1")
        with suppress(OSError):
            os.close(ready_fd)

    return told


def serve(settings: Settings, workers: int, reuse_port: bool, ready_fd: int | None = None) -> int:
    from aiohttp import web

    from .app import create_app
    from .middleware import AccessLogger

    soft, _ = raise_open_files_limit()
    with services(settings) as resolved:
        log.info(
            "database %s, redis %s",
            redact_url(resolved.database_url or ""),
            redact_url(resolved.redis_url or ""),
        )
        if workers > 1:
            return _serve_workers(resolved, workers)
        log.info(
            "serving on http://%s:%d (pid %d, open files limit %d)",
            resolved.host,
            resolved.port,
            os.getpid(),
            soft,
        )
        web.run_app(
            create_app(resolved),
            loop=new_event_loop(resolved),
            host=resolved.host,
            port=resolved.port,
            reuse_port=reuse_port,
            access_log_class=AccessLogger,
            access_log=logging.getLogger("server.access"),
            shutdown_timeout=resolved.shutdown_timeout,
            print=_tell_listening(ready_fd),
        )
        log.info("stopped (pid %d)", os.getpid())
    return 0


# Respawning a worker that exited: 0.2 s after its first exit, doubling with each exit in a row
# up to 30 s; a worker that served for RESPAWN_HEALTHY_SECONDS starts its slot's count afresh.
RESPAWN_FIRST_DELAY = 0.2
RESPAWN_MAX_DELAY = 30.0
RESPAWN_HEALTHY_SECONDS = 60.0
# Give up (exit 1) once a slot's worker has exited this many times in a row before it ever
# listened, while no other worker is listening: the service cannot start at all.
GIVE_UP_AFTER_FAILED_STARTS = 5


def respawn_delay(exits_in_a_row: int) -> float:
    """Seconds to wait before replacing a worker that has exited ``exits_in_a_row`` times."""
    exponent = min(max(exits_in_a_row, 1) - 1, 16)
    return min(RESPAWN_FIRST_DELAY * 2**exponent, RESPAWN_MAX_DELAY)


class _Slot:
    """One of the N worker places: the running process, if any, and its history."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self.ready_fd: int | None = None  # read end of the pipe the worker writes once listening
        self.listening_since: float | None = None
        self.exits = 0  # exits in a row (respawn backoff)
        self.failed_starts = 0  # exits in a row before listening (giving up)
        self.next_start = 0.0
        self.signalled = False

    def poll_ready(self, now: float) -> None:
        if self.ready_fd is None or self.listening_since is not None:
            return
        try:
            data = os.read(self.ready_fd, 1)
        except BlockingIOError:
            return
        if data:
            self.listening_since = now
            self.failed_starts = 0
        self._close_ready()

    def _close_ready(self) -> None:
        if self.ready_fd is not None:
            os.close(self.ready_fd)
            self.ready_fd = None

    def exited(self, now: float) -> tuple[int, float]:
        """Record the exit of ``proc``; its exit code and the delay before replacing it."""
        assert self.proc is not None and self.proc.returncode is not None
        self.poll_ready(now)  # it may have listened just before it exited
        self._close_ready()
        code = self.proc.returncode
        if self.listening_since is None:
            self.failed_starts += 1
        elif now - self.listening_since >= RESPAWN_HEALTHY_SECONDS:
            self.exits = 0
        self.exits += 1
        delay = respawn_delay(self.exits)
        self.proc, self.listening_since, self.signalled = None, None, False
        self.next_start = now + delay
        return code, delay


def _serve_workers(settings: Settings, workers: int) -> int:
    """N processes sharing the port with SO_REUSEPORT; this one migrates, then supervises.

    A worker that exits is replaced after a delay that doubles with each exit in a row
    (respawn_delay); when a slot's worker has failed to start (exited before listening)
    GIVE_UP_AFTER_FAILED_STARTS times in a row and no worker is listening, the supervisor
    stops the others and exits 1 with one line saying why."""
    asyncio.run(run_migrations(settings))
    env = dict(os.environ)
    env.update(
        DATABASE_URL=settings.database_url or "",
        REDIS_URL=settings.redis_url or "",
        MIGRATE_ON_START="false",
        HOST=settings.host,
        PORT=str(settings.port),
    )
    slots = [_Slot() for _ in range(workers)]
    stopping = False

    def forward(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for slot in slots:
            if slot.proc is not None and slot.proc.poll() is None and not slot.signalled:
                slot.signalled = True
                slot.proc.send_signal(signal.SIGTERM)

    # Installed before the first child exists, so no signal finds the children unforwarded.
    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)

    def spawn(slot: _Slot) -> None:
        read_fd, write_fd = os.pipe()
        os.set_blocking(read_fd, False)
        try:
            slot.proc = subprocess.Popen(
                [sys.executable, str(RUN_PY), "serve", "--reuse-port", "--ready-fd", str(write_fd)],
                env=env,
                pass_fds=(write_fd,),
                preexec_fn=die_with_parent,  # a killed supervisor leaves no orphan workers
            )
        except BaseException:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)
        slot.ready_fd = read_fd

    for slot in slots:
        spawn(slot)
    pids = " ".join(str(s.proc.pid) for s in slots if s.proc is not None)
    log.info(
        "started %d workers on http://%s:%d: pids %s", workers, settings.host, settings.port, pids
    )
    gave_up = False
    final_codes: list[int] = []
    deadline: float | None = None
    while True:
        now = time.monotonic()
        exits: list[tuple[int, int, float]] = []  # pid, exit code, delay before its successor
        for slot in slots:
            if slot.proc is None:
                continue
            slot.poll_ready(now)
            if slot.proc.poll() is None:
                continue
            pid = slot.proc.pid
            code, delay = slot.exited(now)
            if stopping:
                final_codes.append(code)
            else:
                exits.append((pid, code, delay))
        failing = max(slot.failed_starts for slot in slots)
        serving = any(slot.listening_since is not None for slot in slots)
        give_up = not stopping and failing >= GIVE_UP_AFTER_FAILED_STARTS and not serving
        for pid, code, delay in exits:
            level = logging.INFO if code == 0 else logging.ERROR
            if give_up:
                log.log(level, "worker %d exited with %s", pid, code)
            else:
                log.log(
                    level,
                    "worker %d exited with %s; starting a new one in %.1f s",
                    pid,
                    code,
                    delay,
                )
        if give_up:
            log.error(
                "giving up: a worker exited %d times in a row before it listened on "
                "http://%s:%d (its errors are above); stopping",
                failing,
                settings.host,
                settings.port,
            )
            gave_up = True
            forward(signal.SIGTERM, None)
        if stopping:
            forward(signal.SIGTERM, None)  # also reaches a worker started as the signal came
            if all(slot.proc is None for slot in slots):
                break
            deadline = deadline or now + settings.shutdown_timeout + 5
            if now > deadline:
                for slot in slots:
                    if slot.proc is not None and slot.proc.poll() is None:
                        log.warning("worker %d did not stop in time; killing it", slot.proc.pid)
                        slot.proc.kill()
        else:
            for slot in slots:
                if slot.proc is None and now >= slot.next_start:
                    spawn(slot)
                    if stopping:  # the signal came while spawning
                        forward(signal.SIGTERM, None)
        time.sleep(0.1)
    log.info("all workers stopped (exit codes %s)", final_codes)
    if gave_up:
        return 1
    # A worker stopped by SIGTERM exits 0 once serving, 128+15 if it was still starting up
    # (our handler), or -15 if it had not installed one yet: all are a clean stop.
    stopped = (0, -signal.SIGTERM, 128 + signal.SIGTERM)
    return 0 if all(c in stopped for c in final_codes) else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="run.py", description=__doc__)
    sub = parser.add_subparsers(dest="command")
    serve_p = sub.add_parser("serve", help="serve HTTP (the default)")
    for p in (parser, serve_p):
        p.add_argument("--host", help="listen address (HOST, default 127.0.0.1)")
        p.add_argument("--port", type=int, help="listen port (PORT, default 8000)")
        p.add_argument("--workers", type=int, default=1, help="processes sharing the port")
        p.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)
        p.add_argument("--ready-fd", type=int, help=argparse.SUPPRESS)  # set by the supervisor
    sub.add_parser("migrate", help="apply pending migrations and show what was applied")
    check = sub.add_parser(
        "check-sql", help="prepare every statement in queries/ against the migrated database"
    )
    check.add_argument("--queries-dir", type=Path, default=QUERIES_DIR)
    check.add_argument("--migrations-dir", type=Path, default=MIGRATIONS_DIR)
    sub.add_parser("schema", help="print the migrated schema (what migrations/schema.sql holds)")
    args = parser.parse_args(argv)

    signal.signal(signal.SIGTERM, _terminate)
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    setup_logging(settings)
    command = args.command or "serve"
    try:
        if command == "serve":
            if args.host:
                settings = settings.with_(host=args.host)
            if args.port is not None:
                settings = settings.with_(port=args.port)
            if args.workers < 1:
                parser.error("--workers must be at least 1")
            return serve(settings, args.workers, args.reuse_port or args.workers > 1, args.ready_fd)
        with services(settings) as resolved:
            if command == "migrate":
                return asyncio.run(run_migrations(resolved))
            if command == "schema":
                return asyncio.run(print_schema(resolved))
            return asyncio.run(check_sql(resolved, args.queries_dir, args.migrations_dir))
    except MigrationError as exc:
        log.error("migrations: %s", exc)
        return 3
    except (OSError, asyncpg.PostgresError) as exc:
        log.error("cannot start: %s: %s", type(exc).__name__, exc)
        return 1
    except KeyboardInterrupt:
        return 130
