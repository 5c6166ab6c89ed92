"""Mentions (API.md, "Who is notified"): ``<@USER_ID>`` in a story's content or a comment's
body. Shared by every domain whose texts can mention someone."""

from __future__ import annotations

import re
import uuid

_MENTION = re.compile(
    r"<@([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})>"
)


def mentioned(text: str) -> set[uuid.UUID]:
    """Every user id mentioned in ``text`` (each once, whatever the case of its digits)."""
    return {uuid.UUID(found) for found in _MENTION.findall(text)}


def new_mentions(before: str, after: str) -> set[uuid.UUID]:
    """The users ``after`` mentions that ``before`` did not: only they are notified."""
    return mentioned(after) - mentioned(before) if "<@" in after else set()
