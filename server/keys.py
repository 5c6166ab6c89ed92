"""Typed application state: every AppKey of the service, in one place."""

from __future__ import annotations

from typing import TYPE_CHECKING

import redis.asyncio as aioredis
from aiohttp import web

if TYPE_CHECKING:
    from .broker import Broker, Publisher
    from .db import Database
    from .metrics import Metrics
    from .settings import Settings
    from .streams import StreamRegistry
    from .values.writer import FeedWriter

settings_key = web.AppKey["Settings"]("settings")
db_key = web.AppKey["Database"]("db")
redis_key = web.AppKey("redis", aioredis.Redis)
broker_key = web.AppKey["Broker"]("broker")
publisher_key = web.AppKey["Publisher"]("publisher")
streams_key = web.AppKey["StreamRegistry"]("streams")
metrics_key = web.AppKey["Metrics"]("metrics")
feed_writer_key = web.AppKey["FeedWriter"]("feed_writer")
