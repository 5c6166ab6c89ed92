"""The lines of recently used snapshots, per process (a revision is rebuilt from one).

A snapshot (a story_revisions row with its content in full) never changes once written, and a
story's id is never reused, so a cached snapshot is never stale: a deleted story's entries
are unreachable (its access check answers 404 first) and age out. Rebuilding a revision from
a cached snapshot spares fetching up to 512 KiB from PostgreSQL (TOAST) and splitting it into
lines; list_revision_chain is told which snapshots are cached and leaves their content out.
Bounded by the memory its lines take (least recently used out first): each line is a str
object of its own, about 50 bytes before its first character (and up to 4 bytes a character),
so a story of short lines takes many times its characters; counting characters let a cache
"of 32 Mi characters" hold 1 GB of two-character lines.
"""

from __future__ import annotations

import sys
import uuid
from collections import OrderedDict
from collections.abc import Sequence

MAX_BYTES = 64 * 1024 * 1024  # about 300 snapshots of 100 KiB in lines of 60 characters
SLOT_BYTES = 8  # the pointer to a line in the snapshot's tuple


def size_of(lines: Sequence[str]) -> int:
    """The bytes the snapshot's lines take in memory: each str object and its slot."""
    return sum(map(sys.getsizeof, lines)) + SLOT_BYTES * len(lines)


class SnapshotCache:
    def __init__(self, max_bytes: int = MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        # (story, revision) -> (the snapshot's lines, the bytes size_of counted for them)
        self._lines: OrderedDict[tuple[uuid.UUID, int], tuple[tuple[str, ...], int]] = OrderedDict()
        self._by_story: dict[uuid.UUID, set[int]] = {}

    def held(self, story_id: uuid.UUID) -> dict[int, tuple[str, ...]]:
        """The cached snapshots of a story by revision: taken before the chain is read, so an
        entry evicted meanwhile is still at hand."""
        found = {}
        for revision in self._by_story.get(story_id, ()):
            key = (story_id, revision)
            found[revision] = self._lines[key][0]
            self._lines.move_to_end(key)
        return found

    def put(self, story_id: uuid.UUID, revision: int, lines: list[str]) -> None:
        size = size_of(lines)
        key = (story_id, revision)
        if size > self.max_bytes or key in self._lines:
            return
        self._lines[key] = (tuple(lines), size)
        self._by_story.setdefault(story_id, set()).add(revision)
        self.bytes += size
        while self.bytes > self.max_bytes:
            (old_story, old_revision), (_, old_size) = self._lines.popitem(last=False)
            self.bytes -= old_size
            revisions = self._by_story[old_story]
            revisions.discard(old_revision)
            if not revisions:
                del self._by_story[old_story]
