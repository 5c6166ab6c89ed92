"""A value as its SSE frame: what GET /events/ streams, built once per value by the writer and
published as it is (wire.py), or built from PostgreSQL's rows for a replay."""

from __future__ import annotations

from ..wire import encode_event


def value_frame(value_id: int, value: str) -> bytes:
    """`id: <value id>`, then `data: <value>` (one `data:` line per line of the value)."""
    return encode_event(value_id, value)
