"""The app factory: ``create_app(settings)`` wires settings, pools, the broker and the routes."""

from __future__ import annotations

import asyncio
import logging
import resource
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp_cors
from aiohttp import web

from . import keys, openapi
from .auth import Passwords, auth_middleware
from .broker import Broker, Publisher, connect
from .comments import handlers as comments
from .db import Database, create_pool, redact_url
from .errors import error_middleware, retry_middleware
from .events import handlers as events
from .feed import handlers as feed
from .feed.repository import ValuesRepository
from .feed.writer import FeedWriter
from .headers import CSP, add_security_headers, cors_fixup, page_policy
from .health import health
from .invites import handlers as invites
from .limits import Counters, Limits
from .limits import connect as connect_limits
from .metrics import Metrics, metrics_handler
from .middleware import observe_middleware
from .migrations import migrate
from .notifications import handlers as notifications
from .notifications.repository import NotificationsRepository
from .openapi import endpoint
from .retention import run_periodically
from .settings import Settings
from .sql import Queries
from .sse import refusal_middleware
from .stories import handlers as stories
from .stories.snapshots import SnapshotCache
from .streams import StreamRegistry
from .tasks import handlers as tasks
from .users import handlers as users
from .watch import StreamWatch
from .wire import FEED_CHANNEL

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"
INDEX_PAGE = STATIC_DIR / "index.html"


