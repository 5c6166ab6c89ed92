"""Access control in one place: may this caller do this to that resource?

Every decision is a pure function of facts already loaded (ids, ownership, membership), so
the rules are testable on their own. ``HIDDEN`` becomes 404 (never reveal that something
exists to someone who may not see it); ``FORBIDDEN`` becomes 403 (they can see it, they may
not do this). Tasks decide from the caller's role, derived when read (queries/tasks.sql): the
highest of maintainer > collaborator reaching the task, the event owner being maintainer.
Stories decide from the role reaching their task, and whether the caller wrote them.
Invites decide from who the caller is to the invite (its invitee, its inviter) and the
caller's role on its task. Comments decide from the role reaching their story's task and
whether the caller wrote them.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass

from .errors import Forbidden, NotFound


class Decision(enum.Enum):
    ALLOW = "allow"
    FORBIDDEN = "forbidden"
    HIDDEN = "hidden"


class Action(enum.Enum):
    READ = "read"
    UPDATE = "update"
    DELETE = "delete"
    LIST_EVENTS = "list_events"  # a user's own events
    LIST_TASKS = "list_tasks"  # an event's tasks
    READ_NOTIFICATIONS = "read_notifications"  # a user's own notifications
    OPEN_STREAM = "open_stream"  # a user's own notification stream
    CREATE_TASK = "create_task"  # a top-level task of an event
    CREATE_SUBTASK = "create_subtask"  # a subtask of a task (or moving a task under it)
    COMPLETE = "complete"  # complete or reopen a task
    ADD_COLLABORATOR = "add_collaborator"
    LIST_COLLABORATORS = "list_collaborators"
    REMOVE_COLLABORATOR = "remove_collaborator"
    CREATE_STORY = "create_story"  # a story of a task
    LIST_STORIES = "list_stories"  # a task's stories
    INVITE = "invite"  # invite a user to a role on a task
    LIST_RECEIVED_INVITES = "list_received_invites"  # a user's own received invites
    LIST_SENT_INVITES = "list_sent_invites"  # the invites a user sent
    ANSWER_INVITE = "answer_invite"  # accept or reject an invite
    REVOKE_INVITE = "revoke_invite"
    CREATE_COMMENT = "create_comment"  # a comment on a story
    LIST_COMMENTS = "list_comments"  # a story's comments


def user_decision(caller_id: uuid.UUID, user_id: uuid.UUID, action: Action) -> Decision:
    """Users are visible to every authenticated caller; only the user changes itself."""
    if action is Action.READ or caller_id == user_id:
        return Decision.ALLOW
    return Decision.FORBIDDEN


@dataclass(frozen=True)
class EventFacts:
    owner_id: uuid.UUID
    caller_is_member: bool = False  # a member of any of the event's tasks


def event_decision(caller_id: uuid.UUID, event: EventFacts, action: Action) -> Decision:
    """The owner does everything; members of its tasks see it; nobody else knows it exists."""
    owner = caller_id == event.owner_id
    if not (owner or event.caller_is_member):
        return Decision.HIDDEN
    if action in (Action.READ, Action.LIST_TASKS) or owner:
        return Decision.ALLOW
    return Decision.FORBIDDEN


MAINTAINER, COLLABORATOR = "maintainer", "collaborator"
ROLE_RANK = {COLLABORATOR: 1, MAINTAINER: 2}

# The least role each action on a task needs (API.md, "Task").
TASK_ACTION_NEEDS: dict[Action, str] = {
    Action.READ: COLLABORATOR,
    Action.COMPLETE: COLLABORATOR,
    Action.LIST_COLLABORATORS: COLLABORATOR,
    Action.CREATE_STORY: COLLABORATOR,
    Action.LIST_STORIES: COLLABORATOR,
    Action.UPDATE: MAINTAINER,
    Action.DELETE: MAINTAINER,
    Action.CREATE_SUBTASK: MAINTAINER,
    Action.ADD_COLLABORATOR: MAINTAINER,
    Action.REMOVE_COLLABORATOR: MAINTAINER,
    Action.INVITE: MAINTAINER,
}


@dataclass(frozen=True)
class TaskFacts:
    role: str | None  # the caller's role reaching the task; None: none (an outsider)


def task_decision(task: TaskFacts, action: Action) -> Decision:
    """An outsider does not know the task exists; a member does what its role allows."""
    if task.role is None:
        return Decision.HIDDEN
    if ROLE_RANK[task.role] >= ROLE_RANK[TASK_ACTION_NEEDS[action]]:
        return Decision.ALLOW
    return Decision.FORBIDDEN


def collaborator_removal_decision(
    caller_id: uuid.UUID, user_id: uuid.UUID, task: TaskFacts
) -> Decision:
    """A maintainer removes anyone's role on the task; a member may always drop its own."""
    if task.role is not None and caller_id == user_id:
        return Decision.ALLOW
    return task_decision(task, Action.REMOVE_COLLABORATOR)


