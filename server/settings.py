"""Settings, read once from environment variables.

Every setting is listed with its default in README.md ("Configuration"). Tests build
Settings directly with their own values instead of touching the environment.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any


class SettingsError(ValueError):
    """A setting has a value that cannot be used."""


def _int(env: dict[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise SettingsError(f"{name} must be at least {minimum}, got {value}")
    return value


def _float(env: dict[str, str], name: str, default: float, minimum: float = 0.0) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number, got {raw!r}") from None
    if value < minimum:
        raise SettingsError(f"{name} must be at least {minimum}, got {value}")
    return value


def _bool(env: dict[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise SettingsError(f"{name} must be true or false, got {raw!r}")


@dataclass(frozen=True)
class Settings:
    # Where the data lives. Unset URLs mean "embed a server from a pip wheel".
    database_url: str | None = None
    redis_url: str | None = None
    data_dir: Path = Path("var")
    # HTTP
    host: str = "127.0.0.1"
    port: int = 8000
    max_body_bytes: int = 1024 * 1024
    cors_origins: tuple[str, ...] = ()
    shutdown_timeout: float = 10.0
    uvloop: bool = True
    # Logging
    log_level: str = "INFO"
    log_file: str | None = None
    # PostgreSQL
    db_pool_min: int = 2
    db_pool_max: int = 10
    db_command_timeout: float = 10.0
    migrate_on_start: bool = True
    # Redis
    redis_prefix: str = ""
    # SSE
    sse_heartbeat_seconds: float = 15.0
    sse_retry_ms: int = 3000
    sse_queue_bytes: int = 256 * 1024
    sse_max_connections: int = 20000
    sse_send_timeout: float = 30.0
    # Value feed
    feed_batch_max: int = 1000
    feed_require_token: bool = False
    feed_retention_days: float = 30.0  # 0 keeps every value
    notification_retention_days: float = 30.0  # 0 keeps every notification
    prune_interval_seconds: float = 3600.0
    # Descriptors kept back from SSE for pools, logs and accepting writes.
    fd_reserve: int = 256
    # Abuse limits (server/limits.py): failed logins per email and per client address, and
    # sign-ups per address, in fixed windows; 0 turns a limit off.
    login_limit_per_email: int = 10
    login_limit_per_address: int = 50
    login_limit_window_seconds: float = 300.0
    signup_limit_per_address: int = 0
    signup_limit_window_seconds: float = 3600.0
    # Proxies whose X-Forwarded-For names the client (addresses or networks); empty: the peer
    # address is the client.
    trusted_proxies: tuple[str, ...] = ()
    # Open GET /sse/{user_id} streams one user may hold in one process; the oldest goes.
    sse_max_streams_per_user: int = 20

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if environ is None else environ)
        origins = tuple(o.strip() for o in env.get("CORS_ORIGINS", "").split(",") if o.strip())
        proxies = tuple(p.strip() for p in env.get("TRUSTED_PROXIES", "").split(",") if p.strip())
        for proxy in proxies:
            try:
                ipaddress.ip_network(proxy, strict=False)
            except ValueError:
                raise SettingsError(
                    f"TRUSTED_PROXIES must list addresses or networks, got {proxy!r}"
                ) from None
        settings = cls(
            database_url=env.get("DATABASE_URL") or None,
            redis_url=env.get("REDIS_URL") or None,
            data_dir=Path(env.get("DATA_DIR") or "var"),
            host=env.get("HOST") or "127.0.0.1",
            port=_int(env, "PORT", 8000, minimum=0),
            max_body_bytes=_int(env, "MAX_BODY_BYTES", 1024 * 1024, minimum=1024),
            cors_origins=origins,
            shutdown_timeout=_float(env, "SHUTDOWN_TIMEOUT", 10.0),
            uvloop=_bool(env, "UVLOOP", True),
            log_level=(env.get("LOG_LEVEL") or "INFO").upper(),
            log_file=env.get("LOG_FILE") or None,
            db_pool_min=_int(env, "DB_POOL_MIN", 2, minimum=1),
            db_pool_max=_int(env, "DB_POOL_MAX", 10, minimum=1),
            db_command_timeout=_float(env, "DB_COMMAND_TIMEOUT", 10.0, minimum=0.1),
            migrate_on_start=_bool(env, "MIGRATE_ON_START", True),
            redis_prefix=env.get("REDIS_PREFIX", ""),
            sse_heartbeat_seconds=_float(env, "SSE_HEARTBEAT_SECONDS", 15.0, minimum=0.05),
            sse_retry_ms=_int(env, "SSE_RETRY_MS", 3000),
            sse_queue_bytes=_int(env, "SSE_QUEUE_BYTES", 256 * 1024, minimum=1024),
            sse_max_connections=_int(env, "SSE_MAX_CONNECTIONS", 20000, minimum=1),
            sse_send_timeout=_float(env, "SSE_SEND_TIMEOUT", 30.0, minimum=0.1),
            feed_batch_max=_int(env, "FEED_BATCH_MAX", 1000, minimum=1),
            feed_require_token=_bool(env, "FEED_REQUIRE_TOKEN", False),
            feed_retention_days=_float(env, "FEED_RETENTION_DAYS", 30.0),
            notification_retention_days=_float(env, "NOTIFICATION_RETENTION_DAYS", 30.0),
            prune_interval_seconds=_float(env, "PRUNE_INTERVAL_SECONDS", 3600.0, minimum=1.0),
            fd_reserve=_int(env, "FD_RESERVE", 256, minimum=16),
            login_limit_per_email=_int(env, "LOGIN_LIMIT_PER_EMAIL", 10),
            login_limit_per_address=_int(env, "LOGIN_LIMIT_PER_ADDRESS", 50),
            login_limit_window_seconds=_float(env, "LOGIN_LIMIT_WINDOW_SECONDS", 300.0, 1.0),
            signup_limit_per_address=_int(env, "SIGNUP_LIMIT_PER_ADDRESS", 0),
            signup_limit_window_seconds=_float(env, "SIGNUP_LIMIT_WINDOW_SECONDS", 3600.0, 1.0),
            trusted_proxies=proxies,
            sse_max_streams_per_user=_int(env, "SSE_MAX_STREAMS_PER_USER", 20, minimum=1),
        )
        if settings.db_pool_min > settings.db_pool_max:
            raise SettingsError("DB_POOL_MIN must not exceed DB_POOL_MAX")
        if settings.log_level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise SettingsError(f"LOG_LEVEL must be a level name, got {settings.log_level!r}")
        return settings

    def with_(self, **changes: Any) -> Settings:
        return replace(self, **changes)
