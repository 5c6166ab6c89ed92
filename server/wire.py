"""What travels: the SSE frame format, the Redis news codec, channel names and control verbs.

Everything that a client or another process reads byte by byte is written here and nowhere
else, so the stream registry, the broker, the feed writer and the notify path agree on it.

- An SSE frame: ``id: <n>``, optionally ``event: <type>``, one ``data:`` line per line of the
  text, a blank line; ``\\n`` throughout (as the LiveDataStream app wrote them).
- A news message on Redis: ``<first id> <last id>\\n`` then the frames of ids first..last of
  one channel, encoded once by the writer and written as they are to every stream.
- Channels (before the deployment's ``REDIS_PREFIX``): ``feed``, ``user:<id>``, and
  ``_control``, which every process subscribes: ``revoke <hex digest>,...`` (end the streams
  opened with these tokens) and ``resync`` (news may have been dropped: catch every stream up).
"""

from __future__ import annotations

import re
import uuid

_LINE_BREAK = re.compile(r"\r\n|\r|\n")

FEED_CHANNEL = "feed"
USER_CHANNEL_PREFIX = "user:"
CONTROL_CHANNEL = "_control"
RESYNC = b"resync"
REVOKE = b"revoke"
# One news message carries at most this many bytes of frames (a batch is split), far below
# the 32 MB after which Redis cuts a subscriber (client-output-buffer-limit pubsub).
NEWS_MAX_BYTES = 512 * 1024


def user_channel(user_id: uuid.UUID | str) -> str:
    return f"{USER_CHANNEL_PREFIX}{user_id}"


def channel_user(channel: str) -> uuid.UUID | None:
    """The user a ``user:<id>`` channel belongs to; None for any other channel."""
    if not channel.startswith(USER_CHANNEL_PREFIX):
        return None
    return uuid.UUID(channel[len(USER_CHANNEL_PREFIX) :])


def encode_event(event_id: int, data: str, event: str | None = None) -> bytes:
    """One SSE frame; a multi-line text becomes several ``data:`` lines."""
    lines = [f"id: {event_id}"]
    if event is not None:
        lines.append(f"event: {event}")
    lines.extend(f"data: {line}" for line in _LINE_BREAK.split(data))
    return ("\n".join(lines) + "\n\n").encode("utf-8")


def chunk(raw: bytes) -> bytes:
    """``raw`` framed as one HTTP/1.1 chunk, as aiohttp's own writer would frame it."""
    return b"%x\r\n%b\r\n" % (len(raw), raw)


def encode_news(first_id: int, last_id: int, frames: bytes) -> bytes:
    """The Redis message for frames ``first_id..last_id`` of one channel."""
    return b"%d %d\n%b" % (first_id, last_id, frames)


def decode_news(payload: bytes) -> tuple[int, int, bytes]:
    """(first id, last id, frames); ValueError when the message is not news."""
    header, _, frames = payload.partition(b"\n")
    first, last = header.split(b" ", 1)
    return int(first), int(last), frames


def encode_revoke(digests: list[bytes]) -> bytes:
    return REVOKE + b" " + b",".join(d.hex().encode() for d in digests)


def decode_control(payload: bytes) -> tuple[bytes, list[bytes]]:
    """(verb, token digests); unreadable digests are skipped."""
    verb, _, rest = payload.partition(b" ")
    digests = []
    for item in rest.split(b",") if rest else ():
        try:
            digests.append(bytes.fromhex(item.decode()))
        except ValueError:
            continue
    return verb, digests
