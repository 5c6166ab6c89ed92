"""``python run.py [serve|migrate|check-sql]``: the one entry point."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

import asyncpg

from .db import APPLICATION_NAME, redact_url
from .embedded import die_with_parent, embedded_services
from .logs import setup_logging
from .migrations import MIGRATIONS_DIR, MigrationError, migrate
from .settings import Settings, SettingsError
from .sql import QUERIES_DIR, Queries, QueryFileError

log = logging.getLogger("server")

# Index names as the comments in queries/ write them: users_pkey, users_email_key, *_idx.
_INDEX_NAME = re.compile(r"\b[a-z][a-z0-9_]*_(?:pkey|key|idx)\b")
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
    failures = 0
    try:
        await migrate(conn, Queries(), migrations_dir, progress=lambda _: None)
        catalog = Queries()["catalog.list_index_names"]
        indexes = {r["name"] for r in await conn.fetch(catalog.sql)}
        for i, name in enumerate(sorted(queries), 1):
            query = queries[name]
            try:
                statement = await conn.prepare(query.sql)
            except asyncpg.PostgresError as exc:
                failures += 1
                print(
                    f"check-sql: [{i}/{len(queries)}] FAIL {name} ({query.path}): "
                    f"{type(exc).__name__}: {exc}"
                )
                continue
            params = ", ".join(
                f":{p} {t.name}"
                for p, t in zip(query.params, statement.get_parameters(), strict=False)
            )
            columns = ", ".join(f"{a.name} {a.type.name}" for a in statement.get_attributes())
            named = set(_INDEX_NAME.findall(query.doc))
            if named - indexes:
                failures += 1
                print(
                    f"check-sql: [{i}/{len(queries)}] FAIL {name} ({query.path}): its comment "
                    f"names indexes that do not exist: {', '.join(sorted(named - indexes))}"
                )
                continue
            print(
                f"check-sql: [{i}/{len(queries)}] ok {name}({params})"
                + (f" -> {columns}" if columns else "")
            )
    finally:
        await conn.close()
    print(f"check-sql: {len(queries) - failures} ok, {failures} failed")
    return 1 if failures else 0


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


def serve(settings: Settings, workers: int, reuse_port: bool) -> int:
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
            print=None,
        )
        log.info("stopped (pid %d)", os.getpid())
    return 0


def _serve_workers(settings: Settings, workers: int) -> int:
    """N processes sharing the port with SO_REUSEPORT; this one migrates, then supervises."""
    asyncio.run(run_migrations(settings))
    env = dict(os.environ)
    env.update(
        DATABASE_URL=settings.database_url or "",
        REDIS_URL=settings.redis_url or "",
        MIGRATE_ON_START="false",
        HOST=settings.host,
        PORT=str(settings.port),
    )
    children: list[subprocess.Popen[bytes]] = []
    stopping = False

    def forward(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)

    # Installed before the first child exists, so no signal finds the children unforwarded.
    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)

    def spawn() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, str(RUN_PY), "serve", "--reuse-port"],
            env=env,
            preexec_fn=die_with_parent,  # a killed supervisor leaves no orphan workers
        )

    for _ in range(workers):
        children.append(spawn())
    if stopping:
        forward(signal.SIGTERM, None)
    pids = " ".join(str(c.pid) for c in children)
    log.info(
        "started %d workers on http://%s:%d: pids %s", workers, settings.host, settings.port, pids
    )
    deadline: float | None = None
    while any(child.poll() is None for child in children):
        if stopping:
            deadline = deadline or time.monotonic() + settings.shutdown_timeout + 5
            if time.monotonic() > deadline:
                for child in children:
                    if child.poll() is None:
                        log.warning("worker %d did not stop in time; killing it", child.pid)
                        child.kill()
        else:
            for i, child in enumerate(children):
                if child.poll() is not None:  # stopped or crashed: replace it
                    level = logging.INFO if child.returncode == 0 else logging.ERROR
                    log.log(
                        level,
                        "worker %d exited with %s; starting a new one",
                        child.pid,
                        child.returncode,
                    )
                    children[i] = spawn()
        time.sleep(0.2)
    codes = [child.returncode for child in children]
    log.info("all workers stopped (exit codes %s)", codes)
    # A worker stopped by SIGTERM exits 0 once serving, 128+15 if it was still starting up
    # (our handler), or -15 if it had not installed one yet: all are a clean stop.
    stopped = (0, -signal.SIGTERM, 128 + signal.SIGTERM)
    return 0 if all(c in stopped for c in codes) else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="run.py", description=__doc__)
    sub = parser.add_subparsers(dest="command")
    serve_p = sub.add_parser("serve", help="serve HTTP (the default)")
    for p in (parser, serve_p):
        p.add_argument("--host", help="listen address (HOST, default 127.0.0.1)")
        p.add_argument("--port", type=int, help="listen port (PORT, default 8000)")
        p.add_argument("--workers", type=int, default=1, help="processes sharing the port")
        p.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)
    sub.add_parser("migrate", help="apply pending migrations and show what was applied")
    check = sub.add_parser(
        "check-sql", help="prepare every statement in queries/ against the migrated database"
    )
    check.add_argument("--queries-dir", type=Path, default=QUERIES_DIR)
    check.add_argument("--migrations-dir", type=Path, default=MIGRATIONS_DIR)
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
            return serve(settings, args.workers, args.reuse_port or args.workers > 1)
        with services(settings) as resolved:
            if command == "migrate":
                return asyncio.run(run_migrations(resolved))
            return asyncio.run(check_sql(resolved, args.queries_dir, args.migrations_dir))
    except MigrationError as exc:
        log.error("migrations: %s", exc)
        return 3
    except (OSError, asyncpg.PostgresError) as exc:
        log.error("cannot start: %s: %s", type(exc).__name__, exc)
        return 1
    except KeyboardInterrupt:
        return 130