def sse_capacity(settings: Settings) -> int:
    """How many SSE connections this process accepts: the setting, bounded by descriptors
    left after the reserve for pools, logs and ordinary requests."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return settings.sse_max_connections
    available = soft - settings.fd_reserve - settings.db_pool_max
    return max(1, min(settings.sse_max_connections, available))


@endpoint(
    summary="The live value feed page: the feed through EventSource, a form to add a "
    "value, links to /docs",
    tag="operations",
    public=True,
    responses={200: None},
)
async def index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(INDEX_PAGE, headers={CSP: page_policy(INDEX_PAGE)})


def setup_routes(app: web.Application) -> list[web.AbstractRoute]:
    """Every route of the service. Each answers with and without a trailing slash."""
    routes: list[web.AbstractRoute] = []
    aliases = app[openapi.ALIASES_KEY] = set()

    def add(method: str, path: str, handler: Any, name: str) -> None:
        """The path as API.md writes it (named, documented), and its twin with or without
        the trailing slash (an alias, not documented twice)."""
        routes.append(app.router.add_route(method, path, handler, name=name))
        if path != "/":
            twin = path.rstrip("/") if path.endswith("/") else path + "/"
            alias = app.router.add_route(method, twin, handler)
            routes.append(alias)
            aliases.add(id(alias))

    # Operations
    add("GET", "/", index, "index")
    add("GET", "/health", health, "health")
    add("GET", "/metrics", metrics_handler, "metrics")
    add("GET", "/openapi.json", openapi.openapi_json, "openapi")
    add("GET", "/docs", openapi.docs, "docs")
    app.router.add_static("/docs/static", openapi.swagger_static_dir(), name="docs_static")
    app.router.add_get("/docs/init.js", openapi.docs_init, name="docs_init")
    # The value feed (LiveDataStream-compatible)
    add("POST", "/add-value/", feed.add_value, "add_value")
    add("GET", "/events/", feed.feed_events, "feed_events")
    add("GET", "/values", feed.list_values, "list_values")
    # Users and authentication
    add("POST", "/users", users.create_user, "create_user")
    add("GET", "/users/{user_id}", users.get_user, "get_user")
    add("PUT", "/users/{user_id}", users.update_user, "update_user")
    add("DELETE", "/users/{user_id}", users.delete_user, "delete_user")
    add("GET", "/users/{user_id}/events", events.list_user_events, "list_user_events")
    add("POST", "/auth/token", users.create_token, "create_token")
    add("DELETE", "/auth/token", users.delete_token, "delete_token")
    # Events
    add("POST", "/events", events.create_event, "create_event")
    add("GET", "/events/{event_id}", events.get_event, "get_event")
    add("PUT", "/events/{event_id}", events.update_event, "update_event")
    add("DELETE", "/events/{event_id}", events.delete_event, "delete_event")
    add("GET", "/events/{event_id}/tasks", tasks.list_event_tasks, "list_event_tasks")
    # Tasks
    add("POST", "/tasks", tasks.create_task, "create_task")
    add("GET", "/tasks/{task_id}", tasks.get_task, "get_task")
    add("PUT", "/tasks/{task_id}", tasks.update_task, "update_task")
    add("DELETE", "/tasks/{task_id}", tasks.delete_task, "delete_task")
    add("PATCH", "/tasks/{task_id}/completion", tasks.set_completion, "set_task_completion")
    add("POST", "/tasks/{task_id}/collaborators", tasks.add_collaborator, "add_collaborator")
    add("GET", "/tasks/{task_id}/collaborators", tasks.list_collaborators, "list_collaborators")
    add(
        "DELETE",
        "/tasks/{task_id}/collaborators/{user_id}",
        tasks.remove_collaborator,
        "remove_collaborator",
    )
    add("GET", "/tasks/{task_id}/stories", stories.list_task_stories, "list_task_stories")
    # Stories
    add("POST", "/stories", stories.create_story, "create_story")
    add("GET", "/stories/{story_id}", stories.get_story, "get_story")
    add("PUT", "/stories/{story_id}", stories.update_story, "update_story")
    add("DELETE", "/stories/{story_id}", stories.delete_story, "delete_story")
    add("PATCH", "/stories/{story_id}/content", stories.edit_content, "edit_story_content")
    add("GET", "/stories/{story_id}/revisions", stories.list_revisions, "list_story_revisions")
    add(
        "GET",
        "/stories/{story_id}/revisions/{revision}",
        stories.get_revision,
        "get_story_revision",
    )
    add(
        "POST",
        "/stories/{story_id}/revisions/{revision}/restore",
        stories.restore_revision,
        "restore_story_revision",
    )
    add("GET", "/stories/{story_id}/diff", stories.story_diff, "story_diff")
    # Invites
    add("POST", "/invites", invites.create_invite, "create_invite")
    add("GET", "/invites/received/{user_id}", invites.list_received_invites, "received_invites")
    add("GET", "/invites/sent/{user_id}", invites.list_sent_invites, "sent_invites")
    add("PATCH", "/invites/{invite_id}", invites.answer_invite, "answer_invite")
    add("GET", "/stories/{story_id}/comments", comments.list_story_comments, "list_story_comments")
    # Comments
    add("POST", "/comments", comments.create_comment, "create_comment")
    add("GET", "/comments/{comment_id}", comments.get_comment, "get_comment")
    add("PUT", "/comments/{comment_id}", comments.update_comment, "update_comment")
    add("DELETE", "/comments/{comment_id}", comments.delete_comment, "delete_comment")
    add("GET", "/comments/{comment_id}/history", comments.comment_history, "comment_history")
    # Notifications and per-user streams (send-message first: "/sse/{user_id}" would match it)
    add("POST", "/sse/send-message", notifications.send_message, "send_message")
    add("GET", "/sse/{user_id}", notifications.user_stream, "user_stream")
    add("GET", "/notifications/{user_id}", notifications.list_notifications, "list_notifications")
    add(
        "PATCH",
        "/notifications/{notification_id}",
        notifications.mark_notification,
        "mark_notification",
    )
    return routes


async def database_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[keys.settings_key]
    assert settings.database_url, "create_app needs DATABASE_URL (run.py embeds one if unset)"
    queries = Queries()
    pool = await create_pool(
        settings.database_url,
        min_size=settings.db_pool_min,
        max_size=settings.db_pool_max,
        command_timeout=settings.db_command_timeout,
    )
    log.info(
        "database: %s (pool %d..%d)",
        redact_url(settings.database_url),
        settings.db_pool_min,
        settings.db_pool_max,
    )
    try:
        if settings.migrate_on_start:
            async with pool.acquire() as conn:
                await migrate(conn, queries)
        app[keys.db_key] = Database(pool, queries)
        yield
    finally:
        await pool.close()


async def fanout_ctx(app: web.Application) -> AsyncIterator[None]:
    """Redis, the stream registry, the broker that feeds it and the publisher, built together:
    the registry asks the broker for channels, the broker hands the registry their news."""
    settings = app[keys.settings_key]
    assert settings.redis_url, "create_app needs REDIS_URL (run.py embeds one if unset)"
    client = connect(settings.redis_url)
    log.info("redis: %s (channel prefix %r)", redact_url(settings.redis_url), settings.redis_prefix)

    async def subscribe(channel: str) -> None:
        await broker.subscribe(channel)

    async def unsubscribe(channel: str) -> None:
        await broker.unsubscribe(channel)

    registry = app[keys.streams_key] = StreamRegistry(
        settings,
        app[keys.metrics_key],
        subscribe,
        unsubscribe,
        cap=sse_capacity(settings),
        # Every process serves the feed: its channel stays subscribed, streams or not.
        pinned={FEED_CHANNEL},
        read_missed=lambda: read_missed(app),
    )
    broker = Broker(client, settings.redis_prefix, registry.deliver, registry.news_missed)
    publisher = Publisher(client, settings.redis_prefix)
    app[keys.redis_key] = client
    app[keys.broker_key] = broker
    app[keys.publisher_key] = publisher
    publisher.start()
    await broker.start()
    await registry.subscribe_pinned()
    try:
        yield
    finally:
        await broker.stop()
        await publisher.stop()
        await client.aclose()


async def limits_ctx(app: web.Application) -> AsyncIterator[None]:
    """The abuse limits' counters, on a Redis client of their own (short timeouts)."""
    settings = app[keys.settings_key]
    assert settings.redis_url
    client = connect_limits(settings.redis_url)
    app[keys.limits_key] = Limits(settings, Counters(client, settings.redis_prefix))
    try:
        yield
    finally:
        await client.aclose()


