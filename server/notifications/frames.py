"""A notification as its SSE frame: what /sse/{user_id} streams, built once per notification
and published as it is (wire.py)."""

from __future__ import annotations

import orjson

from ..wire import encode_event
from .models import Notification
from .schemas import notification_json


def notification_frame(n: Notification) -> bytes:
    """`id: <seq>`, `event: <type>`, `data: <notification JSON>`."""
    return encode_event(n.seq, orjson.dumps(notification_json(n)).decode(), n.type)
