"""GET /health: both dependencies checked, the failing one named."""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web
from marshmallow import Schema, fields

from . import keys
from .http import json_response
from .openapi import endpoint

log = logging.getLogger(__name__)
CHECK_TIMEOUT = 2.0


async def _check_database(request: web.Request) -> str:
    try:
        async with asyncio.timeout(CHECK_TIMEOUT):
            await request.app[keys.db_key].value("health.ping")
    except Exception as exc:
        log.warning("health: database check failed (%s)", type(exc).__name__)
        return "unavailable"
    return "ok"


async def _check_redis(request: web.Request) -> str:
    try:
        async with asyncio.timeout(CHECK_TIMEOUT):
            await request.app[keys.redis_key].ping()
    except Exception as exc:
        log.warning("health: redis check failed (%s)", type(exc).__name__)
        return "unavailable"
    return "ok"


class HealthSchema(Schema):
    status = fields.String(required=True, metadata={"example": "ok"})
    database = fields.String(required=True, metadata={"example": "ok"})
    redis = fields.String(required=True, metadata={"example": "ok"})


@endpoint(
    summary="Health of the service and its dependencies (503 names the failing one)",
    tag="operations",
    public=True,
    responses={200: HealthSchema, 503: HealthSchema},
)
async def health(request: web.Request) -> web.Response:
    database, redis = await asyncio.gather(_check_database(request), _check_redis(request))
    ok = database == "ok" and redis == "ok"
    body = {"status": "ok" if ok else "unavailable", "database": database, "redis": redis}
    headers = None if ok else {"Retry-After": "5"}
    return json_response(body, status=200 if ok else 503, headers=headers)