def read_missed(app: web.Application) -> None:
    """Live news may have been lost: the live streams read PostgreSQL through the watch's one
    query per kind (before the watch runs, there are no streams)."""
    watch = app.get(keys.watch_key)
    if watch is not None:
        watch.kick()


async def background_ctx(app: web.Application) -> AsyncIterator[None]:
    """The feed's group-commit writer, the stream watch and the retention jobs."""
    settings = app[keys.settings_key]
    db = app[keys.db_key]
    writer = FeedWriter(db, app[keys.publisher_key], settings.feed_batch_max)
    app[keys.feed_writer_key] = writer
    writer.start()
    broker, publisher = app[keys.broker_key], app[keys.publisher_key]
    watch = app[keys.watch_key] = StreamWatch(
        app[keys.streams_key],
        db,
        heartbeat=settings.sse_heartbeat_seconds,
        news_missing=lambda: not broker.live or publisher.failing,
        publishing_fails=lambda: publisher.failing,
        listen_dsn=settings.database_url,
        # One deployment's processes share it (they share the Redis prefix too).
        channel=f"news_missing {settings.redis_prefix[:48]}".strip(),
    )
    watch.start()
    jobs = [
        ("feed values", ValuesRepository(db).prune, settings.feed_retention_days),
        ("notifications", NotificationsRepository(db).prune, settings.notification_retention_days),
    ]
    pruners = [
        asyncio.create_task(
            run_periodically(what, prune, timedelta(days=days), settings.prune_interval_seconds),
            name=f"retention: {what}",
        )
        for what, prune, days in jobs
        if days > 0
    ]
    try:
        yield
    finally:
        for pruner in pruners:
            pruner.cancel()
        await asyncio.gather(*pruners, return_exceptions=True)
        await watch.stop()
        await writer.stop()


async def close_streams(app: web.Application) -> None:
    registry = app.get(keys.streams_key)
    if registry is not None:  # None when startup failed before the fan-out existed
        registry.close_all()


async def add_request_id(request: web.Request, response: web.StreamResponse) -> None:
    if keys.request_id_key in request:
        response.headers["X-Request-ID"] = request[keys.request_id_key]


def create_app(settings: Settings) -> web.Application:
    app = web.Application(
        middlewares=[
            observe_middleware,
            error_middleware,
            retry_middleware,
            refusal_middleware,
            auth_middleware,
        ],
        client_max_size=settings.max_body_bytes,
    )
    app[keys.settings_key] = settings
    app[keys.passwords_key] = Passwords()
    app[keys.metrics_key] = Metrics()
    app[keys.snapshots_key] = SnapshotCache()
    app.cleanup_ctx.extend([database_ctx, fanout_ctx, limits_ctx, background_ctx])
    app.on_startup.append(openapi.build_spec_on_startup)
    app.on_shutdown.append(close_streams)
    app.on_response_prepare.append(add_request_id)
    app.on_response_prepare.append(add_security_headers)

    routes = setup_routes(app)
    if settings.cors_origins:
        # Never credentials: the API authenticates by a Bearer token that a page sends itself,
        # never by a cookie, so no origin ever needs a visitor's cookies (and '*' with
        # credentials would hand them to every site).
        # Any method in a preflight: a URL is often served by several resources (a path and
        # its twin, "/events" being also the feed's GET /events/ without its slash, and
        # /notifications/{user_id} beside /notifications/{notification_id}), and aiohttp_cors
        # answers a preflight from the first of them, which knows only its own methods.
        # A method the URL does not serve then gets its 405 from the request itself.
        options = aiohttp_cors.ResourceOptions(
            allow_credentials=False, expose_headers="*", allow_headers="*", allow_methods="*"
        )
        cors = aiohttp_cors.setup(app, defaults={o: options for o in settings.cors_origins})
        for route in routes:
            cors.add(route)
        app.on_response_prepare.append(cors_fixup(settings))  # after aiohttp_cors's own
    return app
