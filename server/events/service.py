"""Use cases of events (API.md, "Event"). No HTTP here: handlers parse and render, these
decide and write, and raise the domain errors of errors.py.

``access_event`` loads what a decision needs in one query and enforces it; ``do_*`` write
inside one Work (work.py) and return what they wrote.
"""

from __future__ import annotations

import uuid
from typing import Any

from ..db import Runner
from ..errors import Forbidden, Invalid, NotFound
from ..policy import Action, EventFacts, enforce, event_decision
from ..users.service import access_user
from ..work import Work
from .models import Event, EventPosition
from .repository import EventsRepository


async def access_event(
    db: Runner, caller_id: uuid.UUID, event_id: uuid.UUID, action: Action, *, lock: bool = False
) -> Event:
    """The event, if the caller may do ``action`` to it: NotFound when it does not exist or
    the caller may not know it does, Forbidden when the caller sees it but may not do that."""
    found = await EventsRepository(db).access(event_id, caller_id, lock=lock)
    if found is None:
        raise NotFound("no such event")
    facts = EventFacts(owner_id=found.event.user_id, caller_is_member=found.caller_is_member)
    enforce(event_decision(caller_id, facts, action), "event", action)
    return found.event


async def do_create_event(work: Work, caller_id: uuid.UUID, fields: dict[str, Any]) -> Event:
    if fields.get("user_id") not in (None, caller_id):
        raise Forbidden("user_id, if given, must be your own id: events are yours")
    # The caller deleted meanwhile meets events_user_id_fkey: 401 (errors.CONSTRAINTS).
    return await EventsRepository(work.tx).create(caller_id, fields)


async def do_update_event(
    work: Work, caller_id: uuid.UUID, event_id: uuid.UUID, changes: dict[str, Any]
) -> Event:
    """A partial update; the dates are checked against the stored ones under the row lock."""
    event = await access_event(work.tx, caller_id, event_id, Action.UPDATE, lock=True)
    start = changes.get("start_date", event.start_date)
    end = changes.get("end_date", event.end_date)
    if end < start:
        raise Invalid({"end_date": ["must not be before start_date"]})
    updated = await EventsRepository(work.tx).update(event.id, changes)
    assert updated is not None  # the row is locked: it cannot have gone
    return updated


async def do_delete_event(work: Work, caller_id: uuid.UUID, event_id: uuid.UUID) -> None:
    event = await access_event(work.tx, caller_id, event_id, Action.DELETE, lock=True)
    await EventsRepository(work.tx).delete(event.id)


async def list_own_events(
    db: Runner, caller_id: uuid.UUID, user_id: uuid.UUID, after: EventPosition | None, limit: int
) -> list[Event]:
    """``limit`` of a user's own events from ``after``; only the user may list them."""
    await access_user(db, caller_id, user_id, Action.LIST_EVENTS)
    return await EventsRepository(db).list_by_owner(user_id, after, limit)