@dataclass(frozen=True)
class StoryFacts:
    role: str | None  # the caller's role reaching the story's task; None: an outsider
    is_author: bool = False  # the caller wrote the story (its author_id)


def story_decision(story: StoryFacts, action: Action) -> Decision:
    """Stories follow their task (API.md, "Story"): an outsider does not know one exists;
    every member reads and edits; only the author or a maintainer deletes."""
    if story.role is None:
        return Decision.HIDDEN
    if action is Action.DELETE and not (story.is_author or story.role == MAINTAINER):
        return Decision.FORBIDDEN
    return Decision.ALLOW


@dataclass(frozen=True)
class InviteFacts:
    invitee_id: uuid.UUID
    inviter_id: uuid.UUID | None  # None once the inviter deleted its account
    caller_role: str | None  # the caller's role on the invite's task; None: none


def invite_decision(caller_id: uuid.UUID, invite: InviteFacts, action: Action) -> Decision:
    """Its invitee, its inviter and the task's maintainers know an invite exists; nobody else
    (a collaborator of the task included). The invitee accepts or rejects it; the inviter or
    a maintainer revokes it (a maintainer who is the invitee may do both)."""
    invitee = caller_id == invite.invitee_id
    inviter = caller_id == invite.inviter_id
    maintainer = invite.caller_role == MAINTAINER
    if not (invitee or inviter or maintainer):
        return Decision.HIDDEN
    if action is Action.ANSWER_INVITE:
        return Decision.ALLOW if invitee else Decision.FORBIDDEN
    if action is Action.REVOKE_INVITE:
        return Decision.ALLOW if inviter or maintainer else Decision.FORBIDDEN
    return Decision.FORBIDDEN


@dataclass(frozen=True)
class CommentFacts:
    role: str | None  # the caller's role reaching the task of the comment's story; None: none
    is_author: bool = False  # the caller wrote the comment (its author_id)


def comment_decision(comment: CommentFacts, action: Action) -> Decision:
    """Comments follow their story's task (API.md, "Comment"): an outsider does not know one
    exists; every member reads it and its history; only its author edits it; its author or a
    maintainer deletes it."""
    if comment.role is None:
        return Decision.HIDDEN
    if action is Action.UPDATE and not comment.is_author:
        return Decision.FORBIDDEN
    if action is Action.DELETE and not (comment.is_author or comment.role == MAINTAINER):
        return Decision.FORBIDDEN
    return Decision.ALLOW


# What a 403 says, by what was addressed and what the caller tried: the words fit the action.
FORBIDDEN_MESSAGES: dict[tuple[str, Action], str] = {
    ("user", Action.UPDATE): "you may only change your own account",
    ("user", Action.DELETE): "you may only delete your own account",
    ("user", Action.LIST_EVENTS): "you may only list your own events",
    ("user", Action.READ_NOTIFICATIONS): "you may only read your own notifications",
    ("user", Action.OPEN_STREAM): "you may only open your own notification stream",
    ("user", Action.LIST_RECEIVED_INVITES): "you may only list the invites you received",
    ("user", Action.LIST_SENT_INVITES): "you may only list the invites you sent",
    ("event", Action.UPDATE): "only the event's owner may change it",
    ("event", Action.DELETE): "only the event's owner may delete it",
    ("event", Action.CREATE_TASK): "only the event's owner may create or move top-level tasks",
    ("task", Action.UPDATE): "only a maintainer of the task may change it",
    ("task", Action.DELETE): "only a maintainer of the task may delete it",
    (
        "task",
        Action.CREATE_SUBTASK,
    ): "only a maintainer of the parent task may put subtasks under it",
    ("task", Action.ADD_COLLABORATOR): "only a maintainer of the task may add collaborators",
    (
        "task",
        Action.REMOVE_COLLABORATOR,
    ): "only a maintainer of the task, or the collaborator itself, may remove a role",
    ("story", Action.DELETE): "only the story's author or a maintainer of its task may delete it",
    ("task", Action.INVITE): "only a maintainer of the task may invite users to it",
    ("invite", Action.ANSWER_INVITE): "only the invitee may accept or reject an invite",
    (
        "invite",
        Action.REVOKE_INVITE,
    ): "only the inviter or a maintainer of the task may revoke an invite",
    ("comment", Action.UPDATE): "only the comment's author may edit it",
    (
        "comment",
        Action.DELETE,
    ): "only the comment's author or a maintainer of its task may delete it",
}


def forbidden_message(what: str, action: Action) -> str:
    fallback = f"you may not {action.value.replace('_', ' ')} this {what}"
    return FORBIDDEN_MESSAGES.get((what, action), fallback)


def enforce(decision: Decision, what: str, action: Action) -> None:
    """NotFound for HIDDEN (as if it did not exist), Forbidden with the message that fits
    ``action`` on ``what`` for FORBIDDEN."""
    if decision is Decision.HIDDEN:
        raise NotFound(f"no such {what}")
    if decision is Decision.FORBIDDEN:
        raise Forbidden(forbidden_message(what, action))
