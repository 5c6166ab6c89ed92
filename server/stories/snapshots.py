"""The lines of recently used snapshots, per process (a revision is rebuilt from one).

A snapshot (a story_revisions row with its content in full) never changes once written, and a
story's id is never reused, so a cached snapshot is never stale: a deleted story's entries
are unreachable (its access check answers 404 first) and age out. Rebuilding a revision from
a cached snapshot spares fetching up to 512 KiB from PostgreSQL (TOAST) and splitting it into
lines; list_revision_chain is told which snapshots are cached and leaves their content out.
Bounded by the characters held (least recently used out first).
"""

from __future__ import annotations

import uuid
from collections import OrderedDict

MAX_CHARACTERS = 32 * 1024 * 1024  # about 320 snapshots of 100 KiB


class SnapshotCache:
    def __init__(self, max_characters: int = MAX_CHARACTERS) -> None:
        self.max_characters = max_characters
        self.characters = 0
        self._lines: OrderedDict[tuple[uuid.UUID, int], tuple[str, ...]] = OrderedDict()
        self._by_story: dict[uuid.UUID, set[int]] = {}

    def held(self, story_id: uuid.UUID) -> dict[int, tuple[str, ...]]:
        """The cached snapshots of a story by revision: taken before the chain is read, so an
        entry evicted meanwhile is still at hand."""
        found = {}
        for revision in self._by_story.get(story_id, ()):
            key = (story_id, revision)
            found[revision] = self._lines[key]
            self._lines.move_to_end(key)
        return found

    def put(self, story_id: uuid.UUID, revision: int, lines: list[str]) -> None:
        size = sum(map(len, lines))
        key = (story_id, revision)
        if size > self.max_characters or key in self._lines:
            return
        self._lines[key] = tuple(lines)
        self._by_story.setdefault(story_id, set()).add(revision)
        self.characters += size
        while self.characters > self.max_characters:
            (old_story, old_revision), old = self._lines.popitem(last=False)
            self.characters -= sum(map(len, old))
            revisions = self._by_story[old_story]
            revisions.discard(old_revision)
            if not revisions:
                del self._by_story[old_story]
