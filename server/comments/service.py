"""Use cases of comments (API.md, "Comment", "Who is notified"). No HTTP here: handlers parse
and render, these decide and write, and raise the domain errors of errors.py.

``access_comment`` loads a comment with the caller's role on its story's task in one query
and enforces it through policy.py (``lock`` takes the comment row first). Every change of a
comment holds that lock, so changes of one comment take turns and each writes its version
after the one committed before it: racing edits all keep their entry in the history. A
change notifies every member of the story's task but the actor, in the same transaction and
in one ``notify_each``: ``mention`` for members the new body mentions for the first time,
``comment`` for the others.
"""

from __future__ import annotations

import uuid
from typing import Any

from ..db import Runner
from ..errors import Conflict, Invalid, NotFound
from ..mentions import new_mentions
from ..policy import Action, CommentFacts, StoryFacts, comment_decision, enforce, story_decision
from ..stories.service import access_story
from ..tasks.repository import TasksRepository
from ..work import Work
from .models import (
    CREATED,
    DELETED,
    EDITED,
    Comment,
    CommentAccess,
    CommentVersion,
    RenderedComment,
)
from .repository import CommentsRepository

COMMENT = "comment"
MENTION = "mention"
NOT_IN_STORY = "must be a comment of the same story"


async def access_comment(
    db: Runner, caller_id: uuid.UUID, comment_id: uuid.UUID, action: Action, *, lock: bool = False
) -> CommentAccess:
    """The comment if the caller may do ``action`` to it: NotFound when it does not exist or
    no role reaches its story's task, Forbidden when the caller may not. ``lock`` holds the
    row until the transaction ends, taken before the comment is read, so it is current."""
    comments = CommentsRepository(db)
    if lock and not await comments.lock(comment_id):
        raise NotFound("no such comment")
    found = await comments.access(comment_id, caller_id)
    if found is None:
        raise NotFound("no such comment")
    facts = CommentFacts(found.role, is_author=found.comment.author_id == caller_id)
    enforce(comment_decision(facts, action), "comment", action)
    return found


async def _notify(
    work: Work,
    comment: Comment,
    task_id: uuid.UUID,
    actor_id: uuid.UUID,
    action: str,
    before: str | None,
) -> None:
    """One notification per member of the task but the actor: ``mention`` for those the body
    mentions and ``before`` did not (``before`` None: a deletion, which mentions nobody),
    ``comment`` for the rest."""
    members = await TasksRepository(work.tx).member_ids(task_id)
    mentioned = set() if before is None else new_mentions(before, comment.body) & members
    notice = {
        "comment_id": str(comment.id),
        "story_id": str(comment.story_id),
        "task_id": str(task_id),
        "action": action,
        "actor_id": str(actor_id),
    }
    mention = {
        "story_id": str(comment.story_id),
        "task_id": str(task_id),
        "comment_id": str(comment.id),
        "actor_id": str(actor_id),
    }
    messages = {
        member: (MENTION, mention) if member in mentioned else (COMMENT, notice)
        for member in members
    }
    await work.notify_each(messages, actor_id=actor_id)


async def do_create_comment(work: Work, caller_id: uuid.UUID, fields: dict[str, Any]) -> Comment:
    """A comment on a story the caller can see (any member of its task), as a reply to
    ``parent_id`` when given: a comment of the same story, deleted or not (anything else,
    a comment the caller cannot see included, is Invalid on parent_id)."""
    story = (
        await access_story(work.tx, caller_id, fields["story_id"], Action.CREATE_COMMENT)
    ).story
    comments = CommentsRepository(work.tx)
    parent_id = fields.get("parent_id")
    if parent_id is not None and await comments.story_of(parent_id) != story.id:
        raise Invalid({"parent_id": [NOT_IN_STORY]})
    comment = await comments.create(story.id, parent_id, caller_id, fields["body"])
    if comment is None:  # the story was deleted meanwhile
        raise NotFound("no such story")
    await _notify(work, comment, story.task_id, caller_id, CREATED, "")
    return comment


async def get_comment(db: Runner, caller_id: uuid.UUID, comment_id: uuid.UUID) -> Comment:
    return (await access_comment(db, caller_id, comment_id, Action.READ)).comment


async def do_edit_comment(
    work: Work, caller_id: uuid.UUID, comment_id: uuid.UUID, changes: dict[str, Any]
) -> Comment:
    """PUT: a new body by the comment's author, kept as the next version of its history.
    A deleted comment is Conflict; a body left out or unchanged writes nothing and notifies
    nobody."""
    found = await access_comment(work.tx, caller_id, comment_id, Action.UPDATE, lock=True)
    comment = found.comment
    if comment.deleted:
        raise Conflict("the comment is deleted: it can no longer be edited")
    body = changes.get("body", comment.body)
    if body == comment.body:
        return comment
    edited = await CommentsRepository(work.tx).edit(comment, body, caller_id)
    if edited is None:  # not while the lock is held; a guard all the same
        raise Conflict("the comment changed meanwhile; try again")
    await _notify(work, edited, found.task_id, caller_id, EDITED, comment.body)
    return edited


async def do_delete_comment(work: Work, caller_id: uuid.UUID, comment_id: uuid.UUID) -> None:
    """Soft deletion by the comment's author or a maintainer of the task: the comment keeps
    its place and its replies, its text is hidden from then on. Deleting it again changes
    nothing and notifies nobody."""
    found = await access_comment(work.tx, caller_id, comment_id, Action.DELETE, lock=True)
    if found.comment.deleted:
        return
    deleted = await CommentsRepository(work.tx).delete(found.comment, caller_id)
    if deleted is None:  # not while the lock is held; a guard all the same
        raise Conflict("the comment changed meanwhile; try again")
    await _notify(work, deleted, found.task_id, caller_id, DELETED, None)


async def list_story_comments(
    db: Runner, caller_id: uuid.UUID, story_id: uuid.UUID, after: int, limit: int
) -> list[RenderedComment]:
    """``limit`` comments of a story after position ``after``, oldest first, as their API
    bodies, deleted ones included (as placeholders): access and page in one statement."""
    page = await CommentsRepository(db).thread(story_id, caller_id, after, limit)
    if page is None:
        raise NotFound("no such story")
    enforce(story_decision(StoryFacts(page.role), Action.LIST_COMMENTS), "story",
            Action.LIST_COMMENTS)  # fmt: skip
    return page.comments


async def list_history(
    db: Runner, caller_id: uuid.UUID, comment_id: uuid.UUID, after: int, limit: int
) -> list[CommentVersion]:
    """``limit`` versions of a comment after ``after``, oldest first; once the comment is
    deleted, none of them carries its body."""
    comment = (await access_comment(db, caller_id, comment_id, Action.READ)).comment
    return await CommentsRepository(db).versions(comment.id, after, limit)
