"""Access control in one place: may this caller do this to that resource?

Every decision is a pure function of facts already loaded (ids, ownership, membership), so
the rules are testable on their own. ``HIDDEN`` becomes 404 (never reveal that something
exists to someone who may not see it); ``FORBIDDEN`` becomes 403 (they can see it, they may
not do this). The task issues extend it with roles on tasks.
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


# What a 403 says, by what was addressed and what the caller tried: the words fit the action.
FORBIDDEN_MESSAGES: dict[tuple[str, Action], str] = {
    ("user", Action.UPDATE): "you may only change your own account",
    ("user", Action.DELETE): "you may only delete your own account",
    ("user", Action.LIST_EVENTS): "you may only list your own events",
    ("user", Action.READ_NOTIFICATIONS): "you may only read your own notifications",
    ("user", Action.OPEN_STREAM): "you may only open your own notification stream",
    ("event", Action.UPDATE): "only the event's owner may change it",
    ("event", Action.DELETE): "only the event's owner may delete it",
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
