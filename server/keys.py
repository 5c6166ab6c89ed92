"""Typed application state: every AppKey of the service, in one place."""

from __future__ import annotations

from typing import TYPE_CHECKING

import redis.asyncio as aioredis
from aiohttp import web

if TYPE_CHECKING:
    from .auth import Caller, Passwords  # noqa: F401
    from .broker import Broker, Publisher  # noqa: F401
    from .db import Database  # noqa: F401
    from .feed.writer import FeedWriter  # noqa: F401
    from .limits import Limits  # noqa: F401
    from .metrics import Metrics  # noqa: F401
    from .settings import Settings  # noqa: F401
    from .stories.snapshots import SnapshotCache  # noqa: F401
    from .streams import StreamRegistry  # noqa: F401
    from .watch import StreamWatch  # noqa: F401

settings_key = web.AppKey["Settings"]("settings")
db_key = web.AppKey["Database"]("db")
redis_key = web.AppKey("redis", aioredis.Redis)
broker_key = web.AppKey["Broker"]("broker")
publisher_key = web.AppKey["Publisher"]("publisher")
streams_key = web.AppKey["StreamRegistry"]("streams")
metrics_key = web.AppKey["Metrics"]("metrics")
feed_writer_key = web.AppKey["FeedWriter"]("feed_writer")
watch_key = web.AppKey["StreamWatch"]("stream_watch")
limits_key = web.AppKey["Limits"]("limits")
snapshots_key = web.AppKey["SnapshotCache"]("story_snapshots")

request_id_key = web.RequestKey("request_id", str)
caller_key = web.RequestKey["Caller"]("caller")
passwords_key = web.AppKey["Passwords"]("passwords")
streaming_key = web.RequestKey("streaming", bool)  # set once an SSE response has started
body_key = web.RequestKey("body", bytes)  # the body as first read: a retried request reads it again
