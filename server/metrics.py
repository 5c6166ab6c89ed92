"""Prometheus metrics (API.md, "Operations"), one registry per app so that tests can run
several apps in one process."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from . import keys
from .openapi import endpoint


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "http_requests_total",
            "HTTP requests answered, by route pattern and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "http_request_duration_seconds",
            "Time to answer an HTTP request (SSE streams are not timed: they last as long as "
            "their clients stay)",
            ["method", "route"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.sse_connections = Gauge(
            "sse_connections", "Open SSE connections", ["stream"], registry=self.registry
        )
        self.delivered = Counter(
            "sse_messages_delivered_total",
            "SSE messages written to a connection (live or replayed)",
            registry=self.registry,
        )
        self.dropped = Counter(
            "sse_messages_dropped_total",
            "Live SSE messages not written because the connection's queue was full",
            registry=self.registry,
        )
        self.slow_disconnects = Counter(
            "sse_slow_consumer_disconnects_total",
            "SSE connections closed because the client stopped reading",
            registry=self.registry,
        )
        self.fallback_reads = Counter(
            "sse_fallback_reads_total",
            "PostgreSQL reads by the stream watch while live news may be missing (Redis down, "
            "a resync): one per feed page read for all feed streams, one per read for all "
            "connected users; stays flat while Redis is healthy",
            ["kind"],
            registry=self.registry,
        )
        for kind in ("feed", "users"):
            self.fallback_reads.labels(kind)  # exported as 0 before the first read
        self._request_children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self.rejected = Counter(
            "sse_connections_rejected_total",
            "SSE connections refused with a retry (reason: cap, stopping, database)",
            ["stream", "reason"],
            registry=self.registry,
        )

    def observe_request(self, method: str, route: str, status: int, seconds: float | None) -> None:
        """Count one answered request; label children are looked up once per combination."""
        key = (method, route, status)
        children = self._request_children.get(key)
        if children is None:
            children = (
                self.requests.labels(method, route, str(status)),
                self.duration.labels(method, route),
            )
            self._request_children[key] = children
        children[0].inc()
        if seconds is not None:
            children[1].observe(seconds)


@endpoint(summary="Prometheus metrics", tag="operations", public=True, responses={200: None})
async def metrics_handler(request: web.Request) -> web.Response:
    body = generate_latest(request.app[keys.metrics_key].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
