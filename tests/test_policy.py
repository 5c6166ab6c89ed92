"""The access policy as pure decisions (server/policy.py)."""

from __future__ import annotations

import uuid

import pytest

from server.policy import Action, Decision, EventFacts, event_decision, user_decision

OWNER, MEMBER, STRANGER = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()


@pytest.mark.parametrize(
    ("caller", "action", "expected"),
    [
        (OWNER, Action.READ, Decision.ALLOW),
        (OWNER, Action.UPDATE, Decision.ALLOW),
        (OWNER, Action.DELETE, Decision.ALLOW),
        (OWNER, Action.LIST_TASKS, Decision.ALLOW),
        (MEMBER, Action.READ, Decision.ALLOW),
        (MEMBER, Action.LIST_TASKS, Decision.ALLOW),
        (MEMBER, Action.UPDATE, Decision.FORBIDDEN),
        (MEMBER, Action.DELETE, Decision.FORBIDDEN),
        (STRANGER, Action.READ, Decision.HIDDEN),
        (STRANGER, Action.UPDATE, Decision.HIDDEN),
        (STRANGER, Action.DELETE, Decision.HIDDEN),
    ],
)
def test_event_decisions(caller: uuid.UUID, action: Action, expected: Decision) -> None:
    facts = EventFacts(owner_id=OWNER, caller_is_member=caller == MEMBER)
    assert event_decision(caller, facts, action) is expected


@pytest.mark.parametrize(
    ("caller", "action", "expected"),
    [
        (OWNER, Action.READ, Decision.ALLOW),
        (STRANGER, Action.READ, Decision.ALLOW),
        (OWNER, Action.UPDATE, Decision.ALLOW),
        (STRANGER, Action.UPDATE, Decision.FORBIDDEN),
        (STRANGER, Action.DELETE, Decision.FORBIDDEN),
        (STRANGER, Action.LIST_EVENTS, Decision.FORBIDDEN),
        (OWNER, Action.LIST_EVENTS, Decision.ALLOW),
    ],
)
def test_user_decisions(caller: uuid.UUID, action: Action, expected: Decision) -> None:
    assert user_decision(caller, OWNER, action) is expected
