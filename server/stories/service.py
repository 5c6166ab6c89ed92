"""Use cases of stories (API.md, "Story", "Merging a stale edit"). No HTTP here: handlers
parse and render, these decide and write, and raise the domain errors of errors.py.

``access_story`` loads a story with the caller's role on its task in one query and enforces
it through policy.py (``lock`` locks the story row in that same query, as it reads it).
Every write of a story holds that row lock, so writers of one story take turns: each
compares the revision it was given with the one the previous writer committed (no lost
update), and ``update_story`` also requires the revision it read. A change of title or
content is one new revision (``_write``), with one notification per member of the task in
the same transaction: ``mention`` for members the new content mentions for the first time,
``story_update`` for the others, none for the actor.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from typing import Any

from ..db import Runner
from ..errors import Conflict, Invalid, NotFound, PreconditionFailed
from ..mentions import new_mentions
from ..policy import Action, StoryFacts, enforce, story_decision
from ..tasks.repository import TasksRepository
from ..tasks.service import access_task
from ..work import Work
from . import merge as merging
from .lines import (
    Change,
    apply,
    apply_in_place,
    from_delta,
    split_lines,
    text_changes,
    to_delta,
    unified_diff,
)
from .models import (
    MAX_CONTENT_BYTES,
    SNAPSHOT_EVERY,
    HistoryAccess,
    NewRevision,
    Revision,
    RevisionChange,
    StoredRevision,
    Story,
    StoryAccess,
)
from .repository import StoriesRepository
from .snapshots import SnapshotCache

STORY_UPDATE = "story_update"
MENTION = "mention"
MAX_REVISION = 2**31 - 1  # an integer column: no revision is beyond it
NO_REVISION = 0  # the base of a content edit whose If-Match names no revision: never matches


async def access_story(
    db: Runner, caller_id: uuid.UUID, story_id: uuid.UUID, action: Action, *, lock: bool = False
) -> StoryAccess:
    """The story if the caller may do ``action`` to it: NotFound when it does not exist or no
    role reaches its task, Forbidden when the role does not allow it. ``lock`` holds the row
    until the transaction ends, locked as it is read (one statement), so it is current."""
    found = await StoriesRepository(db).access(story_id, caller_id, lock=lock)
    if found is None:
        raise NotFound("no such story")
    facts = StoryFacts(found.role, is_author=found.story.author_id == caller_id)
    enforce(story_decision(facts, action), "story", action)
    return found


async def access_history(db: Runner, caller_id: uuid.UUID, story_id: uuid.UUID) -> HistoryAccess:
    """As ``access_story`` for reading a story's history (Action.READ), without reading its
    title and content: the revisions come from story_revisions, and the current content
    (up to 512 KiB) would be fetched for nothing."""
    found = await StoriesRepository(db).history_access(story_id, caller_id)
    if found is None:
        raise NotFound("no such story")
    facts = StoryFacts(found.role, is_author=found.author_id == caller_id)
    enforce(story_decision(facts, Action.READ), "story", Action.READ)
    return found


def _stale(story: Story, detail: str) -> Conflict:
    return Conflict(detail, current_revision=story.revision)


def check_precondition(story: Story, expected: frozenset[int] | None) -> None:
    """If-Match: ``expected`` the revisions it names (None: none asked, or ``*``)."""
    if expected is not None and story.revision not in expected:
        raise PreconditionFailed(
            f"If-Match does not match: the story is at revision {story.revision}",
            current_revision=story.revision,
        )


def _content_fits(content: str) -> None:
    size = len(content.encode("utf-8"))
    if size > MAX_CONTENT_BYTES:
        raise Invalid(
            {"content": [f"must be at most {MAX_CONTENT_BYTES} bytes of UTF-8, got {size}"]}
        )


def _next_revision(story: Story, content: str, changed: list[Change]) -> NewRevision:
    """How the next revision is stored: a snapshot every SNAPSHOT_EVERY revisions, or once
    the deltas since the last snapshot would outweigh the content; a delta otherwise."""
    delta = to_delta(changed)
    size = sum(len(text.encode("utf-8")) + 16 for _, _, text in delta)
    revision = story.revision + 1
    chain_bytes = story.chain_bytes + size
    # A text has at least as many UTF-8 bytes as characters: encode it only when that is not
    # enough to tell.
    if revision - story.snapshot_revision >= SNAPSHOT_EVERY or (
        chain_bytes > len(content) and chain_bytes > len(content.encode("utf-8"))
    ):
        return NewRevision(revision, 0, content, None)
    return NewRevision(story.snapshot_revision, chain_bytes, None, delta)


def _notice(story: Story, action: str, actor_id: uuid.UUID, **extra: Any) -> dict[str, Any]:
    return {
        "story_id": str(story.id),
        "task_id": str(story.task_id),
        "revision": story.revision,
        "action": action,
        "actor_id": str(actor_id),
        **extra,
    }


async def _notify(
    work: Work,
    story: Story,
    actor_id: uuid.UUID,
    action: str,
    before: str,
    **extra: Any,
) -> None:
    """One notification per member of the story's task but the actor: ``mention`` for those
    the content mentions and ``before`` did not, ``story_update`` for the rest."""
    members = await TasksRepository(work.tx).member_ids(story.task_id)
    mentioned = new_mentions(before, story.content) & members
    mention = {
        "story_id": str(story.id),
        "task_id": str(story.task_id),
        "comment_id": None,
        "actor_id": str(actor_id),
    }
    update = _notice(story, action, actor_id, **extra)
    messages = {
        member: (MENTION, mention) if member in mentioned else (STORY_UPDATE, update)
        for member in members
    }
    await work.notify_each(messages, actor_id=actor_id)


async def _write(
    work: Work,
    story: Story,
    actor_id: uuid.UUID,
    title: str,
    content: str,
    action: str,
    **extra: Any,
) -> Story:
    """The next revision with ``title`` and ``content``, and its notifications; the story as
    it is when neither changes (no revision, nobody notified). The caller holds the lock."""
    if title == story.title and content == story.content:
        return story
    changed = text_changes(story.content, content)
    stored = _next_revision(story, content, changed)
    updated = await StoriesRepository(work.tx).update(story, title, content, actor_id, stored)
    if updated is None:  # not while the lock is held; a guard all the same
        raise _stale(story, "the story changed meanwhile; try again")
    await _notify(work, updated, actor_id, action, story.content, **extra)
    return updated


async def do_create_story(work: Work, caller_id: uuid.UUID, fields: dict[str, Any]) -> Story:
    """A story of a task the caller is a member of, at revision 1."""
    task = (await access_task(work.tx, caller_id, fields["task_id"], Action.CREATE_STORY)).task
    story = await StoriesRepository(work.tx).create(
        task.id, fields["title"], fields["content"], caller_id
    )
    await _notify(work, story, caller_id, "created", "")
    return story


async def get_story(db: Runner, caller_id: uuid.UUID, story_id: uuid.UUID) -> Story:
    return (await access_story(db, caller_id, story_id, Action.READ)).story


async def list_task_stories(
    db: Runner, caller_id: uuid.UUID, task_id: uuid.UUID, after: uuid.UUID | None, limit: int
) -> list[Story]:
    task = (await access_task(db, caller_id, task_id, Action.LIST_STORIES)).task
    return await StoriesRepository(db).list_for_task(task.id, after, limit)


async def do_update_story(
    work: Work,
    caller_id: uuid.UUID,
    story_id: uuid.UUID,
    changes: dict[str, Any],
    expected: frozenset[int] | None,
) -> Story:
    """PUT: a partial update of title and content by a member, if the story is still at a
    revision ``expected`` names (If-Match)."""
    story = (await access_story(work.tx, caller_id, story_id, Action.UPDATE, lock=True)).story
    check_precondition(story, expected)
    title = changes.get("title", story.title)
    content = changes.get("content", story.content)
    return await _write(work, story, caller_id, title, content, "updated")


async def do_edit_content(
    work: Work,
    caller_id: uuid.UUID,
    story_id: uuid.UUID,
    content: str,
    base_revision: int | None,
    merge: bool,
    snapshots: SnapshotCache | None = None,
) -> tuple[Story, bool]:
    """PATCH .../content: the new content, written over ``base_revision`` (None: whatever is
    current; NO_REVISION: If-Match named none, PreconditionFailed once the caller is known to
    see the story). A stale base is Conflict with ``current_revision``, unless ``merge``: then
    the edit is merged three ways with what was written since (merge.py); conflicts are
    Conflict with ``conflicts`` too, and nothing is written. Returns the story and whether it
    was merged."""
    story = (await access_story(work.tx, caller_id, story_id, Action.UPDATE, lock=True)).story
    if base_revision == NO_REVISION:
        raise PreconditionFailed(
            'If-Match names no revision of this story (use "<revision>")',
            current_revision=story.revision,
        )
    if base_revision is None or base_revision == story.revision:
        return await _write(work, story, caller_id, story.title, content, "updated"), False
    if base_revision > story.revision:
        raise _stale(story, f"revision {base_revision} does not exist yet")
    if not merge:
        raise _stale(story, f"revision {base_revision} is stale: the story is at revision "
                            f"{story.revision}")  # fmt: skip
    base = await _rebuild(work.tx, story.id, base_revision, snapshots)
    result = merging.merge(base.content, content, story.content)
    if result.text is None:
        raise Conflict(
            f"the edit conflicts with what was written after revision {base_revision}",
            current_revision=story.revision,
            conflicts=[{"base": c.base, "ours": c.ours, "theirs": c.theirs}
                       for c in result.conflicts],
        )  # fmt: skip
    _content_fits(result.text)
    return await _write(work, story, caller_id, story.title, result.text, "updated"), True


async def do_delete_story(work: Work, caller_id: uuid.UUID, story_id: uuid.UUID) -> None:
    """Deletes a story with its revisions (its author, or a maintainer of its task); the
    members of the task are told."""
    story = (await access_story(work.tx, caller_id, story_id, Action.DELETE, lock=True)).story
    members = await TasksRepository(work.tx).member_ids(story.task_id)
    await StoriesRepository(work.tx).delete(story.id)
    await work.notify(
        members, STORY_UPDATE, _notice(story, "deleted", caller_id), actor_id=caller_id
    )


async def do_restore(
    work: Work,
    caller_id: uuid.UUID,
    story_id: uuid.UUID,
    revision: int,
    expected: frozenset[int] | None,
) -> Story:
    """A new revision with exactly the title and content of ``revision`` (none when they
    already are), if the story is still at a revision ``expected`` names (If-Match)."""
    story = (await access_story(work.tx, caller_id, story_id, Action.UPDATE, lock=True)).story
    check_precondition(story, expected)
    old = await _rebuild(work.tx, story.id, revision)
    return await _write(
        work, story, caller_id, old.title, old.content, "restored", restored_from=revision
    )


def _replay(
    rows: Sequence[StoredRevision],
) -> Iterator[tuple[StoredRevision, list[str], list[str], list[Change] | None]]:
    """Each stored revision with the lines of the one before, its own lines, and its changes
    when they are stored (None for a snapshot). ``rows`` start at a snapshot."""
    lines: list[str] = []
    for row in rows:
        if row.delta is None:
            assert row.content is not None
            new, changed = split_lines(row.content), None
        else:
            changed = from_delta(row.delta)
            new = apply(lines, changed)
        yield row, lines, new, changed
        lines = new


async def _rebuild(
    db: Runner, story_id: uuid.UUID, revision: int, snapshots: SnapshotCache | None = None
) -> Revision:
    """The exact title and content of one revision: its snapshot (from ``snapshots`` when it
    is there, else read and put there) and the deltas after it, applied in place to one list
    of lines (only the last revision's lines are needed)."""
    held = snapshots.held(story_id) if snapshots is not None else {}
    rows = await StoriesRepository(db).chain(story_id, revision, revision, held) if (
        1 <= revision <= MAX_REVISION
    ) else []  # fmt: skip
    if not rows:
        raise NotFound(f"the story has no revision {revision}")
    first = rows[0]
    if first.content is None:  # left out: the cache holds it
        lines = list(held[first.revision])
    else:
        lines = split_lines(first.content)
        if snapshots is not None:
            snapshots.put(story_id, first.revision, lines)
    for row in rows[1:]:
        assert row.delta is not None, "one snapshot per chain"
        apply_in_place(lines, from_delta(row.delta))
    last = rows[-1]
    return Revision(last.revision, last.title, "".join(lines), last.author_id, last.created_at)


async def get_revision(
    db: Runner,
    caller_id: uuid.UUID,
    story_id: uuid.UUID,
    revision: int,
    snapshots: SnapshotCache | None = None,
) -> Revision:
    story = await access_history(db, caller_id, story_id)
    return await _rebuild(db, story.id, revision, snapshots)


def _label(revision: int) -> str:
    return f"revision {revision}"


async def list_revisions(
    db: Runner, caller_id: uuid.UUID, story_id: uuid.UUID, after: int, limit: int
) -> list[RevisionChange]:
    """``limit`` revisions after ``after``, oldest first, each with the unified diff of its
    content from the revision before (the first one's from the empty text)."""
    story = await access_history(db, caller_id, story_id)
    if after >= story.revision:
        return []
    rows = await StoriesRepository(db).chain(story.id, max(after, 1), after + limit)
    found = []
    for row, before, lines, changed in _replay(rows):
        if row.revision <= after:
            continue
        diff = unified_diff(before, lines, _label(row.revision - 1), _label(row.revision), changed)
        found.append(RevisionChange(row.revision, row.title, row.author_id, row.created_at, diff))
    return found


async def diff(
    db: Runner,
    caller_id: uuid.UUID,
    story_id: uuid.UUID,
    first: int,
    second: int,
    snapshots: SnapshotCache | None = None,
) -> str:
    """The unified diff of the content from revision ``first`` to ``second`` (either order)."""
    story = await access_history(db, caller_id, story_id)
    old = await _rebuild(db, story.id, first, snapshots)
    new = old if second == first else await _rebuild(db, story.id, second, snapshots)
    return unified_diff(
        split_lines(old.content), split_lines(new.content), _label(first), _label(second)
    )
